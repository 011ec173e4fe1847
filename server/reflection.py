"""Server reflection on both grpc.reflection.v1alpha (grpcio-reflection) and v1.

grpcio-reflection ships only v1alpha; v1 has the same messages field for field, so the
v1alpha servicer answers v1 calls too, registered under the v1 service name. The v1 proto is
vendored (protos/orders/vendor) so that v1 itself can be described.
"""

from __future__ import annotations

import grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2
from grpc_reflection.v1alpha._async import ReflectionServicer
from orders.vendor import reflection_v1_pb2

V1_SERVICE = reflection_v1_pb2.DESCRIPTOR.services_by_name["ServerReflection"].full_name


def enable_reflection(server: grpc.aio.Server, service_names: list[str]) -> None:
    """Serve reflection for service_names (both reflection services are listed too)."""
    names = [*service_names, reflection.SERVICE_NAME, V1_SERVICE]
    servicer = ReflectionServicer(names)
    handler = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    for service in (reflection.SERVICE_NAME, V1_SERVICE):
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(service, {"ServerReflectionInfo": handler}),)
        )
