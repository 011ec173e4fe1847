"""Test harness: a private redis-server, real service processes, bounded waits."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import grpc
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc
from orders.v1 import orders_pb2_grpc as pb_grpc

from scripts.redis_argv import private_redis_argv

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
T = TypeVar("T")


def free_port() -> int:
    """A port free right now on 127.0.0.1 (bind to 0, read it back, close)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.02) -> T:
    """Poll predicate until it returns a truthy value; fail with `what` after timeout."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - reported if the wait fails
            last_error = exc
        time.sleep(interval)
    detail = f" (last error: {last_error!r})" if last_error else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}{detail}")


@dataclass(frozen=True)
class RedisTLS:
    """Files for a TLS-only redis-server that also asks clients for a certificate."""

    cert: Path
    key: Path
    ca: Path


class RedisServer:
    """A redis-server of the tests' own on a free port; never the shared one on 6379.

    With `password` it runs with --requirepass; with `tls` it listens with TLS only.
    """

    def __init__(
        self, workdir: Path, password: str | None = None, tls: RedisTLS | None = None
    ) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(
                "redis-server not found: install it (Debian: apt-get install redis-server)"
            )
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.password = password
        self.tls = tls
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The URL without TLS files (clients add them, e.g. through REDIS_TLS_CA_FILE)."""
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"{'rediss' if self.tls else 'redis'}://{auth}127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        tls: dict[str, Any] = {}
        if self.tls is not None:
            tls = {
                "ssl": True,
                "ssl_ca_certs": str(self.tls.ca),
                "ssl_certfile": str(self.tls.cert),
                "ssl_keyfile": str(self.tls.key),
            }
        return redis.Redis(
            port=self.port,
            password=self.password,
            decode_responses=True,
            socket_timeout=5,
            **tls,
        )

    def _args(self) -> list[str]:
        args = ["--requirepass", self.password] if self.password else []
        if self.tls is not None:
            args += [
                "--port",
                "0",
                "--tls-port",
                str(self.port),
                "--tls-cert-file",
                str(self.tls.cert),
                "--tls-key-file",
                str(self.tls.key),
                "--tls-ca-cert-file",
                str(self.tls.ca),
                "--tls-auth-clients",
                "yes",
            ]
        return args

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            private_redis_argv(self.binary, self.port, self.workdir, *self._args()),
            stdout=(self.workdir / "redis.log").open("ab"),
            stderr=subprocess.STDOUT,
        )
        wait_for(lambda: self.client().ping(), 10, f"redis-server on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@dataclass
class Service:
    """One running process of ours, with its log file."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    port: int | None = None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, signum: int) -> None:
        if self.alive():
            self.proc.send_signal(signum)

    def stop(self, timeout: float = 15) -> int | None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()
            self.proc.wait()


@dataclass
class Stack:
    """Real orders-server, orders-worker and orders-fundhouse processes for one test."""

    workdir: Path
    redis_url: str
    database_url: str
    extra_env: dict[str, str] = field(default_factory=dict)
    services: list[Service] = field(default_factory=list)
    server_port: int | None = None
    fundhouse_port: int | None = None
    #: Set for a server started with TLS_CERT_FILE: the test's channels use TLS.
    credentials: grpc.ChannelCredentials | None = None
    _channel: grpc.Channel | None = None

    def env(self, **overrides: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "ORDERS_"))}
        env.update(
            {
                "REDIS_URL": self.redis_url,
                "DATABASE_URL": self.database_url,
                "LOG_LEVEL": "INFO",
                "PYTHONUNBUFFERED": "1",
                "RETRY_BASE_DELAY_S": "0.05",
                "RETRY_MAX_DELAY_S": "0.2",
                "THIRD_PARTY_TIMEOUT_S": "5",
            }
        )
        if self.fundhouse_port is not None:
            env["THIRD_PARTY_URL"] = f"http://127.0.0.1:{self.fundhouse_port}"
        env.update(self.extra_env)
        env.update(overrides)
        return env

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> Service:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = self.workdir / f"{name}-{len(self.services)}.log"
        proc = subprocess.Popen(
            argv, env=env, cwd=self.workdir, stdout=log.open("ab"), stderr=subprocess.STDOUT
        )
        service = Service(name, proc, log)
        self.services.append(service)
        return service

    def start_fundhouse(self, *args: str) -> Service:
        self.fundhouse_port = free_port()
        service = self._spawn(
            "fundhouse",
            [str(BIN / "orders-fundhouse"), "--port", str(self.fundhouse_port), *args],
            self.env(),
        )
        service.port = self.fundhouse_port
        wait_for(lambda: self.fundhouse_get("/healthz")["ok"], 15, "fundhouse to listen")
        return service

    def start_server(self, port: int | None = None, **env: str) -> Service:
        """Start orders-server (on `port`, e.g. the previous one's to restart it)."""
        self.server_port = port or free_port()
        service = self._spawn(
            "server", [str(BIN / "orders-server")], self.env(PORT=str(self.server_port), **env)
        )
        service.port = self.server_port
        self._channel = None
        wait_for(lambda: self._answering(service), 30, "orders-server to answer health checks")
        return service

    def start_worker(self, **env: str) -> Service:
        service = self._spawn("worker", [str(BIN / "orders-worker")], self.env(**env))
        wait_for(
            lambda: "worker started" in service.log_text() or not service.alive(),
            30,
            "orders-worker to start",
        )
        assert service.alive(), f"worker exited:\n{service.log_text()}"
        return service

    def start_all(self, **worker_env: str) -> Stack:
        self.start_fundhouse()
        self.start_server()
        self.start_worker(**worker_env)
        return self

    def _answering(self, service: Service) -> bool:
        # Up = answering; SERVING also needs Redis and the database, which a test may have
        # taken away on purpose.
        if not service.alive():
            raise AssertionError(f"{service.name} exited:\n{service.log_text()}")
        return self.health() is not None

    def health(self, name: str = "") -> int | None:
        """The server's grpc.health.v1 status for `name` (None if it does not answer)."""
        stub = health_pb2_grpc.HealthStub(self.channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=1)
        except grpc.RpcError:
            return None
        return int(reply.status)

    @property
    def address(self) -> str:
        assert self.server_port is not None, "server not started"
        return f"127.0.0.1:{self.server_port}"

    @property
    def channel(self) -> grpc.Channel:
        if self._channel is None:
            if self.credentials is None:
                self._channel = grpc.insecure_channel(self.address)
            else:
                self._channel = grpc.secure_channel(self.address, self.credentials)
        return self._channel

    @property
    def stub(self) -> pb_grpc.OrderServiceStub:
        return pb_grpc.OrderServiceStub(self.channel)

    def fundhouse_get(self, path: str) -> Any:
        url = f"http://127.0.0.1:{self.fundhouse_port}{path}"
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read())

    def fundhouse_behaviour(self, **behaviour: Any) -> None:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.fundhouse_port}/_admin/behaviour",
            data=json.dumps(behaviour).encode(),
            method="PUT",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200

    def logs(self) -> str:
        return "\n".join(
            f"===== {s.name} ({s.log.name})\n{s.log_text()[-6000:]}" for s in self.services
        )

    def stop(self) -> None:
        if self._channel is not None:
            self._channel.close()
        for service in reversed(self.services):
            service.stop()
