"""Render bench/results.json as BENCHMARKS.md: each figure a median (min..max) of runs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from bench.targets import median, targets

#: The issue's reference figures (2 cores, Redis 7.0, Python 3.11: another machine of this kind).
REFERENCE = [
    ("Dramatiq 2.2", "1,975", "3,870", "6.3"),
    ("Huey 3.5", "1,376", "3,150", "3.0"),
    ("BullMQ, Python port 3.4", "1,355", "1,950", "26"),
    ("Celery 5.7 (threads)", "488", "1,171", "9.0"),
    ("arq 0.28 (poll 10 ms)", "1,133", "1,384", "17"),
    ("RQ 2.x (SimpleWorker / pool of 8)", "143", "422", "57"),
    ("BullMQ for Node 6.7", "9,281", "8,321", "24"),
    ("a bare BRPOP loop in Python, 8 threads", "10,839", "12,279", "1"),
]


def fig(value: dict[str, float] | None, fmt: str = "{:,.0f}") -> str:
    if not value or "median" not in value:
        return "n/a"
    return f"{fmt.format(value['median'])} ({fmt.format(value['min'])}..{fmt.format(value['max'])})"


def ms(value: dict[str, float] | None) -> str:
    return fig(value, "{:,.2f}")


def ratio(a: float | None, b: float | None, fmt: str = "{:.2f}") -> str:
    return fmt.format(a / b) if a is not None and b else "n/a"


def _median_run(row: dict[str, Any]) -> dict[str, Any]:
    runs = sorted(row.get("runs") or [{}], key=lambda r: r.get("rate", 0))
    return runs[len(runs) // 2]


def _cpu_text(cpu: dict[str, dict[str, float]]) -> str:
    return ", ".join(f"{name} {v['total_us']:,.0f}" for name, v in cpu.items())


def _error(row: Any) -> str | None:
    return str(row["error"]) if isinstance(row, dict) and "error" in row else None


def write_report(results: dict[str, Any], path: Path) -> None:
    rows = results["rows"]
    meta = results.get("meta", {})
    lines = _head(meta)
    lines += _ceilings(rows.get("ceilings") or {})
    lines += _peers(rows)
    lines += _place(rows)
    # The measured machine's cores (older results lack them: this machine's).
    lines += _e2e(rows, int(meta.get("cores") or os.cpu_count() or 1))
    lines += _fanout(rows.get("fanout") or {})
    lines += _recovery(rows.get("recovery") or {})
    lines += _scaling(rows.get("scaling") or {})
    lines += _gateway(rows.get("gateway") or {})
    lines += _profile(rows.get("profile") or {})
    lines += ["", "## Targets (issue 6)", "", "| target | measured | met |", "|---|---|---|"]
    lines += [f"| {t} | {m} | {'yes' if ok else '**no**'} |" for t, m, ok in targets(rows)]
    lines += _reference()
    path.write_text("\n".join(lines) + "\n")


def _row_seconds(seconds: dict[str, int], steal: dict[str, float]) -> list[str]:
    if not seconds:
        return []  # older results did not record them
    parts = ", ".join(
        f"{name} {s:,}" + (f" ({steal[name]:.0f}% stolen)" if name in steal else "")
        for name, s in sorted(seconds.items(), key=lambda kv: -kv[1])
    )
    return [
        f"- seconds per row, with the share of the machine's CPU time the hypervisor gave to "
        f"other guests meanwhile (steal, /proc/stat): {parts}"
    ]


def _head(meta: dict[str, Any]) -> list[str]:
    return [
        "# Benchmarks",
        "",
        f"Measured {meta.get('date', '?')} by `make bench` "
        f"({'FULL=1, ' if meta.get('full') else ''}{meta.get('runs_per_figure', '?')} runs per "
        f"figure, {meta.get('elapsed_s', '?')} s in all). Each figure: median (min..max).",
        "",
        f"- machine: {meta.get('machine', '?')}",
        f"- Python {meta.get('python')}, grpcio {meta.get('grpcio')}, redis-py "
        f"{meta.get('redis_py')}, httptools {meta.get('httptools')}, peewee {meta.get('peewee')}, "
        f"SQLite {meta.get('sqlite')}, Dramatiq {meta.get('dramatiq')}",
        f"- {meta.get('redis_server', '')}; {meta.get('postgresql', '')}",
        f"- settings: {meta.get('settings', '')}",
        *_row_seconds(meta.get("row_seconds") or {}, meta.get("row_steal_pct") or {}),
        "",
        "Rerun: `make bench` (about 13 minutes on 2 cores; `FULL=1 make bench` for 5 runs per "
        "figure and more configurations). Raw figures, every run: `bench/results.json`. One row: "
        "the `row()` functions of the bench modules (e.g. `bench/e2e.py`).",
    ]


def _ceilings(ceil: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "## 1. Ceilings (same run)",
        "",
        "| what | rate /s | p50 ms | p99 ms |",
        "|---|---|---|---|",
    ]
    for kind, name in (
        ("empty_rpc", "bare grpc.aio"),
        ("empty_rpc_sync", "bare sync, 8 threads"),
        ("empty_rpc_orders", "Health/Check on orders-server (its interceptors, no handler work)"),
    ):
        for c, r in (ceil.get(kind) or {}).items():
            lines.append(
                f"| empty unary RPC, {name}, {c} in flight | {fig(r.get('rate'))} | "
                f"{ms(r.get('p50_ms'))} | {ms(r.get('p99_ms'))} |"
            )
    if "redis_rtt" in ceil:
        lines.append(
            f"| Redis LPUSH+BRPOP round trip, one Python process | "
            f"{fig(ceil['redis_rtt'].get('rate'))} | | |"
        )
    return lines


def _peers(rows: dict[str, Any]) -> list[str]:
    lines = []
    e2e = rows.get("e2e") or {}
    for key, name in (
        ("0ms/1w", "1 process x 8 threads"),
        ("0ms/2w", "2 processes x 8"),
        ("0ms/1w/drain", "1 process x 8 threads"),
        ("0ms/2w/drain", "2 processes x 8"),
    ):
        if key not in e2e:
            continue  # not run (FULL=1 only)
        r = e2e[key] or {}
        text = _error(r) or fig(r.get("peer_rate"))
        lines.append(
            f"| Dramatiq no-op drain of 20,000 jobs, {name} (before each e2e {key} run) | "
            f"{text} | | |"
        )
    return lines


def _place(rows: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "## 2. PlaceOrder (no worker running)",
        "",
        "Each PlaceOrder run follows empty-RPC runs at the same concurrency; the ratios are "
        "taken run by run: accepted/s over the faster bare server's calls/s, p99 over the bare "
        "grpc.aio server's p99.",
        "",
        "| db | in flight | accepted /s | / empty RPC rate | p50 ms | p99 ms | p99.9 ms "
        "| p99 / empty p99 | server CPU µs/order | client CPU µs/call |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for kind, per in (rows.get("place") or {}).items():
        if not per or _error(per):
            lines.append(f"| {kind} | {_error(per) or 'n/a (not reachable)'} | | | | | | | | |")
            continue
        for c, r in per.items():
            lines.append(
                f"| {kind} | {c} | {fig(r.get('rate'))} | {fig(r.get('rate_ratio'), '{:.2f}')} | "
                f"{ms(r.get('p50_ms'))} | {ms(r.get('p99_ms'))} | {ms(r.get('p999_ms'))} | "
                f"{fig(r.get('p99_ratio'), '{:.2f}')} | "
                f"{fig(r.get('server_cpu_us_per_order'))} | "
                f"{fig(r.get('client_cpu_us_per_call'))} |"
            )
    return lines


def _e2e(rows: dict[str, Any], cores: int) -> list[str]:
    lines = [
        "",
        "## 3. End to end (PlaceOrder to COMPLETED, SQLite unless named)",
        "",
        "Orders/s: the orders over the time from the first one's creation to the last one's "
        "last change, as the database recorded them. The load generator places them at 64 in "
        "flight while the workers drain them. `/drain`: like the peers' figure (jobs enqueued, "
        "then drained), the orders are placed first and the workers started after; the rate is "
        "then over the time from the first claim to the last change.",
        "",
        "| configuration | orders/s | compared with | PlaceOrder /s meanwhile | CPU µs per order "
        "by process (median run) |",
        "|---|---|---|---|---|",
    ]
    for name, r in (rows.get("e2e") or {}).items():
        if not r or _error(r):
            lines.append(f"| {name} | {_error(r) or 'n/a'} | | | |")
            continue
        rate = median(r, "rate")
        if name.startswith("0ms") and r.get("peer_ratio"):
            workers = name.split("/")[1].rstrip("w")
            against = f"{fig(r.get('peer_ratio'), '{:.2f}')} x Dramatiq {workers} x 8, run by run"
        elif name.startswith("50ms"):
            workers = name.split("/")[1].rstrip("w")
            against = f"{ratio(rate, int(workers) * 8 / 0.05)} x concurrency / 0.05 s"
        else:
            against = ""
        cpu = _median_run(r).get("cpu_us_per_order", {})
        lines.append(
            f"| {name} | {fig(r.get('rate'))} | {against} | {fig(r.get('place_rate'))} | "
            f"{_cpu_text(cpu)} |"
        )
    return lines + _cpu_budget((rows.get("e2e") or {}).get("0ms/1w"), cores)


def _cpu_budget(row: dict[str, Any] | None, cores: int) -> list[str]:
    """What the 0 ms / 1 worker target leaves per order: every process shares these cores."""
    peer = median(row, "peer_rate")
    cpu = _median_run(row).get("cpu_us_per_order") if row else None
    if not peer or not cpu:
        return []
    used = sum(v["total_us"] for v in cpu.values())
    budget = cores * 1e6 / peer
    return [
        "",
        f"CPU budget of the 0ms/1w target: at Dramatiq's {peer:,.0f} jobs/s, {cores} cores give "
        f"every process together at most {budget:,.0f} µs of CPU per order, at 100% use of every "
        f"core. The median 0ms/1w run used {used:,.0f} µs per order in all ({_cpu_text(cpu)}), "
        f"so it could reach at most {cores * 1e6 / used:,.0f} orders/s here even with no idle "
        "time.",
    ]


def _fanout(rows: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "## 4. WatchOrder fan-out on one server process",
        "",
        "The orders are placed with no worker running, every stream gets its first message, "
        "then one worker drains the orders: at full speed with a 0 ms third party (every "
        "update of the run in a burst: about 3 messages per stream, claimed, attempt, "
        "completed), or paced by a 50 ms third party (8 calls in flight: ~155 orders/s). "
        "Delay: from the terminal update's recorded_on (taken by the worker before its "
        "commit) to the watcher reading it, over every stream. The watchers are 2 processes "
        "on the same 2 cores. CPU: share of one core each process used from the worker's "
        "start to the last stream's end (median run).",
        "",
        "| streams | per order | orders | third party | got the terminal update | p50 ms | p99 ms "
        "| p99.9 ms | server RSS MiB idle -> open | CPU share |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        if _error(r):
            lines.append(f"| {name} | {_error(r)} | | | | | | | | |")
            continue
        run = _median_run(r)
        share = ", ".join(f"{k} {v:.0%}" for k, v in (run.get("core_share") or {}).items())
        lines.append(
            f"| {run.get('streams')} | {run.get('streams_per_order')} | {run.get('orders')} | "
            f"{run.get('third_party_ms', 0):g} ms | "
            f"{fig(r.get('terminal_share'), '{:.1%}')} | {ms(r.get('p50_ms'))} | "
            f"{ms(r.get('p99_ms'))} | {ms(r.get('p999_ms'))} | "
            f"{fig(r.get('server_rss_mib_idle'))} -> {fig(r.get('server_rss_mib_open'))} | "
            f"{share} |"
        )
    return lines


def _recovery(r: dict[str, Any]) -> list[str]:
    run = _median_run(r)
    took = fig(r.get("recovery_s"), "{:.2f}")
    return [
        "",
        "## 5. Recovery after SIGKILL",
        "",
        _error(r)
        or f"A worker holding {run.get('held_orders')} orders (half of them mid-call) is killed; "
        f"a fresh worker's reaper takes them over when their leases ({run.get('lease_s')} s) "
        f"expire. Time from the kill to every order terminal again: {took} s.",
    ]


def _scaling(s: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "## 6. Scaling from 1 to 2 processes",
        "",
        "| configuration | rate /s | busiest processes (share of one core) |",
        "|---|---|---|",
    ]
    if _error(s):
        return [*lines, f"| {_error(s)} | | |"]
    for name, r in s.items():
        if not r or _error(r):
            lines.append(f"| {name} | {_error(r) or 'n/a'} | |")
            continue
        run = _median_run(r)
        rate = run.get("rate", 0.0)
        cpu = run.get("cpu_us_per_order", {})
        shares = sorted(
            ((n, v["total_us"] * rate / 1e6) for n, v in cpu.items() if n != "loadgen"),
            key=lambda x: -x[1],
        )
        busiest = ", ".join(f"{n} {share:.0%}" for n, share in shares[:4])
        lines.append(f"| {name} | {fig(r.get('rate'))} | {busiest} |")
    return lines


def _gateway(g: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "## 7. REST gateway in front of one server (SQLite)",
        "",
        "| call | rate /s | p50 ms | p99 ms | p99.9 ms |",
        "|---|---|---|---|---|",
    ]
    if _error(g):
        return [*lines, f"| {_error(g)} | | | | |"]
    for name, r in g.items():
        mode, c = name.split("@")
        call = "POST /api/order" if mode == "place" else "GET /api/order/{ref}/status"
        lines.append(
            f"| {call}, {c} in flight | {fig(r.get('rate'))} | {ms(r.get('p50_ms'))} | "
            f"{ms(r.get('p99_ms'))} | {ms(r.get('p999_ms'))} |"
        )
    return lines


def _profile(p: dict[str, Any]) -> list[str]:
    lines = ["", "## 8. Where the time per order goes (0 ms third party, 1 worker)", ""]
    if _error(p):
        return [*lines, str(_error(p))]
    cpu = p.get("cpu_us_per_order") or {}
    lines += [
        "CPU per order by process, user + system (µs): "
        + ", ".join(
            f"{n} {v.get('user_us', v['total_us']):,.0f} + {v.get('sys_us', 0):,.0f}"
            for n, v in cpu.items()
        )
        + f". Profiled run (py-spy --gil, 250 Hz): {p.get('rate_while_profiled') or 0:,.0f} "
        "orders/s. The parts split each process's user time by its share of GIL-holding "
        "samples; time outside the GIL (SQLite's C code, gRPC's C-core threads) is counted with "
        "the part that called it only where it held the GIL.",
        "",
        "| process | part | share of Python samples | ≈ µs per order |",
        "|---|---|---|---|",
    ]
    for proc, shares in (p.get("python_time_shares") or {}).items():
        user = (cpu.get(proc) or {}).get("user_us", 0.0)
        for part, share in sorted(shares.items(), key=lambda x: -x[1]):
            if share >= 0.005:
                lines.append(f"| {proc} | {part} | {share:.0%} | {share * user:,.0f} |")
    return lines


def _reference() -> list[str]:
    lines = [
        "",
        "## Reference figures from the issue (another machine of this kind)",
        "",
        "| system | drain jobs/s, 1 process | 2 processes | Redis commands a job |",
        "|---|---|---|---|",
    ]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in REFERENCE]
    return lines
