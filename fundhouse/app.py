"""HTTP front of the simulator: POST /orders, plus /_admin/* for tests and operators."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any

from core.logs import setup_logging
from fundhouse.state import Behaviour, Fundhouse

logger = logging.getLogger(__name__)

REQUIRED = ("orderRefNo", "fundName", "transactionType", "quantity", "orderValue")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in one segment, and nothing waits for the peer's delayed ACK
    # (with Nagle on, every keep-alive answer stalled 40 ms).
    disable_nagle_algorithm = True
    wbufsize = 64 * 1024
    server: FundhouseServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        logger.debug(format, *args)

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _read_json(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        return json.loads(raw or b"null")

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        if self.path == "/_admin/reset":
            self.server.state.reset()
            self._send(200, {"ok": True})
            return
        if self.path != "/orders":
            self._send(404, {"error": "not found"})
            return
        try:
            body = self._read_json()
        except ValueError:
            self._send(400, {"error": "body is not JSON"})
            return
        key = self.headers.get("Idempotency-Key", "")
        if not key:
            self._send(400, {"error": "Idempotency-Key header is required"})
            return
        if not isinstance(body, dict) or any(k not in body for k in REQUIRED):
            self._send(400, {"error": f"body needs {', '.join(REQUIRED)}"})
            return
        if not isinstance(body["quantity"], int) or not isinstance(body["orderValue"], str):
            self._send(400, {"error": "quantity must be a number and orderValue a string"})
            return
        decision = self.server.state.decide(key, body)
        if decision.delay_s:
            time.sleep(decision.delay_s)
        self._send(decision.status, decision.body)

    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/_admin/stats":
            self._send(200, self.server.state.stats())
        elif self.path == "/healthz":
            self._send(200, {"ok": True})
        else:
            self._send(404, {"error": "not found"})

    def do_PUT(self) -> None:  # noqa: N802
        if self.path != "/_admin/behaviour":
            self._send(404, {"error": "not found"})
            return
        try:
            data = self._read_json()
            with self.server.state.lock:
                self.server.state.behaviour.update(data)
        except (ValueError, AttributeError) as exc:
            self._send(400, {"error": str(exc)})
            return
        self._send(200, {"ok": True})


class FundhouseServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], state: Fundhouse) -> None:
        super().__init__(address, Handler)
        self.state = state


def main(argv: list[str] | None = None) -> None:
    """Entry point of orders-fundhouse."""
    parser = argparse.ArgumentParser(description="Simulated third-party order API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument(
        "--failure-rate", type=float, default=0.0, help="share of calls answered 503, 0..1"
    )
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    if not 0 <= args.failure_rate <= 1:
        parser.error("--failure-rate must be from 0 to 1")
    setup_logging("text", args.log_level.upper())
    state = Fundhouse(
        Behaviour(latency_ms=args.latency_ms, failure_rate=args.failure_rate), seed=args.seed
    )
    server = FundhouseServer((args.host, args.port), state)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    logger.info("fundhouse listening", extra={"host": args.host, "port": server.server_port})
    sys.stderr.flush()
    server.serve_forever()
    server.server_close()
