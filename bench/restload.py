"""REST load, run as its own process: POST /api/order (or GET a status) at N in flight.

Prints one JSON object like bench/loadgen.py's: count, errors, rate, p50/p99/p99.9 ms.
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

import aiohttp

from bench.loadgen import FUNDS
from bench.stats import latency_summary

#: Orders the status mode reads.
STATUS_ORDERS = 200


async def run(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    refs: list[str] = []
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(base_url=args.url, connector=connector) as session:

        async def place() -> str:
            body = {
                "fundName": rng.choice(FUNDS),
                "transactionType": rng.choice(["BUY", "SELL"]),
                "quantity": rng.randint(1, 1000),
            }
            async with session.post("/api/order", json=body) as response:
                data = await response.read()
                if response.status != 202:
                    raise RuntimeError(f"HTTP {response.status}")
                return str(json.loads(data)["data"]["orderRefNo"])

        async def status() -> str:
            ref = rng.choice(refs)
            async with session.get(f"/api/order/{ref}/status") as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"HTTP {response.status}")
                return ref

        # Warm-up; and the orders the status mode reads, one at random per call.
        refs.append(await place())
        if args.mode == "status":
            refs.extend(await asyncio.gather(*(place() for _ in range(STATUS_ORDERS - 1))))
        call = place if args.mode == "place" else status
        deadline = time.monotonic() + args.duration

        async def one() -> None:
            while time.monotonic() < deadline:
                started = time.perf_counter()
                try:
                    await call()
                except (RuntimeError, aiohttp.ClientError) as exc:
                    errors[str(exc)[:40]] += 1
                    continue
                latencies.append(time.perf_counter() - started)

        started = time.monotonic()
        await asyncio.gather(*(one() for _ in range(args.concurrency)))
        elapsed = time.monotonic() - started
    return {
        "count": len(latencies),
        "errors": dict(errors),
        "elapsed_s": elapsed,
        "rate": len(latencies) / elapsed,
        "concurrency": args.concurrency,
        **latency_summary(latencies),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=["place", "status"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    json.dump(asyncio.run(run(args)), sys.stdout)


if __name__ == "__main__":
    main()
