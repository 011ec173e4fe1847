"""The update record: one OrderEvent row, published as JSON on the updates channel.

The same record is the audit trail (read back by ListOrderEvents and by WatchOrder replays)
and the live update (published once after the transaction that wrote it commits).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii
from typing import Any, Protocol

from core.keys import UPDATES_CHANNEL

_quote = encode_basestring_ascii


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
    #: `order` already encoded (compact JSON), when the writer has it: encoded once.
    order_json: str | None = field(default=None, compare=False, repr=False)

    @property
    def status(self) -> str:
        return str(self.order["status"])

    @property
    def terminal(self) -> bool:
        return self.status in ("COMPLETED", "CANCELLED")

    def to_json(self) -> str:
        """One update record: the document published (in a batch) on UPDATES_CHANNEL."""
        order = self.order_json
        if order is None:
            order = json.dumps(self.order, separators=(",", ":"))
        # Written out rather than json.dumps of a dict: this runs for every update of every
        # order. The strings go through the json module's own escaper.
        return (
            f'{{"ref":{_quote(self.ref)},"sequence":{self.sequence:d},'
            f'"event":{_quote(self.event)},"progress":{self.progress:d},'
            f'"detail":{_quote(self.detail)},"recorded_on":"{self.recorded_on.isoformat()}",'
            f'"order":{order}}}'
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Update:
        """Decode one record; raises ValueError, KeyError or TypeError when malformed."""
        return cls(
            ref=str(data["ref"]),
            sequence=int(data["sequence"]),
            event=str(data["event"]),
            progress=int(data["progress"]),
            detail=str(data["detail"]),
            recorded_on=dt.datetime.fromisoformat(data["recorded_on"]),
            order=dict(data["order"]),
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> Update:
        """Decode one record from its JSON text."""
        return cls.from_dict(json.loads(raw))


def encode_batch(updates: Sequence[Update]) -> str:
    """One message for several updates: a JSON array of update records, in order."""
    return "[" + ",".join(u.to_json() for u in updates) + "]"


def decode_batch(raw: str | bytes) -> list[dict[str, Any]]:
    """The records of a message (an array, or a lone record); ValueError when malformed.

    Returned undecoded into Update objects: a reader decodes only the records it wants.
    """
    data = json.loads(raw)
    if isinstance(data, dict):
        return [data]
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise ValueError("an update message is a JSON array of objects")
    return data


class _Publisher(Protocol):
    def publish(self, channel: str, message: str) -> Any: ...


def publish(client: _Publisher, updates: Sequence[Update]) -> None:
    """Publish updates, in order, as one message on a sync or asyncio client or pipeline.

    One message per batch rather than per update: every server process reads every message,
    and a message costs a reader far more than the bytes in it.
    """
    if updates:
        client.publish(UPDATES_CHANNEL, encode_batch(updates))
