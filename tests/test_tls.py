"""TLS: the gRPC server with TLS and mutual TLS, Redis with a password and over rediss://."""

from __future__ import annotations

import subprocess
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2
from orders.v1 import orders_pb2 as pb
from orders.v1 import orders_pb2_grpc as pb_grpc

from tests.certs import Certs, make_certs
from tests.harness import BIN, RedisServer, RedisTLS, Stack
from tests.test_order_path import place, wait_terminal

SERVING = health_pb2.HealthCheckResponse.SERVING


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


def _credentials(
    certs: Certs, ca: Path | None = None, client: bool = False
) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=(ca or certs.ca).read_bytes(),
        private_key=certs.client_key.read_bytes() if client else None,
        certificate_chain=certs.client_cert.read_bytes() if client else None,
    )


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def _list_funds(channel: grpc.Channel) -> list[str]:
    stub = pb_grpc.OrderServiceStub(channel)
    return [f.name for f in stub.ListFunds(pb.ListFundsRequest(), timeout=5).funds]


def test_tls_server(make_stack, sqlite_url: str, certs: Certs) -> None:
    stack: Stack = make_stack(
        sqlite_url, TLS_CERT_FILE=str(certs.server_cert), TLS_KEY_FILE=str(certs.server_key)
    )
    stack.credentials = _credentials(certs)
    stack.start_server()
    assert "Global Equity Fund" in _list_funds(stack.channel)
    assert place(stack).status == pb.ORDER_STATUS_PENDING
    assert stack.health() == SERVING

    with grpc.insecure_channel(stack.address) as plain, pytest.raises(grpc.RpcError) as err:
        _list_funds(plain)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    orderctl = [str(BIN / "orderctl"), "--addr", stack.address]
    out = _run([*orderctl, "--tls-ca", str(certs.ca), "funds"])
    assert out.returncode == 0 and "Global Equity Fund" in out.stdout, out.stderr
    # By name instead of IP: the certificate is for localhost too.
    out = _run([*orderctl[:2], f"localhost:{stack.server_port}", "--tls-ca", str(certs.ca),
                "funds"])  # fmt: skip
    assert out.returncode == 0, out.stderr
    out = _run([*orderctl, "funds"])
    assert out.returncode == 6 and out.stderr.startswith("orderctl: UNAVAILABLE"), out.stderr
    # A client that does not trust the server's CA refuses the handshake.
    untrusted = _credentials(certs, ca=certs.other_ca)
    with grpc.secure_channel(stack.address, untrusted) as channel, pytest.raises(grpc.RpcError):
        _list_funds(channel)


def test_mutual_tls_requires_a_client_certificate(
    make_stack, sqlite_url: str, certs: Certs
) -> None:
    stack: Stack = make_stack(
        sqlite_url,
        TLS_CERT_FILE=str(certs.server_cert),
        TLS_KEY_FILE=str(certs.server_key),
        TLS_CLIENT_CA_FILE=str(certs.ca),
    )
    stack.credentials = _credentials(certs, client=True)
    stack.start_server()
    assert "Global Equity Fund" in _list_funds(stack.channel)
    orderctl = [str(BIN / "orderctl"), "--addr", stack.address, "--tls-ca", str(certs.ca)]
    out = _run([*orderctl, "--tls-cert", str(certs.client_cert), "--tls-key",
                str(certs.client_key), "funds"])  # fmt: skip
    assert out.returncode == 0, out.stderr
    out = _run([*orderctl, "funds"])
    assert out.returncode == 6, out.stderr
    with grpc.secure_channel(stack.address, _credentials(certs)) as channel:
        with pytest.raises(grpc.RpcError) as err:
            _list_funds(channel)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_redis_password(make_stack, tmp_path: Path, sqlite_url: str) -> None:
    password = "s3cret/p@ss:word"  # characters a URL must escape
    redis = RedisServer(tmp_path / "redis", password=password)
    redis.start()
    try:
        stack: Stack = make_stack(
            sqlite_url,
            REDIS_URL="",  # so that REDIS_HOST/PORT/PASSWORD are used, as the design has them
            REDIS_HOST="127.0.0.1",
            REDIS_PORT=str(redis.port),
            REDIS_PASSWORD=password,
        )
        stack.start_all()
        ref = place(stack).order_ref_no
        assert wait_terminal(stack, ref).status == pb.ORDER_STATUS_COMPLETED
        assert stack.health() == SERVING
        logs = stack.logs()
        assert password not in logs and "p%40ss" not in logs
    finally:
        redis.stop()


def test_rediss_with_client_certificate(
    make_stack, tmp_path: Path, sqlite_url: str, certs: Certs
) -> None:
    tls = RedisTLS(cert=certs.server_cert, key=certs.server_key, ca=certs.ca)
    redis = RedisServer(tmp_path / "redis", tls=tls)
    redis.start()
    try:
        assert redis.url.startswith("rediss://")
        stack: Stack = make_stack(
            sqlite_url,
            REDIS_URL=redis.url,
            REDIS_TLS_CA_FILE=str(certs.ca),
            REDIS_TLS_CERT_FILE=str(certs.client_cert),
            REDIS_TLS_KEY_FILE=str(certs.client_key),
        )
        stack.start_all()
        assert stack.health() == SERVING
        ref = place(stack).order_ref_no
        assert wait_terminal(stack, ref).status == pb.ORDER_STATUS_COMPLETED
    finally:
        redis.stop()
