"""PreprocessService's servicer and its wiring into the service runtime."""

from __future__ import annotations

from evorec.platform.config import Settings
from evorec.platform.server import GrpcService
from evorec.v1 import preprocess_pb2, preprocess_pb2_grpc


class PreprocessServicer(preprocess_pb2_grpc.PreprocessServiceServicer):
    """Serves health and reflection; its RPCs answer UNIMPLEMENTED until
    the data and text issue (#3) fills them in."""


def create(settings: Settings) -> GrpcService:
    """The PreprocessService, ready for the runtime."""
    # Abstract until issue #3 writes the RPCs; the base class answers UNIMPLEMENTED.
    servicer = PreprocessServicer()  # type: ignore[abstract]
    return GrpcService(
        name=preprocess_pb2.DESCRIPTOR.services_by_name["PreprocessService"].full_name,
        register=lambda server: preprocess_pb2_grpc.add_PreprocessServiceServicer_to_server(
            servicer, server
        ),
    )
