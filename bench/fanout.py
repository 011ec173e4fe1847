"""Row 4: WatchOrder fan-out on one server process (delivery delay, coverage, server RSS).

Orders are placed with no worker running; the watcher processes open the streams (each ref
watched by `per_order` streams) and report ready once every stream has its first message;
then one worker drains them (at full speed with a 0 ms third party: a burst of updates; paced
by a 50 ms one) and every stream waits for its terminal update. The delay is from the
update's recorded_on (taken by the worker as it prepares the change, before its commit) to the
watcher reading it.
"""

from __future__ import annotations

import json
import subprocess
import time
from typing import TYPE_CHECKING, Any

from bench.procs import CpuMeter, rss_mib
from bench.stats import latency_summary

if TYPE_CHECKING:
    from bench.stack import Bench

WATCHER_PROCESSES = 2


def one(bench: Bench, streams: int, per_order: int, latency_ms: float = 0) -> dict[str, Any]:
    from bench.stack import PY, ROOT, loadgen

    orders = max(1, streams // per_order)
    with bench.database("sqlite") as url:
        assert url is not None
        bench.flush_redis()
        procs = bench.stack(f"fanout-{streams}", url)
        try:
            bench.start_fundhouse(procs, latency_ms)
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
            pids = {"server": server_pid, "worker": procs.running["worker0"].pid}
            pids |= {f"watchers{k}": w.pid for k, w in enumerate(watchers)}
            pids["redis"] = bench.redis_pid()
            meter, started = CpuMeter(pids), time.monotonic()
            results = []
            for w in watchers:
                out, _ = w.communicate(timeout=300)
                results.append(json.loads(out.strip().splitlines()[-1]))
            # Share of one core each process used from the worker's start to the last stream's
            # end: where the time goes while the updates fan out.
            busy = {
                name: round(cpu["total_us"] / 1e6 / (time.monotonic() - started), 2)
                for name, cpu in meter.per_unit(1).items()
            }
            for k, r in enumerate(results):  # the watchers report their own (they have ended)
                busy[f"watchers{k}"] = round(r["cpu_s"] / r["elapsed_s"], 2)
            got = sum(r["terminal"] for r in results)
            delays = latency_summary([d for r in results for d in r["delays_s"]])
            return {
                "streams": streams,
                "orders": orders,
                "streams_per_order": per_order,
                "third_party_ms": latency_ms,
                "terminal_share": got / streams,
                "p50_ms": delays["p50_ms"],
                "p99_ms": delays["p99_ms"],
                "p999_ms": delays["p999_ms"],
                "errors": sum(r["errors"] for r in results),
                "server_rss_mib_idle": rss_before,
                "server_rss_mib_open": rss_open,
                "core_share": busy,
            }
        finally:
            procs.stop_all()


def shape_name(streams: int, per_order: int, latency_ms: float) -> str:
    return (
        f"{streams}"
        + (f"/{per_order}per" if per_order != 1 else "")
        + (f"/{latency_ms:g}ms" if latency_ms else "")
    )


def row(bench: Bench, shapes: list[tuple[int, int, float]]) -> dict[str, Any]:
    """For each (streams, streams per order, third-party latency): 0 ms drains the orders at
    full speed (a burst of updates); 50 ms paces them at WORKER_CONCURRENCY / 0.05 s."""
    from bench.run import RUNS, measure, summarise

    out: dict[str, Any] = {}
    for streams, per_order, latency_ms in shapes:
        name = shape_name(streams, per_order, latency_ms)
        try:
            runs = measure(
                f"fan-out {streams} streams, {per_order} per order, third party {latency_ms:g} ms",
                RUNS,
                lambda s=streams, p=per_order, lat=latency_ms: one(bench, s, p, lat),
            )
            out[name] = summarise(
                runs,
                [
                    "terminal_share",
                    "p50_ms",
                    "p99_ms",
                    "p999_ms",
                    "server_rss_mib_open",
                    "server_rss_mib_idle",
                ],
            )
        except Exception as exc:  # noqa: BLE001 - a failed row is reported, not hidden
            out[name] = {"error": repr(exc)[:300]}
    return out
