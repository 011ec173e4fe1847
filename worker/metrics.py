"""Prometheus metrics of a worker process, all named orders_*; served on WORKER_METRICS_PORT."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import Counter, Gauge, Histogram

OUTCOMES = Counter(
    "orders_worker_outcomes",
    "Orders this worker finished: completed, cancelled (by processing) or released (handed "
    "back at shutdown).",
    ["outcome"],
)
THIRD_PARTY_ATTEMPTS = Counter(
    "orders_third_party_attempts",
    "Calls to the third-party order API by result: placed, rejected (final 4xx) or "
    "unavailable (retryable: 408/409/429/5xx, connection error, timeout).",
    ["result"],
)
THIRD_PARTY_DURATION = Histogram(
    "orders_third_party_duration_seconds",
    "Duration of one call to the third-party order API, by result.",
    ["result"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
RETRIES = Counter(
    "orders_worker_retries", "Third-party calls scheduled again after a retryable failure."
)
REAPER_ACTIONS = Counter(
    "orders_reaper_actions",
    "What the reaper did: recovered (lease expired), requeued (stale PENDING pushed again) "
    "or cancelled (poison order past MAX_RECOVERIES).",
    ["action"],
)
IN_PROGRESS = Gauge("orders_worker_orders_in_progress", "Orders this worker holds right now.")

for _outcome in ("completed", "cancelled", "released"):
    OUTCOMES.labels(_outcome)
for _result in ("placed", "rejected", "unavailable"):
    THIRD_PARTY_ATTEMPTS.labels(_result)
for _action in ("recovered", "requeued", "cancelled"):
    REAPER_ACTIONS.labels(_action)


def set_in_progress_source(count: Callable[[], float]) -> None:
    """Read the number of held orders from `count` at each scrape."""
    IN_PROGRESS.set_function(count)
