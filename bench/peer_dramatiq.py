"""A peer measured in the same run: Dramatiq's no-op drain rate on this machine.

`python -m bench.peer_dramatiq --url redis://... --count 20000 --processes 1 --threads 8`
enqueues COUNT no-op messages, starts one `dramatiq` worker command with the given processes
and threads, and prints one JSON object with the drain rate: messages acknowledged per second
from the first one taken to the last (start-up of the worker is not counted). This is the
issue's reference row "Dramatiq, 1 process x 8 threads", rerun here so that the end-to-end
target compares figures of one machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker

URL_ENV = "BENCH_DRAMATIQ_REDIS_URL"
NAMESPACE = "benchdramatiq"
QUEUE = "default"

# The worker command imports this module to find the broker and the actor.
broker = RedisBroker(url=os.environ.get(URL_ENV, "redis://127.0.0.1:1/0"), namespace=NAMESPACE)
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name=QUEUE, max_retries=0)
def noop() -> None:
    """Does nothing: the drain rate is the queue's own cost."""


def _left(client: redis.Redis) -> int:
    # Dramatiq keeps each message in a hash until it is acknowledged.
    return int(client.hlen(f"{NAMESPACE}:{QUEUE}.msgs"))


def run(url: str, count: int, processes: int, threads: int) -> dict[str, float]:
    client = redis.Redis.from_url(url)
    for key in client.scan_iter(f"{NAMESPACE}:*"):
        client.delete(key)
    # The module-level broker is the worker's (it reads the URL from the environment).
    sender = RedisBroker(url=url, namespace=NAMESPACE)
    sender.declare_queue(QUEUE)
    for _ in range(count):
        sender.enqueue(noop.message())
    assert _left(client) == count, "not every message was enqueued"
    env = {**os.environ, URL_ENV: url, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    worker = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "dramatiq"),
            "bench.peer_dramatiq",
            "--processes",
            str(processes),
            "--threads",
            str(threads),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 600
        left = count
        while left == count:
            if time.monotonic() > deadline or worker.poll() is not None:
                raise RuntimeError("the dramatiq worker took no message")
            time.sleep(0.002)
            left = _left(client)
        started, at_start = time.monotonic(), left
        while left > 0:
            if time.monotonic() > deadline or worker.poll() is not None:
                raise RuntimeError(f"the dramatiq worker stopped with {left} messages left")
            time.sleep(0.005)
            left = _left(client)
        elapsed = time.monotonic() - started
    finally:
        worker.terminate()
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
    return {"count": at_start, "elapsed_s": elapsed, "rate": at_start / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    json.dump(run(args.url, args.count, args.processes, args.threads), sys.stdout)


if __name__ == "__main__":
    main()
