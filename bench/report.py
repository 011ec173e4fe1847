"""Render bench/results.json as BENCHMARKS.md: each figure a median (min..max) of runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def fig(value: dict[str, float] | None, fmt: str = "{:,.0f}") -> str:
    if not value:
        return "n/a"
    return f"{fmt.format(value['median'])} ({fmt.format(value['min'])}..{fmt.format(value['max'])})"


def ratio(a: dict[str, float] | None, b: dict[str, float] | None) -> str:
    if not a or not b or not b["median"]:
        return "n/a"
    return f"{a['median'] / b['median']:.2f}"


def write_report(results: dict[str, Any], path: Path) -> None:
    rows = results["rows"]
    meta = results.get("meta", {})
    ceil = rows.get("ceilings", {})
    empty = ceil.get("empty_rpc", {})
    lines = [
        "# Benchmarks",
        "",
        f"Measured {meta.get('date', '?')} by `make bench` "
        f"({'FULL=1, ' if meta.get('full') else ''}{meta.get('runs_per_figure', '?')} runs per "
        f"figure, {meta.get('elapsed_s', '?')} s in all). Each figure: median (min..max).",
        "",
        f"- machine: {meta.get('machine', '?')}",
        f"- Python {meta.get('python')}, grpcio {meta.get('grpcio')}, redis-py "
        f"{meta.get('redis_py')}, peewee {meta.get('peewee')}, SQLite {meta.get('sqlite')}",
        f"- {meta.get('redis_server', '')}; {meta.get('postgresql', '')}",
        f"- settings: {meta.get('settings', '')}",
        "",
        "Rerun: `make bench` (about 8 minutes on 2 cores; `FULL=1 make bench` for the whole "
        "matrix). Raw figures: `bench/results.json`.",
        "",
        "## 1. Ceilings (same run)",
        "",
        "| what | rate /s | p50 ms | p99 ms |",
        "|---|---|---|---|",
    ]
    for c, r in empty.items():
        lines.append(
            f"| empty unary RPC, bare grpc.aio, {c} in flight | {fig(r.get('rate'))} | "
            f"{fig(r.get('p50_ms'), '{:.2f}')} | {fig(r.get('p99_ms'), '{:.2f}')} |"
        )
    if "redis_rtt" in ceil:
        lines.append(
            f"| Redis LPUSH+BRPOP round trip, one Python process | "
            f"{fig(ceil['redis_rtt'].get('rate'))} | | |"
        )
    lines += [
        "",
        "## 2. PlaceOrder",
        "",
        "| db | in flight | accepted /s | ratio to empty RPC | p50 ms | p99 ms | p99.9 ms "
        "| p99 / empty p99 | server CPU µs/order |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for kind, per in (rows.get("place") or {}).items():
        if not per:
            lines.append(f"| {kind} | n/a (not reachable) | | | | | | | |")
            continue
        for c, r in per.items():
            e = empty.get(c, {})
            p99_ratio = ratio(r.get("p99_ms"), e.get("p99_ms"))
            lines.append(
                f"| {kind} | {c} | {fig(r.get('rate'))} | {ratio(r.get('rate'), e.get('rate'))} "
                f"| {fig(r.get('p50_ms'), '{:.2f}')} | {fig(r.get('p99_ms'), '{:.2f}')} | "
                f"{fig(r.get('p999_ms'), '{:.2f}')} | {p99_ratio} | "
                f"{fig(r.get('server_cpu_us_per_order'))} |"
            )
    lines += [
        "",
        "## 3. End to end (PlaceOrder to COMPLETED)",
        "",
        "| configuration | orders/s | CPU µs per order by process (median run) |",
        "|---|---|---|",
    ]
    for name, r in (rows.get("e2e") or {}).items():
        if not r:
            lines.append(f"| {name} | n/a | |")
            continue
        runs = sorted(r["runs"], key=lambda x: x["rate"])
        cpu = runs[len(runs) // 2].get("cpu_us_per_order", {})
        cpu_text = ", ".join(f"{k} {v:,.0f}" for k, v in cpu.items())
        lines.append(f"| {name} | {fig(r.get('rate'))} | {cpu_text} |")
    lines += ["", "## Targets (issue 6)", "", "| target | measured | met |", "|---|---|---|"]
    lines += [f"| {t} | {m} | {'yes' if ok else 'no'} |" for t, m, ok in targets(rows)]
    for key in ("fanout", "recovery", "scaling", "notes"):
        section = rows.get(key)
        if section:
            lines += ["", f"## {key}", "", "```", _pretty(section), "```"]
    path.write_text("\n".join(lines) + "\n")


def _pretty(value: Any, indent: int = 0) -> str:
    pad = "  " * indent
    if isinstance(value, dict):
        if set(value) == {"median", "min", "max"}:
            return fig(value, "{:,.2f}")
        parts = []
        for k, v in value.items():
            if k == "runs":
                continue
            inner = _pretty(v, indent + 1)
            parts.append(f"{pad}{k}:" + (f"\n{inner}" if "\n" in inner else f" {inner.strip()}"))
        return "\n".join(parts)
    return f"{pad}{value}"


def _median(value: Any, *path: str) -> float | None:
    for key in path:
        if not isinstance(value, dict) or key not in value or value[key] is None:
            return None
        value = value[key]
    return float(value["median"]) if isinstance(value, dict) and "median" in value else None


def targets(rows: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """The issue's targets against this run's medians (ratios hold on any machine)."""
    out: list[tuple[str, str, bool]] = []
    e2e = _median(rows, "e2e", "0ms/1w", "rate")
    if e2e is not None:
        out.append(
            (
                "end to end, 0 ms third party, 1 worker x 8 >= 1,975 orders/s (Dramatiq's "
                "no-op drain, reference machine)",
                f"{e2e:,.0f}/s",
                e2e >= 1975,
            )
        )
    place = _median(rows, "place", "sqlite", "64", "rate")
    empty = _median(rows, "ceilings", "empty_rpc", "64", "rate")
    if place and empty:
        out.append(
            (
                "PlaceOrder accepted/s at 64 in flight >= 50% of the empty RPC",
                f"{place / empty:.0%}",
                place / empty >= 0.5,
            )
        )
    for c in ("1", "16", "64", "256"):
        p99 = _median(rows, "place", "sqlite", c, "p99_ms")
        e99 = _median(rows, "ceilings", "empty_rpc", c, "p99_ms")
        if p99 and e99:
            out.append(
                (
                    f"PlaceOrder p99 <= 2x empty RPC p99 at {c} in flight (SQLite)",
                    f"{p99 / e99:.1f}x ({p99:.2f} ms)",
                    p99 <= 2 * e99,
                )
            )
    p1 = _median(rows, "place", "sqlite", "1", "p99_ms")
    if p1:
        out.append(("PlaceOrder p99 under 2 ms at 1 in flight (SQLite)", f"{p1:.2f} ms", p1 < 2))
    for workers in (1, 2):
        rate = _median(rows, "e2e", f"50ms/{workers}w", "rate")
        if rate is not None:
            goal = 0.8 * workers * 8 / 0.05
            out.append(
                (
                    f"50 ms third party, {workers} worker(s) x 8: >= {goal:,.0f} orders/s "
                    "(80% of concurrency / 0.05 s)",
                    f"{rate:,.0f}/s",
                    rate >= goal,
                )
            )
    share = _median(rows, "fanout", "10000", "terminal_share")
    p99w = _median(rows, "fanout", "10000", "p99_ms")
    if share is not None and p99w is not None:
        out.append(("10,000 watchers on one server: all served", f"{share:.0%}", share >= 1.0))
        out.append(("10,000 watchers: p99 delivery under 100 ms", f"{p99w:,.0f} ms", p99w < 100))
    rec = _median(rows, "recovery", "recovery_s")
    if rec is not None:
        out.append(
            (
                "recovery after SIGKILL within ORDER_LEASE_SECONDS (5) + 5 s",
                f"{rec:.1f} s",
                rec <= 10,
            )
        )
    return out
