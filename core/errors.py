"""The domain error tree. No transport here: the server maps these to gRPC codes in one place.

OrderError
├── InvalidField(field, reason)        a malformed request field
├── NotFound
│   ├── FundNotFound(name)
│   └── OrderNotFound(ref)
├── IdempotencyConflict(key)           same key, different request
├── QueueFull(depth, limit)            backpressure
├── Unavailable
│   ├── QueueUnavailable(reason)       Redis cannot be reached
│   ├── StoreUnavailable(reason)       the database cannot be reached
│   └── ServerShuttingDown()           this server is stopping; try again (elsewhere)
├── Unauthenticated(reason)
└── PermissionDenied(reason)
"""

from __future__ import annotations


class OrderError(Exception):
    """Base of every error the domain raises on purpose."""


class InvalidField(OrderError):
    """A request field is malformed; `field` names it as the proto does."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class NotFound(OrderError):
    """Something well-formed that does not exist."""


class FundNotFound(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(f"fund_name: no fund named {name!r}")
        self.name = name


class OrderNotFound(NotFound):
    def __init__(self, ref: str) -> None:
        super().__init__(f"order_ref_no: no order {ref}")
        self.ref = ref


class IdempotencyConflict(OrderError):
    def __init__(self, key: str) -> None:
        super().__init__(
            f"idempotency_key: {key!r} was already used with a different request; "
            "use a new key for a new order"
        )
        self.key = key


class QueueFull(OrderError):
    def __init__(self, depth: int, limit: int) -> None:
        super().__init__(f"queue full: {depth} orders waiting (limit {limit}); retry later")
        self.depth = depth
        self.limit = limit


class Unavailable(OrderError):
    """A backing service cannot be reached; the client may retry."""


class QueueUnavailable(Unavailable):
    def __init__(self, reason: str) -> None:
        super().__init__(f"queue unavailable: {reason}")
        self.reason = reason


class StoreUnavailable(Unavailable):
    def __init__(self, reason: str) -> None:
        super().__init__(f"database unavailable: {reason}")
        self.reason = reason


class ServerShuttingDown(Unavailable):
    def __init__(self) -> None:
        super().__init__("server shutting down; watch again with after_sequence to resume")


class Unauthenticated(OrderError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)


class PermissionDenied(OrderError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
