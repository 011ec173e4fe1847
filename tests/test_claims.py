"""The worker's hot writes (core/claims.py) on SQLite and PostgreSQL, and its retry policy."""

from __future__ import annotations

import asyncio
import gc
import json

import pytest

from core import claims, store
from core.domain import Event, OrderStatus
from core.funds import load_funds, sync_funds
from core.models import Order, OrderEvent, db
from core.updates import Update, decode_batch, encode_batch
from tests.orderflow import events_of, make_order
from worker.retry import RetryPolicy
from worker.thirdparty import ThirdPartyRejected, ThirdPartyUnavailable


@pytest.fixture
def catalog(database) -> None:
    with db.connection_context():
        sync_funds(load_funds(None))


def _claim(refs: list[str], worker: str = "w1") -> list[claims.Claimed]:
    with db.connection_context():
        return claims.claim_many(refs, worker, 30)


def _complete(order: Order, confirmation: str = "C1") -> claims.Change:
    return claims.prepare(
        order,
        [
            store.Step(Event.ATTEMPT, "attempt 1 placed", {"attempts": 1}),
            store.Step(
                Event.COMPLETED,
                f"confirmation {confirmation}",
                {
                    "status": OrderStatus.COMPLETED.value,
                    "confirmation_id": confirmation,
                    "worker_id": None,
                    "lease_expires_at": None,
                },
            ),
        ],
    )


@pytest.mark.usefixtures("catalog")
def test_claim_many_claims_pending_orders_in_the_order_given() -> None:
    refs = [make_order() for _ in range(5)]
    done = make_order(status=OrderStatus.PROCESSING, worker_id="someone-else")
    asked = [refs[3], done, refs[0], refs[4]]
    claimed = _claim(asked)
    assert [c.order.ref for c in claimed] == [refs[3], refs[0], refs[4]]
    with db.connection_context():
        for c in claimed:
            row = Order.get(Order.ref == c.order.ref)
            assert (row.status, row.worker_id, row.last_sequence) == ("PROCESSING", "w1", 3)
            assert row.lease_expires_at is not None
            assert c.update.sequence == 3 and c.update.event == "claimed"
            assert c.update.order == store.snapshot(row)
        assert Order.get(Order.ref == done).worker_id == "someone-else"
    assert events_of(refs[3]) == ["created", "queued", "claimed"]
    assert events_of(done) == ["created", "queued", "claimed"]  # its own claim, not ours
    # A second delivery of the same refs claims nothing: the compare-and-set.
    assert _claim(asked, "w2") == []


@pytest.mark.usefixtures("catalog")
def test_record_writes_the_held_copy_and_refuses_after_a_takeover() -> None:
    kept, taken = (c.order for c in _claim([make_order(), make_order()]))
    with db.connection_context():
        # A reaper recovered `taken` meanwhile (its lease had expired): a new owner.
        store.transition(
            taken.ref,
            [store.Step(Event.RECOVERED, "test", {"status": "PENDING", "worker_id": None})],
            expect=[OrderStatus.PROCESSING],
        )
        changes = [_complete(kept), _complete(taken)]
        assert claims.record(changes, "w1") == [True, False]
        row = Order.get(Order.ref == kept.ref)
        assert (row.status, row.confirmation_id, row.attempts, row.last_sequence) == (
            "COMPLETED",
            "C1",
            1,
            5,
        )
        assert row.worker_id is None and row.progress == 100
        assert Order.get(Order.ref == taken.ref).status == "PENDING"
    assert events_of(kept.ref)[-2:] == ["attempt", "completed"]
    assert events_of(taken.ref)[-1] == "recovered"  # nothing of the old holder was written
    # Stored trail and published updates are one record: the same sequence and snapshot.
    with db.connection_context():
        stored = (
            OrderEvent.select()
            .join(Order)
            .where(Order.ref == kept.ref)
            .order_by(OrderEvent.sequence.desc())
            .first()
        )
        assert json.loads(stored.snapshot) == changes[0].final.order
        assert stored.sequence == changes[0].final.sequence


@pytest.mark.usefixtures("catalog")
def test_a_change_after_a_refused_one_of_the_same_order_is_refused_too() -> None:
    (held,) = (c.order for c in _claim([make_order()]))
    retry = claims.prepare(held, [store.Step(Event.RETRY_SCHEDULED, "retry in 0.10s")])
    final = _complete(held)
    with db.connection_context():
        Order.update(worker_id="thief").where(Order.ref == held.ref).execute()
        assert claims.record([retry, final], "w1") == [False, False]
        assert Order.get(Order.ref == held.ref).last_sequence == 3


def test_update_messages_round_trip_and_keep_their_order() -> None:
    import datetime as dt

    updates = [
        Update(
            "ORDAAAAAAAAAA", n, "attempt", 50, 'say "hi"\n\u00e9', dt.datetime(2026, 1, 2), {"a": n}
        )
        for n in (4, 5)
    ]
    records = decode_batch(encode_batch(updates))
    assert [Update.from_dict(r) for r in records] == updates
    assert decode_batch(updates[0].to_json()) == [json.loads(updates[0].to_json())]
    with pytest.raises(ValueError):
        decode_batch("[1, 2]")


def _schedule(outcomes: list[Exception | None], max_attempts: int) -> tuple[list[float], int]:
    """Drive the retry policy as the worker does; the backoff is recorded, never slept."""
    policy = RetryPolicy(base_delay_s=0.5, max_delay_s=4.0, stop_event=asyncio.Event())
    attempts = policy.attempts(max_attempts)
    waits: list[float] = []
    calls = 0
    try:
        while attempts.next():
            if attempts.due is not None:
                waits.append(attempts.due)
                attempts.due = None
            assert attempts.number == calls + 1
            outcome = outcomes[calls]
            calls += 1
            if outcome is None:
                attempts.succeeded("placed")
            else:
                attempts.failed(outcome)
    except (ThirdPartyUnavailable, ThirdPartyRejected):
        pass
    return waits, calls


def test_retry_policy_backs_off_exponentially_and_stops_at_the_attempt_limit() -> None:
    down = ThirdPartyUnavailable("HTTP 503")
    waits, calls = _schedule([down, down, down, down], max_attempts=4)
    assert calls == 4 and len(waits) == 3
    # initial 0.5 s doubling, plus up to 0.5 s of jitter, capped at 4 s
    for wait, base in zip(waits, (0.5, 1.0, 2.0), strict=True):
        assert base <= wait <= base + 0.5, waits
    assert _schedule([down, None], max_attempts=4)[1] == 2  # succeeded on the second call
    # A final rejection is never retried.
    assert _schedule([ThirdPartyRejected("HTTP 400"), None], max_attempts=4) == ([], 1)


def test_retry_schedules_are_independent_and_a_success_leaves_no_cyclic_garbage() -> None:
    policy = RetryPolicy(base_delay_s=0.5, max_delay_s=4.0, stop_event=asyncio.Event())
    down = ThirdPartyUnavailable("HTTP 503")
    # Two orders stepping the same shared Retrying in turns (as interleaved tasks do).
    first, second = policy.attempts(3), policy.attempts(3)
    assert first.next() and second.next()
    first.failed(down)
    second.succeeded("placed")
    assert first.next() and first.due is not None and first.number == 2
    assert not second.next()
    first.failed(down)
    assert first.next() and first.number == 3
    first.failed(down)
    with pytest.raises(ThirdPartyUnavailable):
        first.next()
    # A stopping worker: the next retry is refused, the last error raised.
    stopping = asyncio.Event()
    attempts = RetryPolicy(base_delay_s=0.5, max_delay_s=4.0, stop_event=stopping).attempts(5)
    assert attempts.next()
    attempts.failed(down)
    stopping.set()
    with pytest.raises(ThirdPartyUnavailable):
        attempts.next()
    # Every order of a worker goes through here: a successful one must be freed by reference
    # counting alone (cyclic garbage costs the collector's pauses).
    gc.collect()
    gc.disable()
    try:
        for _ in range(200):
            attempts = policy.attempts(4)
            while attempts.next():
                attempts.succeeded("placed")
        del attempts
        assert gc.collect() == 0
    finally:
        gc.enable()


@pytest.mark.parametrize(("synced", "level"), [(True, 2), (False, 1)])
def test_sqlite_commits_are_fsynced_unless_the_writer_can_redo_them(
    tmp_path, synced: bool, level: int
) -> None:
    """The server's commits (accepted orders) are synchronous=FULL; the worker's, whose every
    write is redone after a loss (reaper, lease, Idempotency-Key), are NORMAL."""
    from core.models import make_database

    database = make_database(f"sqlite:///{tmp_path}/x.db", 1, synced_commits=synced)
    with database.connection_context():
        assert database.execute_sql("PRAGMA synchronous").fetchone()[0] == level
    database.close_all()
