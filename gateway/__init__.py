"""The REST gateway: the original HTTP API served on top of the orders.v1 gRPC service."""
