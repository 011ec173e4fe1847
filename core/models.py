"""Peewee models (Fund, Order, OrderEvent, IdempotencyKey) and the database set-up.

Nothing connects at import time: `db` is a proxy that `init_db(url)` binds.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import peewee as pw
from playhouse.db_url import connect as connect_url

db = pw.DatabaseProxy()

#: Seconds to wait for another writer's lock before giving up (several processes share the
#: database); the server passes a much shorter bound so a client never waits that long.
DEFAULT_LOCK_TIMEOUT_S = 30.0


class DecimalText(pw.TextField):
    """A Decimal stored as text: exact on every backend (SQLite's NUMERIC would be a float)."""

    def db_value(self, value: Any) -> Any:
        return None if value is None else f"{Decimal(value):f}"

    def python_value(self, value: Any) -> Any:
        return None if value is None else Decimal(value)


class BaseModel(pw.Model):
    id = pw.AutoField()

    class Meta:
        database = db
        legacy_table_names = False


class Fund(BaseModel):
    """The fund catalog, loaded at start from FUNDS_FILE or the demo list."""

    name = pw.CharField(max_length=200, unique=True)
    nav = DecimalText()


class Order(BaseModel):
    """One fund order; the row is the truth, the Redis lists only dispatch it."""

    ref = pw.CharField(max_length=64, unique=True)
    fund_name = pw.CharField(max_length=200)
    transaction_type = pw.CharField(max_length=8)
    quantity = pw.BigIntegerField()
    order_value = DecimalText()
    status = pw.CharField(max_length=16, index=True)
    priority = pw.SmallIntegerField()
    created_on = pw.DateTimeField()
    updated_on = pw.DateTimeField()
    attempts = pw.IntegerField(default=0)
    failure_reason = pw.TextField(default="")
    confirmation_id = pw.TextField(default="")
    #: Sequence of the latest OrderEvent; the next event takes last_sequence + 1.
    last_sequence = pw.IntegerField(default=0)
    progress = pw.SmallIntegerField(default=0)
    #: True when CANCELLED by processing (counted as "failed" by QueueStats).
    failed = pw.BooleanField(default=False)
    #: Who holds the order while PROCESSING, and until when (renewed by heartbeats).
    worker_id = pw.CharField(max_length=128, null=True)
    lease_expires_at = pw.DateTimeField(null=True, index=True)
    recoveries = pw.IntegerField(default=0)
    #: When the ref was last pushed onto its list; the reaper re-pushes stale PENDING orders.
    enqueued_at = pw.DateTimeField(null=True)
    caller = pw.CharField(max_length=128, default="")


class OrderEvent(BaseModel):
    """Append-only audit trail; each row is also the update published to watchers."""

    order = pw.ForeignKeyField(Order, backref="events", on_delete="RESTRICT")
    sequence = pw.IntegerField()
    event = pw.CharField(max_length=32)
    status = pw.CharField(max_length=16)
    progress = pw.SmallIntegerField()
    detail = pw.TextField(default="")
    created_on = pw.DateTimeField()
    #: The order as it was at this event (JSON), so a replay shows history.
    snapshot = pw.TextField()

    class Meta:
        indexes = ((("order", "sequence"), True),)


class IdempotencyKey(BaseModel):
    """A caller's idempotency key and the request it first came with."""

    caller = pw.CharField(max_length=128)
    key = pw.CharField(max_length=255)
    request_hash = pw.CharField(max_length=64)
    order = pw.ForeignKeyField(Order, on_delete="RESTRICT")
    created_on = pw.DateTimeField()

    class Meta:
        indexes = ((("caller", "key"), True),)


MODELS: list[type[BaseModel]] = [Fund, Order, OrderEvent, IdempotencyKey]


#: One writer at a time inside a process on SQLite: threads queue on this lock (woken at
#: once) instead of in SQLite's busy handler, which sleeps in steps of up to 100 ms.
_SQLITE_WRITE_LOCK = threading.RLock()


#: Waits between two tries for SQLite's write lock when another process holds it: first, cap.
LOCK_RETRY_FIRST_S = 0.00005
LOCK_RETRY_CAP_S = 0.001


@contextmanager
def write_txn() -> Iterator[None]:
    """A write transaction (db.atomic), serialised within the process on SQLite."""
    database = db.obj
    if not isinstance(database, pw.SqliteDatabase):
        with db.atomic():
            yield
        return
    with _SQLITE_WRITE_LOCK:
        if database.transaction_depth() > 0:
            with database.atomic():  # a savepoint: the lock is held already
                yield
            return
        txn = _begin_immediate(database)
        try:
            yield
        except BaseException as exc:
            if not txn.__exit__(type(exc), exc, exc.__traceback__):
                raise
        else:
            txn.__exit__(None, None, None)


def _begin_immediate(database: pw.SqliteDatabase) -> Any:
    """db.atomic(), entered once SQLite's write lock is ours.

    Another process's writer makes BEGIN IMMEDIATE wait. SQLite's own busy handler sleeps
    1, 2, 5, 10 ... 100 ms between tries: a server colliding with a worker's commit waited up
    to 84 ms that way (p99 19 ms for a lock held for well under a millisecond). Here BEGIN
    fails at once instead, and is tried again after 50 us, doubling to 1 ms, until the lock
    timeout of the database.
    """
    timeout_s = getattr(database, "lock_timeout_s", DEFAULT_LOCK_TIMEOUT_S)
    deadline = time.monotonic() + timeout_s
    delay = LOCK_RETRY_FIRST_S
    database.execute_sql("PRAGMA busy_timeout = 0")  # type: ignore[no-untyped-call]
    try:
        while True:
            txn = database.atomic()
            try:
                txn.__enter__()
                return txn
            except pw.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() + delay > deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, LOCK_RETRY_CAP_S)
    finally:
        ms = max(1, int(timeout_s * 1000))
        database.execute_sql(f"PRAGMA busy_timeout = {ms}")  # type: ignore[no-untyped-call]


def utcnow() -> dt.datetime:
    """Naive UTC now: how every timestamp is stored."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


#: Advisory lock key that serialises schema creation on PostgreSQL ("orders" in ASCII).
SCHEMA_LOCK_KEY = 0x6F7264657273


def make_database(
    url: str,
    pool_size: int = 16,
    lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
    autocheckpoint: bool = True,
    synced_commits: bool = True,
) -> pw.Database:
    """A pooled peewee database for a DATABASE_URL (sqlite:///... or postgresql://...).

    synced_commits=False (SQLite): a commit is not fsynced (synchronous=NORMAL): it survives
    the process crashing, but an OS crash or power loss may roll back the last ones. Only the
    worker opts out, since each of its writes can be lost and redone: a lost claim leaves the
    order PENDING off its list (the reaper requeues it), a lost outcome leaves it PROCESSING
    (its lease expires, and the retry carries the same Idempotency-Key). An accepted order is
    never in that position: the server's commits are synced (synchronous=FULL, ~200 us an
    fsync here, one per batch of orders), as PostgreSQL's are by default.

    lock_timeout_s bounds the wait for a lock: SQLite's busy timeout, PostgreSQL's lock_timeout.
    autocheckpoint=False: SQLite's commits never copy the WAL back into the database file
    themselves; the process calls checkpoint_wal() from a background thread instead.
    """
    parsed = urlparse(url)
    lock_ms = max(1, int(lock_timeout_s * 1000))
    if parsed.scheme == "sqlite":
        path = url[len("sqlite:///") :]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        database: pw.Database = connect_url(
            "sqlite+pool:///" + path,
            max_connections=pool_size,
            stale_timeout=300,
            timeout=30,
            check_same_thread=False,
            # IMMEDIATE: take the write lock at BEGIN, so busy_timeout applies instead of a
            # deadlock error when two readers both try to upgrade to writers.
            lock_type="IMMEDIATE",
            pragmas={
                "journal_mode": "wal",
                "busy_timeout": lock_ms,
                "synchronous": "full" if synced_commits else "normal",
                "foreign_keys": 1,
                # 1000 pages is SQLite's default; 0 leaves it to checkpoint_wal().
                "wal_autocheckpoint": 1000 if autocheckpoint else 0,
            },
        )
        setattr(database, "lock_timeout_s", lock_timeout_s)  # noqa: B010 - read by write_txn
        return database
    if parsed.scheme in ("postgres", "postgresql"):
        database = connect_url(
            "postgresql+pool" + url[len(parsed.scheme) :],
            max_connections=pool_size,
            stale_timeout=300,
            timeout=30,
            connect_timeout=5,
            options=f"-c lock_timeout={lock_ms}",
        )
        return database
    raise ValueError(f"unsupported DATABASE_URL scheme {parsed.scheme!r}")


def init_db(
    url: str,
    pool_size: int = 16,
    create: bool = True,
    lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
    autocheckpoint: bool = True,
    synced_commits: bool = True,
) -> pw.Database:
    """Bind `db` to the database at url and create the schema idempotently."""
    database = make_database(url, pool_size, lock_timeout_s, autocheckpoint, synced_commits)
    db.initialize(database)
    if create:
        with database.connection_context(), database.atomic():
            if not isinstance(database, pw.SqliteDatabase):
                # Server and workers start together on a fresh database: CREATE TABLE IF NOT
                # EXISTS races in PostgreSQL's catalog, so creators take turns (SQLite's
                # IMMEDIATE transaction already does the same).
                database.execute_sql(  # type: ignore[no-untyped-call]
                    "SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,)
                )
            database.create_tables(MODELS, safe=True)
    return database


def checkpoint_wal() -> None:
    """Copy SQLite's write-ahead log back into the database file, without waiting for or
    blocking any reader or writer (PASSIVE); nothing to do on PostgreSQL."""
    database = db.obj
    if isinstance(database, pw.SqliteDatabase):
        with database.connection_context():
            database.execute_sql("PRAGMA wal_checkpoint(PASSIVE)")  # type: ignore[no-untyped-call]


def close_db() -> None:
    """Close every pooled connection (at shutdown)."""
    database = db.obj
    if database is None:
        return
    close_all = getattr(database, "close_all", None)
    if close_all is not None:
        close_all()
    else:
        database.close()
