"""Typed clients of the evorec services, for other services and for tools.

Every call gets a deadline: the caller's, else the configured default, and never later than
the deadline of the inbound call being handled (so a slow dependency cannot outlive the
caller). The request id travels with it. Retries are gRPC's own (its service-config retry
policy, which keeps within the deadline), switched on exactly for the RPCs that the contract
declares idempotent (`option idempotency_level`), and only on UNAVAILABLE. Channels speak TLS
(presenting this process's certificate, for mutual TLS) when the `tls` settings say so.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Generic, TypeVar, cast

import grpc
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import ServiceDescriptor

from evorec.platform import context
from evorec.platform.config import ClientSettings, Endpoint, ServerSettings, Settings
from evorec.platform.tls import TlsSettings, channel_credentials
from evorec.v1 import (
    embedding_pb2,
    embedding_pb2_grpc,
    interest_pb2,
    interest_pb2_grpc,
    preprocess_pb2,
    preprocess_pb2_grpc,
    ranking_pb2,
    ranking_pb2_grpc,
)

StubT = TypeVar("StubT")

_RETRIED_LEVELS = (
    descriptor_pb2.MethodOptions.IDEMPOTENT,
    descriptor_pb2.MethodOptions.NO_SIDE_EFFECTS,
)


def idempotent_methods(service: ServiceDescriptor) -> list[str]:
    """The RPCs of `service` that the contract marks safe to retry."""
    return [
        method.name
        for method in service.methods
        if not method.client_streaming and method.GetOptions().idempotency_level in _RETRIED_LEVELS
    ]


def service_config(
    service: ServiceDescriptor, settings: ClientSettings, retried: list[str] | None = None
) -> str:
    """gRPC service config (JSON) with a retry policy on the idempotent RPCs of `service`
    (or on `retried`, for a contract that does not declare idempotency), balancing calls
    round robin over every address the target resolves to: a Kubernetes headless Service
    (`dns:///ranking:50054`) gives one per pod, so calls spread over the pods, and the
    servers' `max_connection_age` makes clients re-resolve as pods come and go."""
    retry_policy = {
        "maxAttempts": settings.retry_max_attempts,
        "initialBackoff": f"{settings.retry_initial_backoff_s}s",
        "maxBackoff": f"{settings.retry_max_backoff_s}s",
        "backoffMultiplier": settings.retry_backoff_multiplier,
        "retryableStatusCodes": ["UNAVAILABLE"],
    }
    methods = idempotent_methods(service) if retried is None else retried
    names = [{"service": service.full_name, "method": m} for m in methods]
    balancing: list[dict[str, dict[str, str]]] = [{"round_robin": {}}]
    if settings.retry_max_attempts < 2:  # gRPC rejects a retry policy of one attempt
        return json.dumps({"loadBalancingConfig": balancing, "methodConfig": []})
    return json.dumps(
        {
            "loadBalancingConfig": balancing,
            "methodConfig": [{"name": names, "retryPolicy": retry_policy}],
        }
    )


def call_timeout(explicit: float | None, default: float) -> float:
    """The deadline of an outbound call: the explicit or default timeout, cut to what is left
    of the inbound call's deadline."""
    timeout = default if explicit is None else explicit
    remaining = context.remaining_seconds()
    return timeout if remaining is None else max(0.0, min(timeout, remaining))


def _with_context(details: grpc.aio.ClientCallDetails, default_timeout: float) -> Any:
    metadata = grpc.aio.Metadata(*(details.metadata or ()))
    request_id = context.request_id.get()
    if request_id is not None and context.REQUEST_ID_KEY not in metadata:
        metadata.add(context.REQUEST_ID_KEY, request_id)
    return grpc.aio.ClientCallDetails(
        method=details.method,
        timeout=call_timeout(details.timeout, default_timeout),
        metadata=metadata,
        credentials=details.credentials,
        wait_for_ready=details.wait_for_ready,
    )


class _ContextInterceptor(
    grpc.aio.UnaryUnaryClientInterceptor,  # type: ignore[type-arg]  # generic in stubs only
    grpc.aio.StreamUnaryClientInterceptor,  # type: ignore[type-arg]
    grpc.aio.UnaryStreamClientInterceptor,  # type: ignore[type-arg]
):
    """Adds the deadline and the request id to every outbound call."""

    def __init__(self, default_timeout: float) -> None:
        self.default_timeout = default_timeout

    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        return await continuation(_with_context(client_call_details, self.default_timeout), request)

    async def intercept_stream_unary(
        self, continuation: Callable[..., Any], client_call_details: Any, request_iterator: Any
    ) -> Any:
        return await continuation(
            _with_context(client_call_details, self.default_timeout), request_iterator
        )

    async def intercept_unary_stream(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        return await continuation(_with_context(client_call_details, self.default_timeout), request)


def open_channel(
    target: str,
    service: ServiceDescriptor,
    client: ClientSettings,
    limits: ServerSettings | None = None,
    retried: list[str] | None = None,
    tls: TlsSettings | None = None,
) -> grpc.aio.Channel:
    """An asyncio channel to `target` with deadlines, request ids and retries set up; with
    TLS when `tls` enables it for clients, else plaintext."""
    limits = limits or ServerSettings()
    options = [
        ("grpc.service_config", service_config(service, client, retried)),
        ("grpc.enable_retries", 1),
        ("grpc.max_receive_message_length", limits.max_receive_message_bytes),
        ("grpc.max_send_message_length", limits.max_send_message_bytes),
        ("grpc.keepalive_time_ms", int(limits.keepalive_time_s * 1000)),
        ("grpc.keepalive_timeout_ms", int(limits.keepalive_timeout_s * 1000)),
    ]
    interceptors = [cast(Any, _ContextInterceptor(client.default_timeout_s))]
    credentials = channel_credentials(tls or TlsSettings())
    if credentials is None:
        return grpc.aio.insecure_channel(target, options=options, interceptors=interceptors)
    return grpc.aio.secure_channel(target, credentials, options=options, interceptors=interceptors)


class ServiceClient(Generic[StubT]):
    """A channel and the typed stub over it; reuse one per process and close it at the end.

    async with interest_client(settings) as interest:
        response = await interest.stub.GetUserHistory(request)
    """

    def __init__(self, channel: grpc.aio.Channel, stub: StubT) -> None:
        self.channel = channel
        self.stub = stub

    async def close(self) -> None:
        await self.channel.close(None)

    async def __aenter__(self) -> ServiceClient[StubT]:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


def _client(
    endpoint: Endpoint,
    settings: Settings,
    service: ServiceDescriptor,
    stub_class: Callable[[grpc.aio.Channel], StubT],
) -> ServiceClient[StubT]:
    channel = open_channel(
        endpoint.target, service, settings.client, settings.server, tls=settings.tls
    )
    return ServiceClient(channel, stub_class(channel))


def preprocess_client(
    settings: Settings,
) -> ServiceClient[preprocess_pb2_grpc.PreprocessServiceAsyncStub]:
    """A client of PreprocessService at the configured endpoint."""
    service = preprocess_pb2.DESCRIPTOR.services_by_name["PreprocessService"]
    return _client(
        settings.preprocess, settings, service, preprocess_pb2_grpc.PreprocessServiceStub
    )


def embedding_client(
    settings: Settings,
) -> ServiceClient[embedding_pb2_grpc.EmbeddingServiceAsyncStub]:
    """A client of EmbeddingService at the configured endpoint."""
    service = embedding_pb2.DESCRIPTOR.services_by_name["EmbeddingService"]
    return _client(settings.embedding, settings, service, embedding_pb2_grpc.EmbeddingServiceStub)


def interest_client(
    settings: Settings,
) -> ServiceClient[interest_pb2_grpc.InterestServiceAsyncStub]:
    """A client of InterestService at the configured endpoint."""
    service = interest_pb2.DESCRIPTOR.services_by_name["InterestService"]
    return _client(settings.interest, settings, service, interest_pb2_grpc.InterestServiceStub)


def ranking_client(
    settings: Settings,
) -> ServiceClient[ranking_pb2_grpc.RankingServiceAsyncStub]:
    """A client of RankingService at the configured endpoint."""
    service = ranking_pb2.DESCRIPTOR.services_by_name["RankingService"]
    return _client(settings.ranking, settings, service, ranking_pb2_grpc.RankingServiceStub)
