"""InterestService's servicer and its wiring into the service runtime."""

from __future__ import annotations

from evorec.platform.config import Settings
from evorec.platform.server import GrpcService
from evorec.v1 import interest_pb2, interest_pb2_grpc


class InterestServicer(interest_pb2_grpc.InterestServiceServicer):
    """Serves health and reflection; its RPCs answer UNIMPLEMENTED until
    the interest-state issue (#5) fills them in."""


def create(settings: Settings) -> GrpcService:
    """The InterestService, ready for the runtime."""
    # Abstract until issue #5 writes the RPCs; the base class answers UNIMPLEMENTED.
    servicer = InterestServicer()  # type: ignore[abstract]
    return GrpcService(
        name=interest_pb2.DESCRIPTOR.services_by_name["InterestService"].full_name,
        register=lambda server: interest_pb2_grpc.add_InterestServiceServicer_to_server(
            servicer, server
        ),
    )
