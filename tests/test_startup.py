"""Start-up: the catalog from FUNDS_FILE, and schema creation by processes starting together."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import grpc
import pytest
from orders.v1 import orders_pb2 as pb

from tests.harness import BIN, wait_for


def test_funds_file_is_the_catalog(make_stack, sqlite_url: str, tmp_path: Path) -> None:
    funds = tmp_path / "funds.json"
    funds.write_text(
        json.dumps([{"name": "Alpha Fund", "nav": "12.345"}, {"name": "Beta Fund", "nav": 7}])
    )
    stack = make_stack(sqlite_url, FUNDS_FILE=str(funds))
    stack.start_server()
    listed = stack.stub.ListFunds(pb.ListFundsRequest(), timeout=5).funds
    assert [(f.name, f.nav) for f in listed] == [("Alpha Fund", "12.345"), ("Beta Fund", "7")]
    reply = stack.stub.PlaceOrder(
        pb.PlaceOrderRequest(
            fund_name="Alpha Fund", transaction_type=pb.TRANSACTION_TYPE_BUY, quantity=3
        ),
        timeout=5,
    )
    assert reply.order_value == "37.04"  # 37.035 rounded half-up
    with pytest.raises(grpc.RpcError) as err:
        stack.stub.PlaceOrder(
            pb.PlaceOrderRequest(
                fund_name="Global Equity Fund", transaction_type=pb.TRANSACTION_TYPE_BUY, quantity=1
            ),
            timeout=5,
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND  # the demo catalog is replaced


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        "[]",
        '[{"name": "X", "nav": "-1"}]',
        '[{"nav": "1"}]',
        '[{"name": "X", "nav": "abc"}]',
    ],
)
def test_bad_funds_file_stops_the_server(
    make_stack, sqlite_url: str, tmp_path: Path, content: str
) -> None:
    funds = tmp_path / "funds.json"
    funds.write_text(content)
    stack = make_stack(sqlite_url, FUNDS_FILE=str(funds))
    out = subprocess.run(
        [str(BIN / "orders-server")],
        env=stack.env(PORT="0"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2, out.stderr
    assert "FUNDS_FILE" in out.stderr and "Traceback" not in out.stderr


def test_server_and_workers_create_the_schema_together(make_stack, database_url: str) -> None:
    stack = make_stack(database_url)
    stack.start_fundhouse()
    procs = [stack._spawn("worker", [str(BIN / "orders-worker")], stack.env()) for _ in range(3)]
    stack.start_server()
    for proc in procs:
        wait_for(
            lambda p=proc: "worker started" in p.log_text() or not p.alive(),
            30,
            "each worker to start",
        )
        assert proc.alive(), proc.log_text()
    reply = stack.stub.PlaceOrder(
        pb.PlaceOrderRequest(
            fund_name="Global Equity Fund", transaction_type=pb.TRANSACTION_TYPE_SELL, quantity=2
        ),
        timeout=5,
    )
    wait_for(
        lambda: (
            stack.stub.GetStatus(
                pb.GetStatusRequest(order_ref_no=reply.order_ref_no), timeout=5
            ).order.status
            == pb.ORDER_STATUS_COMPLETED
        ),
        30,
        "the order to complete",
    )
