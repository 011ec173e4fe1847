"""Example: follow an order with WatchOrder (grpc.aio), surviving disconnects.

    python -m clients.watch_example 127.0.0.1:50051 ORD7KQ2M9X4B1ZP0W3E

Prints one JSON object per update (protobuf JSON form), each update once, and exits 0 after
the terminal one (COMPLETED or CANCELLED). When the stream breaks (server restart, network)
it watches again with after_sequence = the last sequence it printed, so the server replays
exactly what was missed. ORDERS_TOKEN is sent as a bearer token; ORDERS_TLS_CA turns TLS on.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterable, Awaitable, Callable

import grpc
from google.protobuf import json_format
from orders.v1 import orders_pb2 as pb
from orders.v1 import orders_pb2_grpc as pb_grpc

TERMINAL = (pb.ORDER_STATUS_COMPLETED, pb.ORDER_STATUS_CANCELLED)
#: "The connection or the server went away": watch again. Anything else (NOT_FOUND,
#: INVALID_ARGUMENT, UNAUTHENTICATED...) is an answer, and retrying would not change it.
RESUMABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)

OpenStream = Callable[[pb.WatchOrderRequest], AsyncIterable[pb.WatchOrderResponse]]
OnUpdate = Callable[[pb.WatchOrderResponse], None]

#: Keep the channel's own reconnection attempts frequent, so a restarted server is found soon.
CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 2000),
]


async def follow(
    open_stream: OpenStream,
    ref: str,
    on_update: OnUpdate,
    *,
    max_retries: int = 10,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> pb.WatchOrderResponse:
    """Watch `ref` until its terminal update, calling on_update once per update.

    Raises the last grpc.RpcError when it cannot go on (a non-resumable code, or
    max_retries reconnections in a row without a new update).
    """
    last: int | None = None
    retries = 0
    while True:
        request = pb.WatchOrderRequest(order_ref_no=ref)
        if last is not None:
            request.after_sequence = last
        try:
            async for update in open_stream(request):
                if last is not None and update.sequence <= last:
                    continue  # seen before the reconnection
                on_update(update)
                last, retries = update.sequence, 0
                if update.order.status in TERMINAL:
                    return update
        except grpc.RpcError as exc:  # grpc.aio.AioRpcError is one
            if exc.code() not in RESUMABLE or retries >= max_retries:
                raise
            print(f"stream lost ({exc.code().name}), resuming", file=sys.stderr)
        else:
            if retries >= max_retries:
                raise RuntimeError("the server keeps ending the stream before the order ends")
        retries += 1
        await sleep(min(0.25 * 2**retries, 5.0))


def print_update(update: pb.WatchOrderResponse) -> None:
    """One update as one line of protobuf JSON."""
    text = json_format.MessageToJson(update, always_print_fields_with_no_presence=True, indent=None)
    print(text, flush=True)


async def watch(address: str, ref: str, token: str | None, ca_file: str | None) -> None:
    """Open a channel to `address` and follow `ref` to its end."""
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    if ca_file:
        with open(ca_file, "rb") as f:
            credentials = grpc.ssl_channel_credentials(root_certificates=f.read())
        channel = grpc.aio.secure_channel(address, credentials, options=CHANNEL_OPTIONS)
    else:
        channel = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
    async with channel:
        stub = pb_grpc.OrderServiceStub(channel)  # type: ignore[no-untyped-call]

        def open_stream(request: pb.WatchOrderRequest) -> AsyncIterable[pb.WatchOrderResponse]:
            return stub.WatchOrder(request, metadata=metadata)  # type: ignore[no-any-return]

        await follow(open_stream, ref, print_update)


def main(argv: list[str] | None = None) -> None:
    """python -m clients.watch_example ADDRESS REF"""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m clients.watch_example ADDRESS REF", file=sys.stderr)
        raise SystemExit(2)
    try:
        asyncio.run(
            watch(args[0], args[1], os.environ.get("ORDERS_TOKEN"), os.environ.get("ORDERS_TLS_CA"))
        )
    except grpc.RpcError as exc:
        print(f"watch_example: {exc.code().name}: {exc.details()}", file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
