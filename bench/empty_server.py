"""A bare grpc.aio server with one empty unary method: the ceiling PlaceOrder cannot beat."""

from __future__ import annotations

import argparse
import asyncio

import grpc


async def _call(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return b""


def _identity(data: bytes) -> bytes:
    return data


async def serve(port: int) -> None:
    server = grpc.aio.server()
    handler = grpc.unary_unary_rpc_method_handler(
        _call, request_deserializer=_identity, response_serializer=_identity
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("bench.Empty", {"Call": handler}),)
    )
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
