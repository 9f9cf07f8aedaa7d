"""The four evorec services by short name, in start order (each after what it calls).

The CLI starts services from here by module name, so it never imports a servicer, and
starting one service never imports another's dependencies (TensorFlow only for ranking).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from google.protobuf.descriptor import ServiceDescriptor

from evorec.platform.config import Settings
from evorec.platform.server import GrpcService
from evorec.v1 import embedding_pb2, interest_pb2, preprocess_pb2, ranking_pb2


@dataclass(frozen=True)
class ServiceEntry:
    """Where a service's code lives and what it answers for."""

    short_name: str
    descriptor: ServiceDescriptor
    # A module with `create(settings: Settings) -> GrpcService`.
    module: str

    @property
    def full_name(self) -> str:
        return self.descriptor.full_name


SERVICES: dict[str, ServiceEntry] = {
    entry.short_name: entry
    for entry in (
        ServiceEntry(
            "preprocess",
            preprocess_pb2.DESCRIPTOR.services_by_name["PreprocessService"],
            "evorec.preprocess.service",
        ),
        ServiceEntry(
            "embedding",
            embedding_pb2.DESCRIPTOR.services_by_name["EmbeddingService"],
            "evorec.embedding.service",
        ),
        ServiceEntry(
            "interest",
            interest_pb2.DESCRIPTOR.services_by_name["InterestService"],
            "evorec.interest.service",
        ),
        ServiceEntry(
            "ranking",
            ranking_pb2.DESCRIPTOR.services_by_name["RankingService"],
            "evorec.ranking.service",
        ),
    )
}


def create_service(short_name: str, settings: Settings) -> GrpcService:
    """Imports the named service's module and builds the service."""
    entry = SERVICES[short_name]
    service: GrpcService = importlib.import_module(entry.module).create(settings)
    return service
