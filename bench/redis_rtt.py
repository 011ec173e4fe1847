"""LPUSH then BRPOP round trips from one Python process: the queue's own ceiling (pairs/s)."""

from __future__ import annotations

import argparse
import json
import sys
import time

import redis


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--count", type=int, default=20_000)
    args = parser.parse_args()
    client = redis.Redis.from_url(args.url)
    key = "{bench}:rtt"
    client.delete(key)
    started = time.perf_counter()
    for i in range(args.count):
        client.lpush(key, i)
        client.brpop([key], timeout=1)
    elapsed = time.perf_counter() - started
    json.dump({"count": args.count, "elapsed_s": elapsed, "rate": args.count / elapsed}, sys.stdout)


if __name__ == "__main__":
    main()
