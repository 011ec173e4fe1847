"""Watcher load, run as its own process: N WatchOrder streams over the given refs.

Prints "ready" once every stream has its first message, then a JSON result once every stream
ended: how many saw their terminal update and the delay from its recorded_on to receipt.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import grpc
from orders.v1 import orders_pb2 as pb

from bench.stats import latency_summary

TERMINAL = (pb.ORDER_STATUS_COMPLETED, pb.ORDER_STATUS_CANCELLED)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with open(args.refs_file) as handle:
        refs = [line.strip() for line in handle if line.strip()]
    channels = [
        grpc.aio.insecure_channel(
            args.addr,
            options=[
                ("grpc.use_local_subchannel_pool", 1),
                ("grpc.max_concurrent_streams", 100000),
            ],
        )
        for _ in range(args.channels)
    ]
    first = asyncio.Semaphore(0)
    delays: list[float] = []
    outcomes = {"terminal": 0, "no_terminal": 0, "errors": 0}

    async def watch(i: int) -> None:
        ref = refs[(args.offset + i) % len(refs)]
        stub = channels[i % len(channels)].unary_stream(
            "/orders.v1.OrderService/WatchOrder",
            request_serializer=pb.WatchOrderRequest.SerializeToString,
            response_deserializer=pb.WatchOrderResponse.FromString,
        )
        got_first = False
        try:
            async for update in stub(pb.WatchOrderRequest(order_ref_no=ref), timeout=args.timeout):
                if not got_first:
                    got_first = True
                    first.release()
                    if update.order.status in TERMINAL:
                        continue  # already finished before the watch began: no delay to count
                if update.order.status in TERMINAL:
                    delays.append(time.time() - update.recorded_on.ToNanoseconds() / 1e9)
                    outcomes["terminal"] += 1
                    return
            outcomes["no_terminal"] += 1
        except grpc.aio.AioRpcError:
            outcomes["errors"] += 1
        finally:
            if not got_first:
                first.release()

    tasks = [asyncio.create_task(watch(i)) for i in range(args.streams)]
    for _ in range(args.streams):
        await first.acquire()
    print("ready", flush=True)
    cpu_at, ready_at = time.process_time(), time.monotonic()
    await asyncio.gather(*tasks)
    cpu_s, elapsed_s = time.process_time() - cpu_at, time.monotonic() - ready_at
    for channel in channels:
        await channel.close()
    return {
        "streams": args.streams,
        **outcomes,
        "delays_s": delays,
        **latency_summary(delays),
        "cpu_s": cpu_s,
        "elapsed_s": elapsed_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--addr", required=True)
    parser.add_argument("--refs-file", required=True)
    parser.add_argument("--streams", type=int, required=True)
    parser.add_argument("--offset", type=int, default=0, help="first index into the refs")
    parser.add_argument("--channels", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args))), flush=True)


if __name__ == "__main__":
    main()
