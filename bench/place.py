"""Row 2: PlaceOrder accepted/s and latency at several concurrencies (no worker running), each
run paired with empty-RPC runs at the same concurrency (row 1); and row 6's placement half:
the same load on 1 and 2 server processes."""

from __future__ import annotations

from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

from bench.ceilings import start_empty_servers
from bench.procs import CpuMeter
from bench.stack import loadgen

if TYPE_CHECKING:
    from bench.stack import Bench

KEYS = ["rate", "p50_ms", "p99_ms", "p999_ms", "server_cpu_us_per_order", "client_cpu_us_per_call"]
#: The classic sync server is measured where the targets compare with it.
SYNC_AT = (1, 64)
DURATION_S = 4
HEALTH_CHECK = "/grpc.health.v1.Health/Check"


def _place_once(bench: Bench, addr: str, server_pid: int, c: int) -> dict[str, Any]:
    bench.flush_redis()
    meter = CpuMeter({"server": server_pid})
    result: dict[str, Any] = loadgen("place", addr, concurrency=c, duration=DURATION_S)
    result["server_cpu_us_per_order"] = meter.per_unit(result["count"])["server"]["total_us"]
    result["client_cpu_us_per_call"] = result.pop("cpu_us_per_call")
    return result


def row(bench: Bench, concurrencies: list[int]) -> dict[str, Any]:
    """{"ceilings": {empty_rpc, empty_rpc_sync}, "place": {sqlite, postgresql}} by concurrency.

    Run by run: empty aio, empty sync, PlaceOrder on SQLite, PlaceOrder on PostgreSQL; each
    PlaceOrder run carries its ratios to the empty runs just before it.
    """
    from bench.run import RUNS, measure, summarise

    with ExitStack() as stack:
        empty_procs, empty = start_empty_servers(bench)
        stack.callback(empty_procs.stop_all)
        servers: dict[str, tuple[str, int]] = {}
        for kind in ("sqlite", "postgresql"):
            url = stack.enter_context(bench.database(kind))
            if url is None:
                continue
            procs = bench.stack(f"place-{kind}", url)
            stack.callback(procs.stop_all)
            servers[kind] = (bench.start_servers(procs), procs.running["server0"].pid)
        out: dict[str, Any] = {
            "ceilings": {"empty_rpc": {}, "empty_rpc_sync": {}, "empty_rpc_orders": {}},
            "place": {kind: ({} if kind in servers else None) for kind in ("sqlite", "postgresql")},
        }
        for c in concurrencies:
            runs: dict[str, list[dict[str, Any]]] = {
                k: [] for k in ("aio", "sync", "orders", *servers)
            }

            def once(c: int = c, runs: dict[str, list[dict[str, Any]]] = runs) -> dict[str, Any]:
                aio = loadgen("empty", empty["aio"], concurrency=c, duration=DURATION_S)
                runs["aio"].append(aio)
                sync = None
                if c in SYNC_AT:
                    sync = loadgen("empty", empty["sync"], concurrency=c, duration=DURATION_S)
                    runs["sync"].append(sync)
                    if "sqlite" in servers:
                        # The same empty call through orders-server: its interceptors and
                        # server set-up, no handler work (what PlaceOrder starts from).
                        runs["orders"].append(
                            loadgen(
                                "empty",
                                servers["sqlite"][0],
                                concurrency=c,
                                duration=DURATION_S,
                                method=HEALTH_CHECK,
                            )
                        )
                fastest = max(aio["rate"], sync["rate"] if sync else 0.0)
                for kind, (addr, pid) in servers.items():
                    result = _place_once(bench, addr, pid, c)
                    result["rate_ratio"] = result["rate"] / fastest
                    result["p99_ratio"] = result["p99_ms"] / aio["p99_ms"]
                    runs[kind].append(result)
                return {"empty": aio["rate"], **{k: runs[k][-1]["rate"] for k in servers}}

            measure(f"empty RPC and PlaceOrder @{c}", RUNS, once)
            out["ceilings"]["empty_rpc"][str(c)] = summarise(
                runs["aio"], ["rate", "p50_ms", "p99_ms", "p999_ms"]
            )
            for kind in ("sync", "orders"):
                if runs[kind]:
                    out["ceilings"][f"empty_rpc_{kind}"][str(c)] = summarise(
                        runs[kind], ["rate", "p50_ms", "p99_ms", "p999_ms"]
                    )
            for kind in servers:
                out["place"][kind][str(c)] = summarise(
                    runs[kind], [*KEYS, "rate_ratio", "p99_ratio"]
                )
        return out


def scaling(bench: Bench, servers: int, concurrency: int = 64) -> dict[str, Any] | None:
    """PlaceOrder on SQLite from `servers` processes sharing one port, CPU by process."""
    from bench.run import RUNS, measure, summarise

    with bench.database("sqlite") as url:
        assert url is not None
        procs = bench.stack(f"place-{servers}-servers", url)
        addr = bench.start_servers(procs, servers)
        pids = {n: p.pid for n, p in procs.running.items()}
        pids["redis"] = bench.redis_pid()
        try:

            def once() -> dict[str, Any]:
                bench.flush_redis()
                meter = CpuMeter(pids)
                # Several channels: each is one connection, and the kernel hands each
                # connection to one of the processes listening on the port.
                result = loadgen(
                    "place", addr, concurrency=concurrency, channels=8, duration=DURATION_S
                )
                result["cpu_us_per_order"] = meter.per_unit(result["count"])
                return dict(result)

            runs = measure(f"PlaceOrder sqlite @{concurrency}, {servers} server(s)", RUNS, once)
            return summarise(runs, ["rate", "p50_ms", "p99_ms"])
        finally:
            procs.stop_all()
