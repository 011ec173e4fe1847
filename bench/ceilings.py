"""Row 1: the ceilings, measured in the same run as the rows compared with them.

This machine's speed drifts (the same pure-Python loop took 0.37 s and 0.69 s minutes apart),
so a ceiling is measured next to what is compared with it: each PlaceOrder run follows an
empty-RPC run at the same concurrency (bench/place.py), and each end-to-end run with a 0 ms
third party follows a Dramatiq drain (bench/e2e.py). Ratios are taken run by run.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from bench.procs import Procs, free_port, wait_port
from bench.stack import PY, log, run_json

if TYPE_CHECKING:
    from bench.stack import Bench

#: The issue's reference row: 20,000 no-op jobs enqueued, then drained.
DRAMATIQ_JOBS = 20_000


def start_empty_servers(bench: Bench) -> tuple[Procs, dict[str, str]]:
    """The bare grpc.aio server and the bare sync server (8 threads): {kind: address}."""
    procs = Procs(bench.workdir / "empty", dict(os.environ))
    addrs = {}
    for kind in ("aio", "sync"):
        port = free_port()
        server = procs.spawn(
            f"empty-{kind}", [PY, "-m", "bench.empty_server", "--port", str(port), "--kind", kind]
        )
        wait_port(port, proc=server)
        addrs[kind] = f"127.0.0.1:{port}"
    return procs, addrs


def dramatiq_available() -> bool:
    try:
        import dramatiq  # noqa: F401 - only to know it is installed
    except ImportError:
        log("dramatiq is not installed (pip install '.[dev]'): the peer runs are skipped")
        return False
    return True


def dramatiq_once(bench: Bench, processes: int) -> dict[str, Any]:
    """Dramatiq draining DRAMATIQ_JOBS no-op jobs with `processes` x 8 threads."""
    bench.flush_redis()
    result: dict[str, Any] = run_json(
        [
            PY,
            "-m",
            "bench.peer_dramatiq",
            "--url",
            bench.redis_url,
            "--count",
            str(DRAMATIQ_JOBS),
            "--processes",
            str(processes),
            "--threads",
            "8",
        ]
    )
    return result


def redis_rtt(bench: Bench) -> dict[str, Any]:
    from bench.run import RUNS, measure, summarise

    runs = measure(
        "redis LPUSH+BRPOP",
        RUNS,
        lambda: run_json(
            [PY, "-m", "bench.redis_rtt", "--url", bench.redis_url, "--count", "10000"]
        ),
    )
    return summarise(runs, ["rate"])
