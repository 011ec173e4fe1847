"""Redis key and channel names, and the priority of each transaction type.

Every key shares the hash tag ``{orders}`` so that the per-priority lists live in one slot
and one BRPOP can name them all on a Redis Cluster.
"""

from __future__ import annotations

from core.domain import TransactionType

PREFIX = "{orders}"

#: BRPOP pops the first non-empty key in the order given: priority 1 first.
PRIORITIES: tuple[int, ...] = (1, 2)

PRIORITY_OF: dict[TransactionType, int] = {
    TransactionType.BUY: 1,
    TransactionType.SELL: 2,
}

#: Pub/sub channel carrying every order update (the JSON form of an OrderEvent row).
UPDATES_CHANNEL = f"{PREFIX}:updates"


def queue_key(priority: int) -> str:
    """The list holding refs of waiting orders of one priority (LPUSH in, BRPOP out)."""
    return f"{PREFIX}:queue:{priority}"


def queue_keys() -> list[str]:
    """Every queue list, highest priority first: the BRPOP argument order."""
    return [queue_key(p) for p in PRIORITIES]


#: The same table keyed by the stored text form ("BUY" / "SELL").
PRIORITY_OF_NAME: dict[str, int] = {t.value: p for t, p in PRIORITY_OF.items()}
