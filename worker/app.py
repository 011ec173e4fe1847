"""orders-worker: a fetcher, up to WORKER_CONCURRENCY orders in progress, a recorder, a
heartbeat and a reaper."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import secrets
import signal
import socket
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from core import claims, store
from core.domain import OrderStatus
from core.logs import setup_logging
from core.metrics_http import serve_metrics
from core.models import Order, close_db, db, init_db, utcnow
from core.redis_conn import make_async_redis, make_redis
from core.runtime import tune_gc
from core.settings import Settings, SettingsError
from worker import metrics
from worker.fetcher import POP_TIMEOUT_S, Fetcher, Slots
from worker.outbox import Outbox
from worker.processor import Processor
from worker.reaper import Reaper
from worker.recorder import Recorder
from worker.thirdparty import ThirdPartyClient

T = TypeVar("T")

#: Orders a process holds per call it may have in flight (WORKER_CONCURRENCY): the second is
#: claimed and ready the moment a call ends (see worker/fetcher.py).
HELD_PER_CALL = 2

logger = logging.getLogger(__name__)


def new_worker_id() -> str:
    """host:pid:random, unique across restarts of the same pid."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Worker:
    """A worker process. On its event loop: a fetcher claiming refs, one task per order in
    progress (WORKER_CONCURRENCY at most) calling the third party, and a recorder writing
    the outcomes; on threads: the database work, a heartbeat renewing held leases, a reaper."""

    def __init__(self, settings: Settings, worker_id: str | None = None) -> None:
        self.settings = settings
        self.worker_id = worker_id or new_worker_id()
        self.held: set[str] = set()
        self.held_lock = threading.Lock()
        self.tasks: set[asyncio.Task[None]] = set()
        self.stopping = False
        self._stop: asyncio.Event | None = None
        self._thread_stop = threading.Event()

    def stop(self) -> None:
        """Stop taking refs; run() returns once the orders in progress are recorded."""
        self.stopping = True
        self._thread_stop.set()
        if self._stop is not None:
            self._stop.set()

    async def run(self) -> None:
        """Consume until stop(), then finish (or hand back) what is held."""
        settings = self.settings
        loop = asyncio.get_running_loop()
        stop = self._stop = asyncio.Event()
        if self.stopping:
            stop.set()
        # One thread for every database write of the process: the batches keep it busy, and
        # one thread is one GIL contender.
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="orders-db")

        async def run_db(fn: Callable[..., T], *args: object) -> T:
            return await loop.run_in_executor(executor, _in_connection, fn, *args)

        pop_client = make_async_redis(
            settings.redis_url,
            settings.redis_timeout_s,
            read_timeout_s=POP_TIMEOUT_S + settings.redis_timeout_s + 1,
        )
        self.publisher = make_async_redis(settings.redis_url, settings.redis_timeout_s)
        outbox = Outbox(self.publisher)
        third_party = ThirdPartyClient(
            settings.third_party_url,
            settings.third_party_connect_timeout_s,
            settings.third_party_timeout_s,
            settings.worker_concurrency,
        )
        await third_party.start()
        recorder = Recorder(self.worker_id, run_db, outbox.send, self._forget)
        calls = asyncio.Semaphore(settings.worker_concurrency)
        processor = Processor(
            settings, self.worker_id, self.publisher, recorder, third_party, stop, calls
        )
        slots = Slots(HELD_PER_CALL * settings.worker_concurrency)

        def dispatch(claimed: claims.Claimed) -> None:
            task = loop.create_task(self._process(processor, claimed))
            self.tasks.add(task)

            def done(task: asyncio.Task[None]) -> None:
                self.tasks.discard(task)
                slots.give(1)

            task.add_done_callback(done)

        fetcher = Fetcher(
            pop_client,
            self.worker_id,
            settings.order_lease_seconds,
            slots,
            run_db,
            self._hold,
            outbox.send,
            dispatch,
        )
        threads = self._start_threads()
        recorder.start()
        logger.info(
            "worker started",
            extra={"worker": self.worker_id, "concurrency": settings.worker_concurrency},
        )
        try:
            await fetcher.run(stop)
        finally:
            if self.tasks:
                await asyncio.gather(*self.tasks, return_exceptions=True)
            await recorder.close()
            await outbox.drain()
            await third_party.close()
            await pop_client.aclose()
            await self.publisher.aclose()
            self._thread_stop.set()
            for thread in threads:
                thread.join(timeout=5)
            executor.shutdown(wait=True)
        logger.info(
            "worker stopped",
            extra={
                "worker": self.worker_id,
                "write_rounds": recorder.rounds,
                "writes": recorder.changes,
            },
        )

    def _start_threads(self) -> list[threading.Thread]:
        reaper = Reaper(
            self.settings,
            self.worker_id,
            make_redis(self.settings.redis_url, self.settings.redis_timeout_s),
            self.held,
            self.held_lock,
        )
        threads = [
            threading.Thread(
                target=self._heartbeat, args=(self._thread_stop,), name="heartbeat", daemon=True
            ),
            threading.Thread(
                target=reaper.run, args=(self._thread_stop,), name="reaper", daemon=True
            ),
        ]
        for thread in threads:
            thread.start()
        return threads

    async def _process(self, processor: Processor, claimed: claims.Claimed) -> None:
        try:
            await processor.process(claimed)
        except Exception:
            # Let the lease run out: the reaper gives the order to a healthy worker.
            ref = claimed.order.ref
            logger.exception("unexpected error processing order", extra={"ref": ref})
            self._forget(ref)

    def _hold(self, refs: Sequence[str]) -> None:
        with self.held_lock:
            self.held.update(refs)

    def _forget(self, ref: str) -> None:
        with self.held_lock:
            self.held.discard(ref)

    def _heartbeat(self, stop: threading.Event) -> None:
        """Renew the lease of every held order, every third of the lease.

        After a failed renewal it tries again soon, so that a database back from an outage
        sees the renewal before a reaper sees the lease expire.
        """
        interval = self.settings.order_lease_seconds / 3
        wait = interval
        while not stop.wait(wait):
            with self.held_lock:
                refs = list(self.held)
            if not refs:
                wait = interval
                continue
            until = utcnow() + dt.timedelta(seconds=self.settings.order_lease_seconds)
            try:
                with db.connection_context():
                    Order.update(lease_expires_at=until).where(
                        Order.ref.in_(refs)
                        & (Order.worker_id == self.worker_id)
                        & (Order.status == OrderStatus.PROCESSING.value)
                    ).execute()
                wait = interval
            except store.DB_DOWN_ERRORS as exc:
                logger.error("could not renew leases: %s", exc, extra={"refs": len(refs)})
                wait = min(interval, 0.5)


def _in_connection(fn: Callable[..., T], *args: object) -> T:
    with db.connection_context():
        return fn(*args)


def main() -> None:
    """Entry point of orders-worker: first SIGTERM/SIGINT drains, a second exits at once."""
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"orders-worker: invalid configuration:\n{exc}", file=sys.stderr)
        raise SystemExit(2) from None
    setup_logging(settings.log_format, settings.log_level)
    # Unsynced commits: every write of the worker can be lost and redone (make_database).
    init_db(
        settings.database_url,
        settings.db_pool_size,
        lock_timeout_s=settings.db_lock_timeout_s,
        synced_commits=False,
    )
    worker = Worker(settings)
    if settings.worker_metrics_port is not None:
        metrics.set_in_progress_source(lambda: len(worker.held))
        serve_metrics(settings.host, settings.worker_metrics_port)
    try:
        asyncio.run(_serve(worker))
    finally:
        close_db()


async def _serve(worker: Worker) -> None:
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if worker.stopping:
            logger.warning("second signal, exiting now")
            os._exit(1)
        logger.info(
            "stopping: finishing held orders", extra={"signal": signal.Signals(signum).name}
        )
        worker.stop()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    tune_gc()
    await worker.run()
