"""The simulator's routes: one parsed request in, one answer (status, JSON body, delay) out."""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from fundhouse.state import Fundhouse

REQUIRED = ("orderRefNo", "fundName", "transactionType", "quantity", "orderValue")


class Answer(NamedTuple):
    """What to send back, and how long to hold it first (simulated latency and hangs)."""

    status: int
    body: dict[str, Any]
    delay_s: float = 0.0


OK = Answer(200, {"ok": True})
NOT_FOUND = Answer(404, {"error": "not found"})


def _read_json(raw: bytes) -> Any:
    # An absent body reads as null, as it always has: the field checks then answer 400.
    return json.loads(raw or b"null")


def place_order(state: Fundhouse, key: str | None, raw: bytes) -> Answer:
    """POST /orders: validate, then let the state decide (idempotent on Idempotency-Key)."""
    try:
        body = _read_json(raw)
    except ValueError:
        return Answer(400, {"error": "body is not JSON"})
    if not key:
        return Answer(400, {"error": "Idempotency-Key header is required"})
    if not isinstance(body, dict) or any(k not in body for k in REQUIRED):
        return Answer(400, {"error": f"body needs {', '.join(REQUIRED)}"})
    if not isinstance(body["quantity"], int) or not isinstance(body["orderValue"], str):
        return Answer(400, {"error": "quantity must be a number and orderValue a string"})
    decision = state.decide(key, body)
    return Answer(decision.status, decision.body, decision.delay_s)


def set_behaviour(state: Fundhouse, raw: bytes) -> Answer:
    """PUT /_admin/behaviour: change the knobs named in the JSON object."""
    try:
        data = _read_json(raw)
        with state.lock:
            state.behaviour.update(data)
    except (ValueError, AttributeError) as exc:
        return Answer(400, {"error": str(exc)})
    return OK


def route(state: Fundhouse, method: bytes, path: bytes, key: str | None, raw: bytes) -> Answer:
    """Answer one request; `key` is the Idempotency-Key header, None when absent."""
    if method == b"POST":
        if path == b"/orders":
            return place_order(state, key, raw)
        if path == b"/_admin/reset":
            state.reset()
            return OK
    elif method == b"GET":
        if path == b"/_admin/stats":
            return Answer(200, state.stats())
        if path == b"/healthz":
            return OK
    elif method == b"PUT":
        if path == b"/_admin/behaviour":
            return set_behaviour(state, raw)
    else:
        # As http.server answered any other method (with an HTML page then).
        return Answer(501, {"error": f"unsupported method {method.decode('latin-1')}"})
    return NOT_FOUND
