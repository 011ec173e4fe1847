"""Server TLS from TLS_CERT_FILE / TLS_KEY_FILE, and mutual TLS with TLS_CLIENT_CA_FILE."""

from __future__ import annotations

import grpc

from core.settings import Settings


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS credentials for the listening port, or None for plaintext.

    With TLS_CLIENT_CA_FILE a client must present a certificate signed by that CA.
    """
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    key = settings.tls_key_file.read_bytes()
    chain = settings.tls_cert_file.read_bytes()
    client_ca = settings.tls_client_ca_file.read_bytes() if settings.tls_client_ca_file else None
    return grpc.ssl_server_credentials(
        [(key, chain)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )
