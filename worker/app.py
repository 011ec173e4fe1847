"""orders-worker: WORKER_CONCURRENCY threads BRPOPping the priority lists, heartbeats, reaper."""

from __future__ import annotations

import datetime as dt
import logging
import os
import secrets
import signal
import socket
import sys
import threading
from collections.abc import Sequence
from types import FrameType

import redis

from core import keys, store
from core.domain import OrderStatus
from core.logs import setup_logging
from core.metrics_http import serve_metrics
from core.models import Order, close_db, db, init_db, utcnow
from core.redis_conn import REDIS_DOWN_ERRORS, Reconnect, make_redis
from core.settings import Settings, SettingsError
from core.updates import Update, publish
from worker import metrics
from worker.processor import Processor
from worker.reaper import Reaper
from worker.thirdparty import ThirdPartyClient
from worker.writes import WriteCombiner

logger = logging.getLogger(__name__)

#: BRPOP timeout: short, so a thread notices the stop event within a second. A timeout
#: cannot be told from an unreachable host by BRPOP alone; the socket timeout (longer) can.
BRPOP_TIMEOUT_S = 1


def new_worker_id() -> str:
    """host:pid:random, unique across restarts of the same pid."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Worker:
    """A worker process: consumer threads, a heartbeat renewing held leases, and a reaper."""

    def __init__(self, settings: Settings, worker_id: str | None = None) -> None:
        self.settings = settings
        self.worker_id = worker_id or new_worker_id()
        self.held: set[str] = set()
        self.held_lock = threading.Lock()
        self.reconnect = Reconnect("worker", initial_s=0.1, cap_s=2.0)
        self.db_backoff = DbBackoff()
        self.publisher = make_redis(settings.redis_url, settings.redis_timeout_s)
        self.writes = WriteCombiner(self._publish)

    def run(self, stop_event: threading.Event) -> None:
        """Consume until stop_event is set, then finish (or hand back) what is held."""
        threads = [
            threading.Thread(target=self._consume, args=(stop_event,), name=f"consumer-{i}")
            for i in range(self.settings.worker_concurrency)
        ]
        heartbeat_stop = threading.Event()
        heartbeat = threading.Thread(
            target=self._heartbeat, args=(heartbeat_stop,), name="heartbeat", daemon=True
        )
        reaper_client = make_redis(self.settings.redis_url, self.settings.redis_timeout_s)
        reaper = threading.Thread(
            target=Reaper(
                self.settings, self.worker_id, reaper_client, self.held, self.held_lock
            ).run,
            args=(stop_event,),
            name="reaper",
            daemon=True,
        )
        heartbeat.start()
        reaper.start()
        for thread in threads:
            thread.start()
        logger.info("worker started", extra={"worker": self.worker_id, "concurrency": len(threads)})
        for thread in threads:
            thread.join()
        heartbeat_stop.set()
        heartbeat.join(timeout=5)
        reaper.join(timeout=5)
        reaper_client.close()
        self.publisher.close()
        logger.info(
            "worker stopped",
            extra={
                "worker": self.worker_id,
                "write_rounds": self.writes.rounds,
                "writes": self.writes.changes,
            },
        )

    def _consume(self, stop_event: threading.Event) -> None:
        client = make_redis(
            self.settings.redis_url,
            self.settings.redis_timeout_s,
            read_timeout_s=BRPOP_TIMEOUT_S + self.settings.redis_timeout_s + 1,
        )
        third_party = ThirdPartyClient(
            self.settings.third_party_url,
            self.settings.third_party_connect_timeout_s,
            self.settings.third_party_timeout_s,
        )
        processor = Processor(
            self.settings,
            self.worker_id,
            client,
            self.writes,
            third_party,
            stop_event,
            self.held,
            self.held_lock,
        )
        try:
            while not stop_event.is_set():
                try:
                    item = client.brpop(keys.queue_keys(), timeout=BRPOP_TIMEOUT_S)
                except REDIS_DOWN_ERRORS as exc:
                    stop_event.wait(self.reconnect.failed(exc))
                    continue
                self.reconnect.succeeded()
                if item is None:
                    continue
                ref = str(item[1])
                if stop_event.is_set():
                    # Popped as the stop came: not ours to start any more.
                    self._hand_back(client, str(item[0]), ref, "worker stopping")
                    break
                if not self._process(processor, ref):
                    self._hand_back(client, str(item[0]), ref, "database unavailable")
                    stop_event.wait(self.db_backoff.failed())
                else:
                    self.db_backoff.succeeded()
        finally:
            third_party.close()
            client.close()

    def _hand_back(self, client: redis.Redis, key: str, ref: str, why: str) -> None:
        """Put an unclaimed ref back at the head of its list (the reaper covers a failure)."""
        try:
            client.rpush(key, ref)
            logger.info("ref handed back unclaimed: %s", why, extra={"ref": ref})
        except REDIS_DOWN_ERRORS as exc:
            logger.error("could not hand back ref (%s): %s", why, exc, extra={"ref": ref})

    def _process(self, processor: Processor, ref: str) -> bool:
        """Process one ref; False when the claim could not reach the database."""
        try:
            processor.process_one(ref)
        except store.DB_DOWN_ERRORS as exc:
            # Nothing was claimed (or a claim whose reply was lost, which the reaper recovers
            # when its lease expires): the order is PENDING and goes back on its list.
            logger.error("database unavailable, cannot claim: %s", exc, extra={"ref": ref})
            return False
        except Exception:
            logger.exception("unexpected error processing order", extra={"ref": ref})
        return True

    def _publish(self, updates: Sequence[Update]) -> None:
        """Publish after the commit; pub/sub is at most once, the stored trail is the truth."""
        try:
            with self.publisher.pipeline(transaction=False) as pipe:
                publish(pipe, list(updates))
                pipe.execute()
        except REDIS_DOWN_ERRORS as exc:
            logger.warning("could not publish updates: %s", exc, extra={"ref": updates[0].ref})

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


class DbBackoff:
    """Spaces out claims while the database is down (shared by the consumer threads)."""

    def __init__(self, initial_s: float = 0.2, cap_s: float = 5.0) -> None:
        self.initial_s = initial_s
        self.cap_s = cap_s
        self.delay_s = 0.0
        self.lock = threading.Lock()

    def failed(self) -> float:
        with self.lock:
            self.delay_s = min(max(self.delay_s * 2, self.initial_s), self.cap_s)
            return self.delay_s

    def succeeded(self) -> None:
        self.delay_s = 0.0


def main() -> None:
    """Entry point of orders-worker: first SIGTERM/SIGINT drains, a second exits at once."""
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"orders-worker: invalid configuration:\n{exc}", file=sys.stderr)
        raise SystemExit(2) from None
    setup_logging(settings.log_format, settings.log_level)
    init_db(settings.database_url, settings.db_pool_size, lock_timeout_s=settings.db_lock_timeout_s)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            logger.warning("second signal, exiting now")
            os._exit(1)
        logger.info(
            "stopping: finishing held orders", extra={"signal": signal.Signals(signum).name}
        )
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    worker = Worker(settings)
    if settings.worker_metrics_port is not None:
        metrics.set_in_progress_source(lambda: len(worker.held))
        serve_metrics(settings.host, settings.worker_metrics_port)
    try:
        worker.run(stop)
    finally:
        close_db()
