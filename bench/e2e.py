"""Row 3 (and row 6's end-to-end half): orders/s from PlaceOrder to COMPLETED.

The load generator places N orders at 64 in flight while the workers drain them. The rate is
N over the time from the first order's creation to the last order's last change, as the
database recorded them: no process start-up and no polling interval is counted. CPU per
order is read for every process of the stack (user and system time from /proc).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from bench.procs import CpuMeter
from bench.stack import loadgen

if TYPE_CHECKING:
    from bench.stack import Bench


def once(
    bench: Bench,
    kind: str,
    latency_ms: float,
    workers: int,
    orders: int,
    servers: int = 1,
    profile: Any = None,
    prefill: bool = False,
) -> dict[str, Any]:
    """One run on a fresh database; `profile(pids)` may start profilers and return a stop().

    prefill=True: every order is placed before the workers start (like the peers' figure:
    jobs enqueued, then drained); the rate is then over the time from the first claim to the
    last order's last change.
    """
    with bench.database(kind) as url:
        if url is None:
            return {}
        bench.flush_redis()
        procs = bench.stack(f"e2e-{kind}-{latency_ms}-{workers}w-{servers}s", url)
        try:
            bench.start_fundhouse(procs, latency_ms)
            addr = bench.start_servers(procs, servers)
            if prefill:
                load = loadgen("place", addr, concurrency=64, count=orders, channels=2 * servers)
            bench.start_workers(procs, workers)
            time.sleep(1.0)  # workers connect and reach their first pop
            pids = {n: p.pid for n, p in procs.running.items()}
            pids["redis"] = bench.redis_pid()
            stop_profile = profile(pids) if profile else None
            meter = CpuMeter(pids)
            if not prefill:
                load = loadgen("place", addr, concurrency=64, count=orders, channels=2 * servers)
            bench.wait_terminal(url, orders, timeout=600)
            cpu = meter.per_unit(orders)
            if not prefill:
                cpu["loadgen"] = {"total_us": load["cpu_us_per_call"]}
            if stop_profile:
                stop_profile()
            span, count = bench.drain_span_s(url) if prefill else bench.span_s(url)
            return {
                "rate": count / span,
                "span_s": span,
                "placed_in_s": load["elapsed_s"],
                "place_rate": load["rate"],
                "place_p99_ms": load["p99_ms"],
                "place_errors": load["errors"],
                "cpu_us_per_order": cpu,
            }
        finally:
            procs.stop_all()


def row(
    bench: Bench,
    kind: str,
    latency_ms: float,
    workers: int,
    orders: int,
    servers: int = 1,
    peer: int | None = None,
    prefill: bool = False,
) -> dict[str, Any] | None:
    """RUNS runs; with peer=N each run follows a Dramatiq drain on N x 8 threads (row 1),
    and carries its ratio to it."""
    from bench.ceilings import dramatiq_available, dramatiq_once
    from bench.run import RUNS, measure, summarise

    with_peer = peer is not None and dramatiq_available()

    def paired() -> dict[str, Any]:
        drained = dramatiq_once(bench, peer) if with_peer and peer else None
        result = once(bench, kind, latency_ms, workers, orders, servers, prefill=prefill)
        if drained and result:
            result["peer_rate"] = drained["rate"]
            result["peer_ratio"] = result["rate"] / drained["rate"]
        return result

    runs = measure(
        f"e2e {kind}, third party {latency_ms:g} ms, {workers} worker(s), {servers} server(s)"
        + (", placed first, then drained" if prefill else "")
        + (f", after Dramatiq {peer} x 8" if with_peer else ""),
        RUNS,
        paired,
    )
    if not runs or not runs[0]:
        return None
    keys = ["rate", "place_rate", "place_p99_ms"]
    return summarise(runs, keys + (["peer_rate", "peer_ratio"] if with_peer else []))
