"""Gateway settings from the environment, validated once at start (like core.settings)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from core.envparse import EnvReader, choice, nonneg_float, port_or_zero, positive_float


class GatewaySettingsError(ValueError):
    """One or more environment values are invalid; str() is one line per bad value."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class GatewaySettings:
    """Every knob of orders-gateway. Tests build it directly; main() uses from_env()."""

    host: str = "127.0.0.1"
    port: int = 8080
    orders_addr: str = "127.0.0.1:50051"
    #: Deadline of each unary gRPC call, and of the wait for a stream's first message.
    rpc_timeout_s: float = 5.0
    #: An idle event stream gets an SSE comment this often, so proxies keep it open.
    sse_keepalive_s: float = 15.0
    shutdown_grace_s: float = 10.0
    log_format: str = "text"
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> GatewaySettings:
        """Read and validate every variable; raise GatewaySettingsError naming each bad one."""
        env = os.environ if environ is None else environ
        reader = EnvReader(env)
        get = reader.get
        settings = cls(
            host=get("GATEWAY_HOST", str, "127.0.0.1"),
            port=get("GATEWAY_PORT", port_or_zero, 8080),
            orders_addr=get("ORDERS_ADDR", _host_port, "127.0.0.1:50051"),
            rpc_timeout_s=get("GATEWAY_RPC_TIMEOUT_S", positive_float, 5.0),
            sse_keepalive_s=get("GATEWAY_SSE_KEEPALIVE_S", positive_float, 15.0),
            shutdown_grace_s=get("SHUTDOWN_GRACE_S", nonneg_float, 10.0),
            log_format=get("LOG_FORMAT", choice("text", "json"), "text"),
            log_level=get(
                "LOG_LEVEL", choice("DEBUG", "INFO", "WARNING", "ERROR", upper=True), "INFO"
            ),
        )
        if reader.problems:
            raise GatewaySettingsError(reader.problems)
        return settings


def _host_port(raw: str) -> str:
    host, sep, port = raw.rpartition(":")
    if not sep or not host:
        raise ValueError("must be host:port, e.g. 127.0.0.1:50051")
    if port_or_zero(port) == 0:
        raise ValueError("port must be from 1 to 65535")
    return raw
