"""The OpenAPI 3 document served at /openapi.json, written to match what the routes do.

Request schemas describe what the gRPC server accepts (a value they allow is never refused
with 400), so a schema-driven fuzzer can tell a bad request from a bad server; the tests
fuzz the running gateway from this document.
"""

from __future__ import annotations

from typing import Any

# Characters the server refuses in a fund name (control characters, and white space at
# either end, as Python's str.strip() sees it). \uHHHH escapes work in ECMA, Python and Rust.
_CONTROL = r"\x00-\x1f\x7f-\x9f\u2028\u2029"
_SPACE = r"\x20\x85\xa0\u1680\u2000-\u200a\u202f\u205f\u3000"
FUND_NAME_PATTERN = f"^[^{_CONTROL}{_SPACE}]([^{_CONTROL}]*[^{_CONTROL}{_SPACE}])?$"
ORDER_REF_PATTERN = "^ORD[A-Z0-9]{10,61}$"
MILLIS_UTC_PATTERN = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$"

ORDER_STATUSES = ["PENDING", "PROCESSING", "COMPLETED", "CANCELLED"]
TRANSACTION_TYPES = ["BUY", "SELL"]

ERRORS = {
    400: "Malformed request: bad JSON, wrong types, missing or invalid fields (INVALID_ARGUMENT)",
    401: "Missing, malformed or unknown bearer token (UNAUTHENTICATED)",
    403: "The token may not call this (PERMISSION_DENIED)",
    404: "Unknown order or fund, or no such route (NOT_FOUND)",
    409: "Idempotency-Key already used with a different request (ALREADY_EXISTS)",
    429: "The queue is full; retry later (RESOURCE_EXHAUSTED)",
    500: "A fault in the server or the gateway",
    503: "The order service, its database or its queue cannot be reached, or did not answer "
    "in time (UNAVAILABLE, DEADLINE_EXCEEDED)",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _success(data: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["success", "data"],
        "properties": {"success": {"type": "boolean", "enum": [True]}, "data": _ref(data)},
    }


def _errors(*statuses: int) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status in statuses:
        response: dict[str, Any] = {"description": ERRORS[status], "content": _json(_ref("Error"))}
        if status == 401:
            response["headers"] = {
                "WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer"}
            }
        responses[str(status)] = response
    return responses


_REF_PARAM = {
    "name": "orderRefNo",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": ORDER_REF_PATTERN},
    "example": "ORD7KQ2M9X4B1ZP0W3E",
}

_ORDER_FIELDS: dict[str, Any] = {
    "orderRefNo": {"type": "string"},
    "status": {"type": "string", "enum": ORDER_STATUSES},
    "orderValue": {"type": "number", "description": "NAV x quantity, exact to the cent"},
    "transactionType": {"type": "string", "enum": TRANSACTION_TYPES},
    "createdOn": {"type": "string", "format": "date-time", "pattern": MILLIS_UTC_PATTERN},
    "fundName": {"type": "string"},
    "quantity": {"type": "integer"},
    "updatedOn": {"type": "string", "format": "date-time", "pattern": MILLIS_UTC_PATTERN},
    "attempts": {"type": "integer", "description": "Calls made to the third-party order API"},
    "failureReason": {"type": "string", "description": "Present when CANCELLED"},
    "confirmationId": {"type": "string", "description": "Present when COMPLETED"},
}
_ORDER_REQUIRED = ["orderRefNo", "status", "orderValue", "transactionType", "createdOn"]

SCHEMAS: dict[str, Any] = {
    "PlaceOrderRequest": {
        "type": "object",
        "description": "Unknown extra fields are ignored.",
        "required": ["fundName", "transactionType", "quantity"],
        "properties": {
            "fundName": {
                "type": "string",
                "minLength": 1,
                "maxLength": 200,
                "pattern": FUND_NAME_PATTERN,
                "example": "Global Equity Fund",
            },
            "transactionType": {"type": "string", "enum": TRANSACTION_TYPES},
            "quantity": {"type": "integer", "minimum": 1, "maximum": 10_000_000, "example": 100},
        },
    },
    "PlacedOrder": {
        "type": "object",
        "required": ["orderRefNo", "status", "orderValue", "message"],
        "properties": {
            "orderRefNo": {"type": "string", "pattern": ORDER_REF_PATTERN},
            "status": {"type": "string", "enum": ["Submitted"]},
            "orderValue": {"type": "number"},
            "message": {"type": "string"},
        },
    },
    "OrderStatus": {"type": "object", "required": _ORDER_REQUIRED, "properties": _ORDER_FIELDS},
    "OrderUpdate": {
        "type": "object",
        "description": "The data of each `event: update` of the event stream.",
        "required": [*_ORDER_REQUIRED, "progress", "event", "sequence"],
        "properties": {
            **_ORDER_FIELDS,
            "progress": {"type": "integer", "minimum": 0, "maximum": 100},
            "event": {"type": "string", "example": "claimed"},
            "sequence": {"type": "integer", "minimum": 1, "description": "Also the SSE id"},
            "detail": {"type": "string"},
            "recordedOn": {"type": "string", "format": "date-time"},
        },
    },
    "QueueStats": {
        "type": "object",
        "required": ["waiting", "active", "completed", "failed"],
        "properties": {
            "waiting": {"type": "integer"},
            "active": {"type": "integer"},
            "completed": {"type": "integer"},
            "failed": {"type": "integer"},
            "waitingByPriority": {
                "type": "object",
                "additionalProperties": {"type": "integer"},
                "description": '"1" (BUY) and "2" (SELL)',
            },
        },
    },
    "Error": {
        "type": "object",
        "required": ["success", "error"],
        "properties": {
            "success": {"type": "boolean", "enum": [False]},
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string", "description": "The gRPC status code name"},
                    "message": {"type": "string"},
                    "fields": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["field", "description"],
                            "properties": {
                                "field": {"type": "string"},
                                "description": {"type": "string"},
                            },
                        },
                    },
                },
            },
        },
    },
}

EVENTS_DESCRIPTION = """\
Server-Sent Events from WatchOrder: the current state first (or, with `Last-Event-ID`, every
update after that sequence), then one `event: update` per change, with `id: <sequence>` and an
OrderUpdate as JSON data. The stream ends after the terminal update (COMPLETED or CANCELLED).
Idle streams get `: keepalive` comments. A failure after the stream began is sent as
`event: error` with an Error as data, then the stream ends."""


def _get(summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"get": {"summary": summary, "responses": responses, **extra}}


def document() -> dict[str, Any]:
    """The OpenAPI 3.0 document of the gateway."""
    anyone: list[dict[str, list[str]]] = [{}, {"bearerAuth": []}]
    paths = {
        "/api/order": {
            "post": {
                "operationId": "placeOrder",
                "summary": "Place an order; it is queued and processed asynchronously",
                "security": anyone,
                "parameters": [
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "description": "A retry with the same key and body gets the first answer",
                        "schema": {
                            "type": "string",
                            "maxLength": 255,
                            "pattern": "^[\\x20-\\x7e]*$",
                        },
                    }
                ],
                "requestBody": {"required": True, "content": _json(_ref("PlaceOrderRequest"))},
                "responses": {
                    "202": {
                        "description": "Accepted",
                        "content": _json(_success("PlacedOrder")),
                        "links": {
                            name: {
                                "operationId": op,
                                "parameters": {"orderRefNo": "$response.body#/data/orderRefNo"},
                            }
                            for name, op in (("status", "orderStatus"), ("events", "orderEvents"))
                        },
                    },
                    **_errors(400, 401, 403, 404, 409, 429, 500, 503),
                },
            }
        },
        "/api/order/queue/status": _get(
            "Queue and outcome counters (admin token)",
            {
                "200": {"description": "Counters", "content": _json(_success("QueueStats"))},
                **_errors(401, 403, 500, 503),
            },
            operationId="queueStatus",
            security=[{"bearerAuth": []}],
        ),
        "/api/order/{orderRefNo}/status": _get(
            "The order's current state",
            {
                "200": {"description": "The order", "content": _json(_success("OrderStatus"))},
                **_errors(400, 401, 403, 404, 500, 503),
            },
            operationId="orderStatus",
            security=anyone,
            parameters=[_REF_PARAM],
        ),
        "/api/order/{orderRefNo}/events": _get(
            "The order's updates as Server-Sent Events",
            {
                "200": {
                    "description": EVENTS_DESCRIPTION,
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                },
                "204": {"description": "Nothing after Last-Event-ID: the order has ended"},
                **_errors(400, 401, 403, 404, 500, 503),
            },
            operationId="orderEvents",
            security=anyone,
            parameters=[
                _REF_PARAM,
                {
                    "name": "Last-Event-ID",
                    "in": "header",
                    "required": False,
                    "description": "Resume after this sequence (EventSource sends it)",
                    "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"},
                },
            ],
        ),
        "/openapi.json": _get(
            "This document",
            {"200": {"description": "OpenAPI 3 document", "content": _json({"type": "object"})}},
            operationId="openapi",
            security=anyone,
        ),
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "orders REST gateway",
            "version": "1.0.0",
            "description": "The original REST API of the order service, served on orders.v1 "
            "gRPC. Errors are {success: false, error: {code: <gRPC code name>, message, fields?}}.",
        },
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
    }
