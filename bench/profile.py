"""Where the time per order goes: py-spy on the server and the worker during one end-to-end
run (not a timed run: sampling costs CPU), folded into a few parts of the order path.

Samples are taken with --gil (only the thread holding the GIL counts), so a part's share is a
share of the process's Python time; CPU spent outside the GIL (SQLite's C code, the kernel,
gRPC's C-core threads) shows in the process's user and system time, not here.
"""

from __future__ import annotations

import collections
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.procs import BIN

if TYPE_CHECKING:
    from bench.stack import Bench

PY_SPY = BIN / "py-spy"

#: Parts of each process, first match wins: (name, substrings of a stack).
PARTS: dict[str, list[tuple[str, list[str]]]] = {
    "server0": [
        ("WAL checkpoints", ["checkpoint_wal"]),
        ("placement: database", ["create_orders", "prepare (server"]),
        ("placement: Redis push", ["OrderPlacer.push"]),
        ("placement: other", ["place_many"]),
        (
            "PlaceOrder handler and interceptors",
            [
                "OrderService.PlaceOrder",
                "intercept_service",
                "_wrap_unary",
                "_guard_unary",
                "batching.py",
            ],
        ),
        ("update hub", ["UpdateHub"]),
        ("gRPC and event loop (C callbacks, polling)", ["_run_once"]),
    ],
    "worker0": [
        ("third-party call (HTTP)", ["ThirdPartyClient.place", "thirdparty.py", "httptools"]),
        ("claim (database thread)", ["claim_many"]),
        ("record outcomes (database thread)", ["claims.py", "_in_connection"]),
        ("retry policy (tenacity)", ["tenacity", "worker/retry.py"]),
        ("prepare changes", ["prepare (core", "apply_steps"]),
        ("publish updates", ["Worker._publish"]),
        ("fetch (BLMPOP)", ["Fetcher"]),
        ("recorder loop", ["Recorder"]),
        ("order task other", ["_Order", "Processor"]),
        ("event loop (callbacks, polling)", ["_run_once"]),
    ],
}


def available() -> bool:
    return PY_SPY.exists()


def start(out_dir: Path, pids: dict[str, int]) -> Callable[[], None]:
    """Start py-spy on the named processes; the returned stop() ends and waits for them."""
    out_dir.mkdir(parents=True, exist_ok=True)
    spies = [
        subprocess.Popen(
            [
                str(PY_SPY),
                "record",
                "--pid",
                str(pids[name]),
                "--rate",
                "250",
                "--gil",
                "--nonblocking",
                "--format",
                "raw",
                "-o",
                str(out_dir / f"{name}.txt"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name in PARTS
        if name in pids
    ]

    def stop() -> None:
        for spy in spies:
            spy.send_signal(signal.SIGINT)
        for spy in spies:
            try:
                spy.wait(30)
            except subprocess.TimeoutExpired:
                spy.kill()

    return stop


def fold(path: Path, parts: list[tuple[str, list[str]]]) -> dict[str, float]:
    """Share of samples per part (the rest under "other")."""
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit() or "_find_and_load" in stack:
            continue  # start-up imports
        total += int(n)
        name = next((p for p, keys in parts if any(k in stack for k in keys)), "other")
        counts[name] += int(n)
    return {name: counts[name] / total for name, _ in [*parts, ("other", [])]} if total else {}


def row(bench: Bench, orders: int) -> dict[str, Any]:
    """One profiled e2e run (0 ms third party, 1 worker): CPU by process and parts of each."""
    from bench.e2e import once

    if not available():
        return {"error": "py-spy not installed (pip install '.[dev]')"}
    out_dir = bench.workdir / "profile"
    result = once(bench, "sqlite", 0, 1, orders, profile=lambda pids: start(out_dir, pids))
    shares = {
        name: fold(out_dir / f"{name}.txt", parts)
        for name, parts in PARTS.items()
        if (out_dir / f"{name}.txt").exists()
    }
    return {
        "rate_while_profiled": result.get("rate"),
        "cpu_us_per_order": result.get("cpu_us_per_order"),
        "python_time_shares": shares,
    }
