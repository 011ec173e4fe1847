"""orders-server: the grpc.aio server process (OrderService, health, reflection)."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import grpc
import peewee as pw
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from core import store
from core.funds import FundsFileError, load_funds, sync_funds
from core.logs import setup_logging
from core.metrics_http import MetricsEndpoint, serve_metrics
from core.models import checkpoint_wal, close_db, db, init_db
from core.redis_conn import make_redis
from core.runtime import tune_gc
from core.settings import Settings, SettingsError
from server import metrics
from server.auth import AuthInterceptor
from server.handlers import SERVICE_NAME, generic_handler
from server.health import HealthMonitor, ping_database, ping_redis
from server.placement import OrderPlacer
from server.reflection import enable_reflection
from server.servicer import OrderService
from server.tls import server_credentials
from server.watch import UpdateHub

logger = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 1024 * 1024

#: How often the server copies SQLite's WAL back into the database file. Its own commits never
#: do (wal_autocheckpoint=0): a commit that checkpoints stalls its caller for the fsync, and
#: that was most of PlaceOrder's p99.9 at 1 in flight.
CHECKPOINT_INTERVAL_S = 1.0

SERVER_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", 4 * MAX_MESSAGE_BYTES),
    # Keepalive pings keep idle WatchOrder streams alive through proxies and notice dead peers.
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_pings_without_data", 0),
    # New calls wait in C-core's queue until the event loop requests them; past the default
    # soft limit (1,000 waiting) some are cancelled. A burst of watchers (thousands reconnecting
    # after a restart) overflowed it in testing; an accepted watch stream is cheap, so allow it.
    ("grpc.server.max_pending_requests", 20_000),
    ("grpc.server.max_pending_requests_hard_limit", 20_000),
]


@dataclass
class RunningServer:
    """A started server and what must be closed with it."""

    server: grpc.aio.Server
    port: int
    health: HealthServicer
    executor: ThreadPoolExecutor
    hub: UpdateHub
    monitor: HealthMonitor | None = None
    metrics: MetricsEndpoint | None = None
    checkpoints: asyncio.Task[None] | None = None

    async def stop(self, grace: float) -> None:
        """Refuse new RPCs, let in-flight ones finish within grace, then close everything."""
        # Stop listening first, so that a client connecting from now on is refused
        # (UNAVAILABLE) rather than accepted and then cancelled by the shutdown.
        stopping = asyncio.ensure_future(self.server.stop(grace))
        await asyncio.sleep(0)
        logger.info("refusing new calls; in-flight ones may finish", extra={"grace_s": grace})
        if self.monitor is not None:
            await self.monitor.stop()
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        # Watch streams never end by themselves: end them now (UNAVAILABLE, resume elsewhere)
        # instead of holding the shutdown for the whole grace period.
        await self.hub.close()
        if self.checkpoints is not None:
            self.checkpoints.cancel()
        await stopping
        self.executor.shutdown(wait=True)
        if self.metrics is not None:
            self.metrics.stop()
        close_db()


async def start(settings: Settings) -> RunningServer:
    """Open the database and Redis, then start serving on settings.host:settings.port."""
    # A short lock wait: a client should hear UNAVAILABLE within seconds, not hang.
    init_db(
        settings.database_url,
        settings.db_pool_size,
        lock_timeout_s=settings.server_db_lock_timeout_s,
        autocheckpoint=False,
    )
    with db.connection_context():
        sync_funds(load_funds(settings.funds_file))
    client = make_redis(settings.redis_url, settings.redis_timeout_s)
    executor = ThreadPoolExecutor(max_workers=settings.db_pool_size, thread_name_prefix="orders-db")
    hub = UpdateHub(settings.redis_url, settings.redis_timeout_s)
    service = OrderService(OrderPlacer(client, settings.max_queue_depth), executor, hub)

    # The metrics interceptor comes first, so it sees the auth interceptor's rejections.
    server = grpc.aio.server(
        interceptors=[
            metrics.MetricsInterceptor(),
            AuthInterceptor(settings.admin_token, settings.api_tokens),
        ],
        options=SERVER_OPTIONS,
    )
    server.add_generic_rpc_handlers((generic_handler(service),))
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    enable_reflection(
        server, [SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name]
    )

    address = f"{settings.host}:{settings.port}"
    credentials = server_credentials(settings)
    if credentials is None:
        port = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, credentials)
    if port == 0:
        raise RuntimeError(f"could not bind {address}")
    endpoint = None
    if settings.metrics_port is not None:
        metrics.register_queue_depth(client)
        metrics.set_watch_streams_source(lambda: hub.open_streams)
        endpoint = serve_metrics(settings.host, settings.metrics_port)
    hub.start()
    checkpoints = asyncio.get_running_loop().create_task(_checkpoints(executor), name="wal")
    await server.start()
    monitor = HealthMonitor(
        health, ("", SERVICE_NAME), {"redis": lambda: ping_redis(client), "database": ping_database}
    )
    await monitor.check_once()
    monitor.start()
    logger.info(
        "serving", extra={"host": settings.host, "port": port, "tls": credentials is not None}
    )
    return RunningServer(server, port, health, executor, hub, monitor, endpoint, checkpoints)


async def _checkpoints(executor: ThreadPoolExecutor) -> None:
    """Checkpoint SQLite's WAL every CHECKPOINT_INTERVAL_S, off the request path."""
    if not isinstance(db.obj, pw.SqliteDatabase):
        return
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(CHECKPOINT_INTERVAL_S)
        try:
            await loop.run_in_executor(executor, checkpoint_wal)
        except store.DB_DOWN_ERRORS as exc:
            logger.warning("WAL checkpoint failed, next in %.0fs: %s", CHECKPOINT_INTERVAL_S, exc)


async def serve(settings: Settings) -> None:
    """Run until SIGTERM/SIGINT: the first stops gracefully, a second exits at once."""
    running = await start(settings)
    tune_gc()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            logger.warning("second signal, exiting now")
            sys.exit(1)
        logger.info("stopping", extra={"signal": signal.Signals(signum).name})
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    await stop.wait()
    await running.stop(settings.shutdown_grace_s)
    logger.info("stopped")


def main() -> None:
    """Entry point of orders-server."""
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"orders-server: invalid configuration:\n{exc}", file=sys.stderr)
        raise SystemExit(2) from None
    setup_logging(settings.log_format, settings.log_level)
    try:
        asyncio.run(serve(settings))
    except FundsFileError as exc:
        print(f"orders-server: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
