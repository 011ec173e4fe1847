"""Prometheus metrics of the server process, all named orders_*.

RPCs are counted by an interceptor, so every service (health and reflection too) and every
rejection by a later interceptor (auth) is seen with the code the client got. Queue depth is
read from Redis when Prometheus scrapes, never on a timer.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import grpc
import redis
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

from core import keys
from core.redis_conn import REDIS_DOWN_ERRORS

logger = logging.getLogger(__name__)

RPC_HANDLED = Counter(
    "orders_rpc_handled",
    "RPCs completed, by method and gRPC status code.",
    ["method", "code"],
)
RPC_DURATION = Histogram(
    "orders_rpc_duration_seconds",
    "Time to answer a unary RPC, by method (streams are counted, not timed).",
    ["method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
ORDERS_PLACED = Counter(
    "orders_placed",
    "Orders accepted and queued by PlaceOrder (idempotent replays excluded), by type.",
    ["type"],
)
DEPENDENCY_UP = Gauge(
    "orders_dependency_up",
    "1 while the health probe of a dependency (redis, database) succeeds, else 0.",
    ["dependency"],
)
WATCH_STREAMS = Gauge("orders_watch_streams_open", "WatchOrder streams open now.")


def set_watch_streams_source(count: Callable[[], float]) -> None:
    """Read the number of open WatchOrder streams from `count` at each scrape."""
    WATCH_STREAMS.set_function(count)


class QueueDepthCollector(Collector):
    """orders_queue_depth{priority}: LLEN of each list, read at scrape time."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "orders_queue_depth", "Orders waiting on each priority list.", labels=["priority"]
        )
        try:
            with self.client.pipeline(transaction=False) as pipe:
                for priority in keys.PRIORITIES:
                    pipe.llen(keys.queue_key(priority))
                depths = pipe.execute()
        except REDIS_DOWN_ERRORS as exc:
            # No sample rather than a wrong one; orders_dependency_up says why.
            logger.debug("queue depth unavailable: %s", exc)
        else:
            for priority, depth in zip(keys.PRIORITIES, depths, strict=True):
                family.add_metric([str(priority)], float(depth))
        yield family


def register_queue_depth(client: redis.Redis) -> QueueDepthCollector:
    """Add the queue depth collector to the default registry (once per process)."""
    collector = QueueDepthCollector(client)
    REGISTRY.register(collector)
    return collector


def _method_name(full: str) -> str:
    # "/orders.v1.OrderService/PlaceOrder" -> "orders.v1.OrderService/PlaceOrder"
    return full.lstrip("/")


def _code_of(context: grpc.aio.ServicerContext, error: BaseException | None) -> str:
    if isinstance(error, asyncio.CancelledError):
        return "CANCELLED"
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return str(code.name)
    if error is not None and not isinstance(error, grpc.aio.AbortError):
        return "UNKNOWN"
    return "OK"


_children: dict[tuple[str, ...], Any] = {}


def _child(metric: Any, *labels: str) -> Any:
    """metric.labels(*labels), cached: the lookup cost more than the increment."""
    key = (metric._name, *labels)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*labels)
    return child


def placed(transaction_type: str, count: int = 1) -> None:
    """Count accepted orders of one type."""
    _child(ORDERS_PLACED, transaction_type).inc(count)


def _record(method: str, context: Any, error: BaseException | None, started: float | None) -> None:
    _child(RPC_HANDLED, method, _code_of(context, error)).inc()
    if started is not None:
        _child(RPC_DURATION, method).observe(time.perf_counter() - started)


def _wrap_unary(method: str, behavior: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
    async def handler(request: Any, context: grpc.aio.ServicerContext) -> Any:
        started, error = time.perf_counter(), None
        try:
            return await behavior(request, context)
        except BaseException as exc:
            error = exc
            raise
        finally:
            _record(method, context, error, started)

    return handler


def _wrap_stream(method: str, behavior: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.isasyncgenfunction(behavior):

        async def generator(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            error = None
            try:
                async for item in behavior(request, context):
                    yield item
            except BaseException as exc:
                error = exc
                raise
            finally:
                _record(method, context, error, None)

        return generator

    # A handler that writes with context.write() (the health service's Watch) stays one.
    async def writer(request: Any, context: grpc.aio.ServicerContext) -> None:
        error = None
        try:
            await behavior(request, context)
        except BaseException as exc:
            error = exc
            raise
        finally:
            _record(method, context, error, None)

    return writer


class MetricsInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Counts every RPC by method and code, and times unary ones. Put it first in the chain."""

    def __init__(self) -> None:
        # The generic handlers answer the same handler object for a method every call, so it
        # is wrapped once per method (keyed by method: only served methods have a handler). A
        # rejecting handler of the auth check is new each call: it misses and replaces the
        # entry, and the next accepted call wraps its handler again.
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        path = handler_call_details.method
        cached = self._wrapped.get(path)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._wrap(handler, _method_name(path))
        self._wrapped[path] = (handler, wrapped)
        return wrapped

    @staticmethod
    def _wrap(handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        if handler.unary_unary is not None:
            return handler._replace(unary_unary=_wrap_unary(method, handler.unary_unary))
        if handler.unary_stream is not None:
            return handler._replace(unary_stream=_wrap_stream(method, handler.unary_stream))
        return handler  # client-streaming methods: none in this server (reflection's is bidi)
