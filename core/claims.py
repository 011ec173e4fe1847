"""The worker's hot writes: claim a batch of orders in one statement, then record the holder's
own changes without reading the row again.

A claim is `UPDATE ... WHERE ref IN (...) AND status = 'PENDING' RETURNING ...`: the
compare-and-set of store.transition for a whole batch, one statement and one commit. While an
order is PROCESSING only its holder changes it (the heartbeat touches the lease alone), so the
holder's copy of the row is the row: a later change is computed from that copy (`prepare`) and
written with `WHERE id = ? AND status = 'PROCESSING' AND worker_id = ? AND last_sequence = ?`
(`record`), which matches nothing once a reaper has taken the order over.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from core import statements
from core.domain import PROGRESS, Event, OrderStatus
from core.models import Order, utcnow, write_txn
from core.store import Step, apply_steps
from core.updates import Update

#: The fields every change writes besides its own.
_ALWAYS = ("last_sequence", "progress", "updated_on")


@dataclass(frozen=True)
class Claimed:
    """An order this worker now holds: its row as written, and the `claimed` update."""

    order: Order
    update: Update


def claim_many(refs: Sequence[str], worker_id: str, lease_seconds: float) -> list[Claimed]:
    """Claim the PENDING orders among refs for worker_id, in one transaction.

    Returns them in the order of refs; a ref that is not PENDING (a duplicate delivery, an
    order already handled) is left alone and missing from the result.
    """
    now = utcnow()
    step = Step(
        Event.CLAIMED,
        f"worker {worker_id}",
        {
            "status": OrderStatus.PROCESSING.value,
            "worker_id": worker_id,
            "lease_expires_at": now + dt.timedelta(seconds=lease_seconds),
            "updated_on": now,
        },
    )
    with write_txn():
        orders = statements.claim_orders(
            refs, step.changes, PROGRESS[Event.CLAIMED], OrderStatus.PENDING.value
        )
        claimed: dict[str, Claimed] = {}
        rows: list[dict[str, Any]] = []
        for order in orders:
            # The statement already applied the step; this builds its event row and update
            # from the row as it is now (apply_steps on a copy one sequence back).
            order.last_sequence -= 1
            event_rows, updates = apply_steps(order, [step], now)
            rows.extend(event_rows)
            claimed[order.ref] = Claimed(order, updates[0])
        if rows:
            statements.insert_events(rows)
    return [claimed[ref] for ref in refs if ref in claimed]


@dataclass(frozen=True)
class Change:
    """One prepared write of a held order: what to set, what it must still be, what to add."""

    order_id: int
    ref: str
    #: The order's status and last_sequence before the change (the compare-and-set).
    status: str
    last_sequence: int
    values: dict[str, Any]
    rows: list[dict[str, Any]]
    updates: list[Update]

    @property
    def final(self) -> Update:
        return self.updates[-1]


def prepare(order: Order, steps: Sequence[Step]) -> Change:
    """Apply steps to the holder's copy of the order and return the write that persists them.

    The copy moves on at once (the next change of the same order builds on it), so a write
    that fails with a database error is retried as it is, never prepared again.
    """
    status, sequence = order.status, order.last_sequence
    rows, updates = apply_steps(order, steps, utcnow())
    names = {name for step in steps for name in step.changes} | set(_ALWAYS)
    values = {name: getattr(order, name) for name in names}
    return Change(order.id, order.ref, status, sequence, values, rows, updates)


def record(changes: Sequence[Change], worker_id: str) -> list[bool]:
    """Write prepared changes in one transaction; False for a change whose order was taken
    over (its events are not written). Changes of one order must come in the order prepared."""
    results: list[bool] = []
    rows: list[dict[str, Any]] = []
    taken: set[str] = set()
    with write_txn():
        for change in changes:
            ok = change.ref not in taken and statements.update_held(
                change.order_id, change.values, change.status, worker_id, change.last_sequence
            )
            if ok:
                rows.extend(change.rows)
            else:
                taken.add(change.ref)
            results.append(ok)
        if rows:
            statements.insert_events(rows)
    return results
