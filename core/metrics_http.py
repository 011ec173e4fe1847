"""The /metrics HTTP endpoint shared by server and worker (prometheus-client's own server)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import disable_created_metrics, start_http_server

logger = logging.getLogger(__name__)


@dataclass
class MetricsEndpoint:
    """A running /metrics server (a daemon thread) and the port it got."""

    httpd: WSGIServer
    port: int

    def stop(self) -> None:
        """Stop serving and free the port."""
        self.httpd.shutdown()
        self.httpd.server_close()


def serve_metrics(host: str, port: int) -> MetricsEndpoint:
    """Serve the default registry on host:port (0 picks a free port, logged)."""
    # The *_created series double every counter's samples for little use here.
    disable_created_metrics()  # type: ignore[no-untyped-call]
    httpd, _thread = start_http_server(port, addr=host)
    endpoint = MetricsEndpoint(httpd, int(httpd.server_port))
    logger.info("metrics listening", extra={"host": host, "metrics_port": endpoint.port})
    return endpoint
