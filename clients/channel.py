"""The channel orderctl's options describe: plaintext, TLS, or mutual TLS."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import grpc

#: host:port, [v6]:port, or a gRPC target URI (dns:, unix:, ipv4:...).
_ADDRESS = re.compile(r"^(?:[a-z][a-z0-9+.-]*:.+|[^\s:/]+:\d+|\[[0-9a-fA-F:.]+\]:\d+)$")


class UsageError(Exception):
    """A bad option found after parsing (unreadable file, malformed address): exit 2."""


def _read(path: str | None, option: str) -> bytes | None:
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"{option}: cannot read {path}: {exc.strerror}") from None


def open_channel(args: argparse.Namespace) -> grpc.Channel:
    """A plaintext or TLS channel to args.addr, as the options ask."""
    if not _ADDRESS.match(args.addr):
        raise UsageError(f"--addr: {args.addr!r} is not host:port")
    if (args.tls_cert is None) != (args.tls_key is None):
        raise UsageError("--tls-cert and --tls-key go together")
    if not (args.tls or args.tls_ca or args.tls_cert):
        return grpc.insecure_channel(args.addr)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=_read(args.tls_ca, "--tls-ca"),
        private_key=_read(args.tls_key, "--tls-key"),
        certificate_chain=_read(args.tls_cert, "--tls-cert"),
    )
    options = []
    if args.tls_server_name:
        options.append(("grpc.ssl_target_name_override", args.tls_server_name))
    return grpc.secure_channel(args.addr, credentials, options=options)
