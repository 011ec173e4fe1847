"""orders-fundhouse over real sockets: routes, keep-alive, pipelining, delays, shutdown."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from tests.harness import BIN, free_port, wait_for

ORDER = {
    "orderRefNo": "ORDX",
    "fundName": "F",
    "transactionType": "BUY",
    "quantity": 1,
    "orderValue": "1.00",
}


@dataclass
class Fundhouse:
    """One orders-fundhouse process and the port it listens on."""

    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    def connect(self, timeout: float = 10) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def socket(self, timeout: float = 10) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)

    def call(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        conn = self.connect()
        try:
            return call(conn, method, path, body, headers)
        finally:
            conn.close()

    def accepts(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"fundhouse exited:\n{self.log.read_text(errors='replace')}")
        with self.socket(timeout=1):
            return True


def call(
    conn: http.client.HTTPConnection,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """One request on `conn`; the status and the decoded JSON answer."""
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    conn.request(method, path, data, headers or {})
    response = conn.getresponse()
    assert response.getheader("Content-Type") == "application/json"
    return response.status, json.loads(response.read())


def start(workdir: Path, *args: str) -> Fundhouse:
    port = free_port()
    log = workdir / f"fundhouse-{port}.log"
    proc = subprocess.Popen(
        [str(BIN / "orders-fundhouse"), "--port", str(port), *args],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    fundhouse = Fundhouse(proc, port, log)
    try:
        wait_for(fundhouse.accepts, 15, f"orders-fundhouse to accept connections on {port}")
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return fundhouse


def stop(fundhouse: Fundhouse) -> None:
    if fundhouse.proc.poll() is None:
        fundhouse.proc.kill()
        fundhouse.proc.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fundhouse]:
    fundhouse = start(tmp_path_factory.mktemp("fundhouse"))
    try:
        yield fundhouse
    finally:
        stop(fundhouse)


@pytest.fixture
def fundhouse(server: Fundhouse) -> Iterator[Fundhouse]:
    """The module's process, reset before and after each test."""
    assert server.call("POST", "/_admin/reset") == (200, {"ok": True})
    yield server
    assert server.call("POST", "/_admin/reset") == (200, {"ok": True})


def read_response(reader: BinaryIO) -> tuple[int, dict[str, str], Any]:
    """One answer read off a raw socket's file (for pipelining and Connection: close)."""
    status_line = reader.readline()
    assert status_line.startswith(b"HTTP/1.1 "), status_line
    headers: dict[str, str] = {}
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = reader.read(int(headers["content-length"]))
    return int(status_line.split()[1]), headers, json.loads(body)


def raw_order(key: str) -> bytes:
    body = json.dumps(ORDER).encode()
    return (
        b"POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Idempotency-Key: %s\r\nContent-Length: %d\r\n\r\n%s" % (key.encode(), len(body), body)
    )


def test_keep_alive_serves_several_requests_on_one_connection(fundhouse: Fundhouse) -> None:
    conn = fundhouse.connect()
    try:
        assert call(conn, "GET", "/healthz") == (200, {"ok": True})
        sock = conn.sock
        for i in range(5):
            status, body = call(conn, "POST", "/orders", ORDER, {"Idempotency-Key": f"K{i}"})
            assert status == 201 and body["orderRefNo"] == f"K{i}"
            assert conn.sock is sock, "the connection was not kept alive"
    finally:
        conn.close()
    assert fundhouse.call("GET", "/_admin/stats")[1]["requests"] == 5


def test_same_idempotency_key_replays_the_first_placement(fundhouse: Fundhouse) -> None:
    first = fundhouse.call("POST", "/orders", ORDER, {"Idempotency-Key": "R1"})
    again = fundhouse.call("POST", "/orders", ORDER, {"Idempotency-Key": "R1"})
    assert first[0] == 201 and again[0] == 200
    assert first[1]["confirmationId"].startswith("FH")
    assert again[1] == first[1]
    stats = fundhouse.call("GET", "/_admin/stats")[1]
    assert stats["replays"] == 1 and stats["placements"] == {"R1": 1}
    assert stats["calls"] == {"R1": 2}


@pytest.mark.parametrize(
    ("body", "headers", "error"),
    [
        (b"{not json", {"Idempotency-Key": "B1"}, "body is not JSON"),
        (ORDER, {}, "Idempotency-Key header is required"),
        (ORDER, {"Idempotency-Key": ""}, "Idempotency-Key header is required"),
        (
            {k: v for k, v in ORDER.items() if k != "fundName"},
            {"Idempotency-Key": "B2"},
            "body needs orderRefNo, fundName, transactionType, quantity, orderValue",
        ),
        (
            None,
            {"Idempotency-Key": "B3"},
            "body needs orderRefNo, fundName, transactionType, quantity, orderValue",
        ),
        (
            {**ORDER, "quantity": "1"},
            {"Idempotency-Key": "B4"},
            "quantity must be a number and orderValue a string",
        ),
        (
            {**ORDER, "orderValue": 1.0},
            {"Idempotency-Key": "B5"},
            "quantity must be a number and orderValue a string",
        ),
    ],
)
def test_bad_orders_are_answered_400(
    fundhouse: Fundhouse, body: Any, headers: dict[str, str], error: str
) -> None:
    assert fundhouse.call("POST", "/orders", body, headers) == (400, {"error": error})
    assert fundhouse.call("GET", "/_admin/stats")[1]["requests"] == 0


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/nowhere"), ("POST", "/nowhere"), ("PUT", "/orders"), ("GET", "/healthz?x=1")],
)
def test_unknown_routes_are_answered_404(fundhouse: Fundhouse, method: str, path: str) -> None:
    assert fundhouse.call(method, path, b"") == (404, {"error": "not found"})


def test_other_methods_are_answered_501(fundhouse: Fundhouse) -> None:
    assert fundhouse.call("DELETE", "/orders") == (501, {"error": "unsupported method DELETE"})
    conn = fundhouse.connect()
    try:
        # An answer to HEAD has no body: the next answer on the connection must not slip.
        conn.request("HEAD", "/healthz")
        response = conn.getresponse()
        assert (response.status, response.read()) == (501, b"")
        assert call(conn, "GET", "/healthz") == (200, {"ok": True})
    finally:
        conn.close()


def test_admin_routes(fundhouse: Fundhouse) -> None:
    assert fundhouse.call("GET", "/healthz") == (200, {"ok": True})
    assert fundhouse.call("PUT", "/_admin/behaviour", {"always_status": 422}) == (
        200,
        {"ok": True},
    )
    status, body = fundhouse.call("POST", "/orders", ORDER, {"Idempotency-Key": "A1"})
    assert (status, body) == (422, {"error": "simulated 422"})
    stats = fundhouse.call("GET", "/_admin/stats")[1]
    assert stats["behaviour"]["always_status"] == 422
    assert stats["arrivals"] == [{"key": "A1", "transactionType": "BUY"}]
    assert fundhouse.call("PUT", "/_admin/behaviour", {"nope": 1}) == (
        400,
        {"error": "unknown behaviour field 'nope'"},
    )
    assert fundhouse.call("PUT", "/_admin/behaviour", b"[1]")[0] == 400
    assert fundhouse.call("PUT", "/_admin/behaviour", b"{")[0] == 400
    assert fundhouse.call("POST", "/_admin/reset") == (200, {"ok": True})
    stats = fundhouse.call("GET", "/_admin/stats")[1]
    assert stats["requests"] == 0 and stats["calls"] == {}
    assert stats["behaviour"]["always_status"] is None


def test_a_chunked_body_is_read_whole(fundhouse: Fundhouse) -> None:
    data = json.dumps(ORDER).encode()
    chunks = [data[:7], data[7:30], data[30:]]
    conn = fundhouse.connect()
    try:
        # An iterable body without Content-Length goes out chunked.
        conn.request("POST", "/orders", iter(chunks), {"Idempotency-Key": "C1"})
        response = conn.getresponse()
        assert response.status == 201
        assert json.loads(response.read())["orderRefNo"] == "C1"
        # The connection is still in step after the chunked body.
        assert call(conn, "GET", "/healthz") == (200, {"ok": True})
    finally:
        conn.close()


def test_pipelined_requests_are_answered_in_order(fundhouse: Fundhouse) -> None:
    # The first is held 300 ms; the health check behind it must not overtake it.
    fundhouse.call("PUT", "/_admin/behaviour", {"latency_ms": 300})
    with fundhouse.socket() as sock, sock.makefile("rb") as reader:
        sock.sendall(
            raw_order("P1") + b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" + raw_order("P2")
        )
        first, second, third = (read_response(reader) for _ in range(3))
    assert (first[0], first[2]["orderRefNo"]) == (201, "P1")
    assert (second[0], second[2]) == (200, {"ok": True})
    assert (third[0], third[2]["orderRefNo"]) == (201, "P2")


def test_connection_close_and_http_1_0_close_after_the_answer(fundhouse: Fundhouse) -> None:
    for request in (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET /healthz HTTP/1.0\r\n\r\n",
    ):
        with fundhouse.socket() as sock, sock.makefile("rb") as reader:
            sock.sendall(request)
            status, headers, body = read_response(reader)
            assert (status, body) == (200, {"ok": True})
            assert headers["connection"] == "close"
            assert reader.read() == b"", "the connection stayed open"


def test_garbage_is_answered_400_and_closed(fundhouse: Fundhouse) -> None:
    with fundhouse.socket() as sock, sock.makefile("rb") as reader:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        status, _, body = read_response(reader)
        assert (status, body) == (400, {"error": "bad request"})
        assert reader.read() == b""


def test_a_delayed_answer_does_not_block_other_connections(fundhouse: Fundhouse) -> None:
    fundhouse.call("PUT", "/_admin/behaviour", {"hang_ms": 1500})
    answered = threading.Event()
    result: list[tuple[int, Any]] = []

    def slow() -> None:
        result.append(fundhouse.call("POST", "/orders", ORDER, {"Idempotency-Key": "H1"}))
        answered.set()

    started = time.monotonic()
    thread = threading.Thread(target=slow, daemon=True)
    thread.start()
    other = fundhouse.connect()
    try:
        # The slow order has arrived (and waits) when the stats count it.
        wait_for(
            lambda: call(other, "GET", "/_admin/stats")[1]["requests"] == 1,
            5,
            "the hanging order to arrive",
        )
        assert call(other, "GET", "/healthz") == (200, {"ok": True})
        healthz_at = time.monotonic() - started
    finally:
        other.close()
    assert not answered.is_set(), "the hanging order was answered early"
    assert healthz_at < 1.2, f"/healthz took {healthz_at:.2f}s behind a hanging order"
    assert answered.wait(10), "the hanging order was never answered"
    thread.join(5)
    assert result[0][0] == 201
    assert time.monotonic() - started >= 1.5


def test_a_client_giving_up_during_a_delay_does_not_break_the_server(
    fundhouse: Fundhouse,
) -> None:
    fundhouse.call("PUT", "/_admin/behaviour", {"hang_ms": 300})
    with fundhouse.socket() as sock:
        sock.sendall(raw_order("G1"))
        wait_for(
            lambda: fundhouse.call("GET", "/_admin/stats")[1]["requests"] == 1,
            5,
            "the abandoned order to arrive",
        )
    # This one is held as long, so its answer comes after the abandoned one was due.
    status, body = fundhouse.call("POST", "/orders", ORDER, {"Idempotency-Key": "G2"})
    assert (status, body["orderRefNo"]) == (201, "G2")
    assert fundhouse.call("GET", "/healthz") == (200, {"ok": True})
    assert fundhouse.proc.poll() is None


def test_sigterm_closes_connections_and_exits_0(tmp_path: Path) -> None:
    fundhouse = start(tmp_path)
    try:
        idle = fundhouse.connect()
        assert call(idle, "GET", "/healthz") == (200, {"ok": True})
        assert fundhouse.call("PUT", "/_admin/behaviour", {"hang_ms": 60_000})[0] == 200
        with fundhouse.socket() as waiting:
            waiting.sendall(raw_order("S1"))
            wait_for(
                lambda: fundhouse.call("GET", "/_admin/stats")[1]["requests"] == 1,
                5,
                "the hanging order to arrive",
            )
            started = time.monotonic()
            fundhouse.proc.send_signal(signal.SIGTERM)
            assert fundhouse.proc.wait(5) == 0
            assert time.monotonic() - started < 3
            assert waiting.recv(1) == b"", "an open connection was not closed"
        assert idle.sock is not None and idle.sock.recv(1) == b""
        idle.close()
        assert "fundhouse listening" in fundhouse.log.read_text()
    finally:
        stop(fundhouse)


def test_a_port_in_use_fails_loudly(server: Fundhouse) -> None:
    run = subprocess.run(
        [str(BIN / "orders-fundhouse"), "--port", str(server.port)],
        capture_output=True,
        text=True,
        timeout=15,
    )
    assert run.returncode != 0
    assert "cannot listen" in run.stderr


def test_failure_rate_is_validated() -> None:
    run = subprocess.run(
        [str(BIN / "orders-fundhouse"), "--failure-rate", "2"],
        capture_output=True,
        text=True,
        timeout=15,
    )
    assert run.returncode == 2
    assert "--failure-rate must be from 0 to 1" in run.stderr
