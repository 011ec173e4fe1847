"""The worker's outbox against the tests' Redis: updates reach a subscriber in hand-in order,
what is handed in during a PUBLISH shares the next message, and Redis down loses nothing but
the (at most once) message itself."""

from __future__ import annotations

import asyncio
import datetime as dt

import redis.asyncio as aioredis

from core.keys import UPDATES_CHANNEL
from core.redis_conn import make_async_redis
from core.updates import Update, decode_batch
from worker.outbox import Outbox


def update(ref: str, sequence: int) -> Update:
    return Update(
        ref=ref,
        sequence=sequence,
        event="claimed",
        progress=30,
        detail="",
        recorded_on=dt.datetime.now(dt.UTC),
        order={"status": "PROCESSING"},
    )


async def _subscriber(url: str) -> tuple[aioredis.Redis, aioredis.client.PubSub]:
    client = aioredis.Redis.from_url(url, decode_responses=True)
    pubsub = client.pubsub()
    await pubsub.subscribe(UPDATES_CHANNEL)
    while (await pubsub.get_message(timeout=1.0)) is None:
        pass  # the subscribe confirmation
    return client, pubsub


async def _messages(pubsub: aioredis.client.PubSub, updates: int) -> list[list[tuple[str, int]]]:
    out: list[list[tuple[str, int]]] = []
    async with asyncio.timeout(10):
        while sum(len(m) for m in out) < updates:
            message = await pubsub.get_message(timeout=1.0)
            if message and message["type"] == "message":
                out.append([(r["ref"], r["sequence"]) for r in decode_batch(message["data"])])
    return out


def test_updates_go_out_in_hand_in_order_and_a_burst_shares_messages(redis_server) -> None:
    async def main() -> tuple[list[list[tuple[str, int]]], int]:
        sub_client, pubsub = await _subscriber(redis_server.url)
        client = make_async_redis(redis_server.url, 2.0)
        outbox = Outbox(client)
        sent = [outbox.send([update("r0", 1), update("r0", 2)])]
        await asyncio.sleep(0)  # the sender starts: its PUBLISH is under way
        sent += [outbox.send([update(f"r{i}", 1), update(f"r{i}", 2)]) for i in range(1, 50)]
        sent.append(outbox.send([update("r0", 3)]))
        await asyncio.gather(*sent)
        got = await _messages(pubsub, 101)
        await outbox.drain()
        await client.aclose()
        await pubsub.aclose()
        await sub_client.aclose()
        return got, outbox.messages

    got, messages = asyncio.run(main())
    flat = [item for message in got for item in message]
    expected = [(f"r{i}", s) for i in range(50) for s in (1, 2)] + [("r0", 3)]
    assert flat == expected
    # The first hand-in goes alone; the 50 handed in meanwhile share one more message.
    assert messages == len(got) == 2, got


def test_redis_down_completes_every_send_and_the_next_ones_go_out(redis_server) -> None:
    async def main() -> list[list[tuple[str, int]]]:
        # The worker's own client: one immediate retry, no backoff sleeps.
        dead = make_async_redis("redis://127.0.0.1:1/0", 0.5)
        outbox = Outbox(dead)
        await asyncio.wait_for(outbox.send([update("lost", 1)]), 5)  # logged, not raised
        await dead.aclose()
        sub_client, pubsub = await _subscriber(redis_server.url)
        outbox.redis = make_async_redis(redis_server.url, 2.0)
        await asyncio.wait_for(outbox.send([update("kept", 1)]), 5)
        got = await _messages(pubsub, 1)
        await outbox.redis.aclose()
        await pubsub.aclose()
        await sub_client.aclose()
        return got

    assert asyncio.run(main()) == [[("kept", 1)]]
