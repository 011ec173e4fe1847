"""`make run`: Redis (private unless set), fundhouse, server, worker and gateway, until Ctrl-C."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from scripts.redis_argv import private_redis_argv

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var"
BIN = Path(sys.executable).parent


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port(preferred: int) -> int:
    if port_free(preferred):
        return preferred
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ensure_redis_binary() -> str:
    binary = shutil.which("redis-server")
    if binary:
        return binary
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("redis-server missing: installing Debian's redis-server package", flush=True)
        subprocess.run(["apt-get", "update", "-qq"], check=False)
        subprocess.run(["apt-get", "install", "-y", "-qq", "redis-server"], check=True)
        binary = shutil.which("redis-server")
    if not binary:
        raise SystemExit(
            "make run: redis-server not found; install it (apt-get install "
            "redis-server) or set REDIS_URL"
        )
    return binary


def wait_port(port: int, proc: subprocess.Popen[bytes], name: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"make run: {name} exited with {proc.returncode}; see var/*.log")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"make run: {name} did not listen on {port} within {timeout}s")


def main() -> None:
    """Start everything, print where it listens, stop everything on Ctrl-C or a crash."""
    VAR.mkdir(exist_ok=True)
    env = dict(os.environ)
    procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def spawn(name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = (VAR / f"{name}.log").open("ab")
        # Own session: Ctrl-C reaches only us, and we stop the children in order.
        proc = subprocess.Popen(
            argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        procs.append((name, proc))
        return proc

    def stop_all() -> None:
        for _name, proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for name, proc in reversed(procs):
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                print(f"{name} did not stop in 20s, killing it", flush=True)
                proc.kill()
                proc.wait()
        print("stopped everything", flush=True)

    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        lines = []
        if not (env.get("REDIS_URL") or env.get("REDIS_HOST")):
            redis_port = free_port(6390)
            (VAR / "redis").mkdir(exist_ok=True)
            redis = spawn(
                "redis",
                private_redis_argv(ensure_redis_binary(), redis_port, VAR / "redis"),
            )
            wait_port(redis_port, redis, "redis-server")
            env["REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/0"
            lines.append(f"redis     redis://127.0.0.1:{redis_port} (private, var/redis)")
        else:
            lines.append("redis     as configured by REDIS_URL / REDIS_HOST")
        if not env.get("THIRD_PARTY_URL"):
            fh_port = free_port(8081)
            fundhouse = spawn(
                "fundhouse",
                [
                    str(BIN / "orders-fundhouse"),
                    "--port",
                    str(fh_port),
                    "--latency-ms",
                    env.get("FUNDHOUSE_LATENCY_MS", "20"),
                ],
            )
            wait_port(fh_port, fundhouse, "orders-fundhouse")
            env["THIRD_PARTY_URL"] = f"http://127.0.0.1:{fh_port}"
        lines.append(f"fundhouse {env['THIRD_PARTY_URL']}")
        env.setdefault("DATABASE_URL", f"sqlite:///{VAR / 'orders.db'}")
        if not env.get("ADMIN_TOKEN"):
            env["ADMIN_TOKEN"] = "dev-admin-" + secrets.token_hex(8)
        grpc_port = int(env.get("PORT") or 50051)
        env["PORT"] = str(grpc_port)
        metrics_port = int(env.get("METRICS_PORT") or free_port(9464))
        env["METRICS_PORT"] = str(metrics_port)
        server = spawn("server", [str(BIN / "orders-server")])
        wait_port(grpc_port, server, "orders-server")
        worker_metrics_port = int(env.get("WORKER_METRICS_PORT") or free_port(9465))
        env["WORKER_METRICS_PORT"] = str(worker_metrics_port)
        worker = spawn("worker", [str(BIN / "orders-worker")])
        wait_port(worker_metrics_port, worker, "orders-worker metrics")
        gateway_port = int(env.get("GATEWAY_PORT") or free_port(8080))
        env["GATEWAY_PORT"] = str(gateway_port)
        env["ORDERS_ADDR"] = f"127.0.0.1:{grpc_port}"
        gateway = spawn("gateway", [str(BIN / "orders-gateway")])
        wait_port(gateway_port, gateway, "orders-gateway")
        rest = f"http://127.0.0.1:{gateway_port}"
        lines += [
            f"server    127.0.0.1:{grpc_port} (gRPC, reflection, health)",
            f"gateway   {rest} (REST, {rest}/openapi.json)",
            f"database  {env['DATABASE_URL'].split('@')[-1]}",
            "worker    1 process, WORKER_CONCURRENCY=" + env.get("WORKER_CONCURRENCY", "8"),
            f"metrics   server http://127.0.0.1:{metrics_port}/metrics, "
            f"worker http://127.0.0.1:{worker_metrics_port}/metrics",
            f"admin     ADMIN_TOKEN={env['ADMIN_TOKEN']} (development token)",
            "logs      var/*.log",
        ]
        addr = f"127.0.0.1:{grpc_port}"
        print(
            "\n".join(
                [
                    "orders is up:",
                    *("  " + line for line in lines),
                    "",
                    "Place an order:",
                    f"  .venv/bin/orderctl --addr {addr} place --fund 'Global Equity Fund' "
                    "--type BUY --quantity 100",
                    f"  .venv/bin/orderctl --addr {addr} status ORD...",
                    f"  .venv/bin/orderctl --addr {addr} watch ORD...",
                    f"  .venv/bin/orderctl --addr {addr} --token {env['ADMIN_TOKEN']} stats",
                    f'  .venv/bin/grpcurl -plaintext -d \'{{"fund_name": "Global Equity Fund", '
                    f'"transaction_type": "TRANSACTION_TYPE_BUY", "quantity": 100}}\' {addr} '
                    "orders.v1.OrderService/PlaceOrder",
                    "Or over REST:",
                    f"  curl -s -X POST {rest}/api/order -H 'Content-Type: application/json' "
                    '-d \'{"fundName": "Global Equity Fund", "transactionType": "BUY", '
                    '"quantity": 100}\'',
                    f"  curl -s {rest}/api/order/ORD.../status",
                    f"  curl -N {rest}/api/order/ORD.../events",
                    f"  curl -s {rest}/api/order/queue/status "
                    f"-H 'Authorization: Bearer {env['ADMIN_TOKEN']}'",
                    "Ctrl-C stops everything.",
                ]
            ),
            flush=True,
        )
        while not stopping:
            for name, proc in procs:
                if proc.poll() is not None:
                    print(
                        f"{name} exited with {proc.returncode}; stopping (see var/{name}.log)",
                        flush=True,
                    )
                    stopping = True
                    break
            time.sleep(0.2)
    finally:
        stop_all()


if __name__ == "__main__":
    main()
