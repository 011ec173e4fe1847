"""orderctl watch/stats, the Python and Node.js watchers and grpcurl against real processes,
including a server killed and restarted in the middle of a watch."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.harness import BIN, ROOT, Stack, wait_for
from tests.test_order_path import place, wait_terminal

ADMIN_TOKEN = "admin-token-e2e-Vb7Q"
NODE_DIR = ROOT / "clients" / "node-watcher"


def _run(argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def _json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _sequences(updates: list[dict[str, object]]) -> list[int]:
    return [int(str(u["sequence"])) for u in updates]


def test_orderctl_watch_and_stats(make_stack, sqlite_url: str) -> None:
    stack: Stack = make_stack(sqlite_url, ADMIN_TOKEN=ADMIN_TOKEN)
    stack.start_all()
    ref = place(stack).order_ref_no
    out = _run([str(BIN / "orderctl"), "--addr", stack.address, "--json", "watch", ref])
    assert out.returncode == 0, out.stderr
    updates = _json_lines(out.stdout)
    first = _sequences(updates)[0]
    assert _sequences(updates) == list(range(first, first + len(updates)))
    assert [u["event"] for u in updates][-1] == "completed"
    assert updates[-1]["order"]["status"] == "ORDER_STATUS_COMPLETED"  # type: ignore[index]

    # A finished order: its current (terminal) state, and done.
    text = _run([str(BIN / "orderctl"), "--addr", stack.address, "watch", ref])
    assert text.returncode == 0, text.stderr
    (line,) = text.stdout.splitlines()
    assert line.split()[0] == "5" and "completed" in line and "COMPLETED" in line

    stats = _run([str(BIN / "orderctl"), "--addr", stack.address, "--token", ADMIN_TOKEN,
                  "--json", "stats"])  # fmt: skip
    assert stats.returncode == 0, stats.stderr
    assert json.loads(stats.stdout)["completed"] == "1"
    denied = _run([str(BIN / "orderctl"), "--addr", stack.address, "stats"])
    assert denied.returncode == 5, denied.stderr
    missing = _run(
        [str(BIN / "orderctl"), "--addr", stack.address, "watch", "ORD0000000000MISSING"]
    )
    assert missing.returncode == 4 and missing.stderr.startswith("orderctl: NOT_FOUND")


def test_grpcurl_watch_and_stats(make_stack, sqlite_url: str) -> None:
    stack: Stack = make_stack(sqlite_url, ADMIN_TOKEN=ADMIN_TOKEN)
    stack.start_all()
    ref = place(stack).order_ref_no
    wait_terminal(stack, ref)
    grpcurl = [str(BIN / "grpcurl"), "-plaintext"]
    out = _run([*grpcurl, "-d", json.dumps({"order_ref_no": ref, "after_sequence": 2}),
                stack.address, "orders.v1.OrderService/WatchOrder"])  # fmt: skip
    assert out.returncode == 0, out.stderr
    events = json.loads("[" + out.stdout.replace("}\n{", "},{") + "]")
    assert [int(e["sequence"]) for e in events][0] == 3
    assert events[-1]["event"] == "completed"
    out = _run([*grpcurl, "-H", f"authorization: Bearer {ADMIN_TOKEN}", stack.address,
                "orders.v1.OrderService/QueueStats"])  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["completed"] == "1"


def _watch_through_a_restart(
    stack: Stack, argv: Callable[[str], list[str]], tmp_path: Path
) -> tuple[list[dict[str, object]], str]:
    """Start a watcher on a slow order, kill and restart the server under it, let it finish."""
    stack.fundhouse_behaviour(latency_ms=2500)
    ref = place(stack).order_ref_no
    out_file, err_file = tmp_path / "watch.out", tmp_path / "watch.err"
    with out_file.open("w") as out, err_file.open("w") as err:
        proc = subprocess.Popen(argv(ref), stdout=out, stderr=err, cwd=ROOT)
    try:
        # Killed once the watcher has printed the claim: the attempt is in flight.
        wait_for(lambda: '"claimed"' in out_file.read_text(), 30, "the watcher to see the claim")
        server = next(s for s in stack.services if s.name == "server")
        port = stack.server_port
        server.kill()
        stack.start_server(port=port)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err_file.read_text()
    return _json_lines(out_file.read_text()), err_file.read_text()


def _assert_whole_story_once(updates: list[dict[str, object]], err: str) -> None:
    # The current state when the watch began (the claim, or earlier), then every later
    # update exactly once, across the restart.
    first = _sequences(updates)[0]
    assert first <= 3 and _sequences(updates) == list(range(first, 6)), updates
    assert updates[-1]["event"] == "completed"
    assert "resuming" in err  # it did lose the stream


def test_python_watcher_resumes_after_a_server_restart(
    make_stack, sqlite_url: str, tmp_path: Path
) -> None:
    stack: Stack = make_stack(sqlite_url)
    stack.start_all()
    updates, err = _watch_through_a_restart(
        stack,
        lambda ref: [sys.executable, "-m", "clients.watch_example", stack.address, ref],
        tmp_path,
    )
    _assert_whole_story_once(updates, err)


@pytest.fixture(scope="session")
def node_watcher() -> Path:
    """clients/node-watcher with its dependencies installed (npm ci, once)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node/npm not installed: the Node.js watcher test needs them")
    out = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR,
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, f"npm ci failed:\n{out.stdout}\n{out.stderr}"
    return NODE_DIR / "watch.js"


def test_node_watcher_resumes_after_a_server_restart(
    make_stack, sqlite_url: str, tmp_path: Path, node_watcher: Path
) -> None:
    stack: Stack = make_stack(sqlite_url)
    stack.start_all()
    updates, err = _watch_through_a_restart(
        stack, lambda ref: ["node", str(node_watcher), stack.address, ref], tmp_path
    )
    _assert_whole_story_once(updates, err)
    order = updates[-1]["order"]
    assert isinstance(order, dict) and order["status"] == "ORDER_STATUS_COMPLETED"
    assert order["orderRefNo"] and str(order["createdOn"]).endswith("Z")
