"""RankingService's servicer and its wiring into the service runtime."""

from __future__ import annotations

from evorec.platform.config import Settings
from evorec.platform.server import GrpcService
from evorec.v1 import ranking_pb2, ranking_pb2_grpc


class RankingServicer(ranking_pb2_grpc.RankingServiceServicer):
    """Serves health and reflection; its RPCs answer UNIMPLEMENTED until
    the ranking issue (#6) fills them in."""


def create(settings: Settings) -> GrpcService:
    """The RankingService, ready for the runtime."""
    # Abstract until issue #6 writes the RPCs; the base class answers UNIMPLEMENTED.
    servicer = RankingServicer()  # type: ignore[abstract]
    return GrpcService(
        name=ranking_pb2.DESCRIPTOR.services_by_name["RankingService"].full_name,
        register=lambda server: ranking_pb2_grpc.add_RankingServiceServicer_to_server(
            servicer, server
        ),
    )
