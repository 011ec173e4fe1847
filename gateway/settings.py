"""Gateway settings from the environment, validated once at start (like core.settings)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


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
        problems: list[str] = []

        def get(name: str, parse: Callable[[str], T], default: T) -> T:
            raw = env.get(name)
            if raw is None or raw.strip() == "":
                return default
            try:
                return parse(raw.strip())
            except ValueError as exc:
                problems.append(f"{name}={raw!r}: {exc}")
                return default

        settings = cls(
            host=get("GATEWAY_HOST", str, "127.0.0.1"),
            port=get("GATEWAY_PORT", _port, 8080),
            orders_addr=get("ORDERS_ADDR", _host_port, "127.0.0.1:50051"),
            rpc_timeout_s=get("GATEWAY_RPC_TIMEOUT_S", _positive_float, 5.0),
            sse_keepalive_s=get("GATEWAY_SSE_KEEPALIVE_S", _positive_float, 15.0),
            shutdown_grace_s=get("SHUTDOWN_GRACE_S", _nonneg_float, 10.0),
            log_format=get("LOG_FORMAT", _choice("text", "json"), "text"),
            log_level=get("LOG_LEVEL", _level, "INFO"),
        )
        if problems:
            raise GatewaySettingsError(problems)
        return settings


def _port(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ValueError("must be a whole number from 0 to 65535") from None
    if not 0 <= value <= 65535:
        raise ValueError("must be from 0 to 65535")
    return value


def _host_port(raw: str) -> str:
    host, sep, port = raw.rpartition(":")
    if not sep or not host:
        raise ValueError("must be host:port, e.g. 127.0.0.1:50051")
    if _port(port) == 0:
        raise ValueError("port must be from 1 to 65535")
    return raw


def _float(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError("must be a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError("must be a finite number")
    return value


def _positive_float(raw: str) -> float:
    value = _float(raw)
    if value <= 0:
        raise ValueError("must be greater than 0")
    return value


def _nonneg_float(raw: str) -> float:
    value = _float(raw)
    if value < 0:
        raise ValueError("must not be negative")
    return value


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw.lower() not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")
        return raw.lower()

    return parse


def _level(raw: str) -> str:
    if raw.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR")
    return raw.upper()
