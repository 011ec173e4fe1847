"""Lint and strict typing are part of the suite, so CI keeps them true."""

from __future__ import annotations

import subprocess

from tests.harness import BIN, ROOT

PACKAGES = [
    "core",
    "server",
    "worker",
    "fundhouse",
    "clients",
    "gateway",
    "tests",
    "scripts",
    "bench",
]


def test_ruff_is_clean() -> None:
    out = subprocess.run(
        [str(BIN / "ruff"), "check", "--output-format", "concise", *PACKAGES],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_mypy_strict_is_clean() -> None:
    out = subprocess.run([str(BIN / "mypy")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
