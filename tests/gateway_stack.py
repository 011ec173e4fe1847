"""A Stack that also runs orders-gateway, and the helpers the gateway tests share."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from tests.harness import BIN, Service, Stack, free_port, wait_for

ISO_MILLIS_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
ADMIN_TOKEN = "test-admin-token-1234"
ALICE_TOKEN = "alice-token-5678"


@dataclass
class GatewayStack(Stack):
    """Stack plus a real orders-gateway process in front of the server."""

    gateway_port: int | None = None

    def start_gateway(self, orders_addr: str | None = None, **env: str) -> Service:
        port = free_port()
        service = self._spawn(
            "gateway",
            [str(BIN / "orders-gateway")],
            self.env(
                **{
                    "GATEWAY_PORT": str(port),
                    "ORDERS_ADDR": orders_addr or self.address,
                    "GATEWAY_RPC_TIMEOUT_S": "5",
                    **env,
                }
            ),
        )
        service.port = port
        self.gateway_port = port

        def listening() -> bool:
            if not service.alive():
                raise AssertionError(f"gateway exited:\n{service.log_text()}")
            return httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=2).status_code == 200

        wait_for(listening, 30, "orders-gateway to listen")
        return service

    @property
    def gateway_url(self) -> str:
        assert self.gateway_port is not None, "gateway not started"
        return f"http://127.0.0.1:{self.gateway_port}"

    def http(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.gateway_url, timeout=10, headers=headers)


def place(
    client: httpx.Client,
    fund: str = "Global Equity Fund",
    kind: str = "BUY",
    quantity: Any = 100,
    **headers: str,
) -> httpx.Response:
    body = {"fundName": fund, "transactionType": kind, "quantity": quantity}
    return client.post("/api/order", json=body, headers=headers)


def wait_status(
    client: httpx.Client, ref: str, statuses: set[str], timeout: float = 30
) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        reply = client.get(f"/api/order/{ref}/status")
        assert reply.status_code == 200, reply.text
        data: dict[str, Any] = reply.json()["data"]
        return data if data["status"] in statuses else None

    return wait_for(reached, timeout, f"order {ref} to reach {statuses}", interval=0.1)


def sse_events(lines: Iterator[str]) -> Iterator[dict[str, str]]:
    """Parse text/event-stream lines into {field: value} events; comments as {":": text}."""
    event: dict[str, str] = {}
    for line in lines:
        if line == "":
            if event:
                yield event
            event = {}
        elif line.startswith(":"):
            yield {":": line[1:].strip()}
        else:
            name, _, value = line.partition(":")
            event[name] = value[1:] if value.startswith(" ") else value
    if event:
        yield event
