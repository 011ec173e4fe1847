"""Logs are JSON lines with the order ref, and never carry a token or a password."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import grpc
import pytest
from grpc_health.v1 import health_pb2
from orders.v1 import orders_pb2 as pb

from core.settings import Settings, SettingsError, redact_url
from tests.harness import RedisServer, Stack, wait_for

REDIS_PASSWORD = "redis-pw/Zq8:x@y"
ADMIN_TOKEN = "admin-token-Hq3LqN5w"
CLIENT_TOKEN = "client-token-P2vX9kTe"
WRONG_TOKEN = "wrong-token-J7mB4cRs"
WRONG_PASSWORD = "wrong-redis-pw-K8nF3"
SECRETS = [
    REDIS_PASSWORD,
    quote(REDIS_PASSWORD, safe=""),
    ADMIN_TOKEN,
    CLIENT_TOKEN,
    WRONG_TOKEN,
    WRONG_PASSWORD,
]


def _wait_terminal(stack: Stack, ref: str) -> int:
    def terminal() -> int | None:
        reply = _call("GetStatus", pb.GetStatusRequest(order_ref_no=ref), CLIENT_TOKEN, stack)
        assert isinstance(reply, pb.GetStatusResponse)
        done = reply.order.status in (pb.ORDER_STATUS_COMPLETED, pb.ORDER_STATUS_CANCELLED)
        return int(reply.order.status) if done else None

    return wait_for(terminal, 30, f"order {ref} to be terminal")


def _call(method: str, request: object, token: str, stack: Stack) -> object | None:
    try:
        return getattr(stack.stub, method)(
            request, metadata=(("authorization", f"Bearer {token}"),), timeout=10
        )
    except grpc.RpcError:
        return None


def test_json_logs_carry_refs_and_no_secrets(make_stack, tmp_path: Path, sqlite_url: str) -> None:
    redis = RedisServer(tmp_path / "redis", password=REDIS_PASSWORD)
    redis.start()
    try:
        env = {
            "REDIS_URL": "",
            "REDIS_HOST": "127.0.0.1",
            "REDIS_PORT": str(redis.port),
            "REDIS_PASSWORD": REDIS_PASSWORD,
            "ADMIN_TOKEN": ADMIN_TOKEN,
            "API_TOKENS": f"alice:{CLIENT_TOKEN}",
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "DEBUG",
        }
        stack: Stack = make_stack(sqlite_url, **env)
        stack.start_all()
        good = pb.PlaceOrderRequest(
            fund_name="Global Equity Fund", transaction_type=pb.TRANSACTION_TYPE_BUY, quantity=5
        )
        placed = _call("PlaceOrder", good, CLIENT_TOKEN, stack)
        assert isinstance(placed, pb.PlaceOrderResponse), "PlaceOrder with a client token failed"
        done = placed.order_ref_no
        assert _wait_terminal(stack, done) == pb.ORDER_STATUS_COMPLETED
        stack.fundhouse_behaviour(always_status=422)
        placed = _call("PlaceOrder", good, ADMIN_TOKEN, stack)
        assert isinstance(placed, pb.PlaceOrderResponse)
        failed = placed.order_ref_no
        assert _wait_terminal(stack, failed) == pb.ORDER_STATUS_CANCELLED
        # Calls that may be refused: a wrong token, QueueStats with a client token.
        _call("GetStatus", pb.GetStatusRequest(order_ref_no=done), WRONG_TOKEN, stack)
        _call("QueueStats", pb.QueueStatsRequest(), CLIENT_TOKEN, stack)
        _call("QueueStats", pb.QueueStatsRequest(), ADMIN_TOKEN, stack)

        # A second server with the wrong Redis password: unhealthy, and says so without it.
        bad = make_stack(sqlite_url, **{**env, "REDIS_PASSWORD": WRONG_PASSWORD})
        bad.start_server()
        not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
        wait_for(lambda: bad.health() == not_serving, 10, "NOT_SERVING with a wrong password")
        stack.stop()
        bad.stop()
        services = stack.services + bad.services
    finally:
        redis.stop()

    records = []
    for service in services:
        if service.name == "fundhouse":
            continue  # the test double of the third party, not part of the service
        for line in service.log_text().splitlines():
            for secret in SECRETS:
                assert secret not in line, f"{service.name} logged a secret: {line}"
            try:
                records.append(json.loads(line))
            except ValueError:
                raise AssertionError(f"{service.name}: not a JSON line: {line!r}") from None
    assert {r["level"] for r in records} >= {"DEBUG", "INFO", "WARNING"}
    messages = {(r["msg"], r.get("ref")) for r in records}
    assert ("order accepted", done) in messages
    assert ("order completed", done) in messages
    assert any(msg.startswith("order cancelled") and ref == failed for msg, ref in messages)
    for record in records:
        if record["logger"] == "worker.processor" or record["msg"].startswith("order "):
            assert record.get("ref"), f"a line about an order without its ref: {record}"
    assert any(r["msg"] == "dependency unreachable" and r["dependency"] == "redis" for r in records)


def test_settings_never_show_secrets(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "REDIS_PASSWORD": REDIS_PASSWORD,
            "ADMIN_TOKEN": ADMIN_TOKEN,
            "API_TOKENS": f"alice:{CLIENT_TOKEN}",
            "DATABASE_URL": "postgresql://orders:db-pw-123@db:5432/orders",
        }
    )
    shown = repr(settings) + str(settings)
    for secret in [*SECRETS, "db-pw-123"]:
        assert secret not in shown
    assert "redis://:***@127.0.0.1:6379/0" in shown and "alice" in shown
    with pytest.raises(SettingsError) as err:
        Settings.from_env({"DATABASE_URL": "mysql://orders:db-pw-123@db/orders"})
    assert "db-pw-123" not in str(err.value) and "mysql://orders:***@db/orders" in str(err.value)
    assert (
        redact_url("rediss://user:pw@h:1/0?ssl_ca_certs=/x")
        == "rediss://user:***@h:1/0?ssl_ca_certs=/x"
    )
    assert redact_url("redis://h:1/0") == "redis://h:1/0"


def test_redis_tls_files_reach_the_url(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    settings = Settings.from_env({"REDIS_URL": "rediss://h:6380/0", "REDIS_TLS_CA_FILE": str(ca)})
    assert settings.redis_url == f"rediss://h:6380/0?ssl_ca_certs={quote(str(ca), safe='')}"
    with pytest.raises(SettingsError, match="rediss://"):
        Settings.from_env({"REDIS_URL": "redis://h:6379/0", "REDIS_TLS_CA_FILE": str(ca)})
