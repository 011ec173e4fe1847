"""The update record: one OrderEvent row, published as JSON on the updates channel.

The same record is the audit trail (read back by ListOrderEvents and by WatchOrder replays)
and the live update (published once after the transaction that wrote it commits).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any, Protocol

from core.keys import UPDATES_CHANNEL


@dataclass(frozen=True)
class Update:
    """One change of one order: what happened, and the order as it was right after."""

    ref: str
    sequence: int
    event: str
    progress: int
    detail: str
    recorded_on: dt.datetime
    order: dict[str, Any]

    @property
    def status(self) -> str:
        return str(self.order["status"])

    @property
    def terminal(self) -> bool:
        return self.status in ("COMPLETED", "CANCELLED")

    def to_json(self) -> str:
        """The wire form published on UPDATES_CHANNEL."""
        return json.dumps(
            {
                "ref": self.ref,
                "sequence": self.sequence,
                "event": self.event,
                "progress": self.progress,
                "detail": self.detail,
                "recorded_on": self.recorded_on.isoformat(),
                "order": self.order,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> Update:
        """Decode the wire form; raises ValueError (or KeyError) on a malformed message."""
        data = json.loads(raw)
        return cls(
            ref=str(data["ref"]),
            sequence=int(data["sequence"]),
            event=str(data["event"]),
            progress=int(data["progress"]),
            detail=str(data["detail"]),
            recorded_on=dt.datetime.fromisoformat(data["recorded_on"]),
            order=dict(data["order"]),
        )


class _Publisher(Protocol):
    def publish(self, channel: str, message: str) -> Any: ...


def publish(client: _Publisher, updates: list[Update]) -> None:
    """Publish updates in order on a sync Redis client or pipeline."""
    for update in updates:
        client.publish(UPDATES_CHANNEL, update.to_json())
