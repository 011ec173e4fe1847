"""orderctl: place, inspect and watch orders from the command line."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TextIO

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message
from orders.v1 import orders_pb2 as pb
from orders.v1 import orders_pb2_grpc as pb_grpc

from clients.channel import UsageError, open_channel
from clients.progress import WatchDisplay, describe_update

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
_TERMINAL = (pb.ORDER_STATUS_COMPLETED, pb.ORDER_STATUS_CANCELLED)
#: A watch that loses its stream resumes after the last update it printed; these codes
#: mean "the connection or the server went away", not "this watch is wrong".
_RESUMABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
#: Reconnections in a row without a new update before watch gives up (about 30 s).
WATCH_MAX_RETRIES = 8


class WatchError(Exception):
    """A watch that cannot go on for a reason that is not a gRPC status: exit 1."""


def exit_code_for(code: grpc.StatusCode) -> int:
    """The process exit code for a gRPC status code."""
    return _EXIT_FOR_CODE.get(code, EXIT_OTHER)


def to_json(message: Message, indent: int | None = 2) -> str:
    """The protobuf JSON form: camelCase keys, zero values included."""
    return json_format.MessageToJson(
        message, always_print_fields_with_no_presence=True, indent=indent
    )


def _status(value: int) -> str:
    return pb.OrderStatus.Name(value).removeprefix("ORDER_STATUS_")


class Ctl:
    """One invocation: a stub, call options and where the output goes."""

    def __init__(
        self,
        stub: pb_grpc.OrderServiceStub,
        token: str | None = None,
        as_json: bool = False,
        timeout: float = 10.0,
        out: TextIO | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.stub = stub
        self.metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self.as_json = as_json
        self.timeout = timeout
        self.out = out if out is not None else sys.stdout
        self.sleep = sleep

    def show(self, message: Message, text: str) -> None:
        print(to_json(message) if self.as_json else text, file=self.out, flush=True)

    def place(self, args: argparse.Namespace) -> None:
        request = pb.PlaceOrderRequest(
            fund_name=args.fund, transaction_type=_TYPES[args.type], quantity=args.quantity
        )
        if args.idempotency_key:
            request.idempotency_key = args.idempotency_key
        reply = self.stub.PlaceOrder(request, metadata=self.metadata, timeout=self.timeout)
        self.show(
            reply,
            f"{reply.order_ref_no} {_status(reply.status)} "
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
        self.show(reply, "\n".join(describe_update(e) for e in reply.events))

    def stats(self, args: argparse.Namespace) -> None:
        reply = self.stub.QueueStats(
            pb.QueueStatsRequest(), metadata=self.metadata, timeout=self.timeout
        )
        by_priority = ", ".join(f"{p}: {n}" for p, n in sorted(reply.waiting_by_priority.items()))
        self.show(
            reply,
            f"waiting={reply.waiting} ({by_priority or 'none'}) active={reply.active} "
            f"completed={reply.completed} failed={reply.failed}",
        )

    def watch(self, args: argparse.Namespace) -> None:
        """Follow an order to its terminal state, each update printed once, resuming after a
        lost stream with after_sequence = the last sequence printed."""
        last: int | None = None
        retries = 0
        with WatchDisplay(args.ref, self.out, as_json=self.as_json) as display:
            while True:
                request = pb.WatchOrderRequest(order_ref_no=args.ref)
                if last is not None:
                    request.after_sequence = last
                try:
                    # No deadline: a watch lasts as long as the order takes.
                    for update in self.stub.WatchOrder(request, metadata=self.metadata):
                        if last is not None and update.sequence <= last:
                            continue  # already printed before the reconnection
                        display.show(update)
                        last, retries = update.sequence, 0
                        if update.order.status in _TERMINAL:
                            return
                except grpc.RpcError as exc:
                    # Before the first update, a failure is the answer (unknown ref, server
                    # down); after it, the stream broke and the watch resumes.
                    if last is None or exc.code() not in _RESUMABLE or retries >= WATCH_MAX_RETRIES:
                        raise
                else:
                    if retries >= WATCH_MAX_RETRIES:
                        raise WatchError("the server keeps ending the stream early")
                retries += 1
                self.sleep(min(0.25 * 2**retries, 5.0))


def describe_order(order: pb.Order) -> str:
    """One line for people."""
    text = (
        f"{order.order_ref_no} {_status(order.status)} "
        f"{pb.TransactionType.Name(order.transaction_type).removeprefix('TRANSACTION_TYPE_')} "
        f"{order.quantity} x {order.fund_name} value={order.order_value} "
        f"attempts={order.attempts}"
    )
    if order.failure_reason:
        text += f" reason={order.failure_reason!r}"
    return text


def _quantity(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {raw!r}") from None
    if not -(2**63) <= value < 2**63:
        raise argparse.ArgumentTypeError(f"out of range: {raw}")
    return value


def build_parser(environ: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    """The command line; defaults come from ORDERS_* environment variables."""
    env = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(prog="orderctl", description=__doc__)
    parser.add_argument(
        "--addr",
        default=env.get("ORDERS_ADDR", "127.0.0.1:50051"),
        help="server host:port (env ORDERS_ADDR)",
    )
    parser.add_argument(
        "--token", default=env.get("ORDERS_TOKEN"), help="bearer token (env ORDERS_TOKEN)"
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per call (not watch)")
    parser.add_argument("--json", action="store_true", help="print protobuf JSON")
    tls = parser.add_argument_group("TLS (any of these turns TLS on)")
    tls.add_argument(
        "--tls",
        action="store_true",
        default=env.get("ORDERS_TLS", "") not in ("", "0"),
        help="TLS with the system's roots (env ORDERS_TLS=1)",
    )
    tls.add_argument(
        "--tls-ca", default=env.get("ORDERS_TLS_CA"), help="CA file to trust (env ORDERS_TLS_CA)"
    )
    tls.add_argument(
        "--tls-cert",
        default=env.get("ORDERS_TLS_CERT"),
        help="client certificate for mutual TLS (env ORDERS_TLS_CERT)",
    )
    tls.add_argument(
        "--tls-key",
        default=env.get("ORDERS_TLS_KEY"),
        help="client private key for mutual TLS (env ORDERS_TLS_KEY)",
    )
    tls.add_argument(
        "--tls-server-name", help="name to check the server certificate against, if not --addr's"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    place = sub.add_parser("place", help="place an order")
    place.add_argument("--fund", required=True)
    place.add_argument("--type", required=True, type=str.upper, choices=sorted(_TYPES))
    place.add_argument("--quantity", required=True, type=_quantity)
    place.add_argument("--idempotency-key")
    for name, text in (
        ("status", "show an order"),
        ("history", "show an order's audit trail"),
        ("watch", "follow an order live until it is COMPLETED or CANCELLED"),
    ):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("ref")
    sub.add_parser("stats", help="queue and outcome counters (admin token)")
    sub.add_parser("funds", help="list the fund catalog")
    for cmd in sub.choices.values():
        cmd.add_argument(
            "--json", action="store_true", default=argparse.SUPPRESS, help="print protobuf JSON"
        )
    return parser


def run(
    argv: Sequence[str] | None = None,
    channel: grpc.Channel | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Run one command and return its exit code; errors are one line on `err`.

    `channel` replaces the one the options describe (tests hand in a grpc_testing channel).
    """
    err = err if err is not None else sys.stderr
    args = build_parser().parse_args(argv)  # usage errors exit 2 here
    try:
        own = channel is None
        channel = open_channel(args) if channel is None else channel
        try:
            stub = pb_grpc.OrderServiceStub(channel)  # type: ignore[no-untyped-call]
            ctl = Ctl(stub, args.token, args.json, args.timeout, out, sleep)
            action: Callable[[argparse.Namespace], None] = getattr(ctl, args.command)
            action(args)
        finally:
            if own:
                channel.close()
    except grpc.RpcError as exc:
        code = exc.code()
        print(f"orderctl: {code.name}: {exc.details()}", file=err)
        return exit_code_for(code)
    except UsageError as exc:
        print(f"orderctl: {exc}", file=err)
        return EXIT_USAGE
    except WatchError as exc:
        print(f"orderctl: {exc}", file=err)
        return EXIT_OTHER
    except KeyboardInterrupt:
        print("orderctl: interrupted", file=err)
        return EXIT_OTHER
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point; exit codes: 0 ok, 2 usage, 3 invalid, 4 not found, 5 auth, 6 unavailable."""
    try:
        code = run(argv)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`orderctl watch ... | head -1`): stop quietly.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = EXIT_OTHER
    except KeyboardInterrupt:  # during argument parsing or channel set-up
        print("orderctl: interrupted", file=sys.stderr)
        code = EXIT_OTHER
    raise SystemExit(code)
