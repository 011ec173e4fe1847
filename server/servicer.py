"""OrderService: thin async handlers that validate, call the domain in a thread, convert."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing
from typing import TypeVar

import grpc
from orders.v1 import orders_pb2 as pb

from core.domain import ACCEPTED_MESSAGE
from server import queries
from server.auth import current_caller
from server.batching import Batcher, place_many
from server.convert import fund_message, money, update_message
from server.errors import map_errors
from server.placement import OrderPlacer
from server.validation import validate_after_sequence, validate_place, validate_ref
from server.watch import Backlog, UpdateHub

logger = logging.getLogger(__name__)

T = TypeVar("T")


class OrderService:
    """The orders.v1.OrderService implementation."""

    def __init__(self, placer: OrderPlacer, executor: ThreadPoolExecutor, hub: UpdateHub) -> None:
        self.placer = placer
        self.executor = executor
        self.placements = Batcher(functools.partial(place_many, placer), executor, "place-batches")
        self.statuses = Batcher(queries.current_many, executor, "status-reads", dedupe=True)
        self.hub = hub

    async def _blocking(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def PlaceOrder(  # noqa: N802 - gRPC method names
        self, request: pb.PlaceOrderRequest, context: grpc.aio.ServicerContext
    ) -> pb.PlaceOrderResponse:
        async with map_errors(context):
            key = request.idempotency_key if request.HasField("idempotency_key") else None
            cmd = validate_place(request.fund_name, request.transaction_type, request.quantity, key)
            placed = await self.placements.submit((cmd, caller_of(context)))
            return pb.PlaceOrderResponse(
                order_ref_no=placed.ref,
                status=pb.ORDER_STATUS_PENDING,
                order_value=money(placed.value),
                message=ACCEPTED_MESSAGE,
            )
        raise AssertionError("unreachable")

    async def GetStatus(  # noqa: N802
        self, request: pb.GetStatusRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetStatusResponse:
        async with map_errors(context):
            ref = validate_ref(request.order_ref_no)
            update = await self.statuses.submit(ref)
            return pb.GetStatusResponse(order=update_message(update).order)
        raise AssertionError("unreachable")

    async def ListOrderEvents(  # noqa: N802
        self, request: pb.ListOrderEventsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListOrderEventsResponse:
        async with map_errors(context):
            ref = validate_ref(request.order_ref_no)
            updates = await self._blocking(queries.history, ref, 0)
            return pb.ListOrderEventsResponse(events=[update_message(u) for u in updates])
        raise AssertionError("unreachable")

    async def ListFunds(  # noqa: N802
        self, request: pb.ListFundsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListFundsResponse:
        async with map_errors(context):
            catalog = await self._blocking(queries.fund_catalog)
            return pb.ListFundsResponse(funds=[fund_message(n, v) for n, v in catalog])
        raise AssertionError("unreachable")

    async def WatchOrder(  # noqa: N802
        self, request: pb.WatchOrderRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        # Yields serialized WatchOrderResponse messages: a live update is serialized once
        # by the hub for all its watchers (handlers.py passes bytes through).
        async with map_errors(context):
            ref = validate_ref(request.order_ref_no)
            after = validate_after_sequence(
                request.after_sequence if request.HasField("after_sequence") else None
            )
            async with aclosing(self.hub.stream(ref, after, self._backlog)) as messages:
                async for data in messages:
                    yield data

    async def _backlog(self, ref: str, after: int | None) -> Backlog:
        if after is None:
            # A stream's first read is the order's current state, as GetStatus reads it:
            # streams that open together share one thread hop and one query with GetStatus.
            current = await self.statuses.submit(ref)
            return Backlog([current], current.terminal)
        return await self._blocking(queries.watch_backlog, ref, after)

    async def QueueStats(  # noqa: N802
        self, request: pb.QueueStatsRequest, context: grpc.aio.ServicerContext
    ) -> pb.QueueStatsResponse:
        # Admin only: server/auth.py refuses every other caller before this runs.
        async with map_errors(context):
            counts = await self._blocking(queries.queue_counts, self.placer.redis)
            return pb.QueueStatsResponse(
                waiting=counts.waiting,
                active=counts.active,
                completed=counts.completed,
                failed=counts.failed,
                waiting_by_priority={str(p): n for p, n in counts.waiting_by_priority.items()},
            )
        raise AssertionError("unreachable")


def caller_of(context: grpc.aio.ServicerContext) -> str:
    """The authenticated caller's name ("" when anonymous): idempotency keys are scoped by it."""
    return current_caller()
