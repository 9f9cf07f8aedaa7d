"""Domain errors and the one place that turns them into gRPC statuses.

Service code raises these; the server interceptor (`evorec.platform.interceptors`) turns them
into the matching status with rich details (`google.rpc.BadRequest` for bad input), so that a
handler never composes a status by hand and never answers UNKNOWN because of a caller's input.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import cast

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

# Violations an error carries to the caller: a request with thousands of bad entries would
# otherwise make a status larger than gRPC's metadata limits (8 KiB, then 16 KiB), and the
# caller would get RESOURCE_EXHAUSTED "Stream removed" instead of the fields. The message
# names the first few; both say how many there were in all.
MAX_SENT_VIOLATIONS = 10
MAX_NAMED_IN_MESSAGE = 3


@dataclass(frozen=True)
class FieldViolation:
    """One bad field of a request, named by its path (`events[3].event_time`)."""

    field: str
    description: str


class EvorecError(Exception):
    """An error the caller caused or can act on; carries its gRPC status code and, where
    fields of the request are at fault, their violations (sent as `google.rpc.BadRequest`)."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str = "", violations: Iterable[FieldViolation] = ()) -> None:
        self.violations = list(violations)
        named = self.violations[:MAX_NAMED_IN_MESSAGE]
        summary = "; ".join(f"{v.field}: {v.description}" for v in named)
        if len(self.violations) > len(named):
            sent = min(len(self.violations), MAX_SENT_VIOLATIONS)
            summary += f" ({len(self.violations):,} fields in all, the first {sent} in the details)"
        self.message = message or f"invalid request: {summary}"
        super().__init__(self.message)

    def details(self) -> list[any_pb2.Any]:
        """Rich error details sent beside the status (google.rpc error_details)."""
        if not self.violations:
            return []
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=v.field, description=v.description
                )
                for v in self.violations[:MAX_SENT_VIOLATIONS]
            ]
        )
        packed = any_pb2.Any()
        packed.Pack(bad_request)
        return [packed]

    def to_status(self) -> grpc.Status:
        """The status, with details packed as gRPC's rich error model expects them."""
        proto = status_pb2.Status(
            code=getattr(code_pb2, self.code.name),
            message=self.message,
            details=self.details(),
        )
        status: grpc.Status = rpc_status.to_status(proto)
        return status


class InvalidArgument(EvorecError):
    """The request is malformed; says which fields and why."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(EvorecError):
    """A resource that a Get names does not exist."""

    code = grpc.StatusCode.NOT_FOUND

    def __init__(self, kind: str, name: str) -> None:
        super().__init__(f"{kind} {name!r} not found")
        self.kind = kind
        self.name = name

    def details(self) -> list[any_pb2.Any]:
        packed = any_pb2.Any()
        packed.Pack(
            error_details_pb2.ResourceInfo(resource_type=self.kind, resource_name=self.name)
        )
        return [packed]


class ResourceExhausted(EvorecError):
    """A limit was reached (batch size, text length, capacity); names the fields over it."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPrecondition(EvorecError):
    """The system is not in a state that allows the call (e.g. no model loaded yet)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class Unauthenticated(EvorecError):
    """The caller proved no identity (no client certificate) where the policy needs one."""

    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(EvorecError):
    """The caller's identity is known, and the authorization policy does not allow it this
    RPC; the message names both."""

    code = grpc.StatusCode.PERMISSION_DENIED


class Unavailable(EvorecError):
    """A dependency cannot be reached; the caller may retry."""

    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(EvorecError):
    """A dependency did not answer within the call's deadline."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


def dependency_error(dependency: str, error: grpc.aio.AioRpcError) -> EvorecError:
    """What a failed call to another service means for our caller: that service's
    unavailability or slowness passes through as such; anything else it answered is our
    problem, not the caller's, and becomes UNAVAILABLE (never the dependency's INVALID_ARGUMENT,
    which would blame the caller for our request)."""
    message = f"{dependency}: {error.code().name}: {error.details()}"
    if error.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
        return DeadlineExceeded(message)
    return Unavailable(message)


class Violations:
    """Collects every field violation of a request, then raises them together: limits
    exceeded as RESOURCE_EXHAUSTED, other bad values as INVALID_ARGUMENT (with both kinds).

    Example::

        violations = Violations()
        violations.require(request.user_id != "", "user_id", "must not be empty")
        violations.within_limit(len(request.texts), 1000, "texts", "texts")
        violations.raise_if_any()
    """

    def __init__(self) -> None:
        self.items: list[FieldViolation] = []
        self.over_limit: list[FieldViolation] = []

    def add(self, field: str, description: str) -> None:
        self.items.append(FieldViolation(field, description))

    def require(self, condition: bool, field: str, description: str) -> None:
        """Records a violation of `field` unless `condition` holds."""
        if not condition:
            self.add(field, description)

    def within_limit(self, size: int, limit: int, field: str, unit: str) -> None:
        """Records that `field` is over its limit unless `size` <= `limit`."""
        if size > limit:
            self.over_limit.append(FieldViolation(field, f"at most {limit:,} {unit}, got {size:,}"))

    def raise_if_any(self) -> None:
        if self.items:
            raise InvalidArgument(violations=self.items + self.over_limit)
        if self.over_limit:
            raise ResourceExhausted(violations=self.over_limit)


def field_violations(error: grpc.aio.AioRpcError | grpc.RpcError) -> list[FieldViolation]:
    """The BadRequest field violations a failed call carries (client side)."""
    # AioRpcError has the same synchronous accessors that from_call reads.
    status = rpc_status.from_call(cast(grpc.Call, error))
    if status is None:
        return []
    found = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            found += [FieldViolation(v.field, v.description) for v in bad_request.field_violations]
    return found
