"""`make bench`: start Redis, databases, fundhouse, servers and workers; write BENCHMARKS.md.

Every figure is the median of several runs with min and max. Load comes from separate
processes (bench/loadgen.py, bench/restload.py, bench/watchers.py, bench/peer_dramatiq.py).
FULL=1 runs more runs per figure and more configurations. The rows are in the other bench
modules; this one orders them, times them and writes the report.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import ceilings, e2e, fanout, gateway, place, profile, recovery
from bench.procs import machine_ticks
from bench.report import write_report
from bench.stack import ROOT, Bench, log
from bench.stats import spread

FULL = os.environ.get("FULL") == "1"
#: QUICK=1: one run of a few configurations, to check the bench itself (figures not kept).
QUICK = os.environ.get("QUICK") == "1"
RUNS = 1 if QUICK else 5 if FULL else 3
CONCURRENCIES = [1, 64] if QUICK else [1, 16, 64, 256]
E2E_ORDERS = 2000 if QUICK else 5000


def measure(label: str, runs: int, fn: Callable[[], dict[str, Any]]) -> list[dict[str, Any]]:
    results = []
    for i in range(runs):
        result = fn()
        log(
            f"{label} run {i + 1}/{runs}: "
            + ", ".join(
                f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}"
                for k, v in result.items()
                if not isinstance(v, (dict, list))
            )
        )
        results.append(result)
    return results


def summarise(runs: list[dict[str, Any]], keys: list[str]) -> dict[str, Any]:
    return {"runs": runs, **{k: spread(runs, k) for k in keys}}


#: What each row cost (rows run in several parts add up): [seconds, the machine's clock ticks,
#: of them stolen]. The report shows where the 15-minute budget of `make bench` goes, and the
#: share of the VM's time the hypervisor gave to other guests meanwhile (its speed drifts).
ROW_COST: dict[str, list[float]] = {}


def _guarded(name: str, fn: Callable[[], Any]) -> Any:
    """A row that fails is reported as failed (with the error), and the others still run."""
    started, (ticks, stolen) = time.monotonic(), machine_ticks()
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - a failed row is reported, not hidden
        log(f"row {name} failed: {exc!r}")
        return {"error": repr(exc)[:500]}
    finally:
        now_ticks, now_stolen = machine_ticks()
        cost = ROW_COST.setdefault(name, [0.0, 0, 0])
        cost[0] += time.monotonic() - started
        cost[1] += now_ticks - ticks
        cost[2] += now_stolen - stolen


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="orders-bench-"))
    bench = Bench(workdir)
    bench.start_redis()
    started = time.monotonic()
    results: dict[str, Any] = {"rows": {}}
    rows = results["rows"]
    try:
        log(f"workdir {workdir}; FULL={FULL}; {RUNS} runs per figure")
        paired = _guarded("place", lambda: place.row(bench, CONCURRENCIES))
        rows["ceilings"] = {
            **(paired.get("ceilings") or {}),
            "redis_rtt": _guarded("redis", lambda: ceilings.redis_rtt(bench)),
        }
        rows["place"] = paired.get("place") or {"error": paired.get("error")}
        e2e_rows: dict[str, Any] = {}
        for latency, orders in ((0, E2E_ORDERS), (50, 2000 if FULL else 1000)):
            for workers in (1, 2):
                e2e_rows[f"{latency}ms/{workers}w"] = _guarded(
                    "e2e",
                    lambda lat=latency, w=workers, n=orders: e2e.row(
                        bench, "sqlite", lat, w, n, peer=w if lat == 0 else None
                    ),
                )
        # Like the peers' figure (jobs enqueued, then drained): placed first, then drained.
        # 2 workers only in FULL: the target reads 1 worker, and the default run must stay
        # well inside its 15 minutes (this row took 147 s with both).
        for workers in (1, 2) if FULL else (1,):
            e2e_rows[f"0ms/{workers}w/drain"] = _guarded(
                "e2e drain",
                lambda w=workers: e2e.row(bench, "sqlite", 0, w, E2E_ORDERS, peer=w, prefill=True),
            )
        if FULL:
            e2e_rows["0ms/1w/postgresql"] = _guarded(
                "e2e pg", lambda: e2e.row(bench, "postgresql", 0, 1, E2E_ORDERS)
            )
        rows["e2e"] = e2e_rows
        shapes = (
            [(1000, 1, 0.0)]
            if QUICK
            else [(1000, 1, 0.0), (10000, 1, 0.0), (10000, 10, 0.0), (10000, 10, 50.0)]
        )
        rows["fanout"] = _guarded("fanout", lambda: fanout.row(bench, shapes))
        rows["recovery"] = _guarded("recovery", lambda: recovery.row(bench))
        rows["scaling"] = _guarded("scaling", lambda: scaling(bench, e2e_rows))
        rows["gateway"] = _guarded("gateway", lambda: gateway.row(bench, [1, 64]))
        rows["profile"] = _guarded("profile", lambda: profile.row(bench, E2E_ORDERS))
    finally:
        bench.base.stop_all()
    results["meta"] = meta(time.monotonic() - started)
    out = workdir if QUICK else ROOT
    (out / "results.json" if QUICK else ROOT / "bench" / "results.json").write_text(
        json.dumps(results, indent=1) + "\n"
    )
    write_report(results, out / "BENCHMARKS.md")
    log(f"done in {time.monotonic() - started:.0f}s: {out / 'BENCHMARKS.md'}")
    if QUICK:
        return  # the scratch folder keeps the report and every process's log
    shutil.rmtree(workdir, ignore_errors=True)


def scaling(bench: Bench, e2e_rows: dict[str, Any]) -> dict[str, Any]:
    """From 1 to 2 processes: PlaceOrder on 1 and 2 servers, end to end on 1 and 2 of each."""
    return {
        "place_1_server": place.scaling(bench, 1),
        "place_2_servers": place.scaling(bench, 2),
        "e2e_1_server_1_worker": e2e_rows.get("0ms/1w"),
        "e2e_1_server_2_workers": e2e_rows.get("0ms/2w"),
        "e2e_2_servers_2_workers": e2e.row(bench, "sqlite", 0, 2, E2E_ORDERS, servers=2),
    }


def meta(elapsed: float) -> dict[str, Any]:
    def version(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True).stdout.strip()
        except OSError:
            return "n/a"

    import grpc
    import httptools
    import peewee
    import redis

    try:
        import dramatiq

        dramatiq_version = dramatiq.__version__
    except ImportError:
        dramatiq_version = "not installed"
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "elapsed_s": round(elapsed),
        "row_seconds": {name: round(seconds) for name, (seconds, _, _) in ROW_COST.items()},
        "row_steal_pct": {
            name: round(100 * stolen / max(ticks, 1), 1)
            for name, (_, ticks, stolen) in ROW_COST.items()
        },
        "full": FULL,
        "runs_per_figure": RUNS,
        "cores": os.cpu_count(),
        "machine": f"{os.cpu_count()} cores, {cpu}, {platform.platform()}",
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        "redis_py": redis.__version__,
        "peewee": peewee.__version__,
        "httptools": httptools.__version__,
        "dramatiq": dramatiq_version,
        "redis_server": version(["redis-server", "--version"]),
        "sqlite": sqlite3.sqlite_version,
        "postgresql": version(["psql", "--version"]),
        "settings": "LOG_LEVEL=WARNING, WORKER_CONCURRENCY=8, 64 in flight for e2e; the load "
        "generators are separate processes on the same 2 cores",
    }


if __name__ == "__main__":
    main()
