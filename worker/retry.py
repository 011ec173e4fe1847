"""The retry policy for third-party calls, built from settings at run time.

tenacity decides (stop, wait, retry); the caller's coroutine does the waiting. The policy is a
plain `Retrying` iterated in an `async def`: its attempt bodies await the call, and its sleep
only notes the backoff, which the caller awaits (after recording the failure) before the next
attempt. tenacity's AsyncRetrying does the same work but inspects every callback on every
attempt to see whether it is a coroutine: that alone was a tenth of a worker's CPU per order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)
from tenacity.stop import stop_base

from worker.thirdparty import ThirdPartyUnavailable

logger = logging.getLogger(__name__)


class stop_when_set(stop_base):  # noqa: N801 - named like tenacity's own stop strategies
    """Stop retrying once the asyncio event is set (tenacity's stop_when_event_set takes a
    threading.Event)."""

    def __init__(self, event: asyncio.Event) -> None:
        self.event = event

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self.event.is_set()


class Backoff:
    """The sleep handed to tenacity: it records the delay for the caller to await."""

    def __init__(self, stop_event: asyncio.Event) -> None:
        self.stop_event = stop_event
        #: The delay tenacity chose before the coming attempt, until the caller waits it out.
        self.due: float | None = None

    def __call__(self, seconds: float) -> None:
        self.due = seconds

    async def wait(self) -> None:
        """Wait the recorded delay, or less if the worker is stopping."""
        seconds, self.due = self.due or 0.0, None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop_event.wait(), seconds)


def build_retrying(
    *,
    max_attempts: int,
    base_delay_s: float,
    max_delay_s: float,
    stop_event: asyncio.Event,
    backoff: Backoff,
) -> Retrying:
    """At most max_attempts calls; exponential backoff with jitter; only retryable errors."""
    return Retrying(
        stop=stop_after_attempt(max_attempts) | stop_when_set(stop_event),
        wait=wait_exponential_jitter(multiplier=base_delay_s, max=max_delay_s, jitter=base_delay_s),
        retry=retry_if_exception_type(ThirdPartyUnavailable),
        sleep=backoff,
        reraise=True,
    )
