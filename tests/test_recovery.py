"""Crash recovery: the reaper, kill -9 of a worker, two reapers at once, poison orders."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
import redis

from core.domain import OrderStatus
from core.funds import load_funds, sync_funds
from core.models import Order, db
from core.settings import Settings
from tests.harness import RedisServer, wait_for
from tests.orderflow import (  # noqa: F401 - sqlite_db_fixture is a fixture
    assert_one_placement_each,
    events_of,
    make_order,
    place_many,
    queue_entries,
    sqlite_db_fixture,
    statuses,
    wait_all_terminal,
)
from worker.reaper import Reaper, SweepResult


@pytest.fixture
def catalog(database) -> None:
    with db.connection_context():
        sync_funds(load_funds(None))


def reaper(
    redis_server: RedisServer, database_url: str, name: str, held: set[str] | None = None, **kw
) -> Reaper:
    settings = Settings(
        redis_url=redis_server.url,
        database_url=database_url,
        max_recoveries=kw.pop("max_recoveries", 3),
        pending_grace_s=kw.pop("pending_grace_s", 3600.0),
    )
    return Reaper(settings, name, redis_server.client(), held or set(), threading.Lock())


def race(reapers: list[Reaper], rounds: int = 3) -> list[SweepResult]:
    """Run the reapers' sweeps at the same moment, several rounds; return every result."""
    results: list[SweepResult] = []
    barrier = threading.Barrier(len(reapers))
    errors: list[BaseException] = []

    def run(r: Reaper) -> None:
        try:
            for _ in range(rounds):
                barrier.wait(10)
                results.append(r.sweep())
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(r,)) for r in reapers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    return results


def test_two_reapers_recover_each_expired_order_once(
    database_url: str, catalog, redis_client: redis.Redis, redis_server: RedisServer
) -> None:
    expired = [make_order(status=OrderStatus.PROCESSING, lease_age_s=5) for _ in range(25)]
    results = race([reaper(redis_server, database_url, f"reaper-{i}") for i in range(2)])
    assert sum(r.recovered for r in results) == len(expired)
    for ref in expired:
        assert events_of(ref).count("recovered") == 1, events_of(ref)
        order = Order.get(Order.ref == ref)
        assert order.status == "PENDING" and order.recoveries == 1
        assert order.worker_id is None and order.lease_expires_at is None
    # Pushed once each: two reapers never turn into two deliveries, let alone placements.
    assert Counter(queue_entries(redis_client)) == Counter(expired)


def test_two_reapers_requeue_each_lost_push_once(
    database_url: str, catalog, redis_client: redis.Redis, redis_server: RedisServer
) -> None:
    lost = [make_order(pending_age_s=60) for _ in range(20)]
    waiting = make_order(pending_age_s=60)
    redis_client.lpush("{orders}:queue:1", waiting)  # old but on its list: left alone
    fresh = make_order()  # not on its list, but within the grace period: left alone
    reapers = [reaper(redis_server, database_url, f"r{i}", pending_grace_s=30) for i in range(2)]
    results = race(reapers)
    assert sum(r.requeued for r in results) == len(lost)
    for ref in lost:
        assert events_of(ref) == ["created", "queued", "requeued"]
    assert events_of(waiting) == events_of(fresh) == ["created", "queued"]
    assert Counter(queue_entries(redis_client)) == Counter([*lost, waiting])


def test_live_leases_and_held_orders_are_left_alone(
    database_url: str, catalog, redis_client: redis.Redis, redis_server: RedisServer
) -> None:
    live = make_order(status=OrderStatus.PROCESSING, lease_age_s=-30)  # expires in 30 s
    held = make_order(status=OrderStatus.PROCESSING, worker_id="me", lease_age_s=5)
    assert reaper(redis_server, database_url, "me", held={held}).sweep() == SweepResult()
    assert statuses() == {live: "PROCESSING", held: "PROCESSING"}
    assert queue_entries(redis_client) == []


def test_poison_order_is_cancelled_after_max_recoveries(
    database_url: str, catalog, redis_client: redis.Redis, redis_server: RedisServer
) -> None:
    poison = make_order(status=OrderStatus.PROCESSING, lease_age_s=5, recoveries=2)
    once_more = make_order(status=OrderStatus.PROCESSING, lease_age_s=5, recoveries=1)
    result = reaper(redis_server, database_url, "r", max_recoveries=2).sweep()
    assert (result.recovered, result.cancelled) == (1, 1)
    order = Order.get(Order.ref == poison)
    assert order.status == "CANCELLED" and order.failed
    assert "recovered 2 times" in order.failure_reason
    assert "MAX_RECOVERIES=2" in order.failure_reason
    assert Order.get(Order.ref == once_more).recoveries == 2
    assert queue_entries(redis_client) == [once_more]


def test_kill_9_worker_mid_order_then_two_new_workers(
    make_stack, database_url: str, database
) -> None:
    lease = 3.0
    env = {
        "ORDER_LEASE_SECONDS": str(lease),
        "REAPER_INTERVAL_S": "0.5",
        "WORKER_CONCURRENCY": "4",
    }
    stack = make_stack(database_url, **env)
    stack.start_fundhouse()
    stack.start_server()
    stack.fundhouse_behaviour(latency_ms=2000)
    doomed = stack.start_worker()
    refs = place_many(stack, 8)

    def in_flight() -> bool:
        held = [r for r, s in statuses().items() if s == "PROCESSING"]
        return len(held) == 4 and stack.fundhouse_get("/_admin/stats")["requests"] >= 4

    wait_for(in_flight, 30, "the first worker to hold 4 orders with calls in flight")
    held = {r for r, s in statuses().items() if s == "PROCESSING"}
    doomed.kill()
    killed_at = time.monotonic()
    stack.start_worker()
    stack.start_worker()  # two reapers sweep at once from here on
    wait_all_terminal(lease + 12, "every order terminal within the lease + a few seconds")
    elapsed = time.monotonic() - killed_at
    final = assert_one_placement_each(stack)
    assert set(final) == set(refs)
    assert all(s == "COMPLETED" for s in final.values()), final
    stats = stack.fundhouse_get("/_admin/stats")
    for ref in held:
        events = events_of(ref)
        assert events.count("recovered") == 1, events
        assert Order.get(Order.ref == ref).recoveries == 1
        # The killed call had reached the third party; the retry used the same key.
        assert stats["calls"][ref] == 2
    assert stats["replays"] == len(held)
    print(f"all terminal {elapsed:.1f}s after kill -9 (lease {lease}s)")


@pytest.mark.usefixtures("sqlite_db")
def test_lost_push_and_spent_attempts_after_recovery(make_stack, sqlite_url: str) -> None:
    stack = make_stack(sqlite_url, PENDING_GRACE_SECONDS="1", REAPER_INTERVAL_S="0.3")
    stack.start_fundhouse()
    stack.start_server()
    # Committed PENDING but never pushed (the server died between the commit and LPUSH).
    lost = make_order(pending_age_s=5)
    # Its dead worker had used every attempt: recovered, then cancelled without a call.
    spent = make_order(status=OrderStatus.PROCESSING, lease_age_s=5, attempts=5)
    stack.start_worker(THIRD_PARTY_MAX_ATTEMPTS="5")
    final = wait_all_terminal(30)
    assert final == {lost: "COMPLETED", spent: "CANCELLED"}
    assert events_of(lost)[-4:] == ["requeued", "claimed", "attempt", "completed"]
    assert "no third-party attempts left" in Order.get(Order.ref == spent).failure_reason
    assert "recovered" in events_of(spent)
    assert stack.fundhouse_get("/_admin/stats")["calls"] == {lost: 1}
