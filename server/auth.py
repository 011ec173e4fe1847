"""Bearer-token authentication: a grpc.aio server interceptor, and who the caller is.

Rules (tokens from ADMIN_TOKEN and API_TOKENS):
- Health and reflection are always open; only orders.v1.OrderService is checked.
- A presented `authorization: Bearer <token>` must be a known token (UNAUTHENTICATED if not),
  unless no token is configured at all, in which case it is ignored.
- With API_TOKENS set, every OrderService RPC needs a token (a client's or the admin's).
- QueueStats needs ADMIN_TOKEN: no token -> UNAUTHENTICATED, a client token ->
  PERMISSION_DENIED, no ADMIN_TOKEN configured -> PERMISSION_DENIED for everyone.

The caller's name (the token's name, "admin" for ADMIN_TOKEN, "" when anonymous) is put in a
context variable: grpc.aio runs the interceptors and the handler in one contextvars.Context.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar
from typing import Any

import grpc

from core.errors import OrderError, PermissionDenied, Unauthenticated
from server.errors import map_errors
from server.handlers import SERVICE_NAME

logger = logging.getLogger(__name__)

ADMIN_CALLER = "admin"
#: RPCs only the ADMIN_TOKEN may call.
ADMIN_METHODS = frozenset({f"/{SERVICE_NAME}/QueueStats"})
_SERVICE_PREFIX = f"/{SERVICE_NAME}/"
_HOW_TO_ENABLE = (
    "QueueStats is refused: no ADMIN_TOKEN is configured; set ADMIN_TOKEN (8 or more "
    "printable characters, no spaces) in the server's environment to enable it"
)

_caller: ContextVar[str] = ContextVar("orders_caller", default="")


def current_caller() -> str:
    """The authenticated caller of the RPC being handled ("" when anonymous)."""
    return _caller.get()


class TokenTable:
    """The configured tokens; lookups compare in constant time."""

    def __init__(self, admin_token: str | None, api_tokens: Mapping[str, str]) -> None:
        self.admin_configured = admin_token is not None
        self.clients_configured = bool(api_tokens)
        self._entries: list[tuple[str, bytes]] = [
            (name, token.encode()) for name, token in api_tokens.items()
        ]
        if admin_token is not None:
            self._entries.append((ADMIN_CALLER, admin_token.encode()))

    @property
    def empty(self) -> bool:
        return not self._entries

    def identify(self, presented: str) -> str | None:
        """The name of the token presented, or None. Every entry is compared, found or not."""
        candidate = presented.encode("utf-8", "surrogateescape")
        found: str | None = None
        for name, token in self._entries:
            if hmac.compare_digest(candidate, token) and found is None:
                found = name
        return found


def _bearer(metadata: Sequence[tuple[str, Any]] | None) -> str | None:
    for key, value in metadata or ():
        if key == "authorization":
            scheme, _, token = str(value).strip().partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthenticated("authorization metadata must be 'Bearer <token>'")
            return token.strip()
    return None


def authenticate(
    method: str, metadata: Sequence[tuple[str, Any]] | None, tokens: TokenTable
) -> str:
    """The caller's name for an OrderService RPC, or Unauthenticated / PermissionDenied."""
    caller = ""
    presented = _bearer(metadata) if not tokens.empty else None
    if presented is not None:
        name = tokens.identify(presented)
        if name is None:
            raise Unauthenticated("unknown bearer token")
        caller = name
    if method in ADMIN_METHODS:
        if not tokens.admin_configured:
            logger.warning(_HOW_TO_ENABLE)
            raise PermissionDenied("QueueStats is disabled on this server (no ADMIN_TOKEN)")
        if presented is None:
            raise Unauthenticated("QueueStats needs the admin bearer token")
        if caller != ADMIN_CALLER:
            raise PermissionDenied("QueueStats needs the admin token, not a client token")
    elif presented is None and tokens.clients_configured:
        raise Unauthenticated("missing bearer token: send 'authorization: Bearer <token>'")
    return caller


def _rejecting(handler: grpc.RpcMethodHandler, error: OrderError) -> grpc.RpcMethodHandler:
    """A handler of the same kind as `handler` whose every call fails with `error`."""

    async def reject(request: Any, context: grpc.aio.ServicerContext) -> None:
        async with map_errors(context):
            raise error

    async def reject_stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
        async with map_errors(context):
            raise error
        yield  # pragma: no cover - makes this an async generator

    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(reject)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(reject_stream)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(reject)
    return grpc.stream_stream_rpc_method_handler(reject_stream)


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Checks bearer tokens on orders.v1.OrderService and records the caller's name."""

    def __init__(self, admin_token: str | None, api_tokens: Mapping[str, str]) -> None:
        self.tokens = TokenTable(admin_token, api_tokens)
        if admin_token is None:
            logger.warning(_HOW_TO_ENABLE)
        if api_tokens:
            logger.info("client tokens required", extra={"clients": sorted(api_tokens)})

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = handler_call_details.method
        if not method.startswith(_SERVICE_PREFIX):
            return await continuation(handler_call_details)
        try:
            caller = authenticate(method, handler_call_details.invocation_metadata, self.tokens)
        except (Unauthenticated, PermissionDenied) as exc:
            logger.info("rejected %s: %s", method, exc)
            handler = await continuation(handler_call_details)
            return handler if handler is None else _rejecting(handler, exc)
        _caller.set(caller)
        return await continuation(handler_call_details)
