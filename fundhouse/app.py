"""orders-fundhouse main: POST /orders, plus /_admin/* for tests and operators, on asyncio."""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import signal
import sys

from core.logs import setup_logging
from fundhouse.protocol import HttpProtocol
from fundhouse.state import Behaviour, Fundhouse

logger = logging.getLogger(__name__)


async def serve(host: str, port: int, state: Fundhouse) -> None:
    """Answer on host:port until SIGTERM or SIGINT, then close the listener and connections."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    connections: set[HttpProtocol] = set()
    try:
        server = await loop.create_server(
            functools.partial(HttpProtocol, state, connections), host, port, backlog=1024
        )
    except OSError as exc:
        sys.exit(f"orders-fundhouse: cannot listen on {host}:{port}: {exc}")
    bound = server.sockets[0].getsockname()[1]
    logger.info("fundhouse listening", extra={"host": host, "port": bound})
    sys.stderr.flush()
    await stop.wait()
    server.close()
    for connection in list(connections):
        connection.close()
    await server.wait_closed()
    logger.info("fundhouse stopped")


def main(argv: list[str] | None = None) -> None:
    """Entry point of orders-fundhouse."""
    parser = argparse.ArgumentParser(description="Simulated third-party order API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument(
        "--failure-rate", type=float, default=0.0, help="share of calls answered 503, 0..1"
    )
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    if not 0 <= args.failure_rate <= 1:
        parser.error("--failure-rate must be from 0 to 1")
    setup_logging("text", args.log_level.upper())
    state = Fundhouse(
        Behaviour(latency_ms=args.latency_ms, failure_rate=args.failure_rate), seed=args.seed
    )
    asyncio.run(serve(args.host, args.port, state))
