"""Settings.from_env: defaults, overrides and one clear line per bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.settings import Settings, SettingsError


def test_defaults() -> None:
    s = Settings.from_env({})
    assert s.port == 50051
    assert s.redis_url == "redis://127.0.0.1:6379/0"
    assert s.database_url == "sqlite:///var/orders.db"
    assert s.admin_token is None and s.api_tokens == {}


def test_redis_parts_and_url_precedence() -> None:
    s = Settings.from_env({"REDIS_HOST": "cache", "REDIS_PORT": "6380", "REDIS_PASSWORD": "p@ss"})
    assert s.redis_url == "redis://:p%40ss@cache:6380/0"
    s = Settings.from_env({"REDIS_HOST": "cache", "REDIS_URL": "rediss://x:1/2"})
    assert s.redis_url == "rediss://x:1/2"


def test_every_bad_value_is_reported(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as err:
        Settings.from_env(
            {
                "PORT": "http",
                "WORKER_CONCURRENCY": "0",
                "THIRD_PARTY_TIMEOUT_S": "-1",
                "DATABASE_URL": "mysql://x",
                "THIRD_PARTY_URL": "ftp://x",
                "ADMIN_TOKEN": "short",
                "FUNDS_FILE": str(tmp_path / "missing.json"),
                "REDIS_PASSWORD": "secret-pw",
                "REDIS_PORT": "99999",
                "API_TOKENS": "nocolon",
                "LOG_FORMAT": "xml",
            }
        )
    problems = err.value.problems
    for name in (
        "PORT",
        "WORKER_CONCURRENCY",
        "THIRD_PARTY_TIMEOUT_S",
        "DATABASE_URL",
        "THIRD_PARTY_URL",
        "ADMIN_TOKEN",
        "FUNDS_FILE",
        "REDIS_PORT",
        "API_TOKENS",
        "LOG_FORMAT",
    ):
        assert any(p.startswith(name + "=") for p in problems), (name, problems)
    assert "short" not in str(err.value)  # tokens are never echoed


def test_database_url_forms() -> None:
    for url in (
        "sqlite:///relative/path.db",
        "sqlite:////abs/path.db",
        "postgresql://user:pw@host:5432/db",
    ):
        assert Settings.from_env({"DATABASE_URL": url}).database_url == url


def test_server_refuses_bad_configuration(tmp_path: Path) -> None:
    import subprocess

    from tests.harness import BIN

    out = subprocess.run(
        [str(BIN / "orders-server")],
        env={"PORT": "x", "PATH": "/usr/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2
    assert "PORT='x'" in out.stderr and "Traceback" not in out.stderr
