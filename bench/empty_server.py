"""A bare gRPC server with one empty unary method: the ceiling PlaceOrder cannot beat.

`--kind aio` (default) is a grpc.aio server, the kind orders-server is; `--kind sync` is the
classic server on a pool of 8 threads. The faster of the two is the ceiling the targets use.
"""

from __future__ import annotations

import argparse
import asyncio
from concurrent.futures import ThreadPoolExecutor

import grpc

SYNC_THREADS = 8


async def _call(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return b""


def _call_sync(request: bytes, context: grpc.ServicerContext) -> bytes:
    return b""


def _identity(data: bytes) -> bytes:
    return data


def _handlers(behaviour: object) -> tuple[grpc.GenericRpcHandler]:
    handler = grpc.unary_unary_rpc_method_handler(
        behaviour,  # type: ignore[arg-type]
        request_deserializer=_identity,
        response_serializer=_identity,
    )
    return (grpc.method_handlers_generic_handler("bench.Empty", {"Call": handler}),)


async def serve_aio(port: int) -> None:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(_handlers(_call))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()


def serve_sync(port: int) -> None:
    server = grpc.server(ThreadPoolExecutor(max_workers=SYNC_THREADS))
    server.add_generic_rpc_handlers(_handlers(_call_sync))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    print("ready", flush=True)
    server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--kind", choices=["aio", "sync"], default="aio")
    args = parser.parse_args()
    if args.kind == "aio":
        asyncio.run(serve_aio(args.port))
    else:
        serve_sync(args.port)


if __name__ == "__main__":
    main()
