"""The gateway's pure parts: money and time formats, inputs, the error table, the document."""

from __future__ import annotations

import json
import re

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from orders.v1 import orders_pb2 as pb
from starlette.routing import Route

from core.errors import InvalidField
from gateway import convert, inputs, openapi
from gateway.errors import HTTP_STATUS, ApiError, from_rpc_error
from gateway.routes import build_app
from gateway.settings import GatewaySettings, GatewaySettingsError
from server.validation import validate_fund_name


@pytest.mark.parametrize(
    ("text", "literal"),
    [
        ("1000.00", "1000"),
        ("1234.50", "1234.5"),
        ("70.37", "70.37"),
        ("0.10", "0.1"),
        ("0.01", "0.01"),
        ("99999999999.99", "99999999999.99"),
        ("123456789012345678.00", "123456789012345678"),
    ],
)
def test_money_is_the_decimal_as_a_json_number(text: str, literal: str) -> None:
    assert json.dumps(convert.money(text)) == literal


def test_iso_millis_truncates_to_milliseconds_with_z() -> None:
    ts = Timestamp(seconds=1_704_067_200, nanos=999_999_999)
    assert convert.iso_millis(ts) == "2024-01-01T00:00:00.999Z"
    assert convert.iso_millis(Timestamp(seconds=0)) == "1970-01-01T00:00:00.000Z"


def test_place_request_maps_fields_and_header() -> None:
    body = b'{"fundName": "F", "transactionType": "SELL", "quantity": 7, "extra": [1]}'
    request = inputs.place_request(body, "key-1")
    assert request == pb.PlaceOrderRequest(
        fund_name="F",
        transaction_type=pb.TRANSACTION_TYPE_SELL,
        quantity=7,
        idempotency_key="key-1",
    )
    assert not inputs.place_request(body, None).HasField("idempotency_key")


def test_place_request_names_every_bad_field() -> None:
    with pytest.raises(ApiError) as err:
        inputs.place_request(b'{"fundName": null, "transactionType": 1, "quantity": 1e3}', None)
    assert err.value.status == 400
    assert [v.field for v in err.value.fields] == ["fundName", "transactionType", "quantity"]


@pytest.mark.parametrize("header", ["1.5", "-1", "9" * 20, "\u0661", " "])
def test_last_event_id(header: str) -> None:
    if header == " ":
        assert inputs.last_event_id(header) is None
        return
    with pytest.raises(ApiError):
        inputs.last_event_id(header)


def test_every_grpc_code_has_an_http_status() -> None:
    faults = {c for c in grpc.StatusCode if c not in HTTP_STATUS and c != grpc.StatusCode.OK}
    assert faults == {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.DATA_LOSS,
    }
    assert HTTP_STATUS[grpc.StatusCode.NOT_FOUND] == 404
    assert HTTP_STATUS[grpc.StatusCode.DEADLINE_EXCEEDED] == 503


def rpc_error(
    code: grpc.StatusCode, message: str, field: str | None = None
) -> grpc.aio.AioRpcError:
    status = status_pb2.Status(code=getattr(code_pb2, code.name), message=message)
    if field:
        violation = error_details_pb2.BadRequest.FieldViolation(field=field, description="bad")
        status.details.add().Pack(error_details_pb2.BadRequest(field_violations=[violation]))
    trailing = rpc_status.to_status(status).trailing_metadata
    return grpc.aio.AioRpcError(
        code, grpc.aio.Metadata(), grpc.aio.Metadata(*trailing), details=message
    )


def test_rpc_errors_become_the_envelope_with_rest_field_names() -> None:
    error = from_rpc_error(
        rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "fund_name: bad", "fund_name")
    )
    assert (error.status, error.body()) == (
        400,
        {
            "success": False,
            "error": {
                "code": "INVALID_ARGUMENT",
                "message": "fundName: bad",
                "fields": [{"field": "fundName", "description": "bad"}],
            },
        },
    )
    gone = from_rpc_error(rpc_error(grpc.StatusCode.UNIMPLEMENTED, "not here"))
    assert (gone.status, gone.code) == (500, "UNIMPLEMENTED")
    late = from_rpc_error(rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"))
    assert (late.status, late.code) == (503, "DEADLINE_EXCEEDED")


def test_settings_defaults_and_validation() -> None:
    assert GatewaySettings.from_env({}) == GatewaySettings()
    settings = GatewaySettings.from_env(
        {"GATEWAY_HOST": "0.0.0.0", "GATEWAY_PORT": "9000", "ORDERS_ADDR": "orders:50051"}
    )
    assert (settings.host, settings.port, settings.orders_addr) == ("0.0.0.0", 9000, "orders:50051")
    with pytest.raises(GatewaySettingsError) as err:
        GatewaySettings.from_env(
            {"GATEWAY_PORT": "http", "ORDERS_ADDR": "nohost", "GATEWAY_RPC_TIMEOUT_S": "0"}
        )
    assert [p.split("=")[0] for p in err.value.problems] == [
        "GATEWAY_PORT",
        "ORDERS_ADDR",
        "GATEWAY_RPC_TIMEOUT_S",
    ]


def test_document_paths_are_the_routes() -> None:
    app = build_app(GatewaySettings())
    served = {
        (route.path, method.lower())
        for route in app.routes
        if isinstance(route, Route)
        for method in route.methods or ()
        if method != "HEAD"
    }
    documented = {
        (path, method) for path, item in openapi.document()["paths"].items() for method in item
    }
    assert served == documented


def test_fund_name_pattern_is_what_the_server_accepts() -> None:
    pattern = re.compile(openapi.FUND_NAME_PATTERN)

    def server_accepts(name: str) -> bool:
        try:
            validate_fund_name(name)
        except InvalidField:
            return False
        return True

    for code_point in [*range(0x3100), 0xFEFF, 0x1F600]:
        char = chr(code_point)
        for name in (char, f"a{char}a", f"a{char}", f"{char}a"):
            assert bool(pattern.fullmatch(name)) == server_accepts(name), repr(name)
