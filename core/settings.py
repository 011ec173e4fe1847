"""Settings from the environment, validated once at start; the only reader of os.environ."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from core.envparse import (
    EnvReader,
    choice,
    int_range,
    nonempty,
    nonneg_float,
    port_or_zero,
    positive_float,
    redact_url,
)

DEFAULT_DATABASE_URL = "sqlite:///var/orders.db"
DEFAULT_THIRD_PARTY_URL = "http://127.0.0.1:8081"


class SettingsError(ValueError):
    """One or more environment values are invalid; str() is one line per bad value."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Settings:
    """Every knob of server and worker. Tests build it directly; mains use from_env()."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    database_url: str = DEFAULT_DATABASE_URL
    host: str = "127.0.0.1"
    port: int = 50051
    third_party_url: str = DEFAULT_THIRD_PARTY_URL
    funds_file: Path | None = None
    worker_concurrency: int = 8
    third_party_timeout_s: float = 5.0
    third_party_connect_timeout_s: float = 2.0
    third_party_max_attempts: int = 5
    retry_base_delay_s: float = 0.2
    retry_max_delay_s: float = 10.0
    admin_token: str | None = None
    api_tokens: Mapping[str, str] = field(default_factory=dict)
    order_lease_seconds: float = 30.0
    max_recoveries: int = 3
    max_queue_depth: int = 100_000
    reaper_interval_s: float = 2.0
    pending_grace_s: float = 30.0
    redis_timeout_s: float = 1.0
    db_pool_size: int = 16
    #: How long a worker waits for a locked SQLite database (or a PostgreSQL row lock).
    db_lock_timeout_s: float = 30.0
    #: The same bound for the server, short so PlaceOrder answers UNAVAILABLE, not a hang.
    server_db_lock_timeout_s: float = 3.0
    metrics_port: int | None = None
    worker_metrics_port: int | None = None
    log_format: str = "text"
    log_level: str = "INFO"
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_client_ca_file: Path | None = None
    shutdown_grace_s: float = 10.0

    def __repr__(self) -> str:
        # A Settings may end up in a log line or a traceback: never with a secret in it.
        shown = []
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if name in ("redis_url", "database_url"):
                value = redact_url(value)
            elif name == "admin_token" and value:
                value = "<hidden>"
            elif name == "api_tokens":
                value = {caller: "<hidden>" for caller in value}
            shown.append(f"{name}={value!r}")
        return f"Settings({', '.join(shown)})"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and validate every variable; raise SettingsError naming each bad one."""
        env = os.environ if environ is None else environ
        reader = EnvReader(env)
        settings = cls(
            redis_url=_redis_url(env, reader),
            database_url=reader.get("DATABASE_URL", _database_url, DEFAULT_DATABASE_URL),
            host=reader.get("HOST", nonempty, "127.0.0.1"),
            port=reader.get("PORT", port_or_zero, 50051),
            third_party_url=reader.get("THIRD_PARTY_URL", _http_url, DEFAULT_THIRD_PARTY_URL),
            funds_file=reader.get("FUNDS_FILE", _existing_file, None),
            worker_concurrency=reader.get("WORKER_CONCURRENCY", int_range(1, 256), 8),
            third_party_timeout_s=reader.get("THIRD_PARTY_TIMEOUT_S", positive_float, 5.0),
            third_party_max_attempts=reader.get("THIRD_PARTY_MAX_ATTEMPTS", int_range(1, 100), 5),
            retry_base_delay_s=reader.get("RETRY_BASE_DELAY_S", nonneg_float, 0.2),
            retry_max_delay_s=reader.get("RETRY_MAX_DELAY_S", nonneg_float, 10.0),
            admin_token=reader.get("ADMIN_TOKEN", _token, None),
            api_tokens=reader.get("API_TOKENS", _api_tokens, {}),
            order_lease_seconds=reader.get("ORDER_LEASE_SECONDS", positive_float, 30.0),
            max_recoveries=reader.get("MAX_RECOVERIES", int_range(0, 1000), 3),
            max_queue_depth=reader.get("MAX_QUEUE_DEPTH", int_range(1, 10**9), 100_000),
            reaper_interval_s=reader.get("REAPER_INTERVAL_S", positive_float, 2.0),
            pending_grace_s=reader.get("PENDING_GRACE_SECONDS", positive_float, 30.0),
            redis_timeout_s=reader.get("REDIS_TIMEOUT_S", positive_float, 1.0),
            db_pool_size=reader.get("DB_POOL_SIZE", int_range(1, 1000), 16),
            db_lock_timeout_s=reader.get("DB_LOCK_TIMEOUT_S", positive_float, 30.0),
            server_db_lock_timeout_s=reader.get("SERVER_DB_LOCK_TIMEOUT_S", positive_float, 3.0),
            metrics_port=reader.get("METRICS_PORT", port_or_zero, None),
            worker_metrics_port=reader.get("WORKER_METRICS_PORT", port_or_zero, None),
            log_format=reader.get("LOG_FORMAT", choice("text", "json"), "text"),
            log_level=reader.get(
                "LOG_LEVEL", choice("DEBUG", "INFO", "WARNING", "ERROR", upper=True), "INFO"
            ),
            tls_cert_file=reader.get("TLS_CERT_FILE", _existing_file, None),
            tls_key_file=reader.get("TLS_KEY_FILE", _existing_file, None),
            tls_client_ca_file=reader.get("TLS_CLIENT_CA_FILE", _existing_file, None),
            shutdown_grace_s=reader.get("SHUTDOWN_GRACE_S", nonneg_float, 10.0),
        )
        if (settings.tls_cert_file is None) != (settings.tls_key_file is None):
            reader.problems.append("TLS_CERT_FILE and TLS_KEY_FILE must be set together")
        if settings.tls_client_ca_file and settings.tls_cert_file is None:
            reader.problems.append("TLS_CLIENT_CA_FILE needs TLS_CERT_FILE and TLS_KEY_FILE")
        if reader.problems:
            raise SettingsError(reader.problems)
        return settings


#: REDIS_TLS_* variables and the redis-py connection arguments they become.
REDIS_TLS_ARGS = {
    "REDIS_TLS_CA_FILE": "ssl_ca_certs",
    "REDIS_TLS_CERT_FILE": "ssl_certfile",
    "REDIS_TLS_KEY_FILE": "ssl_keyfile",
}


def _redis_url(env: Mapping[str, str], reader: EnvReader) -> str:
    url = env.get("REDIS_URL", "").strip()
    if url:
        if not url.startswith(("redis://", "rediss://", "unix://")):
            reader.problems.append(
                "REDIS_URL=<hidden>: must start with redis://, rediss:// or unix://"
            )
    else:
        host = reader.get("REDIS_HOST", nonempty, "127.0.0.1")
        port = reader.get("REDIS_PORT", int_range(1, 65535), 6379)
        password = env.get("REDIS_PASSWORD", "")
        auth = f":{quote(password, safe='')}@" if password else ""
        url = f"redis://{auth}{host}:{port}/0"
    return _with_redis_tls(url, env, reader)


def _with_redis_tls(url: str, env: Mapping[str, str], reader: EnvReader) -> str:
    """Fold REDIS_TLS_* files into the URL's query, where redis-py's from_url reads them.

    Every Redis client (sync or asyncio) is built from settings.redis_url alone, so carrying
    the TLS files in the URL reaches them all without a second set of arguments.
    """
    tls = {
        arg: str(path)
        for name, arg in REDIS_TLS_ARGS.items()
        if (path := reader.get(name, _existing_file, None)) is not None
    }
    if not tls:
        return url
    if not url.startswith("rediss://"):
        reader.problems.append(
            "REDIS_TLS_CA_FILE/REDIS_TLS_CERT_FILE/REDIS_TLS_KEY_FILE need a rediss:// REDIS_URL"
        )
        return url
    if ("ssl_certfile" in tls) != ("ssl_keyfile" in tls):
        reader.problems.append("REDIS_TLS_CERT_FILE and REDIS_TLS_KEY_FILE must be set together")
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode(tls)) if q)
    return urlunsplit(parts._replace(query=query))


def _http_url(raw: str) -> str:
    if not raw.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return raw.rstrip("/")


def _database_url(raw: str) -> str:
    if not raw.startswith(("sqlite:///", "postgresql://", "postgres://")):
        raise ValueError("must be sqlite:///path.db, sqlite:////abs/path.db or postgresql://...")
    return raw


def _existing_file(raw: str) -> Path:
    path = Path(raw)
    if not path.is_file():
        raise ValueError("no such file")
    return path


def _token(raw: str) -> str:
    if len(raw) < 8 or any(not (33 <= ord(c) <= 126) for c in raw):
        raise ValueError("must be at least 8 printable ASCII characters without spaces")
    return raw


def _api_tokens(raw: str) -> dict[str, str]:
    tokens: dict[str, str] = {}
    for item in raw.split(","):
        name, sep, token = item.strip().partition(":")
        if not sep or not name:
            raise ValueError("must be name:token[,name:token...]")
        tokens[name] = _token(token)
    return tokens
