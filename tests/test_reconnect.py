"""The Redis reconnect backoff and the lock-timeout settings (no processes needed)."""

from __future__ import annotations

import logging

import pytest
import redis

from core.redis_conn import Reconnect
from core.settings import Settings, SettingsError


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_probes_back_off_and_the_edges_are_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    gate = Reconnect("test", initial_s=0.5, cap_s=2.0, clock=clock)
    caplog.set_level(logging.INFO, logger="core.redis_conn")
    assert gate.ready() and not gate.down
    down = redis.ConnectionError("refused")
    delays = [gate.failed(down) for _ in range(5)]
    assert delays == [0.5, 1.0, 2.0, 2.0, 2.0]
    assert not gate.ready()  # until the next probe is due, callers do not touch Redis
    clock.now += 2.0
    assert gate.ready()  # this caller probes...
    assert not gate.ready()  # ...and the others keep waiting for its result
    gate.succeeded()
    assert gate.ready() and not gate.down
    messages = [r.getMessage() for r in caplog.records]
    assert sum("redis unreachable" in m for m in messages) == 1
    assert sum("still unreachable" in m for m in messages) == 2  # while the delay grows only
    assert sum("reachable again" in m for m in messages) == 1


def test_lock_timeout_settings() -> None:
    s = Settings.from_env({})
    assert (s.db_lock_timeout_s, s.server_db_lock_timeout_s) == (30.0, 3.0)
    s = Settings.from_env({"DB_LOCK_TIMEOUT_S": "0.5", "SERVER_DB_LOCK_TIMEOUT_S": "1"})
    assert (s.db_lock_timeout_s, s.server_db_lock_timeout_s) == (0.5, 1.0)
    with pytest.raises(SettingsError) as err:
        Settings.from_env({"DB_LOCK_TIMEOUT_S": "0", "SERVER_DB_LOCK_TIMEOUT_S": "soon"})
    assert len(err.value.problems) == 2
