"""EmbeddingService's servicer and its wiring into the service runtime."""

from __future__ import annotations

from evorec.platform.config import Settings
from evorec.platform.server import GrpcService
from evorec.v1 import embedding_pb2, embedding_pb2_grpc


class EmbeddingServicer(embedding_pb2_grpc.EmbeddingServiceServicer):
    """Serves health and reflection; its RPCs answer UNIMPLEMENTED until
    the data and text issue (#3) fills them in."""


def create(settings: Settings) -> GrpcService:
    """The EmbeddingService, ready for the runtime."""
    # Abstract until issue #3 writes the RPCs; the base class answers UNIMPLEMENTED.
    servicer = EmbeddingServicer()  # type: ignore[abstract]
    return GrpcService(
        name=embedding_pb2.DESCRIPTOR.services_by_name["EmbeddingService"].full_name,
        register=lambda server: embedding_pb2_grpc.add_EmbeddingServiceServicer_to_server(
            servicer, server
        ),
    )
