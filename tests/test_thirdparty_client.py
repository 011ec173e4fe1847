"""The worker's HTTP client against scripted TCP servers: the wire cases the fundhouse does not
produce (chunked bodies, Connection: close, answers cut short, garbage, a keep-alive
connection the server dropped while idle)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from worker.thirdparty import ThirdPartyClient, ThirdPartyRejected, ThirdPartyUnavailable

ORDER = {
    "order_ref_no": "ref-1",
    "fund_name": "Fund A",
    "transaction_type": "BUY",
    "quantity": 3,
    "order_value": "30.00",
}
OK_BODY = b'{"confirmationId":"C-1"}'
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return head, await reader.readexactly(length)


def answer(status: int, body: bytes, *extra: str) -> bytes:
    headers = "".join(f"{h}\r\n" for h in extra)
    return f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\n{headers}\r\n".encode() + body


def run(handler: Handler, calls: Callable[[ThirdPartyClient], Awaitable[Any]]) -> Any:
    """Serve `handler` (given each connection's number) on a free port; run `calls`."""

    async def main() -> Any:
        connections = 0

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal connections
            connections += 1
            try:
                await handler(reader, writer, connections)
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = ThirdPartyClient(f"http://127.0.0.1:{port}", 2.0, 1.0, concurrency=4)
        await client.start()
        try:
            return await asyncio.wait_for(calls(client), 10), connections
        finally:
            await client.close()
            server.close()
            await server.wait_closed()

    return asyncio.run(main())


def test_request_carries_the_contract_headers_and_body() -> None:
    seen: list[tuple[bytes, bytes]] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        seen.append(await read_request(reader))
        writer.write(answer(201, OK_BODY))
        await writer.drain()

    (placement, _) = run(handler, lambda c: c.place(ORDER))
    assert placement.confirmation_id == "C-1" and placement.status == 201
    head, body = seen[0]
    assert head.startswith(b"POST /orders HTTP/1.1\r\n")
    assert b"\r\nIdempotency-Key: ref-1\r\n" in head
    assert b"\r\nContent-Type: application/json\r\n" in head
    assert body == (
        b'{"orderRefNo":"ref-1","fundName":"Fund A","transactionType":"BUY",'
        b'"quantity":3,"orderValue":"30.00"}'
    )


def test_keep_alive_reuses_one_connection_and_chunked_bodies_are_read() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        while True:
            await read_request(reader)
            writer.write(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5\r\n"
                + OK_BODY[:5]
                + b"\r\n"
                + b"%x\r\n" % (len(OK_BODY) - 5)
                + OK_BODY[5:]
                + b"\r\n0\r\n\r\n"
            )
            await writer.drain()

    async def calls(client: ThirdPartyClient) -> list[str]:
        return [(await client.place(ORDER)).confirmation_id for _ in range(5)]

    ids, connections = run(handler, calls)
    assert ids == ["C-1"] * 5
    assert connections == 1, f"{connections} connections for 5 sequential calls"


def test_connection_close_answer_is_used_and_the_connection_not_reused() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        await read_request(reader)
        writer.write(answer(200, OK_BODY, "Connection: close"))
        await writer.drain()

    async def calls(client: ThirdPartyClient) -> list[str]:
        return [(await client.place(ORDER)).confirmation_id for _ in range(3)]

    ids, connections = run(handler, calls)
    assert ids == ["C-1"] * 3 and connections == 3


def test_idle_connection_dropped_by_the_server_is_not_reused() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        await read_request(reader)
        writer.write(answer(200, OK_BODY))  # keep-alive by default, then hang up anyway
        await writer.drain()

    async def calls(client: ThirdPartyClient) -> list[str]:
        first = await client.place(ORDER)
        for _ in range(200):  # until the loop has seen the EOF (bounded)
            if not client._idle or client._idle[0].closed:
                break
            await asyncio.sleep(0.005)
        else:
            raise AssertionError("the server's close was never seen")
        return [first.confirmation_id, (await client.place(ORDER)).confirmation_id]

    ids, connections = run(handler, calls)
    assert ids == ["C-1", "C-1"] and connections == 2


@pytest.mark.parametrize(
    ("reply", "reason", "kept"),
    [
        (b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"conf', "connection error", False),
        (b"garbage\r\n\r\n", "connection error", False),
        (answer(200, b"not json"), "HTTP 200 without confirmationId", True),
        (answer(503, b'{"error":"busy"}'), "HTTP 503: busy", True),
        (answer(429, b"slow down"), "HTTP 429: slow down", True),
    ],
)
def test_broken_or_retryable_answers_are_unavailable(reply: bytes, reason: str, kept: bool) -> None:
    """A whole answer leaves its connection reusable; a broken one closes it."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        await read_request(reader)
        writer.write(reply)
        await writer.drain()

    async def calls(client: ThirdPartyClient) -> str:
        with pytest.raises(ThirdPartyUnavailable) as caught:
            await client.place(ORDER)
        assert len(client._idle) == int(kept), client._idle
        return caught.value.reason

    got, _ = run(handler, calls)
    assert got.startswith(reason), got


def test_final_4xx_is_rejected_with_the_server_reason() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        await read_request(reader)
        writer.write(answer(422, b'{"message":"unknown fund"}'))
        await writer.drain()

    async def calls(client: ThirdPartyClient) -> str:
        with pytest.raises(ThirdPartyRejected) as caught:
            await client.place(ORDER)
        return caught.value.reason

    got, _ = run(handler, calls)
    assert got == "HTTP 422: unknown fund"


def test_no_answer_within_the_read_timeout_is_a_timeout() -> None:
    release = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        await read_request(reader)
        await release.wait()

    async def calls(client: ThirdPartyClient) -> str:
        with pytest.raises(ThirdPartyUnavailable) as caught:
            await client.place(ORDER)  # read timeout 1 s
        release.set()
        return caught.value.reason

    got, _ = run(handler, calls)
    assert got == "timeout: TimeoutError"


def test_refused_connection_is_unavailable() -> None:
    async def main() -> str:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        client = ThirdPartyClient(f"http://127.0.0.1:{port}", 2.0, 1.0, concurrency=4)
        with pytest.raises(ThirdPartyUnavailable) as caught:
            await client.place(ORDER)
        return caught.value.reason

    assert asyncio.run(main()) == "connection error: ConnectionRefusedError"
