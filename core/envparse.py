"""Parsing environment values: collect every bad value, one line each, then fail once.

Shared by core.settings (server and worker) and gateway.settings.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

T = TypeVar("T")


def redact_url(url: str) -> str:
    """The URL with any password replaced by ***, for logs and error messages."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "<unparsable URL>"
    if not password:
        return url
    netloc = parts.netloc.rpartition("@")
    user = netloc[0].partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[2]}"))


class EnvReader:
    """Collects every problem instead of stopping at the first one."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []

    def get(self, name: str, parse: Callable[[str], T], default: T) -> T:
        raw = self.env.get(name)
        if raw is None or raw.strip() == "":
            return default
        try:
            return parse(raw.strip())
        except ValueError as exc:
            if "TOKEN" in name or "PASSWORD" in name:
                shown = "<hidden>"
            elif name.endswith("_URL"):
                shown = repr(redact_url(raw))
            else:
                shown = repr(raw)
            self.problems.append(f"{name}={shown}: {exc}")
            return default


def nonempty(raw: str) -> str:
    if not raw:
        raise ValueError("must not be empty")
    return raw


def int_range(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"must be a whole number from {low} to {high}") from None
        if not low <= value <= high:
            raise ValueError(f"must be from {low} to {high}")
        return value

    return parse


port_or_zero = int_range(0, 65535)


def finite_float(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError("must be a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError("must be a finite number")
    return value


def positive_float(raw: str) -> float:
    value = finite_float(raw)
    if value <= 0:
        raise ValueError("must be greater than 0")
    return value


def nonneg_float(raw: str) -> float:
    value = finite_float(raw)
    if value < 0:
        raise ValueError("must not be negative")
    return value


def choice(*allowed: str, upper: bool = False) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.upper() if upper else raw.lower()
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")
        return value

    return parse
