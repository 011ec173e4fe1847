"""The retry policy for third-party calls, built from settings at run time.

tenacity decides (stop, wait, retry); the caller's coroutine does the calling and the waiting.
One `Retrying` per attempt budget is built per process and shared by every order: each order
steps it with a `RetryCallState` of its own (`Retrying.iter` runs without yielding, so orders
interleaved on the event loop never see each other's state). A `Retrying` built per order was
a reference cycle of some twenty objects (its actions hold its bound methods), so every order
left garbage for the cycle collector, whose pauses then reached 100 ms on a busy worker.
tenacity's AsyncRetrying does the same work but inspects every callback on every attempt to see
whether it is a coroutine: that alone was a tenth of a worker's CPU per order.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from tenacity import (
    DoAttempt,
    DoSleep,
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)
from tenacity.stop import stop_base

from worker.thirdparty import ThirdPartyUnavailable


class stop_when_set(stop_base):  # noqa: N801 - named like tenacity's own stop strategies
    """Stop retrying once the asyncio event is set (tenacity's stop_when_event_set takes a
    threading.Event)."""

    def __init__(self, event: asyncio.Event) -> None:
        self.event = event

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self.event.is_set()


def _never_sleep(seconds: float) -> None:
    raise AssertionError("the retry policy is stepped with Attempts, never iterated")


class RetryPolicy:
    """At most N calls an order; exponential backoff with jitter; only retryable errors."""

    def __init__(
        self, *, base_delay_s: float, max_delay_s: float, stop_event: asyncio.Event
    ) -> None:
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.stop_event = stop_event
        self._by_budget: dict[int, Retrying] = {}

    def _retrying(self, max_attempts: int) -> Retrying:
        retrying = self._by_budget.get(max_attempts)
        if retrying is None:
            retrying = self._by_budget[max_attempts] = Retrying(
                stop=stop_after_attempt(max_attempts) | stop_when_set(self.stop_event),
                wait=wait_exponential_jitter(
                    multiplier=self.base_delay_s, max=self.max_delay_s, jitter=self.base_delay_s
                ),
                retry=retry_if_exception_type(ThirdPartyUnavailable),
                sleep=_never_sleep,
                reraise=True,
            )
        return retrying

    def attempts(self, max_attempts: int) -> Attempts:
        """A fresh schedule of at most max_attempts calls, for one order."""
        return Attempts(self._retrying(max_attempts), self.stop_event)


class Attempts:
    """One order's way through the policy: `next()` says call now, wait first, or stop."""

    def __init__(self, retrying: Retrying, stop_event: asyncio.Event) -> None:
        self.retrying = retrying
        self.stop_event = stop_event
        if "idle_for" not in retrying.statistics:
            # Its statistics are per thread and only ever added to here: start them once.
            retrying.begin()
        self.state = RetryCallState(retrying, fn=None, args=(), kwargs={})
        #: The backoff tenacity chose before the coming attempt, until it is waited out.
        self.due: float | None = None

    @property
    def number(self) -> int:
        """The attempt about to be made (or last made), from 1."""
        return self.state.attempt_number

    def next(self) -> bool:
        """True: make the next call (after `wait()` if `due` is set). False: the last call
        succeeded. Raises the last call's error when tenacity stops (a final rejection, or
        the attempts or the worker's run are over)."""
        action: Any = self.retrying.iter(self.state)
        if isinstance(action, DoAttempt):
            return True
        if isinstance(action, DoSleep):
            self.state.prepare_for_next_attempt()
            self.due = float(action)
            return True
        return False

    def succeeded(self, result: object) -> None:
        self.state.set_result(result)

    def failed(self, exc: BaseException) -> None:
        self.state.set_exception((type(exc), exc, exc.__traceback__))

    async def wait(self) -> None:
        """Wait the backoff, or less if the worker is stopping."""
        seconds, self.due = self.due or 0.0, None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop_event.wait(), seconds)
