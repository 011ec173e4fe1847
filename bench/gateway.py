"""Row 7 (issue 7 asks for it): the REST gateway's latency in front of one server, SQLite."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bench.procs import BIN, CpuMeter, free_port, wait_port
from bench.stack import PY, run_json

if TYPE_CHECKING:
    from bench.stack import Bench


def row(bench: Bench, concurrencies: list[int]) -> dict[str, Any] | None:
    from bench.run import RUNS, measure, summarise

    with bench.database("sqlite") as url:
        assert url is not None
        procs = bench.stack("gateway", url)
        addr = bench.start_servers(procs)
        port = free_port()
        gateway = procs.spawn(
            "gateway", [str(BIN / "orders-gateway")], GATEWAY_PORT=str(port), ORDERS_ADDR=addr
        )
        wait_port(port, proc=gateway)
        pids = {"gateway": gateway.pid, "server": procs.running["server0"].pid}
        out: dict[str, Any] = {}
        try:
            for mode in ("place", "status"):
                for c in concurrencies:

                    def once(mode: str = mode, c: int = c) -> dict[str, Any]:
                        meter = CpuMeter(pids)
                        argv = [
                            PY,
                            "-m",
                            "bench.restload",
                            mode,
                            "--url",
                            f"http://127.0.0.1:{port}",
                            "--concurrency",
                            str(c),
                        ]
                        result: dict[str, Any] = run_json(argv)
                        result["cpu_us_per_call"] = meter.per_unit(result["count"])
                        return result

                    runs = measure(f"gateway {mode} @{c}", RUNS, once)
                    out[f"{mode}@{c}"] = summarise(runs, ["rate", "p50_ms", "p99_ms", "p999_ms"])
        finally:
            procs.stop_all()
        return out
