"""The system under test, started for a benchmark: a private Redis, fresh databases, and the
fundhouse, server and worker processes, each logging into the bench's scratch folder."""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg2

from bench.procs import BIN, Procs, free_port, wait_port
from scripts.redis_argv import private_redis_argv

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
POSTGRES_ADMIN_URL = os.environ.get("BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
ADMIN_TOKEN = "bench-admin-" + secrets.token_hex(6)
TERMINAL_SQL = "SELECT count(*) FROM \"order\" WHERE status IN ('COMPLETED', 'CANCELLED')"
SPAN_SQL = 'SELECT min(created_on), max(updated_on), count(*) FROM "order"'
DRAIN_SQL = (
    "SELECT (SELECT min(created_on) FROM order_event WHERE event = 'claimed'),"
    ' max(updated_on), count(*) FROM "order"'
)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run_json(argv: list[str], timeout: float = 900, env: dict[str, str] | None = None) -> Any:
    """Run a bench program in its own process; its last stdout line is a JSON object."""
    out = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )
    if out.returncode != 0:
        raise RuntimeError(f"{argv[:4]} failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def loadgen(mode: str, addr: str, *, concurrency: int, **options: Any) -> Any:
    """bench/loadgen.py in its own process: duration=, count=, channels=, keep_refs=, token=."""
    argv = [PY, "-m", "bench.loadgen", mode, "--addr", addr, "--concurrency", str(concurrency)]
    for name, value in options.items():
        if value is True:
            argv.append(f"--{name.replace('_', '-')}")
        elif value is not None and value is not False:
            argv += [f"--{name.replace('_', '-')}", str(value)]
    return run_json(argv)


def _sql(database_url: str, sql: str) -> tuple[Any, ...]:
    if database_url.startswith("sqlite:///"):
        with sqlite3.connect(database_url[len("sqlite:///") :], timeout=30) as conn:
            return tuple(conn.execute(sql).fetchone())
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute(sql)
        return tuple(cur.fetchone())


def _when(value: Any) -> dt.datetime:
    return value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))


class Bench:
    """One benchmark session: a private Redis, and a scratch folder for every row."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.redis_port = free_port()
        self.redis_url = f"redis://127.0.0.1:{self.redis_port}/0"
        self.base = Procs(workdir / "base", dict(os.environ))

    def start_redis(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server not found (apt-get install redis-server)")
        self.base.spawn("redis", private_redis_argv(binary, self.redis_port, self.workdir))
        wait_port(self.redis_port)

    def flush_redis(self) -> None:
        subprocess.run(
            ["redis-cli", "-p", str(self.redis_port), "FLUSHALL"], check=True, capture_output=True
        )

    def redis_pid(self) -> int:
        return self.base.running["redis"].pid

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
        return int(_sql(database_url, TERMINAL_SQL)[0])

    @staticmethod
    def span_s(database_url: str) -> tuple[float, int]:
        """Seconds from the first order's creation to the last order's last change, as the
        database recorded them (no polling, no process start-up), and the order count."""
        first, last, count = _sql(database_url, SPAN_SQL)
        return (_when(last) - _when(first)).total_seconds(), int(count)

    @staticmethod
    def drain_span_s(database_url: str) -> tuple[float, int]:
        """Seconds from the first claim to the last order's last change, and the order count."""
        first, last, count = _sql(database_url, DRAIN_SQL)
        return (_when(last) - _when(first)).total_seconds(), int(count)

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

    def start_servers(self, procs: Procs, count: int = 1, **env: str) -> str:
        port = free_port()
        for i in range(count):
            # grpc sets SO_REUSEPORT: several processes share the port, the kernel spreads
            # connections among them.
            procs.spawn(f"server{i}", [str(BIN / "orders-server")], PORT=str(port), **env)
        wait_port(port)
        if count > 1:
            time.sleep(0.5)  # let every process bind before load starts
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
            time.sleep(0.05)
        raise RuntimeError(f"{total} orders not terminal within {timeout}s")
