"""The one command line for a private, non-persistent redis-server (make run, tests, bench)."""

from __future__ import annotations

from pathlib import Path


def private_redis_argv(binary: str, port: int, workdir: Path, *extra: str) -> list[str]:
    """redis-server on 127.0.0.1:port that keeps nothing on disk (its files go to workdir)."""
    return [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(workdir),
        *extra,
    ]
