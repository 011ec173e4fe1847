"""Row 4: WatchOrder fan-out on one server process (delivery delay, coverage, server RSS).

Orders are placed with no worker running; the watcher processes open the streams (each ref
watched by `per_order` streams) and report ready once every stream has its first message;
then one worker drains the orders at full speed and every stream waits for its terminal
update. The delay is from the update's recorded_on (taken by the worker as it prepares the
change, before its commit) to the watcher reading it.
"""

from __future__ import annotations

import json
import subprocess
import time
from typing import TYPE_CHECKING, Any

from bench.procs import rss_mib
from bench.stats import latency_summary

if TYPE_CHECKING:
    from bench.stack import Bench

WATCHER_PROCESSES = 2


def one(bench: Bench, streams: int, per_order: int) -> dict[str, Any]:
    from bench.stack import PY, ROOT, loadgen

    orders = max(1, streams // per_order)
    with bench.database("sqlite") as url:
        assert url is not None
        bench.flush_redis()
        procs = bench.stack(f"fanout-{streams}", url)
        try:
            bench.start_fundhouse(procs, 0)
            addr = bench.start_servers(procs)
            server_pid = procs.running["server0"].pid
            rss_before = rss_mib(server_pid)
            placed = loadgen("place", addr, concurrency=64, count=orders, keep_refs=True)
            refs_file = procs.workdir / "refs.txt"
            refs_file.write_text("\n".join(placed["refs"]) + "\n")
            watchers = [
                subprocess.Popen(
                    [
                        PY,
                        "-m",
                        "bench.watchers",
                        "--addr",
                        addr,
                        "--refs-file",
                        str(refs_file),
                        "--streams",
                        str(streams // WATCHER_PROCESSES),
                        "--offset",
                        str(k * (streams // WATCHER_PROCESSES)),
                    ],
                    stdout=subprocess.PIPE,
                    text=True,
                    cwd=ROOT,
                )
                for k in range(WATCHER_PROCESSES)
            ]
            for w in watchers:
                assert w.stdout is not None
                line = w.stdout.readline().strip()
                if line != "ready":
                    raise RuntimeError(f"watcher did not get ready: {line!r}")
            time.sleep(1.0)
            rss_open = rss_mib(server_pid)
            bench.start_workers(procs, 1)
            results = []
            for w in watchers:
                out, _ = w.communicate(timeout=300)
                results.append(json.loads(out.strip().splitlines()[-1]))
            got = sum(r["terminal"] for r in results)
            delays = latency_summary([d for r in results for d in r["delays_s"]])
            return {
                "streams": streams,
                "orders": orders,
                "streams_per_order": per_order,
                "terminal_share": got / streams,
                "p50_ms": delays["p50_ms"],
                "p99_ms": delays["p99_ms"],
                "p999_ms": delays["p999_ms"],
                "errors": sum(r["errors"] for r in results),
                "server_rss_mib_idle": rss_before,
                "server_rss_mib_open": rss_open,
            }
        finally:
            procs.stop_all()


def row(bench: Bench, shapes: list[tuple[int, int]]) -> dict[str, Any]:
    """For each (streams, streams per order)."""
    from bench.run import RUNS, measure, summarise

    out: dict[str, Any] = {}
    for streams, per_order in shapes:
        name = f"{streams}" if per_order == 1 else f"{streams}/{per_order}per"
        try:
            runs = measure(
                f"fan-out {streams} streams, {per_order} per order",
                RUNS,
                lambda s=streams, p=per_order: one(bench, s, p),
            )
            out[name] = summarise(
                runs,
                [
                    "terminal_share",
                    "p50_ms",
                    "p99_ms",
                    "server_rss_mib_open",
                    "server_rss_mib_idle",
                ],
            )
        except Exception as exc:  # noqa: BLE001 - a failed row is reported, not hidden
            out[name] = {"error": repr(exc)[:300]}
    return out
