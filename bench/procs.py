"""Process control for benchmarks: spawn with logs, wait for ports, read CPU time and RSS."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 30, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode} before listening")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise RuntimeError(f"nothing listens on {port} after {timeout}s")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    return sum(cpu_split(pid))


def cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process so far, in clock ticks of 10 ms."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS


def machine_ticks() -> tuple[int, int]:
    """(all, stolen) clock ticks of every core so far (/proc/stat): time the hypervisor gave
    to other guests while this one wanted to run shows as stolen."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    # user nice system idle iowait irq softirq steal (guest times are inside user and nice)
    return sum(fields[:8]), fields[7] if len(fields) > 7 else 0


class CpuMeter:
    """CPU per unit of work of several processes between start() and per_unit(n)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.start_at = {name: cpu_split(pid) for name, pid in pids.items()}

    def per_unit(self, units: int) -> dict[str, dict[str, float]]:
        """{process: {user_us, sys_us, total_us}} per unit (a process gone reads as 0)."""
        out: dict[str, dict[str, float]] = {}
        for name, pid in self.pids.items():
            try:
                user, system = cpu_split(pid)
            except FileNotFoundError:
                continue
            u0, s0 = self.start_at[name]
            scale = 1e6 / max(units, 1)
            out[name] = {
                "user_us": (user - u0) * scale,
                "sys_us": (system - s0) * scale,
                "total_us": (user - u0 + system - s0) * scale,
            }
        return out


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Procs:
    """Every process a benchmark started; stop() ends them all."""

    workdir: Path
    env: dict[str, str]
    running: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def spawn(self, name: str, argv: list[str], **env: str) -> subprocess.Popen[bytes]:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = (self.workdir / f"{name}.log").open("ab")
        # PYTHONPATH: `python -m bench.x` must find the repository from the scratch folder.
        full_env = {**self.env, "PYTHONPATH": str(ROOT), **env}
        proc = subprocess.Popen(
            argv, env=full_env, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir
        )
        self.running[name] = proc
        return proc

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        proc = self.running.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def stop_all(self) -> None:
        for name in list(reversed(self.running)):
            self.stop(name)
