"""Redis clients with short, explicit timeouts (a dead Redis must fail fast, not hang)."""

from __future__ import annotations

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

#: Errors that mean "Redis cannot be reached right now".
REDIS_DOWN_ERRORS: tuple[type[Exception], ...] = (redis.ConnectionError, redis.TimeoutError)


def make_redis(url: str, timeout_s: float, *, read_timeout_s: float | None = None) -> redis.Redis:
    """A sync client; one immediate retry covers a pooled socket left dead by a restart."""
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=timeout_s,
        socket_timeout=read_timeout_s if read_timeout_s is not None else timeout_s,
        retry=Retry(NoBackoff(), 1),
        health_check_interval=30,
        decode_responses=True,
    )
