"""Per-RPC authorization by the caller's identity, from the verified client certificate.

The policy maps RPCs to the identities allowed to call them. A key is a full method name
(`evorec.v1.InterestService/DeleteUser`), a service name (`evorec.v1.InterestService`, every
RPC of it) or `*` (every RPC no other key names); the most specific key that matches decides.
An identity is a certificate's subject common name (`ranking`) or a SPIFFE ID from its URI
SANs (`spiffe://evorec.example/ns/prod/sa/ranking`); `*` allows any caller whose certificate
verified. An RPC that no key matches is denied, so that an RPC added later is closed until
the policy names it. Health is always allowed: probes and orchestrators must reach it.

An empty policy authorizes nothing and denies nothing: every caller that passes the transport
(plaintext, TLS, or mutual TLS) is served, as before this module existed.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

from evorec.platform.errors import EvorecError, PermissionDenied, Unauthenticated
from evorec.platform.handlers import Behavior, Handler, KeptHandlers, rewrapped
from evorec.v1 import embedding_pb2, interest_pb2, preprocess_pb2, ranking_pb2

log = logging.getLogger("evorec.authorization")
ANY = "*"
SPIFFE_SCHEME = "spiffe://"
# Callable by anyone who reaches the port: liveness and readiness must never need a rule.
ALWAYS_ALLOWED = frozenset({health_pb2.DESCRIPTOR.services_by_name["Health"].full_name})
# The files whose services a policy may name: evorec's own, and the standard ones every
# evorec server also serves.
_SERVED_FILES = (
    preprocess_pb2.DESCRIPTOR,
    embedding_pb2.DESCRIPTOR,
    interest_pb2.DESCRIPTOR,
    ranking_pb2.DESCRIPTOR,
    health_pb2.DESCRIPTOR,
    reflection_pb2.DESCRIPTOR,
)


def known_rpcs() -> dict[str, set[str]]:
    """Every service an evorec server answers for, by full name, with its RPCs' full names."""
    services: dict[str, set[str]] = {}
    for file in _SERVED_FILES:
        for service in file.services_by_name.values():
            services[service.full_name] = {f"{service.full_name}/{m.name}" for m in service.methods}
    return services


def validate_rules(rules: Mapping[str, list[str]]) -> dict[str, list[str]]:
    """The rules, unchanged, when every key names a known RPC or service (or is `*`) and
    every value is a non-empty list of non-empty identities; else ValueError saying which."""
    services = known_rpcs()
    methods = set().union(*services.values())
    problems = []
    for key, identities in rules.items():
        if key != ANY and key not in services and key not in methods:
            problems.append(
                f"{key!r} is neither an RPC (package.Service/Method) nor a service that evorec "
                "serves"
            )
        if not identities or any(not identity.strip() for identity in identities):
            problems.append(f"{key!r} must list at least one identity, none of them empty")
    if problems:
        raise ValueError("; ".join(problems))
    return dict(rules)


def caller_identities(auth_context: Mapping[str, Iterable[bytes]]) -> set[str]:
    """The identities a verified client certificate proves: its subject common name and its
    SPIFFE IDs, which are URI entries of its subject alternative names (`peer_uri`; gRPC's
    `x509_subject_alternative_name` mixes in DNS names and email addresses, which a CA may
    let a workload choose). Empty when the caller presented no certificate (plaintext, or
    TLS without client authentication)."""
    names = {value.decode() for value in auth_context.get("x509_common_name", ())}
    names |= {
        value.decode()
        for value in auth_context.get("peer_uri", ())
        if value.startswith(SPIFFE_SCHEME.encode())
    }
    return names


@dataclass(frozen=True)
class Policy:
    """Who may call what; see the module docstring for the rules."""

    rules: Mapping[str, list[str]]

    def allowed(self, method: str) -> list[str] | None:
        """The identities allowed to call `method` (`package.Service/Method`); None when no
        rule matches it."""
        service = method.partition("/")[0]
        for key in (method, service, ANY):
            if key in self.rules:
                return self.rules[key]
        return None

    def check(self, method: str, identities: set[str]) -> None:
        """Raises Unauthenticated or PermissionDenied unless a caller with `identities` may
        call `method`."""
        if method.partition("/")[0] in ALWAYS_ALLOWED:
            return
        if not identities:
            raise Unauthenticated(f"{method} needs a client certificate; the caller sent none")
        allowed = self.allowed(method)
        if allowed is not None and (ANY in allowed or identities & set(allowed)):
            return
        who = ", ".join(sorted(identities))
        why = (
            "no rule of the policy names it"
            if allowed is None
            else "the policy allows only " + ", ".join(allowed)
        )
        raise PermissionDenied(f"{who} may not call {method}: {why}")


class AuthorizationInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]  # generic in stubs only
    """Checks every call against the policy before its handler runs.

    It wraps the handler rather than answering from `intercept_service`, because the caller's
    certificate is only visible in the call's context. It raises evorec errors, so that the
    outer interceptor logs, counts and answers a denial like any other error; it must come
    after that interceptor in the server's list.
    """

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self._handlers = KeptHandlers(self._checked_handler)

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        name = handler_call_details.method
        # No such method (gRPC itself answers UNIMPLEMENTED), or one open to every caller.
        if not handler or name.lstrip("/").partition("/")[0] in ALWAYS_ALLOWED:
            return handler
        return self._handlers.get(handler, name)

    def _checked_handler(self, handler: Handler, name: str) -> Handler:
        method = name.lstrip("/")
        return rewrapped(handler, lambda _, behavior: self._checked(behavior, method))

    def _check(self, method: str, servicer_context: Any) -> None:
        try:
            self.policy.check(method, caller_identities(servicer_context.auth_context()))
        except EvorecError as denied:
            # The access log line has the status; this one says who, for an audit trail.
            log.warning("denied: %s (peer %s)", denied.message, servicer_context.peer())
            raise

    def _checked(self, behavior: Behavior, method: str) -> Behavior:
        if inspect.isasyncgenfunction(behavior):

            async def stream(request: Any, servicer_context: Any) -> AsyncIterator[Any]:
                self._check(method, servicer_context)
                async for response in behavior(request, servicer_context):
                    yield response

            return stream

        async def unary(request: Any, servicer_context: Any) -> Any:
            self._check(method, servicer_context)
            result = behavior(request, servicer_context)
            return await result if inspect.isawaitable(result) else result

        return unary
