"""Row 5: time from a worker's SIGKILL to every order it held being terminal again."""

from __future__ import annotations

import json
import signal
import sqlite3
import time
import urllib.request
from typing import TYPE_CHECKING, Any

from bench.procs import BIN

if TYPE_CHECKING:
    from bench.stack import Bench

LEASE_S = 5
CONCURRENCY = 8
#: A worker holds up to 2 x WORKER_CONCURRENCY orders: as many calls in flight, as many claimed
#: and waiting. Both kinds are held when it is killed.
HELD = 2 * CONCURRENCY


def _processing(url: str) -> int:
    with sqlite3.connect(url[len("sqlite:///") :], timeout=30) as conn:
        return int(
            conn.execute("SELECT count(*) FROM \"order\" WHERE status = 'PROCESSING'").fetchone()[0]
        )


def set_latency(base_url: str, latency_ms: float) -> None:
    request = urllib.request.Request(
        f"{base_url}/_admin/behaviour",
        data=json.dumps({"latency_ms": latency_ms}).encode(),
        method="PUT",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5):
        pass


def one(bench: Bench) -> dict[str, Any]:
    from bench.stack import loadgen

    with bench.database("sqlite") as url:
        assert url is not None
        bench.flush_redis()
        procs = bench.stack(
            "recovery",
            url,
            ORDER_LEASE_SECONDS=str(LEASE_S),
            REAPER_INTERVAL_S="1",
            PENDING_GRACE_SECONDS="5",
        )
        try:
            fundhouse = bench.start_fundhouse(procs, 3000)
            addr = bench.start_servers(procs)
            bench.start_workers(procs, 1, concurrency=CONCURRENCY)
            loadgen("place", addr, concurrency=HELD, count=HELD)
            deadline = time.monotonic() + 30
            while _processing(url) < HELD:
                if time.monotonic() > deadline:
                    raise RuntimeError("orders never all PROCESSING")
                time.sleep(0.01)
            # Every order is now held, half of them mid-call (3 s third party): kill the
            # worker, then a fresh worker comes up and its reaper takes over once the leases
            # expire.
            killed = time.monotonic()
            procs.stop("worker0", signal.SIGKILL)
            set_latency(fundhouse, 0)
            procs.spawn("rescuer", [str(BIN / "orders-worker")], WORKER_CONCURRENCY="8")
            done = bench.wait_terminal(url, HELD, timeout=120)
            return {"recovery_s": done - killed, "lease_s": LEASE_S, "held_orders": HELD}
        finally:
            procs.stop_all()


def row(bench: Bench) -> dict[str, Any]:
    from bench.run import RUNS, measure, summarise

    try:
        return summarise(
            measure("recovery after SIGKILL", RUNS, lambda: one(bench)), ["recovery_s"]
        )
    except Exception as exc:  # noqa: BLE001 - a failed row is reported, not hidden
        return {"error": repr(exc)[:300]}
