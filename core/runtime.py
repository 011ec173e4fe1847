"""Process-wide tuning that every long-running main applies once at start."""

from __future__ import annotations

import gc

#: Allocations between two young-generation collections (CPython's default is 700). Every
#: RPC and every order allocates thousands of short-lived objects; at the default a
#: collection ran every few requests.
GC_YOUNG_THRESHOLD = 50_000


def tune_gc() -> None:
    """Collect less often, and never scan again what start-up left behind (gc.freeze)."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)
