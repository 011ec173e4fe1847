"""The REST gateway end to end: real gateway, server, worker, fundhouse and Redis processes."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.gateway_stack import (
    ADMIN_TOKEN,
    ALICE_TOKEN,
    ISO_MILLIS_Z,
    GatewayStack,
    place,
    sse_events,
    wait_status,
)
from tests.harness import BIN, RedisServer

UNKNOWN_REF = "ORD" + "Z" * 16


@pytest.fixture(scope="module")
def stack(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayStack]:
    """One stack for the module: every test places its own orders, so they do not meet."""
    workdir = tmp_path_factory.mktemp("gateway")
    redis_server.client().flushall()
    stack = GatewayStack(
        workdir,
        redis_server.url,
        f"sqlite:///{workdir / 'orders.db'}",
        # With API_TOKENS every RPC needs a token: each route shows it forwards Authorization.
        {"ADMIN_TOKEN": ADMIN_TOKEN, "API_TOKENS": f"alice:{ALICE_TOKEN}"},
    )
    try:
        stack.start_all()
        stack.start_gateway()
        yield stack
    except BaseException:
        print(stack.logs())
        raise
    finally:
        stack.stop()


@pytest.fixture
def http(stack: GatewayStack) -> Iterator[httpx.Client]:
    """A client presenting alice's API token, as every caller must here."""
    with stack.http(ALICE_TOKEN) as client:
        yield client


def test_place_then_status_completes(http: httpx.Client) -> None:
    reply = place(http, quantity=100)
    assert reply.status_code == 202, reply.text
    body = reply.json()
    assert body["success"] is True
    data = body["data"]
    assert set(data) == {"orderRefNo", "status", "orderValue", "message"}
    assert data["status"] == "Submitted"
    assert data["message"] == "Order has been queued for processing"
    assert data["orderRefNo"].startswith("ORD")
    # 1000, never 1000.0: the original's JSON number, exactly.
    assert '"orderValue":1000,' in reply.text.replace(" ", "")
    assert type(data["orderValue"]) is int and data["orderValue"] == 1000

    final = wait_status(http, data["orderRefNo"], {"COMPLETED", "CANCELLED"})
    assert final["status"] == "COMPLETED", final
    assert final["orderRefNo"] == data["orderRefNo"]
    assert final["orderValue"] == 1000 and final["transactionType"] == "BUY"
    assert ISO_MILLIS_Z.match(final["createdOn"]), final["createdOn"]
    assert ISO_MILLIS_Z.match(final["updatedOn"]), final["updatedOn"]
    assert final["fundName"] == "Global Equity Fund" and final["quantity"] == 100
    assert final["attempts"] == 1 and final["confirmationId"].startswith("FH")
    assert "failureReason" not in final


@pytest.mark.parametrize(
    ("fund", "kind", "quantity", "literal"),
    [
        ("Emerging Markets Fund", "SELL", 3, "70.37"),  # NAV 23.4567 x 3 = 70.3701
        ("Sovereign Bond Fund", "BUY", 2, "202.5"),  # 202.50 as the original wrote it
        ("Money Market Fund", "SELL", 7, "7"),
    ],
)
def test_order_value_is_exact(
    http: httpx.Client, fund: str, kind: str, quantity: int, literal: str
) -> None:
    reply = place(http, fund, kind, quantity)
    assert reply.status_code == 202, reply.text
    assert f'"orderValue":{literal},' in reply.text.replace(" ", "")
    status = http.get(f"/api/order/{reply.json()['data']['orderRefNo']}/status")
    assert f'"orderValue":{literal},' in status.text.replace(" ", "")
    assert status.json()["data"]["transactionType"] == kind


def test_idempotency_key_replays_and_conflicts(http: httpx.Client) -> None:
    first = place(http, quantity=5, **{"Idempotency-Key": "gw-key-1"})
    again = place(http, quantity=5, **{"Idempotency-Key": "gw-key-1"})
    assert first.status_code == again.status_code == 202, (first.text, again.text)
    assert first.json() == again.json()
    other = place(http, quantity=6, **{"Idempotency-Key": "gw-key-1"})
    assert other.status_code == 409, other.text
    assert other.json()["error"]["code"] == "ALREADY_EXISTS"
    fresh = place(http, quantity=5, **{"Idempotency-Key": "gw-key-2"})
    assert fresh.json()["data"]["orderRefNo"] != first.json()["data"]["orderRefNo"]


def test_unknown_extra_fields_are_ignored(http: httpx.Client) -> None:
    body = {
        "fundName": "Global Equity Fund",
        "transactionType": "SELL",
        "quantity": 1,
        "clientNote": "hello",
        "nested": {"a": [1, 2]},
    }
    reply = http.post("/api/order", json=body)
    assert reply.status_code == 202, reply.text


GOOD = {"fundName": "Global Equity Fund", "transactionType": "BUY", "quantity": 1}

# (name, method, path, raw body or JSON value, headers, status, code, fields named)
ERROR_CASES: list[tuple[str, str, str, Any, dict[str, str], int, str, list[str]]] = [
    ("malformed JSON", "POST", "/api/order", b'{"fundName": ', {}, 400, "INVALID_ARGUMENT", []),
    ("empty body", "POST", "/api/order", b"", {}, 400, "INVALID_ARGUMENT", []),
    ("not UTF-8", "POST", "/api/order", b'{"fundName": "\xff"}', {}, 400, "INVALID_ARGUMENT", []),
    ("NaN", "POST", "/api/order", b'{"quantity": NaN}', {}, 400, "INVALID_ARGUMENT", []),
    ("deep nesting", "POST", "/api/order", b"[" * 50_000, {}, 400, "INVALID_ARGUMENT", []),
    ("too large", "POST", "/api/order", b" " * 70_000, {}, 400, "INVALID_ARGUMENT", ["body"]),
    ("array body", "POST", "/api/order", [GOOD], {}, 400, "INVALID_ARGUMENT", []),
    (
        "missing fields",
        "POST",
        "/api/order",
        {},
        {},
        400,
        "INVALID_ARGUMENT",
        ["fundName", "transactionType", "quantity"],
    ),
    (
        "quantity string",
        "POST",
        "/api/order",
        {**GOOD, "quantity": "100"},
        {},
        400,
        "INVALID_ARGUMENT",
        ["quantity"],
    ),
    (
        "quantity float",
        "POST",
        "/api/order",
        {**GOOD, "quantity": 1.5},
        {},
        400,
        "INVALID_ARGUMENT",
        ["quantity"],
    ),
    (
        "quantity 100.0",
        "POST",
        "/api/order",
        b'{"fundName": "Global Equity Fund", "transactionType": "BUY", "quantity": 100.0}',
        {},
        400,
        "INVALID_ARGUMENT",
        ["quantity"],
    ),
    (
        "quantity bool",
        "POST",
        "/api/order",
        {**GOOD, "quantity": True},
        {},
        400,
        "INVALID_ARGUMENT",
        ["quantity"],
    ),
    (
        "quantity huge",
        "POST",
        "/api/order",
        {**GOOD, "quantity": 2**70},
        {},
        400,
        "INVALID_ARGUMENT",
        ["quantity"],
    ),
    (
        "quantity 0",
        "POST",
        "/api/order",
        {**GOOD, "quantity": 0},
        {},
        400,
        "INVALID_ARGUMENT",
        ["quantity"],
    ),
    (
        "lowercase type",
        "POST",
        "/api/order",
        {**GOOD, "transactionType": "buy"},
        {},
        400,
        "INVALID_ARGUMENT",
        ["transactionType"],
    ),
    (
        "fund not a string",
        "POST",
        "/api/order",
        {**GOOD, "fundName": 42},
        {},
        400,
        "INVALID_ARGUMENT",
        ["fundName"],
    ),
    (
        "fund with control",
        "POST",
        "/api/order",
        {**GOOD, "fundName": "a\u0007b"},
        {},
        400,
        "INVALID_ARGUMENT",
        ["fundName"],
    ),
    (
        "lone surrogate",
        "POST",
        "/api/order",
        b'{"fundName": "\\ud800", "transactionType": "BUY", "quantity": 1}',
        {},
        400,
        "INVALID_ARGUMENT",
        ["fundName"],
    ),
    (
        "bad idempotency key",
        "POST",
        "/api/order",
        GOOD,
        {"Idempotency-Key": "k" * 256},
        400,
        "INVALID_ARGUMENT",
        ["Idempotency-Key"],
    ),
    (
        "unknown fund",
        "POST",
        "/api/order",
        {**GOOD, "fundName": "No Such Fund"},
        {},
        404,
        "NOT_FOUND",
        [],
    ),
    ("unknown ref", "GET", f"/api/order/{UNKNOWN_REF}/status", None, {}, 404, "NOT_FOUND", []),
    (
        "malformed ref",
        "GET",
        "/api/order/abc/status",
        None,
        {},
        400,
        "INVALID_ARGUMENT",
        ["orderRefNo"],
    ),
    (
        "events bad Last-Event-ID",
        "GET",
        f"/api/order/{UNKNOWN_REF}/events",
        None,
        {"Last-Event-ID": "x1"},
        400,
        "INVALID_ARGUMENT",
        ["Last-Event-ID"],
    ),
    ("no such route", "GET", "/api/orders", None, {}, 404, "NOT_FOUND", []),
    ("wrong method", "DELETE", "/api/order", None, {}, 405, "UNIMPLEMENTED", []),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "code", "fields"),
    [case[1:] for case in ERROR_CASES],
    ids=[case[0] for case in ERROR_CASES],
)
def test_error_answers(
    http: httpx.Client,
    method: str,
    path: str,
    body: Any,
    headers: dict[str, str],
    status: int,
    code: str,
    fields: list[str],
) -> None:
    content = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    reply = http.request(
        method,
        path,
        content=content,
        headers={"Content-Type": "application/json", **headers} if content is not None else headers,
    )
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"] == "application/json"
    payload = reply.json()
    assert payload["success"] is False
    assert payload["error"]["code"] == code
    assert payload["error"]["message"]
    assert [f["field"] for f in payload["error"].get("fields", [])] == fields
    if status == 405:
        assert "POST" in reply.headers["allow"]


def test_server_field_errors_use_rest_names(http: httpx.Client) -> None:
    reply = place(http, quantity=0)
    error = reply.json()["error"]
    assert error["fields"] == [
        {"field": "quantity", "description": "must be from 1 to 10,000,000, got 0"}
    ]
    assert error["message"].startswith("quantity: must be from 1")
    unknown = place(http, fund="No Such Fund").json()["error"]
    assert unknown["message"].startswith("fundName: no fund named")


def test_events_stream_to_the_terminal_update_then_resume_without_gap(
    stack: GatewayStack, http: httpx.Client
) -> None:
    # A slow third party keeps the order open long enough to see live changes.
    stack.fundhouse_behaviour(latency_ms=1000)
    try:
        ref = place(http, quantity=2).json()["data"]["orderRefNo"]
        with http.stream("GET", f"/api/order/{ref}/events") as reply:
            assert reply.status_code == 200
            assert reply.headers["content-type"].startswith("text/event-stream")
            updates = [e for e in sse_events(reply.iter_lines()) if e.get("event") == "update"]
    finally:
        stack.fundhouse_behaviour(latency_ms=0)
    data = [json.loads(e["data"]) for e in updates]
    ids = [int(e["id"]) for e in updates]
    # The current state first, then each change, then the stream closed by itself.
    assert len(ids) >= 2 and ids == sorted(set(ids)), ids
    assert [d["sequence"] for d in data] == ids
    assert {d["orderRefNo"] for d in data} == {ref}
    progress = [d["progress"] for d in data]
    assert progress == sorted(progress)
    assert (data[-1]["status"], data[-1]["event"], data[-1]["progress"]) == (
        "COMPLETED",
        "completed",
        100,
    )
    assert data[-1]["orderValue"] == 20 and ISO_MILLIS_Z.match(data[-1]["createdOn"])

    last = ids[-1]
    with http.stream("GET", f"/api/order/{ref}/events", headers={"Last-Event-ID": "1"}) as reply:
        resumed = [e for e in sse_events(reply.iter_lines()) if e.get("event") == "update"]
    assert [int(e["id"]) for e in resumed] == list(range(2, last + 1))  # every one, no gap
    assert json.loads(resumed[-1]["data"])["status"] == "COMPLETED"
    ended = http.get(f"/api/order/{ref}/events", headers={"Last-Event-ID": str(last)})
    assert ended.status_code == 204, ended.text


def test_queue_route_needs_the_admin_token(stack: GatewayStack) -> None:
    with (
        stack.http() as anonymous,
        stack.http(ALICE_TOKEN) as alice,
        stack.http(ADMIN_TOKEN) as admin,
    ):
        answers = {
            "anonymous": anonymous.get("/api/order/queue/status"),
            "unknown": anonymous.get(
                "/api/order/queue/status", headers={"Authorization": "Bearer not-a-token-9"}
            ),
            "alice": alice.get("/api/order/queue/status"),
            "admin": admin.get("/api/order/queue/status"),
        }
    assert answers["anonymous"].status_code == 401
    assert answers["anonymous"].json()["error"]["code"] == "UNAUTHENTICATED"
    assert answers["anonymous"].headers["www-authenticate"] == "Bearer"
    assert answers["unknown"].status_code == 401
    assert answers["alice"].status_code == 403
    assert answers["alice"].json()["error"]["code"] == "PERMISSION_DENIED"
    # "queue" was routed to QueueStats, never read as an order ref (which would be a 400).
    assert answers["admin"].status_code == 200, answers["admin"].text
    data = answers["admin"].json()["data"]
    assert {"waiting", "active", "completed", "failed"} <= set(data)
    assert all(type(data[k]) is int and data[k] >= 0 for k in ("waiting", "active", "failed"))
    assert data["completed"] >= 0


def test_anonymous_callers_are_refused_when_tokens_are_required(stack: GatewayStack) -> None:
    with stack.http() as anonymous:
        placed = place(anonymous)
        status = anonymous.get(f"/api/order/{UNKNOWN_REF}/status")
        events = anonymous.get(f"/api/order/{UNKNOWN_REF}/events")
    for answer in (placed, status, events):
        assert answer.status_code == 401, answer.text
        assert answer.json()["error"]["code"] == "UNAUTHENTICATED"


def test_unreachable_server_is_503(stack: GatewayStack, tmp_path: Path) -> None:
    lonely = GatewayStack(tmp_path, stack.redis_url, stack.database_url)
    try:
        lonely.start_gateway(orders_addr="127.0.0.1:1", GATEWAY_RPC_TIMEOUT_S="2")
        with lonely.http() as client:
            reply = place(client)
            status = client.get(f"/api/order/{UNKNOWN_REF}/status")
        for answer in (reply, status):
            assert answer.status_code == 503, answer.text
            assert answer.json()["error"]["code"] in ("UNAVAILABLE", "DEADLINE_EXCEEDED")
    finally:
        lonely.stop()


def test_fuzz_from_the_openapi_document(stack: GatewayStack, tmp_path: Path) -> None:
    """schemathesis, every check, from /openapi.json: no 5xx, nothing off the schema."""
    argv = [
        str(BIN / "st"),
        "run",
        f"{stack.gateway_url}/openapi.json",
        "--checks",
        "all",
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--max-examples",
        "40",
        "--seed",
        "20240101",
        # One worker: hypothesis' lambda-source cache is not thread-safe ("AST constructor
        # recursion depth mismatch" runtime errors with two), and one is as fast here.
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--header",
        f"Authorization: Bearer {ADMIN_TOKEN}",
    ]
    env = {**os.environ, "NO_COLOR": "1"}
    out = subprocess.run(
        argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240, check=False
    )
    report = out.stdout
    for heading in ("= FAILURES =", "= ERRORS ="):
        if heading in report:
            report = report[report.index(heading) - 40 :]
            break
    assert out.returncode == 0, report[:20_000] + out.stderr[-5_000:]
    assert " passed" in out.stdout and "generated" in out.stdout, out.stdout
