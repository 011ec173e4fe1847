"""Dependency health: probe Redis and the database every second, publish it on grpc.health.v1.

The server answers SERVING only while both respond, so a load balancer or an orchestrator
stops sending work to a server that would only answer UNAVAILABLE, and sends it again once
the dependency is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

import redis
from grpc_health.v1 import health_pb2
from grpc_health.v1._async import HealthServicer

from core.models import db
from server import metrics

logger = logging.getLogger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

#: Seconds between probes; with PROBE_TIMEOUT_S this bounds how late a change is noticed.
PROBE_INTERVAL_S = 1.0
#: A probe that has not answered by then counts as "down" (a hung socket, a stuck pool).
PROBE_TIMEOUT_S = 2.0


def ping_redis(client: redis.Redis) -> None:
    """Raise if Redis does not answer PING (the client's socket timeouts bound the wait)."""
    client.ping()


def ping_database() -> None:
    """Raise if the database does not answer SELECT 1."""
    with db.connection_context():
        db.execute_sql("SELECT 1")


class HealthMonitor:
    """A background task that keeps the health status of `services` in step with the probes."""

    def __init__(
        self,
        health: HealthServicer,
        services: Iterable[str],
        probes: dict[str, Callable[[], None]],
        interval_s: float = PROBE_INTERVAL_S,
        timeout_s: float = PROBE_TIMEOUT_S,
    ) -> None:
        self.health = health
        self.services = list(services)
        self.probes = probes
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.up: dict[str, bool] = dict.fromkeys(probes, True)
        # Own threads: a probe stuck on a dead socket must not take a slot of the RPC pool.
        self._executor = ThreadPoolExecutor(
            max_workers=len(probes), thread_name_prefix="orders-health"
        )
        self._running: dict[str, asyncio.Future[None]] = {}
        self._task: asyncio.Task[None] | None = None
        self._serving: bool | None = None

    def start(self) -> None:
        """Start probing on the running event loop."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="health-monitor")

    async def stop(self) -> None:
        """Stop probing (the caller sets the final NOT_SERVING itself)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _run(self) -> None:
        while True:
            try:
                await self.check_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("health check failed unexpectedly")
            await asyncio.sleep(self.interval_s)

    async def check_once(self) -> bool:
        """Probe every dependency once, publish the result; True when all are up."""
        results = await asyncio.gather(*(self._probe(name) for name in self.probes))
        for name, ok in zip(self.probes, results, strict=True):
            if ok != self.up[name]:
                if ok:
                    logger.info("dependency reachable again", extra={"dependency": name})
                else:
                    logger.warning("dependency unreachable", extra={"dependency": name})
            self.up[name] = ok
            metrics.DEPENDENCY_UP.labels(name).set(1 if ok else 0)
        serving = all(results)
        if serving != self._serving:
            for service in self.services:
                await self.health.set(service, SERVING if serving else NOT_SERVING)
            self._serving = serving
        return serving

    async def _probe(self, name: str) -> bool:
        loop = asyncio.get_running_loop()
        pending = self._running.get(name)
        if pending is not None and not pending.done():
            return False  # the previous probe is still stuck: still down
        future = loop.run_in_executor(self._executor, self.probes[name])
        future.add_done_callback(_retrieve)
        self._running[name] = future
        try:
            await asyncio.wait_for(asyncio.shield(future), self.timeout_s)
        except TimeoutError:
            return False
        except Exception as exc:  # noqa: BLE001 - any failure of a probe means "down"
            logger.debug("probe failed: %s", exc, extra={"dependency": name})
            return False
        return True


def _retrieve(future: asyncio.Future[None]) -> None:
    # A probe that finished after its timeout: read its error so asyncio does not report it.
    if not future.cancelled():
        future.exception()
