"""Load: thousands of orders across worker processes, each placed exactly once."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from tests.orderflow import (  # noqa: F401 - sqlite_db_fixture is a fixture
    assert_one_placement_each,
    place_many,
    sqlite_db_fixture,
    wait_all_terminal,
)

ORDERS = 2000


@pytest.mark.usefixtures("sqlite_db")
def test_two_thousand_orders_across_two_workers(make_stack, sqlite_url: str) -> None:
    """SQLite on purpose: server and two worker processes all write the one file at once."""
    stack = make_stack(
        sqlite_url, WORKER_CONCURRENCY="8", THIRD_PARTY_MAX_ATTEMPTS="6", REAPER_INTERVAL_S="1"
    )
    stack.start_fundhouse("--seed", "7")
    stack.start_server()
    stack.fundhouse_behaviour(failure_rate=0.1, latency_ms=2)
    stack.start_worker()
    stack.start_worker()
    started = time.monotonic()
    refs = place_many(stack, ORDERS, threads=8)  # raises on any error answered to a client
    placed_in = time.monotonic() - started
    final = wait_all_terminal(120, f"{ORDERS} orders to be terminal")
    done_in = time.monotonic() - started
    assert set(final) == set(refs) and len(refs) == ORDERS
    assert_one_placement_each(stack)
    stats = stack.fundhouse_get("/_admin/stats")
    assert stats["requests"] > ORDERS, "no retries happened: the failure rate did not bite"
    assert sum(stats["calls"].values()) == stats["requests"]
    outcome = Counter(final.values())
    assert outcome["COMPLETED"] >= ORDERS * 0.99, outcome
    for service in stack.services:
        assert "database is locked" not in service.log_text(), service.name
        assert service.alive(), service.name
    print(
        f"{ORDERS} orders placed in {placed_in:.1f}s, all terminal in {done_in:.1f}s; "
        f"{stats['requests']} third-party calls; {dict(outcome)}"
    )
