"""Small statistics helpers: percentiles of latency samples, median/min/max of runs."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any


def percentile(sorted_samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by nearest rank; 0.0 for no samples."""
    if not sorted_samples:
        return 0.0
    rank = max(0, min(len(sorted_samples) - 1, round(q / 100 * len(sorted_samples) + 0.5) - 1))
    return float(sorted_samples[rank])


def latency_summary(samples_s: list[float]) -> dict[str, float]:
    """p50/p99/p99.9 in milliseconds."""
    ordered = sorted(samples_s)
    return {
        "p50_ms": percentile(ordered, 50) * 1000,
        "p99_ms": percentile(ordered, 99) * 1000,
        "p999_ms": percentile(ordered, 99.9) * 1000,
    }


def spread(runs: list[dict[str, Any]], key: str) -> dict[str, float]:
    """Median, min and max of one figure over several runs."""
    values = [float(r[key]) for r in runs if key in r]
    if not values:
        return {"median": 0.0, "min": 0.0, "max": 0.0}
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}
