"""The contract: generated code matches the proto, layers import what they may, reflection works."""

from __future__ import annotations

import filecmp
import json
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from orders.v1 import orders_pb2 as pb
from orders.vendor import reflection_v1_pb2 as v1

from scripts.gen_protos import generate
from tests.harness import BIN, ROOT, Stack


def test_generated_code_matches_protos(tmp_path: Path) -> None:
    generate(tmp_path)
    fresh = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    committed = sorted(
        p.relative_to(ROOT / "generated")
        for p in (ROOT / "generated").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    )
    assert fresh == committed, "generated/ has extra or missing files: run `make protos`"
    for rel in fresh:
        assert filecmp.cmp(tmp_path / rel, ROOT / "generated" / rel, shallow=False), (
            f"generated/{rel} differs from a fresh protoc run: run `make protos`"
        )


def test_contract_names() -> None:
    service = pb.DESCRIPTOR.services_by_name["OrderService"]
    assert {m.name for m in service.methods} >= {
        "PlaceOrder",
        "GetStatus",
        "WatchOrder",
        "QueueStats",
        "ListFunds",
    }
    assert service.methods_by_name["WatchOrder"].server_streaming
    assert pb.TransactionType.Value("TRANSACTION_TYPE_SELL") == 2
    assert pb.OrderStatus.Value("ORDER_STATUS_CANCELLED") == 4
    order_fields = {f.name for f in pb.Order.DESCRIPTOR.fields}
    assert order_fields >= {
        "order_ref_no",
        "fund_name",
        "transaction_type",
        "quantity",
        "order_value",
        "status",
        "created_on",
        "updated_on",
        "attempts",
        "failure_reason",
    }
    assert pb.PlaceOrderRequest.DESCRIPTOR.fields_by_name["idempotency_key"].has_presence
    assert pb.WatchOrderRequest.DESCRIPTOR.fields_by_name["after_sequence"].has_presence


@pytest.mark.parametrize(
    "module,forbidden",
    [
        ("worker.app", ["grpc", "server", "orders.v1"]),
        ("core.store", ["grpc", "server", "worker", "orders.v1"]),
        ("server.app", ["worker"]),
        ("clients.orderctl", ["server", "worker", "core"]),
    ],
)
def test_import_boundaries(module: str, forbidden: list[str]) -> None:
    code = (
        f"import sys, json; import {module}; "
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        f"{sorted({f.split('.')[0] for f in forbidden})!r})))"
    )
    loaded = json.loads(subprocess.check_output([sys.executable, "-c", code], cwd=ROOT))
    bad = [m for m in loaded if any(m == f or m.startswith(f + ".") for f in forbidden)]
    assert bad == [], f"{module} imports {bad}"


def _grpcurl(stack: Stack, *args: str) -> str:
    out = subprocess.run(
        [str(BIN / "grpcurl"), "-plaintext", *args], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_grpcurl_without_proto_files(make_stack, sqlite_url: str) -> None:
    stack = make_stack(sqlite_url)
    stack.start_server()
    services = _grpcurl(stack, stack.address, "list").split()
    assert "orders.v1.OrderService" in services
    assert "grpc.health.v1.Health" in services
    described = _grpcurl(stack, stack.address, "describe", "orders.v1.OrderService")
    assert "rpc PlaceOrder" in described and "stream .orders.v1.WatchOrderResponse" in described
    funds = json.loads(_grpcurl(stack, stack.address, "orders.v1.OrderService/ListFunds"))
    assert any(f["name"] == "Global Equity Fund" for f in funds["funds"])
    placed = json.loads(
        _grpcurl(
            stack,
            "-d",
            '{"fund_name": "Global Equity Fund", "transaction_type": '
            '"TRANSACTION_TYPE_SELL", "quantity": 3}',
            stack.address,
            "orders.v1.OrderService/PlaceOrder",
        )
    )
    # grpcurl 1.8.6 prints proto field names; newer ones print lowerCamelCase.
    assert placed["status"] == "ORDER_STATUS_PENDING"
    assert placed.get("orderValue", placed.get("order_value")) == "30.00"
    health = json.loads(_grpcurl(stack, stack.address, "grpc.health.v1.Health/Check"))
    assert health == {"status": "SERVING"}


def test_reflection_v1_is_served(make_stack, sqlite_url: str) -> None:
    stack = make_stack(sqlite_url)
    stack.start_server()
    call = stack.channel.stream_stream(
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        request_serializer=v1.ServerReflectionRequest.SerializeToString,
        response_deserializer=v1.ServerReflectionResponse.FromString,
    )
    replies = list(
        call(
            iter(
                [
                    v1.ServerReflectionRequest(list_services=""),
                    v1.ServerReflectionRequest(file_containing_symbol="orders.v1.OrderService"),
                ]
            ),
            timeout=10,
        )
    )
    names = {s.name for s in replies[0].list_services_response.service}
    assert {
        "orders.v1.OrderService",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= names
    assert replies[1].file_descriptor_response.file_descriptor_proto


def test_grpc_code_for_unknown_method(make_stack, sqlite_url: str) -> None:
    stack = make_stack(sqlite_url)
    stack.start_server()
    with pytest.raises(grpc.RpcError) as err:
        stack.channel.unary_unary("/orders.v1.OrderService/Nope")(b"", timeout=5)
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
