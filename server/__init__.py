"""The gRPC server: OrderService on grpc.aio, with health and reflection."""
