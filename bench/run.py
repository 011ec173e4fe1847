"""`make bench`: start Redis, a database, fundhouse, server and workers; write BENCHMARKS.md.

Every figure is the median of several runs with min and max. Load comes from separate
processes (bench/loadgen.py, bench/watchers.py). FULL=1 runs more and larger configurations.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg2

from bench.procs import BIN, Procs, cpu_seconds, free_port, wait_port
from bench.report import write_report
from bench.stats import spread
from scripts.redis_argv import private_redis_argv

ROOT = Path(__file__).resolve().parent.parent
FULL = os.environ.get("FULL") == "1"
RUNS = 5 if FULL else 3
POSTGRES_ADMIN_URL = os.environ.get("BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
ADMIN_TOKEN = "bench-admin-" + secrets.token_hex(6)
PY = sys.executable


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run_json(argv: list[str], timeout: float = 600) -> Any:
    out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(f"{argv[:4]} failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout)


def loadgen(
    mode: str,
    addr: str,
    *,
    concurrency: int,
    duration: float | None = None,
    count: int | None = None,
    channels: int = 1,
    keep_refs: bool = False,
) -> Any:
    """Run bench/loadgen.py in its own process and return its JSON result."""
    argv = [
        PY,
        "-m",
        "bench.loadgen",
        mode,
        "--addr",
        addr,
        "--concurrency",
        str(concurrency),
        "--channels",
        str(channels),
    ]
    if duration is not None:
        argv += ["--duration", str(duration)]
    if count is not None:
        argv += ["--count", str(count)]
    if keep_refs:
        argv.append("--keep-refs")
    return run_json(argv)


class Bench:
    """One benchmark session: a private Redis and scratch directory for every row."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.redis_port = free_port()
        self.redis_url = f"redis://127.0.0.1:{self.redis_port}/0"
        self.base = Procs(workdir / "base", dict(os.environ))
        self.results: dict[str, Any] = {"rows": {}}

    def start_redis(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server not found (apt-get install redis-server)")
        self.base.spawn(
            "redis",
            private_redis_argv(binary, self.redis_port, self.workdir),
        )
        wait_port(self.redis_port)

    def flush_redis(self) -> None:
        subprocess.run(
            ["redis-cli", "-p", str(self.redis_port), "FLUSHALL"], check=True, capture_output=True
        )

    def redis_pid(self) -> int:
        return self.base.running["redis"].pid

    # -- databases ---------------------------------------------------------------------

    @contextmanager
    def database(self, kind: str) -> Iterator[str | None]:
        """A fresh database URL of the kind, or None when PostgreSQL is unreachable."""
        if kind == "sqlite":
            path = self.workdir / f"orders-{secrets.token_hex(3)}.db"
            yield f"sqlite:///{path}"
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            return
        name = f"orders_bench_{secrets.token_hex(4)}"
        try:
            admin = psycopg2.connect(POSTGRES_ADMIN_URL, connect_timeout=3)
        except psycopg2.OperationalError as exc:
            log(f"PostgreSQL unreachable, its rows are skipped: {exc}".strip())
            yield None
            return
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"{POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
        finally:
            with admin.cursor() as cur:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.close()

    @staticmethod
    def count_terminal(database_url: str) -> int:
        sql = "SELECT count(*) FROM \"order\" WHERE status IN ('COMPLETED', 'CANCELLED')"
        if database_url.startswith("sqlite:///"):
            with sqlite3.connect(database_url[len("sqlite:///") :], timeout=30) as conn:
                return int(conn.execute(sql).fetchone()[0])
        with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
            cur.execute(sql)
            return int(cur.fetchone()[0])

    # -- the stack ---------------------------------------------------------------------

    def stack(self, name: str, database_url: str, **env: str) -> Procs:
        base_env = {
            **os.environ,
            "REDIS_URL": self.redis_url,
            "DATABASE_URL": database_url,
            "ADMIN_TOKEN": ADMIN_TOKEN,
            "MAX_QUEUE_DEPTH": "100000000",
            "LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        return Procs(self.workdir / name, base_env)

    def start_fundhouse(self, procs: Procs, latency_ms: float) -> str:
        port = free_port()
        procs.spawn(
            "fundhouse",
            [
                str(BIN / "orders-fundhouse"),
                "--port",
                str(port),
                "--latency-ms",
                str(latency_ms),
                "--log-level",
                "WARNING",
            ],
        )
        wait_port(port)
        procs.env["THIRD_PARTY_URL"] = f"http://127.0.0.1:{port}"
        return procs.env["THIRD_PARTY_URL"]

    def start_servers(self, procs: Procs, count: int = 1) -> str:
        port = free_port()
        for i in range(count):
            # grpc sets SO_REUSEPORT: several processes share the port, the kernel spreads
            # connections among them.
            procs.spawn(f"server{i}", [str(BIN / "orders-server")], PORT=str(port))
        wait_port(port)
        time.sleep(0.5 if count > 1 else 0)  # let every process bind before load starts
        return f"127.0.0.1:{port}"

    def start_workers(self, procs: Procs, count: int, concurrency: int = 8) -> None:
        for i in range(count):
            procs.spawn(
                f"worker{i}", [str(BIN / "orders-worker")], WORKER_CONCURRENCY=str(concurrency)
            )

    def wait_terminal(self, database_url: str, total: int, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.count_terminal(database_url) >= total:
                return time.monotonic()
            time.sleep(0.02)
        raise RuntimeError(f"{total} orders not terminal within {timeout}s")


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


# -- rows ------------------------------------------------------------------------------


def row_ceilings(bench: Bench, concurrencies: list[int]) -> dict[str, Any]:
    procs = Procs(bench.workdir / "empty", dict(os.environ))
    port = free_port()
    empty = procs.spawn("empty", [PY, "-m", "bench.empty_server", "--port", str(port)])
    wait_port(port, proc=empty)
    out: dict[str, Any] = {"empty_rpc": {}}
    try:
        for c in concurrencies:
            runs = measure(
                f"empty RPC @{c}",
                RUNS,
                lambda c=c: loadgen("empty", f"127.0.0.1:{port}", concurrency=c, duration=4),
            )
            out["empty_rpc"][str(c)] = summarise(runs, ["rate", "p50_ms", "p99_ms", "p999_ms"])
    finally:
        procs.stop_all()
    runs = measure(
        "redis LPUSH+BRPOP",
        RUNS,
        lambda: run_json(
            [PY, "-m", "bench.redis_rtt", "--url", bench.redis_url, "--count", "10000"]
        ),
    )
    out["redis_rtt"] = summarise(runs, ["rate"])
    return out


def row_place(bench: Bench, kind: str, concurrencies: list[int]) -> dict[str, Any] | None:
    with bench.database(kind) as url:
        if url is None:
            return None
        procs = bench.stack(f"place-{kind}", url)
        addr = bench.start_servers(procs)
        server_pid = procs.running["server0"].pid
        out: dict[str, Any] = {}
        try:
            for c in concurrencies:

                def once(c: int = c) -> dict[str, Any]:
                    bench.flush_redis()
                    cpu0 = cpu_seconds(server_pid)
                    result = loadgen("place", addr, concurrency=c, duration=4)
                    result["server_cpu_us_per_order"] = (
                        (cpu_seconds(server_pid) - cpu0) / max(result["count"], 1) * 1e6
                    )
                    return result

                runs = measure(f"PlaceOrder {kind} @{c}", RUNS, once)
                out[str(c)] = summarise(
                    runs, ["rate", "p50_ms", "p99_ms", "p999_ms", "server_cpu_us_per_order"]
                )
        finally:
            procs.stop_all()
        return out


def row_e2e(
    bench: Bench, kind: str, latency_ms: float, workers: int, orders: int, servers: int = 1
) -> dict[str, Any] | None:
    def once() -> dict[str, Any]:
        with bench.database(kind) as url:
            if url is None:
                return {}
            bench.flush_redis()
            procs = bench.stack(f"e2e-{kind}-{latency_ms}-{workers}", url)
            try:
                bench.start_fundhouse(procs, latency_ms)
                addr = bench.start_servers(procs, servers)
                bench.start_workers(procs, workers)
                time.sleep(1.0)  # workers connect and reach BRPOP
                pids = {n: p.pid for n, p in procs.running.items()}
                pids["redis"] = bench.redis_pid()
                cpu0 = {n: cpu_seconds(p) for n, p in pids.items()}
                started = time.monotonic()
                load = loadgen("place", addr, concurrency=64, count=orders, channels=2 * servers)
                finished = bench.wait_terminal(url, orders, timeout=600)
                elapsed = finished - started
                cpu = {n: (cpu_seconds(p) - cpu0[n]) / orders * 1e6 for n, p in pids.items()}
                return {
                    "rate": orders / elapsed,
                    "elapsed_s": elapsed,
                    "place_errors": load["errors"],
                    "cpu_us_per_order": cpu,
                }
            finally:
                procs.stop_all()

    runs = measure(
        f"e2e {kind} third party {latency_ms} ms, {workers} worker(s), {servers} server(s)",
        RUNS,
        once,
    )
    if not runs or not runs[0]:
        return None
    return summarise(runs, ["rate"])


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="orders-bench-"))
    bench = Bench(workdir)
    bench.start_redis()
    started = time.monotonic()
    concurrencies = [1, 16, 64, 256]
    rows = bench.results["rows"]
    try:
        log(f"workdir {workdir}; FULL={FULL}; {RUNS} runs per figure")
        rows["ceilings"] = row_ceilings(bench, concurrencies)
        rows["place"] = {k: row_place(bench, k, concurrencies) for k in ("sqlite", "postgresql")}
        e2e: dict[str, Any] = {}
        for latency, orders in ((0, 5000), (50, 2000 if FULL else 1000)):
            for workers in (1, 2):
                e2e[f"{latency}ms/{workers}w"] = row_e2e(bench, "sqlite", latency, workers, orders)
        if FULL:
            e2e["0ms/1w/postgresql"] = row_e2e(bench, "postgresql", 0, 1, 5000)
            e2e["0ms/2w/2s"] = row_e2e(bench, "sqlite", 0, 2, 5000, servers=2)
        rows["e2e"] = e2e
        from bench import fanout, recovery  # these rows need WatchOrder and the reaper

        rows["fanout"] = fanout.row(bench, [1000, 10000])
        rows["recovery"] = recovery.row(bench)
        rows["scaling"] = {
            "place_1_server": rows["place"]["sqlite"]["64"] if rows["place"]["sqlite"] else None,
            "place_2_servers": scaling_place(bench),
        }
    finally:
        bench.base.stop_all()
    bench.results["meta"] = meta(time.monotonic() - started)
    (ROOT / "bench" / "results.json").write_text(json.dumps(bench.results, indent=1) + "\n")
    write_report(bench.results, ROOT / "BENCHMARKS.md")
    log(f"done in {time.monotonic() - started:.0f}s: BENCHMARKS.md, bench/results.json")
    shutil.rmtree(workdir, ignore_errors=True)


def scaling_place(bench: Bench) -> dict[str, Any] | None:
    with bench.database("sqlite") as url:
        assert url is not None
        procs = bench.stack("place-2-servers", url)
        addr = bench.start_servers(procs, 2)
        try:
            runs = measure(
                "PlaceOrder sqlite @64, 2 server processes",
                RUNS,
                lambda: (
                    bench.flush_redis(),
                    loadgen("place", addr, concurrency=64, channels=8, duration=4),
                )[1],
            )
            return summarise(runs, ["rate", "p50_ms", "p99_ms"])
        finally:
            procs.stop_all()


def meta(elapsed: float) -> dict[str, Any]:
    def version(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True).stdout.strip()
        except OSError:
            return "n/a"

    import grpc
    import peewee
    import redis

    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "elapsed_s": round(elapsed),
        "full": FULL,
        "runs_per_figure": RUNS,
        "machine": f"{os.cpu_count()} cores, {cpu}, {platform.platform()}",
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        "redis_py": redis.__version__,
        "peewee": peewee.__version__,
        "redis_server": version(["redis-server", "--version"]),
        "sqlite": sqlite3.sqlite_version,
        "postgresql": version(["psql", "--version"]),
        "settings": "LOG_LEVEL=WARNING, WORKER_CONCURRENCY=8, loadgen 64 in flight for e2e",
    }


if __name__ == "__main__":
    main()
