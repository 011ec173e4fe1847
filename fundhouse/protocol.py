"""HTTP/1.1 on asyncio: httptools parses, this glue answers in request order with keep-alive."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections import deque
from email.utils import formatdate
from http import HTTPStatus

import httptools

from fundhouse.routes import Answer, route
from fundhouse.state import Fundhouse

logger = logging.getLogger(__name__)

_KEY_HEADER = b"idempotency-key"
_BAD_REQUEST = Answer(400, {"error": "bad request"})
_FAILED = Answer(500, {"error": "internal error"})
_status_heads: dict[int, bytes] = {}


def _status_head(status: int) -> bytes:
    head = _status_heads.get(status)
    if head is None:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = ""  # behaviour knobs may ask for any code, e.g. 599
        head = b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n" % (status, phrase.encode())
        _status_heads[status] = head
    return head


class _Clock:
    """The Date header, formatted once a second rather than once an answer."""

    second = 0
    line = b""


def _date_line() -> bytes:
    now = int(time.time())
    if now != _Clock.second:
        _Clock.second = now
        _Clock.line = b"Date: %s\r\n" % formatdate(now, usegmt=True).encode()
    return _Clock.line


def encode(answer: Answer, close: bool, head_only: bool) -> bytes:
    """Status line, headers and JSON body as one buffer, so one write sends all of it."""
    data = b"" if head_only else json.dumps(answer.body).encode()
    return b"%s%sContent-Length: %d\r\n%s\r\n%s" % (
        _status_head(answer.status),
        _date_line(),
        len(data),
        b"Connection: close\r\n" if close else b"",
        data,
    )


class _Slot:
    """One answer waiting behind an earlier one, or for its own delay to pass."""

    __slots__ = ("data", "ready", "timer")

    def __init__(self, data: bytes, ready: bool) -> None:
        self.data = data
        self.ready = ready
        self.timer: asyncio.TimerHandle | None = None


class HttpProtocol(asyncio.Protocol):
    """One client connection: requests are answered in order, pipelined or not."""

    def __init__(self, state: Fundhouse, connections: set[HttpProtocol]) -> None:
        self._state = state
        self._connections = connections
        self._loop = asyncio.get_running_loop()
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._pending: deque[_Slot] = deque()
        # Set once the last answer is known (Connection: close, HTTP/1.0, EOF, bad input):
        # nothing more is read, and the connection closes once that answer is written.
        self._closing = False
        self._url = b""
        self._body: list[bytes] = []
        self._key: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        # asyncio's own transports set it already; with Nagle on, whatever the loop, every
        # keep-alive answer stalled 40 ms waiting for the peer's delayed ACK.
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._transport = transport
        self._connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        # A client that gave up during a delay: its timers go, nothing is written.
        self._transport = None
        self._connections.discard(self)
        for slot in self._pending:
            if slot.timer is not None:
                slot.timer.cancel()
        self._pending.clear()

    def close(self) -> None:
        """Close the connection (at shutdown); answers still delayed are dropped."""
        if self._transport is not None:
            self._transport.close()

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # What follows the request is not HTTP: answer what was asked, then close.
            self._close_when_done()
        except httptools.HttpParserError:
            if not self._closing:
                self._closing = True
                self._respond(encode(_BAD_REQUEST, True, False), 0.0)

    def eof_received(self) -> bool:
        # A client may half-close after its last request: still send what it asked for.
        self._close_when_done()
        return True

    def pause_writing(self) -> None:
        # A client that does not read its answers gets no more of them computed.
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        if self._transport is not None:
            self._transport.resume_reading()

    # httptools callbacks, called from feed_data. Only those defined here are registered.

    def on_message_begin(self) -> None:
        self._url = b""
        self._body = []
        self._key = None

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        # The one header that matters; the length test spares a lower() of every other one.
        if len(name) == 15 and self._key is None and name.lower() == _KEY_HEADER:
            self._key = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._closing:
            return
        parser = self._parser
        close = parser.get_http_version() != "1.1" or not parser.should_keep_alive()
        method = parser.get_method()
        head_only = method == b"HEAD"
        raw = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        try:
            answer = route(self._state, method, self._url, self._key, raw)
            data = encode(answer, close, head_only)
        except Exception:
            # Behaviour knobs are not type-checked: a bad one fails here, not the server.
            logger.exception("answer failed", extra={"path": self._url.decode("latin-1")})
            answer = _FAILED
            data = encode(answer, close, head_only)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s %s %d", method.decode(), self._url.decode("latin-1"), answer.status)
        self._closing = close
        self._respond(data, answer.delay_s)

    def _respond(self, data: bytes, delay_s: float) -> None:
        if delay_s > 0:
            # A timer, never a sleep: other connections go on while this one waits.
            slot = _Slot(data, ready=False)
            slot.timer = self._loop.call_later(delay_s, self._ready, slot)
            self._pending.append(slot)
        elif self._pending:
            self._pending.append(_Slot(data, ready=True))  # after the earlier answers
        else:
            self._send(data)

    def _ready(self, slot: _Slot) -> None:
        slot.ready = True
        slot.timer = None
        pending = self._pending
        while pending and pending[0].ready:
            self._send(pending.popleft().data)

    def _send(self, data: bytes) -> None:
        transport = self._transport
        if transport is None:
            return
        transport.write(data)
        if self._closing and not self._pending:
            transport.close()

    def _close_when_done(self) -> None:
        self._closing = True
        if not self._pending and self._transport is not None:
            self._transport.close()
