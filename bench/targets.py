"""The issue's targets, checked against one run's medians (ratios hold on any machine)."""

from __future__ import annotations

from typing import Any

#: ORDER_LEASE_SECONDS of the recovery row.
RECOVERY_LEASE_S = 5


def median(value: Any, *path: str) -> float | None:
    """The median at path in a results tree, or None when absent or failed."""
    for key in path:
        if not isinstance(value, dict) or value.get(key) is None:
            return None
        value = value[key]
    return float(value["median"]) if isinstance(value, dict) and "median" in value else None


def targets(rows: dict[str, Any]) -> list[tuple[str, str, bool]]:
    out: list[tuple[str, str, bool]] = []
    e2e = median(rows, "e2e", "0ms/1w", "rate")
    peer = median(rows, "e2e", "0ms/1w", "peer_ratio")
    dramatiq = median(rows, "e2e", "0ms/1w", "peer_rate")
    if e2e is not None and peer is not None and dramatiq:
        out.append(
            (
                "end to end, 0 ms third party, 1 worker x 8, 5,000 orders >= Dramatiq's no-op "
                f"drain, 1 process x 8 threads, run before each ({dramatiq:,.0f}/s)",
                f"{e2e:,.0f}/s ({peer:.0%}, run by run)",
                peer >= 1,
            )
        )
    drained = median(rows, "e2e", "0ms/1w/drain", "rate")
    drained_peer = median(rows, "e2e", "0ms/1w/drain", "peer_ratio")
    if drained is not None and drained_peer is not None:
        out.append(
            (
                "(not the target's wording, the peers' own method) the same orders placed first, "
                "then drained by 1 worker x 8 >= Dramatiq's drain run before each",
                f"{drained:,.0f}/s ({drained_peer:.0%}, run by run)",
                drained_peer >= 1,
            )
        )
    share = median(rows, "place", "sqlite", "64", "rate_ratio")
    place = median(rows, "place", "sqlite", "64", "rate")
    if share is not None and place is not None:
        out.append(
            (
                "PlaceOrder accepted/s at 64 in flight >= 50% of the faster empty RPC",
                f"{place:,.0f}/s ({share:.0%}, run by run)",
                share >= 0.5,
            )
        )
    for db in ("sqlite", "postgresql"):
        for c in ("1", "16", "64", "256"):
            p99 = median(rows, "place", db, c, "p99_ms")
            times = median(rows, "place", db, c, "p99_ratio")
            if p99 is not None and times is not None:
                out.append(
                    (
                        f"PlaceOrder p99 <= 2x the empty RPC's p99 at {c} in flight ({db})",
                        f"{times:.1f}x ({p99:.2f} ms)",
                        times <= 2,
                    )
                )
        p1 = median(rows, "place", db, "1", "p99_ms")
        if p1:
            out.append((f"PlaceOrder p99 under 2 ms at 1 in flight ({db})", f"{p1:.2f} ms", p1 < 2))
    for workers in (1, 2):
        rate = median(rows, "e2e", f"50ms/{workers}w", "rate")
        if rate is not None:
            goal = 0.8 * workers * 8 / 0.05
            out.append(
                (
                    f"50 ms third party, {workers} worker(s) x 8: >= {goal:,.0f} orders/s "
                    "(80% of total concurrency / 0.05 s)",
                    f"{rate:,.0f}/s",
                    rate >= goal,
                )
            )
    for name, shape in (
        ("10000", "1 stream per order, full-speed drain"),
        ("10000/10per", "10 streams per order, full-speed drain"),
        ("10000/10per/50ms", "10 streams per order, 50 ms third party"),
    ):
        share = median(rows, "fanout", name, "terminal_share")
        p99w = median(rows, "fanout", name, "p99_ms")
        if share is not None and p99w is not None:
            out.append(
                (f"10,000 watchers on one server ({shape}): all served", f"{share:.1%}", share >= 1)
            )
            out.append(
                (
                    f"10,000 watchers ({shape}): p99 delivery under 100 ms",
                    f"{p99w:,.0f} ms",
                    p99w < 100,
                )
            )
    rec = median(rows, "recovery", "recovery_s")
    if rec is not None:
        out.append(
            (
                f"recovery after SIGKILL within ORDER_LEASE_SECONDS ({RECOVERY_LEASE_S}) + 5 s",
                f"{rec:.1f} s",
                rec <= RECOVERY_LEASE_S + 5,
            )
        )
    return out
