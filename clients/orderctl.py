"""orderctl: place and inspect orders from the command line."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message
from orders.v1 import orders_pb2 as pb
from orders.v1 import orders_pb2_grpc as pb_grpc

#: Exit codes scripts can rely on.
EXIT_OK, EXIT_OTHER, EXIT_USAGE, EXIT_INVALID, EXIT_NOT_FOUND, EXIT_AUTH, EXIT_UNAVAILABLE = (
    0,
    1,
    2,
    3,
    4,
    5,
    6,
)
_EXIT_FOR_CODE = {
    grpc.StatusCode.INVALID_ARGUMENT: EXIT_INVALID,
    grpc.StatusCode.NOT_FOUND: EXIT_NOT_FOUND,
    grpc.StatusCode.UNAUTHENTICATED: EXIT_AUTH,
    grpc.StatusCode.PERMISSION_DENIED: EXIT_AUTH,
    grpc.StatusCode.UNAVAILABLE: EXIT_UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: EXIT_UNAVAILABLE,
}
_TYPES = {"BUY": pb.TRANSACTION_TYPE_BUY, "SELL": pb.TRANSACTION_TYPE_SELL}


def exit_code_for(code: grpc.StatusCode) -> int:
    """The process exit code for a gRPC status code."""
    return _EXIT_FOR_CODE.get(code, EXIT_OTHER)


def to_json(message: Message) -> str:
    """The protobuf JSON form: camelCase keys, zero values included."""
    return json_format.MessageToJson(message, always_print_fields_with_no_presence=True, indent=2)


class Ctl:
    """One invocation: a stub, call options and the output mode."""

    def __init__(
        self, stub: pb_grpc.OrderServiceStub, token: str | None, as_json: bool, timeout: float
    ) -> None:
        self.stub = stub
        self.metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self.as_json = as_json
        self.timeout = timeout

    def show(self, message: Message, text: str) -> None:
        print(to_json(message) if self.as_json else text)

    def place(self, args: argparse.Namespace) -> None:
        request = pb.PlaceOrderRequest(
            fund_name=args.fund, transaction_type=_TYPES[args.type], quantity=args.quantity
        )
        if args.idempotency_key:
            request.idempotency_key = args.idempotency_key
        reply = self.stub.PlaceOrder(request, metadata=self.metadata, timeout=self.timeout)
        self.show(
            reply,
            f"{reply.order_ref_no} {pb.OrderStatus.Name(reply.status)[13:]} "
            f"value={reply.order_value} ({reply.message})",
        )

    def status(self, args: argparse.Namespace) -> None:
        reply = self.stub.GetStatus(
            pb.GetStatusRequest(order_ref_no=args.ref), metadata=self.metadata, timeout=self.timeout
        )
        self.show(reply, describe_order(reply.order))

    def funds(self, args: argparse.Namespace) -> None:
        reply = self.stub.ListFunds(
            pb.ListFundsRequest(), metadata=self.metadata, timeout=self.timeout
        )
        self.show(reply, "\n".join(f"{f.name}\t{f.nav}" for f in reply.funds))

    def history(self, args: argparse.Namespace) -> None:
        reply = self.stub.ListOrderEvents(
            pb.ListOrderEventsRequest(order_ref_no=args.ref),
            metadata=self.metadata,
            timeout=self.timeout,
        )
        lines = [
            f"{e.sequence:>3} {e.recorded_on.ToDatetime().isoformat(timespec='milliseconds')}Z "
            f"{e.event:<16} {pb.OrderStatus.Name(e.order.status)[13:]:<10} {e.progress:>3}% "
            f"{e.detail}"
            for e in reply.events
        ]
        self.show(reply, "\n".join(lines))


def describe_order(order: pb.Order) -> str:
    """One line for people."""
    text = (
        f"{order.order_ref_no} {pb.OrderStatus.Name(order.status)[13:]} "
        f"{pb.TransactionType.Name(order.transaction_type)[17:]} {order.quantity} x "
        f"{order.fund_name} value={order.order_value} attempts={order.attempts}"
    )
    if order.failure_reason:
        text += f" reason={order.failure_reason!r}"
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="orderctl", description=__doc__)
    parser.add_argument(
        "--addr",
        default=os.environ.get("ORDERS_ADDR", "127.0.0.1:50051"),
        help="server host:port (env ORDERS_ADDR)",
    )
    parser.add_argument(
        "--token", default=os.environ.get("ORDERS_TOKEN"), help="bearer token (env ORDERS_TOKEN)"
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per call")
    parser.add_argument("--json", action="store_true", help="print protobuf JSON")
    sub = parser.add_subparsers(dest="command", required=True)
    place = sub.add_parser("place", help="place an order")
    place.add_argument("--fund", required=True)
    place.add_argument("--type", required=True, type=str.upper, choices=sorted(_TYPES))
    place.add_argument("--quantity", required=True, type=int)
    place.add_argument("--idempotency-key")
    for name, text in (("status", "show an order"), ("history", "show an order's audit trail")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("ref")
    sub.add_parser("funds", help="list the fund catalog")
    for cmd in sub.choices.values():
        cmd.add_argument(
            "--json", action="store_true", default=argparse.SUPPRESS, help="print protobuf JSON"
        )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point; exit codes: 0 ok, 2 usage, 3 invalid, 4 not found, 5 auth, 6 unavailable."""
    args = build_parser().parse_args(argv)
    with grpc.insecure_channel(args.addr) as channel:
        stub = pb_grpc.OrderServiceStub(channel)  # type: ignore[no-untyped-call]
        ctl = Ctl(stub, args.token, args.json, args.timeout)
        action: Callable[[argparse.Namespace], None] = getattr(ctl, args.command)
        try:
            action(args)
        except grpc.RpcError as exc:
            code = exc.code()
            print(f"orderctl: {code.name}: {exc.details()}", file=sys.stderr)
            raise SystemExit(exit_code_for(code)) from None
