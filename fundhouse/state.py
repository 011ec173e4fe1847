"""The simulator's state: behaviour knobs, idempotent placements and counters."""

from __future__ import annotations

import random
import secrets
import threading
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Behaviour:
    """How the simulator answers; changed at run time through PUT /_admin/behaviour."""

    latency_ms: float = 0.0
    failure_rate: float = 0.0
    failure_status: int = 503
    #: The first N calls of each idempotency key fail with fail_first_status.
    fail_first: int = 0
    fail_first_status: int = 503
    #: Every call answers this status (e.g. 400) when set.
    always_status: int | None = None
    #: Each call sleeps this long before answering (a hanging third party).
    hang_ms: float = 0.0

    def update(self, data: dict[str, Any]) -> None:
        for name, value in data.items():
            if name not in self.__dataclass_fields__:
                raise ValueError(f"unknown behaviour field {name!r}")
            setattr(self, name, value)


@dataclass
class Decision:
    status: int
    body: dict[str, Any]
    delay_s: float


@dataclass
class Fundhouse:
    """Thread-safe with a lock; the asyncio front calls it from its one thread, tests from any."""

    behaviour: Behaviour = field(default_factory=Behaviour)
    seed: int | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: idempotency key -> the first successful answer (replayed for the same key).
    placed: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: idempotency key -> calls received; arrival order of first calls.
    calls: dict[str, int] = field(default_factory=dict)
    arrivals: list[dict[str, Any]] = field(default_factory=list)
    replays: int = 0
    requests: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def decide(self, key: str, body: dict[str, Any]) -> Decision:
        """Answer one POST /orders."""
        with self.lock:
            b = self.behaviour
            self.requests += 1
            n = self.calls.get(key, 0) + 1
            self.calls[key] = n
            if n == 1:
                self.arrivals.append({"key": key, "transactionType": body.get("transactionType")})
            delay = (b.latency_ms + b.hang_ms) / 1000
            if key in self.placed:
                self.replays += 1
                return Decision(200, self.placed[key], delay)
            if b.always_status is not None:
                return Decision(b.always_status, {"error": f"simulated {b.always_status}"}, delay)
            if n <= b.fail_first:
                return Decision(
                    b.fail_first_status,
                    {"error": f"simulated failure {n} of {b.fail_first}"},
                    delay,
                )
            if b.failure_rate and self.rng.random() < b.failure_rate:
                return Decision(b.failure_status, {"error": "simulated random failure"}, delay)
            answer = {"confirmationId": "FH" + secrets.token_hex(8).upper(), "orderRefNo": key}
            self.placed[key] = answer
            return Decision(201, answer, delay)

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {
                "requests": self.requests,
                "replays": self.replays,
                "placements": {key: 1 for key in self.placed},
                "calls": dict(self.calls),
                "arrivals": list(self.arrivals),
                "behaviour": asdict(self.behaviour),
            }

    def reset(self) -> None:
        with self.lock:
            self.placed.clear()
            self.calls.clear()
            self.arrivals.clear()
            self.replays = 0
            self.requests = 0
            self.behaviour = Behaviour()
