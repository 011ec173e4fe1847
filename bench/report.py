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
        "Rerun: `make bench` (about 15 minutes on 2 cores; `FULL=1 make bench` for the whole "
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
