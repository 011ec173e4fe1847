"""Row 4: WatchOrder fan-out on one server process (delivery delay, coverage, server RSS)."""

from __future__ import annotations

import json
import subprocess
import time
from typing import TYPE_CHECKING, Any

from bench.procs import rss_mib

if TYPE_CHECKING:
    from bench.run import Bench

WATCHER_PROCESSES = 2


def one(bench: Bench, streams: int) -> dict[str, Any]:
    from bench.run import PY, ROOT, loadgen

    orders = max(10, streams // 10)
    with bench.database("sqlite") as url:
        assert url is not None
        bench.flush_redis()
        procs = bench.stack(f"fanout-{streams}", url)
        try:
            bench.start_fundhouse(procs, 0)
            addr = bench.start_servers(procs)
            server_pid = procs.running["server0"].pid
            rss_before = rss_mib(server_pid)
            placed = loadgen("place", addr, concurrency=32, count=orders, keep_refs=True)
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
                    ],
                    stdout=subprocess.PIPE,
                    text=True,
                    cwd=ROOT,
                )
                for _ in range(WATCHER_PROCESSES)
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
            return {
                "streams": streams,
                "orders": orders,
                "terminal_share": got / streams,
                "p50_ms": max(r["p50_ms"] for r in results),
                "p99_ms": max(r["p99_ms"] for r in results),
                "errors": sum(r["errors"] for r in results),
                "server_rss_mib_idle": rss_before,
                "server_rss_mib_open": rss_open,
            }
        finally:
            procs.stop_all()


def row(bench: Bench, sizes: list[int]) -> dict[str, Any]:
    from bench.run import RUNS, measure, summarise

    out: dict[str, Any] = {}
    for streams in sizes:
        try:
            runs = measure(f"fan-out {streams} streams", RUNS, lambda s=streams: one(bench, s))
            out[str(streams)] = summarise(
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
            out[str(streams)] = {"error": repr(exc)[:300]}
    return out
