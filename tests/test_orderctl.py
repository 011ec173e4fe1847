"""orderctl against scripted server responses (grpcio-testing), and as a real process."""

from __future__ import annotations

import io
import json
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator

import grpc
import grpc_testing
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from orders.v1 import orders_pb2 as pb

from clients import orderctl
from tests.harness import BIN, free_port, wait_for

SERVICE = pb.DESCRIPTOR.services_by_name["OrderService"]
REF = "ORD7KQ2M9X4B1ZP0W3E"
OK = grpc.StatusCode.OK


def method(name: str):  # noqa: ANN201 - a protobuf MethodDescriptor
    return SERVICE.methods_by_name[name]


class Scripted:
    """orderctl running in a thread on a grpc_testing channel; the test plays the server."""

    def __init__(self, *argv: str) -> None:
        self.channel = grpc_testing.channel([SERVICE], grpc_testing.strict_real_time())
        self.out, self.err = io.StringIO(), io.StringIO()
        self.sleeps: list[float] = []
        self.code: int | None = None
        self.thread = threading.Thread(target=self._run, args=(list(argv),), daemon=True)
        self.thread.start()

    def _run(self, argv: list[str]) -> None:
        self.code = orderctl.run(
            argv, channel=self.channel, out=self.out, err=self.err, sleep=self.sleeps.append
        )

    def unary(self, name: str):  # noqa: ANN201
        return self.channel.take_unary_unary(method(name))

    def stream(self, name: str):  # noqa: ANN201
        return self.channel.take_unary_stream(method(name))

    def finish(self) -> int:
        self.thread.join(15)
        assert not self.thread.is_alive(), "orderctl did not finish"
        assert self.code is not None
        return self.code

    def lines(self) -> list[str]:
        return self.out.getvalue().splitlines()

    def wait_lines(self, count: int) -> None:
        # grpc_testing drops responses not yet read when an RPC ends with an error, so a
        # scripted break waits for the client to have read (and printed) what came before.
        wait_for(lambda: len(self.lines()) >= count, 10, f"orderctl to print {count} lines")


def order(status: int = pb.ORDER_STATUS_PENDING, **fields: object) -> pb.Order:
    return pb.Order(
        order_ref_no=REF,
        fund_name="Global Equity Fund",
        transaction_type=pb.TRANSACTION_TYPE_BUY,
        quantity=100,
        order_value="1000.00",
        status=status,
        **fields,
    )


def update(sequence: int, event: str, status: int, progress: int) -> pb.WatchOrderResponse:
    when = Timestamp(seconds=1_800_000_000 + sequence)
    return pb.WatchOrderResponse(
        order=order(status), progress=progress, event=event, sequence=sequence, recorded_on=when
    )


UPDATES = [
    update(1, "created", pb.ORDER_STATUS_PENDING, 0),
    update(2, "queued", pb.ORDER_STATUS_PENDING, 10),
    update(3, "claimed", pb.ORDER_STATUS_PROCESSING, 30),
    update(4, "attempt", pb.ORDER_STATUS_PROCESSING, 50),
    update(5, "completed", pb.ORDER_STATUS_COMPLETED, 100),
]


def test_place_sends_the_request_and_token() -> None:
    ctl = Scripted("--token", "tok-123", "place", "--fund", "Global Equity Fund", "--type",
                   "buy", "--quantity", "100", "--idempotency-key", "k1")  # fmt: skip
    metadata, request, rpc = ctl.unary("PlaceOrder")
    assert ("authorization", "Bearer tok-123") in metadata
    assert request == pb.PlaceOrderRequest(
        fund_name="Global Equity Fund",
        transaction_type=pb.TRANSACTION_TYPE_BUY,
        quantity=100,
        idempotency_key="k1",
    )
    reply = pb.PlaceOrderResponse(
        order_ref_no=REF, status=pb.ORDER_STATUS_PENDING, order_value="1000.00", message="queued"
    )
    rpc.terminate(reply, (), OK, "")
    assert ctl.finish() == 0
    assert ctl.lines() == [f"{REF} PENDING value=1000.00 (queued)"]
    assert ctl.err.getvalue() == ""


def test_status_json_is_the_protobuf_json_form() -> None:
    ctl = Scripted("status", REF, "--json")
    _, request, rpc = ctl.unary("GetStatus")
    assert request.order_ref_no == REF
    rpc.terminate(pb.GetStatusResponse(order=order()), (), OK, "")
    assert ctl.finish() == 0
    data = json.loads(ctl.out.getvalue())
    assert data["order"]["orderRefNo"] == REF
    assert data["order"]["attempts"] == 0  # zero values included
    assert data["order"]["failureReason"] == ""


@pytest.mark.parametrize(
    "code,exit_code",
    [
        (grpc.StatusCode.INVALID_ARGUMENT, 3),
        (grpc.StatusCode.NOT_FOUND, 4),
        (grpc.StatusCode.UNAUTHENTICATED, 5),
        (grpc.StatusCode.PERMISSION_DENIED, 5),
        (grpc.StatusCode.UNAVAILABLE, 6),
        (grpc.StatusCode.INTERNAL, 1),
    ],
)
def test_status_errors_are_one_line_and_an_exit_code(code: grpc.StatusCode, exit_code: int) -> None:
    ctl = Scripted("status", REF)
    _, _, rpc = ctl.unary("GetStatus")
    rpc.terminate(None, (), code, "what went wrong")
    assert ctl.finish() == exit_code
    assert ctl.err.getvalue() == f"orderctl: {code.name}: what went wrong\n"
    assert ctl.out.getvalue() == ""


def test_stats_text_json_and_permission_denied() -> None:
    reply = pb.QueueStatsResponse(
        waiting=3, active=1, completed=7, failed=2, waiting_by_priority={"1": 1, "2": 2}
    )
    ctl = Scripted("--token", "admin-tok", "stats")
    metadata, _, rpc = ctl.unary("QueueStats")
    assert ("authorization", "Bearer admin-tok") in metadata
    rpc.terminate(reply, (), OK, "")
    assert ctl.finish() == 0
    assert ctl.lines() == ["waiting=3 (1: 1, 2: 2) active=1 completed=7 failed=2"]

    ctl = Scripted("stats", "--json")
    ctl.unary("QueueStats")[2].terminate(reply, (), OK, "")
    assert ctl.finish() == 0
    data = json.loads(ctl.out.getvalue())
    assert data["waitingByPriority"] == {"1": "1", "2": "2"} and data["failed"] == "2"

    ctl = Scripted("--token", "client-tok", "stats")
    ctl.unary("QueueStats")[2].terminate(
        None, (), grpc.StatusCode.PERMISSION_DENIED, "QueueStats needs the admin token"
    )
    assert ctl.finish() == 5
    assert ctl.err.getvalue() == ("orderctl: PERMISSION_DENIED: QueueStats needs the admin token\n")


def test_watch_resumes_after_a_broken_stream_and_prints_each_update_once() -> None:
    ctl = Scripted("watch", REF)
    _, request, rpc = ctl.stream("WatchOrder")
    assert request == pb.WatchOrderRequest(order_ref_no=REF)
    assert not request.HasField("after_sequence")
    for u in UPDATES[:3]:
        rpc.send_response(u)
    ctl.wait_lines(3)
    rpc.terminate((), grpc.StatusCode.UNAVAILABLE, "connection reset")

    _, request, rpc = ctl.stream("WatchOrder")
    assert request.HasField("after_sequence") and request.after_sequence == 3
    rpc.send_response(UPDATES[2])  # a replayed update is not printed twice
    for u in UPDATES[3:]:
        rpc.send_response(u)
    rpc.terminate((), OK, "")
    assert ctl.finish() == 0
    lines = ctl.lines()
    assert [line.split()[0] for line in lines] == ["1", "2", "3", "4", "5"]
    assert "completed" in lines[-1] and "100%" in lines[-1]
    assert len(ctl.sleeps) == 1  # one pause before reconnecting


def test_watch_json_prints_one_object_per_update() -> None:
    ctl = Scripted("--json", "watch", REF)
    _, _, rpc = ctl.stream("WatchOrder")
    for u in UPDATES:
        rpc.send_response(u)
    rpc.terminate((), OK, "")
    assert ctl.finish() == 0
    objects = [json.loads(line) for line in ctl.lines()]
    assert [o["sequence"] for o in objects] == ["1", "2", "3", "4", "5"]
    assert objects[-1]["order"]["status"] == "ORDER_STATUS_COMPLETED"


def test_watch_stops_at_the_terminal_update() -> None:
    ctl = Scripted("watch", REF)
    _, _, rpc = ctl.stream("WatchOrder")
    cancelled = update(3, "cancelled", pb.ORDER_STATUS_CANCELLED, 100)
    for u in [*UPDATES[:2], cancelled]:
        rpc.send_response(u)
    assert ctl.finish() == 0  # without waiting for the server to end the stream
    assert ctl.lines()[-1].split()[2:4] == ["cancelled", "CANCELLED"]


@pytest.mark.parametrize(
    "code,exit_code",
    [(grpc.StatusCode.NOT_FOUND, 4), (grpc.StatusCode.UNAUTHENTICATED, 5),
     (grpc.StatusCode.UNAVAILABLE, 6)],
)  # fmt: skip
def test_watch_that_fails_at_once_is_not_retried(code: grpc.StatusCode, exit_code: int) -> None:
    ctl = Scripted("watch", REF)
    _, _, rpc = ctl.stream("WatchOrder")
    rpc.terminate((), code, "nope")
    assert ctl.finish() == exit_code
    assert ctl.err.getvalue() == f"orderctl: {code.name}: nope\n"
    assert ctl.sleeps == []


def test_watch_gives_up_after_repeated_failures() -> None:
    ctl = Scripted("watch", REF)
    _, _, rpc = ctl.stream("WatchOrder")
    rpc.send_response(UPDATES[0])
    ctl.wait_lines(1)
    rpc.terminate((), grpc.StatusCode.UNAVAILABLE, "gone")
    for _ in range(orderctl.WATCH_MAX_RETRIES):
        _, request, rpc = ctl.stream("WatchOrder")
        assert request.after_sequence == 1
        rpc.terminate((), grpc.StatusCode.UNAVAILABLE, "still gone")
    assert ctl.finish() == 6
    assert ctl.err.getvalue() == "orderctl: UNAVAILABLE: still gone\n"
    assert len(ctl.sleeps) == orderctl.WATCH_MAX_RETRIES
    assert ctl.sleeps == sorted(ctl.sleeps) and max(ctl.sleeps) <= 5.0


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--addr", "", "funds"], "is not host:port"),
        (["--addr", "no port", "funds"], "is not host:port"),
        (["--tls-ca", "/nonexistent/ca.pem", "funds"], "cannot read /nonexistent/ca.pem"),
        (["--tls-cert", "/tmp/c.pem", "funds"], "--tls-cert and --tls-key go together"),
    ],
)
def test_usage_errors(argv: list[str], message: str) -> None:
    err = io.StringIO()
    assert orderctl.run(argv, err=err) == 2
    assert message in err.getvalue() and len(err.getvalue().splitlines()) == 1


def test_argparse_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["place", "--fund", "F", "--type", "HOLD", "--quantity", "1"],
                 ["place", "--fund", "F", "--type", "BUY", "--quantity", "1e99"], []):  # fmt: skip
        with pytest.raises(SystemExit) as exit_:
            orderctl.run(argv)
        assert exit_.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def _orderctl(*argv: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "orderctl"), *argv], capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


def test_connection_refused_and_bad_host_are_unavailable() -> None:
    for addr in (f"127.0.0.1:{free_port()}", "no-such-host.invalid:50051"):
        out = _orderctl("--addr", addr, "status", REF)
        assert out.returncode == 6, out.stderr
        assert out.stderr.startswith("orderctl: UNAVAILABLE: "), out.stderr
        assert len(out.stderr.splitlines()) == 1 and "Traceback" not in out.stderr


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never answers: every call hangs."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield int(sock.getsockname()[1])


def test_ctrl_c_is_one_line(silent_server: int) -> None:
    proc = subprocess.Popen(
        [str(BIN / "orderctl"), "--addr", f"127.0.0.1:{silent_server}", "watch", REF],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        # Wait until it is connecting (its socket shows up as an accepted connection).
        wait_for(lambda: _connected(silent_server), 20, "orderctl to connect")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 1
    assert err == "orderctl: interrupted\n"


def _connected(port: int) -> bool:
    out = subprocess.run(["ss", "-Htn", "state", "established", f"( sport = :{port} )"],
                         capture_output=True, text=True, timeout=10)  # fmt: skip
    return bool(out.stdout.strip())
