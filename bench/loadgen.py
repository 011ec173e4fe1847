"""Load generator, run as its own process: empty RPCs or PlaceOrder at N in flight.

Prints one JSON object: count, errors, elapsed_s, rate, p50_ms, p99_ms, p999_ms, cpu_us_per_call
(this process), started_at (epoch seconds of the first timed call).

Calls go through grpc's sync stubs as futures: each completion (a C-core thread) starts the
next call. Measured here against the bare server it cost 80 us of client CPU a call against
127 us for the same calls from grpc.aio, so the client steals less of the 2 cores that the
server under test shares with it. Latency is taken from just before the call is started to its
completion callback.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import threading
import time
from collections import Counter
from typing import Any

import grpc
from orders.v1 import orders_pb2 as pb

from bench.stats import latency_summary
from core.runtime import tune_gc

FUNDS = [
    "Global Equity Fund",
    "Emerging Markets Fund",
    "Sovereign Bond Fund",
    "Money Market Fund",
    "Technology Growth Fund",
]


def _identity(data: bytes) -> bytes:
    return data


#: Orders the status mode reads (a GetStatus batch then mostly holds different refs).
STATUS_ORDERS = 1000


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Load:
    """Keeps `concurrency` calls in flight until the count or the deadline is reached."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        options = [("grpc.use_local_subchannel_pool", 1)]
        self.channels = [
            grpc.insecure_channel(args.addr, options=options) for _ in range(args.channels)
        ]
        if args.mode == "empty":
            self.calls = self._stubs(args.method, _identity, _identity)
        else:
            self.calls = self._stubs(
                "/orders.v1.OrderService/PlaceOrder",
                pb.PlaceOrderRequest.SerializeToString,
                pb.PlaceOrderResponse.FromString,
            )
        #: status mode: the orders the GetStatus calls read, at random (placed in warm_up).
        self.status_refs: list[str] = []
        self.metadata = (("authorization", f"Bearer {args.token}"),) if args.token else None
        self.rng = random.Random(args.seed)
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.latencies: list[float] = []
        self.errors: Counter[str] = Counter()
        self.refs: list[str] = []
        self.remaining = args.count or -1
        self.in_flight = 0
        self.deadline = float("inf")
        self.next_channel = 0

    def _stubs(self, method: str, serialize: Any, deserialize: Any) -> list[Any]:
        """One unary callable per channel."""
        return [
            c.unary_unary(method, request_serializer=serialize, response_deserializer=deserialize)
            for c in self.channels
        ]

    def request(self) -> Any:
        if self.args.mode == "empty":
            return b""
        if self.args.mode == "status":
            return pb.GetStatusRequest(order_ref_no=self.rng.choice(self.status_refs))
        kind = pb.TRANSACTION_TYPE_BUY if self.rng.random() < 0.5 else pb.TRANSACTION_TYPE_SELL
        return pb.PlaceOrderRequest(
            fund_name=self.rng.choice(FUNDS),
            transaction_type=kind,
            quantity=self.rng.randint(1, 1000),
        )

    def warm_up(self) -> None:
        """One call per channel (connection set-up is not what is measured); a warm-up order
        counts toward --count, so exactly --count orders are placed. Status mode: one order
        orders are placed, and each call reads one of them at random."""
        if self.args.mode == "status":
            for i in range(STATUS_ORDERS):
                reply = self.calls[i % len(self.calls)](
                    pb.PlaceOrderRequest(
                        fund_name=FUNDS[0], transaction_type=pb.TRANSACTION_TYPE_BUY, quantity=1
                    ),
                    timeout=30,
                    metadata=self.metadata,
                )
                self.status_refs.append(reply.order_ref_no)
            self.calls = self._stubs(
                "/orders.v1.OrderService/GetStatus",
                pb.GetStatusRequest.SerializeToString,
                pb.GetStatusResponse.FromString,
            )
        for call in self.calls:
            try:
                reply = call(self.request(), timeout=30, metadata=self.metadata)
                if self.args.keep_refs:
                    self.refs.append(reply.order_ref_no)
            except grpc.RpcError as exc:
                self.errors[f"warmup:{exc.code().name}"] += 1
            if self.remaining > 0:
                self.remaining -= 1

    def start_one(self) -> None:
        """Start the next call, unless the load is over (then maybe signal the end)."""
        with self.lock:
            if self.remaining == 0 or time.monotonic() >= self.deadline:
                if self.in_flight == 0:
                    self.done.set()
                return
            if self.remaining > 0:
                self.remaining -= 1
            self.in_flight += 1
            call = self.calls[self.next_channel % len(self.calls)]
            self.next_channel += 1
            request = self.request()
        started = time.perf_counter()
        future = call.future(request, timeout=30, metadata=self.metadata)
        future.add_done_callback(lambda f: self.finished(f, started))

    def finished(self, future: grpc.Future, started: float) -> None:
        took = time.perf_counter() - started
        try:
            reply = future.result()
        except grpc.RpcError as exc:
            with self.lock:
                self.errors[exc.code().name] += 1
                self.in_flight -= 1
        else:
            with self.lock:
                self.latencies.append(took)
                if self.args.keep_refs:
                    self.refs.append(reply.order_ref_no)
                self.in_flight -= 1
        self.start_one()

    def run(self) -> dict[str, Any]:
        self.warm_up()
        if self.args.duration:
            self.deadline = time.monotonic() + self.args.duration
        cpu0, started_at, started = _cpu_s(), time.time(), time.monotonic()
        for _ in range(self.args.concurrency):
            self.start_one()
        if not self.done.wait(timeout=(self.args.duration or 0) + 900):
            raise SystemExit("load did not finish")
        elapsed = time.monotonic() - started
        cpu = _cpu_s() - cpu0
        for channel in self.channels:
            channel.close()
        count = len(self.latencies)
        result: dict[str, Any] = {
            "count": count,
            "errors": dict(self.errors),
            "elapsed_s": elapsed,
            "rate": count / elapsed,
            "concurrency": self.args.concurrency,
            "cpu_us_per_call": cpu / max(count, 1) * 1e6,
            "started_at": started_at,
            **latency_summary(self.latencies),
        }
        if self.args.keep_refs:
            result["refs"] = self.refs
        return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=["empty", "place", "status"])
    parser.add_argument(
        "--method",
        default="/bench.Empty/Call",
        help="empty mode: the method called with an empty message (e.g. "
        "/grpc.health.v1.Health/Check on orders-server: its interceptors, no handler work)",
    )
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
    load = Load(args)
    tune_gc()  # as every process of the stack does: the load generator shares their 2 cores
    json.dump(load.run(), sys.stdout)


if __name__ == "__main__":
    main()
