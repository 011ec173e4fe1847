"""orders-gateway: the original REST API on uvicorn, in front of the gRPC server."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from core.logs import setup_logging
from gateway.routes import Gateway, build_app
from gateway.settings import GatewaySettings, GatewaySettingsError

logger = logging.getLogger(__name__)


class _NoColorMessage(logging.Filter):
    """uvicorn adds an ANSI-coloured copy of some messages; the house formats print extras."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.__dict__.pop("color_message", None)
        return True


class GatewayServer(uvicorn.Server):
    """uvicorn, with the house's signal handling: the first SIGTERM/SIGINT ends the event
    streams (clients resume elsewhere with Last-Event-ID) and stops gracefully; a second
    exits at once. Exit status 0 after a graceful stop."""

    def __init__(self, config: uvicorn.Config, gateway: Gateway) -> None:
        super().__init__(config)
        self.gateway = gateway

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.on_signal, signum)
        try:
            yield
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)

    def on_signal(self, signum: int) -> None:
        if self.should_exit:
            logger.warning("second signal, exiting now")
            self.force_exit = True
            return
        logger.info("stopping", extra={"signal": signal.Signals(signum).name})
        self.gateway.closing.set()
        self.should_exit = True


def make_server(settings: GatewaySettings) -> GatewayServer:
    """A server for settings, not yet started."""
    app = build_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=settings.log_level == "DEBUG",
        timeout_graceful_shutdown=max(1, round(settings.shutdown_grace_s)),
        server_header=False,
    )
    return GatewayServer(config, app.state.gateway)


def main() -> None:
    """Entry point of orders-gateway."""
    try:
        settings = GatewaySettings.from_env()
    except GatewaySettingsError as exc:
        print(f"orders-gateway: invalid configuration:\n{exc}", file=sys.stderr)
        raise SystemExit(2) from None
    setup_logging(settings.log_format, settings.log_level)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_NoColorMessage())
    logger.info(
        "gateway starting",
        extra={"listen": f"{settings.host}:{settings.port}", "orders_addr": settings.orders_addr},
    )
    server = make_server(settings)
    server.run()
    if not server.started:
        raise SystemExit(1)
