"""The retry policy for third-party calls, built from settings at run time."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_when_event_set,
    wait_exponential_jitter,
)

from worker.thirdparty import ThirdPartyUnavailable

logger = logging.getLogger(__name__)


def build_retrying(
    *,
    max_attempts: int,
    base_delay_s: float,
    max_delay_s: float,
    stop_event: threading.Event,
    before_sleep: Callable[[RetryCallState], None],
    sleep: Callable[[float], None] | None = None,
) -> Retrying:
    """At most max_attempts calls; exponential backoff with jitter; only retryable errors.

    The sleep waits on stop_event by default, so a shutdown interrupts a backoff at once.
    """

    def wait_or_stop(seconds: float) -> None:
        stop_event.wait(seconds)

    return Retrying(
        stop=stop_after_attempt(max_attempts) | stop_when_event_set(stop_event),
        wait=wait_exponential_jitter(initial=base_delay_s, max=max_delay_s, jitter=base_delay_s),
        retry=retry_if_exception_type(ThirdPartyUnavailable),
        before_sleep=before_sleep,
        sleep=sleep if sleep is not None else wait_or_stop,
        reraise=True,
    )
