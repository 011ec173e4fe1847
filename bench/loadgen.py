"""Load generator, run as its own process: empty RPCs or PlaceOrder at N in flight.

Prints one JSON object: count, errors, elapsed_s, rate, p50_ms, p99_ms, p999_ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections import Counter
from typing import Any

import grpc
from orders.v1 import orders_pb2 as pb

from bench.stats import latency_summary

FUNDS = [
    "Global Equity Fund",
    "Emerging Markets Fund",
    "Sovereign Bond Fund",
    "Money Market Fund",
    "Technology Growth Fund",
]


def _identity(data: bytes) -> bytes:
    return data


async def run(args: argparse.Namespace) -> dict[str, Any]:
    channels = [
        grpc.aio.insecure_channel(args.addr, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(args.channels)
    ]
    metadata = (("authorization", f"Bearer {args.token}"),) if args.token else None
    if args.mode == "empty":
        calls = [
            c.unary_unary(
                "/bench.Empty/Call", request_serializer=_identity, response_deserializer=_identity
            )
            for c in channels
        ]
    else:
        calls = [
            c.unary_unary(
                "/orders.v1.OrderService/PlaceOrder",
                request_serializer=pb.PlaceOrderRequest.SerializeToString,
                response_deserializer=pb.PlaceOrderResponse.FromString,
            )
            for c in channels
        ]
    rng = random.Random(args.seed)
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    remaining = args.count
    deadline = time.monotonic() + args.duration if args.duration else float("inf")
    refs: list[str] = []

    def next_request() -> Any:
        if args.mode == "empty":
            return b""
        kind = pb.TRANSACTION_TYPE_BUY if rng.random() < 0.5 else pb.TRANSACTION_TYPE_SELL
        return pb.PlaceOrderRequest(
            fund_name=rng.choice(FUNDS), transaction_type=kind, quantity=rng.randint(1, 1000)
        )

    async def one_worker(index: int) -> None:
        nonlocal remaining
        call = calls[index % len(calls)]
        while time.monotonic() < deadline:
            if args.count:
                if remaining <= 0:
                    return
                remaining -= 1
            request = next_request()
            started = time.perf_counter()
            try:
                reply = await call(request, timeout=30, metadata=metadata)
            except grpc.aio.AioRpcError as exc:
                errors[exc.code().name] += 1
                continue
            latencies.append(time.perf_counter() - started)
            if args.mode == "place" and args.keep_refs:
                refs.append(reply.order_ref_no)

    # Warm up the channels (connection set-up is not what is measured); a warm-up order
    # counts toward --count, so exactly --count orders are placed.
    for call in calls:
        try:
            reply = await call(next_request(), timeout=30, metadata=metadata)
            if args.mode == "place" and args.keep_refs:
                refs.append(reply.order_ref_no)
        except grpc.aio.AioRpcError as exc:
            errors[f"warmup:{exc.code().name}"] += 1
        remaining -= 1
    started = time.monotonic()
    await asyncio.gather(*(one_worker(i) for i in range(args.concurrency)))
    elapsed = time.monotonic() - started
    for channel in channels:
        await channel.close()
    result: dict[str, Any] = {
        "count": len(latencies),
        "errors": dict(errors),
        "elapsed_s": elapsed,
        "rate": len(latencies) / elapsed,
        "concurrency": args.concurrency,
        **latency_summary(latencies),
    }
    if args.keep_refs:
        result["refs"] = refs
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=["empty", "place"])
    parser.add_argument("--addr", required=True)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--duration", type=float, default=0.0)
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--token", default=None)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep-refs", action="store_true")
    args = parser.parse_args(argv)
    if not args.duration and not args.count:
        parser.error("give --duration or --count")
    json.dump(asyncio.run(run(args)), sys.stdout)


if __name__ == "__main__":
    main()
