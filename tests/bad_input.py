"""A catalogue of hostile requests, generated from the protobuf descriptors of every RPC of
the four services, and the client that sends it and counts the answers.

Each RPC starts from a seed (a valid request, so that a bad value in one field is what the
service meets, not an earlier missing field); the catalogue walks the request message's
fields recursively and, for each, makes requests with the field empty, huge (over each
documented limit), out of range, of the wrong wire type, holding Unicode edge cases or
invalid UTF-8; it adds, per RPC, malformed bytes, other RPCs' requests (wrong type), deep
nesting and a message over the transport's size limit; and, for the streaming RPCs, streams
that are empty, cut halfway by the client, or that turn bad after good messages. Everything
is sent as raw bytes through a generic channel call (identity serializers), so bytes that no
protobuf library would produce reach the server as they are.

Used by `scripts/bad_input.py` (the whole catalogue against `evorec serve` processes) and
`tests/test_bad_input.py` (a sample against in-process services).
"""

from __future__ import annotations

import asyncio
import base64
import random
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message

from evorec.embedding import service as embedding_limits
from evorec.interest import service as interest_limits
from evorec.platform import validation
from evorec.preprocess import service as preprocess_limits
from evorec.ranking import service as ranking_limits
from evorec.v1 import common_pb2, embedding_pb2, interest_pb2, preprocess_pb2, ranking_pb2

SERVICE_MODULES = (preprocess_pb2, embedding_pb2, interest_pb2, ranking_pb2)
# What the catalogue's seeds write: ids no dataset uses, so that the checks afterwards can
# tell the data the catalogue may change from the data it must leave alone.
CATALOGUE_USER = "bad-input-user"
CUT_STREAM_USER = "bad-input-cut"
CATALOGUE_ITEM = "bad-input-item"
# Sizes one over each documented limit of a count (texts, ids, events, items, categories,
# batch requests) and of a string (ids, event texts, titles, categories, texts).
COUNT_LIMITS = sorted(
    {
        preprocess_limits.MAX_TEXTS,
        embedding_limits.MAX_IDS,
        embedding_limits.MAX_CATEGORIES,
        interest_limits.MAX_BATCH,
        ranking_limits.MAX_BATCH,
    }
)
STRING_LIMITS = sorted(
    {
        validation.MAX_ID_CHARS,
        validation.MAX_EVENT_TEXT_CHARS,
        validation.MAX_TEXT_CHARS,
        embedding_limits.MAX_TITLE_CHARS,
        embedding_limits.MAX_CATEGORY_CHARS,
    }
)
NUMBER_LIMITS = sorted(
    {
        interest_limits.MAX_HORIZON,
        interest_limits.MAX_PAGE,
        interest_limits.MAX_EXPORT_PAGE,
        ranking_limits.MAX_K,
        embedding_limits.MAX_K,
    }
)
# Over the servers' default grpc.max_receive_message_length (16 MiB, ServerSettings).
OVER_TRANSPORT_LIMIT_BYTES = 17 * 1024 * 1024
# Nesting depths of unknown groups: within protobuf's recursion limit (100), and far over it.
NESTING_DEPTHS = (50, 10_000)

UNICODE_EDGE_CASES = {
    "nul": "a\x00b",
    "only nuls": "\x00" * 16,
    "right-to-left marks": "\u202eevil\u202c \u200fabc\u200e",
    "combining marks": "e\u0301\u0302\u0303 cafe\u0301",
    "4-byte emoji": "\U0001f600\U0001f469\u200d\U0001f4bb\U0001f1fa\U0001f1f8",
    "long grapheme cluster": "a" + "\u0301" * 5_000,
    "zero-width joiners": "\u200d" * 64,
    "byte order mark": "\ufeffbom",
    "noncharacters": "\ufffe\uffff\U0010ffff",
    "line separators": "a\u2028b\u2029c\r\n\t",
    "nfkc changes": "\ufb01\ufb03 \u2460 \uff21 \U0001d518",
    "case folding expands": "STRASSE stra\u00dfe \u0130",
    "han": "\u4e2d\u6587\u6d4b\u8bd5\u63a8\u8350",
    "whitespace only": " \t\n ",
    "markup": "<script>alert(1)</script> [x](javascript:1) &amp;&#0;",
    "format strings": "%s%n{0}{__class__}",
    "path": "../../etc/passwd",
}
# Page tokens as the services encode them (base64 of a position), holding what no service
# issues: not-a-number, infinity, an integer past int64, nothing, a negative position.
FORGED_TOKENS = {
    label: base64.urlsafe_b64encode(text.encode()).decode()
    for label, text in {
        "nan position": "nan/1",
        "infinite position": "inf/-1",
        "position past int64": f"1.0/{2**70}",
        "empty position": "/",
        "negative position": "-1e308/-1",
    }.items()
} | {
    # Offset tokens (decimal offsets) that are digits to str.isdigit but not to int().
    "superscript digit": "\u00b2",
    "arabic-indic digits": "\u0663\u0664",
    "5,000 digits": "9" * 5_000,
    "offset past int64": str(2**70),
}
# Bytes that are not UTF-8, of the same length as MARKER, which they replace on the wire.
MARKER = "\x01badutf8\x01"
INVALID_UTF8 = b"\xff\xc0\x80\xed\xa0\x80\xf8\x88\x80"

INT32_VALUES = (-1, 0, 1, 2**31 - 1, -(2**31))
INT64_VALUES = (2**63 - 1, -(2**63))
FLOAT_VALUES = (
    float("nan"), float("inf"), float("-inf"), -0.0, -1.0, 1.5, 1e308, 5e-324,
)  # fmt: skip
ENUM_EXTRA = (99, -1, 2**31 - 1)

_INT32_TYPES = {
    FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SFIXED32,
}  # fmt: skip
_INT64_TYPES = {
    FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED64,
}  # fmt: skip
_FLOAT_TYPES = {FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT}
_LENGTH_DELIMITED = 2


@dataclass(frozen=True)
class Rpc:
    """One RPC: its path and shape."""

    service: str
    name: str
    request: Descriptor
    client_streaming: bool
    server_streaming: bool

    @property
    def path(self) -> str:
        return f"/{self.service}/{self.name}"


@dataclass(frozen=True)
class Case:
    """One hostile call: the raw request messages, and, for a stream cut halfway, after how
    many messages (sent, for a client stream; received, for a server stream) the client
    cancels."""

    rpc: Rpc
    kind: str
    label: str
    messages: tuple[bytes, ...]
    cancel_after: int | None = None


def rpcs() -> list[Rpc]:
    """Every RPC of the four services, from their descriptors."""
    found = []
    for module in SERVICE_MODULES:
        for service in module.DESCRIPTOR.services_by_name.values():
            method: MethodDescriptor
            for method in service.methods:
                found.append(
                    Rpc(
                        service.full_name,
                        method.name,
                        method.input_type,
                        method.client_streaming,
                        method.server_streaming,
                    )
                )
    return found


def message_class(descriptor: Descriptor) -> type[Message]:
    return message_factory.GetMessageClass(descriptor)


def _repeated(fd: FieldDescriptor) -> bool:
    return bool(fd.is_repeated)


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _tag(number: int, wire_type: int) -> bytes:
    return _varint((number << 3) | wire_type)


def _length_delimited(number: int, payload: bytes) -> bytes:
    return _tag(number, _LENGTH_DELIMITED) + _varint(len(payload)) + payload


# A path to a field: the field descriptors from the request down to it.
FieldPath = tuple[FieldDescriptor, ...]


def field_paths(
    descriptor: Descriptor, prefix: FieldPath = (), depth: int = 6
) -> Iterator[FieldPath]:
    """Every field of a message and, recursively, of the messages it holds."""
    for fd in descriptor.fields:
        path = (*prefix, fd)
        yield path
        if fd.message_type is not None and depth > 0:
            yield from field_paths(fd.message_type, path, depth - 1)


def path_name(path: FieldPath) -> str:
    return ".".join(f"{fd.name}[0]" if _repeated(fd) else fd.name for fd in path)


def _parent(request: Message, path: FieldPath) -> Message:
    """The message holding the last field of `path`, created (element 0 of a repeated
    message field) where the seed lacks it."""
    current = request
    for fd in path[:-1]:
        if _repeated(fd):
            items = getattr(current, fd.name)
            current = items[0] if len(items) else items.add()
        else:
            current = getattr(current, fd.name)
    return current


def _with(
    seed: Message, path: FieldPath, change: Callable[[Message, FieldDescriptor], None]
) -> bytes:
    request = type(seed)()
    request.CopyFrom(seed)
    parent = _parent(request, path)
    change(parent, path[-1])
    return request.SerializeToString()


def _set_value(value: Any) -> Callable[[Message, FieldDescriptor], None]:
    def change(parent: Message, fd: FieldDescriptor) -> None:
        if _repeated(fd):
            items = getattr(parent, fd.name)
            if fd.message_type is not None:
                return
            del items[:]
            items.append(value)
        else:
            setattr(parent, fd.name, value)

    return change


def _set_count(count: int) -> Callable[[Message, FieldDescriptor], None]:
    """`count` elements: copies of element 0 (made where absent); strings made distinct."""

    def change(parent: Message, fd: FieldDescriptor) -> None:
        items = getattr(parent, fd.name)
        if fd.message_type is not None:
            first = message_class(fd.message_type)()
            if len(items):
                first.CopyFrom(items[0])
            del items[:]
            items.extend([first] * count)
        else:
            first = items[0] if len(items) else _default_scalar(fd)
            del items[:]
            if fd.type == FieldDescriptor.TYPE_STRING:
                items.extend(f"{first}-{n}" for n in range(count))
            else:
                items.extend([first] * count)

    return change


def _default_scalar(fd: FieldDescriptor) -> Any:
    if fd.type == FieldDescriptor.TYPE_STRING:
        return "x"
    if fd.type == FieldDescriptor.TYPE_BYTES:
        return b"x"
    if fd.type == FieldDescriptor.TYPE_BOOL:
        return True
    if fd.type in _FLOAT_TYPES:
        return 1.0
    return 1


def _empty_message(parent: Message, fd: FieldDescriptor) -> None:
    if _repeated(fd):
        getattr(parent, fd.name).add()
    else:
        getattr(parent, fd.name).SetInParent()


def _cleared(parent: Message, fd: FieldDescriptor) -> None:
    parent.ClearField(fd.name)


def field_cases(rpc: Rpc, seed: Message) -> Iterator[Case]:
    """The cases of each field of the request, recursively."""
    for path in field_paths(rpc.request):
        fd = path[-1]
        name = path_name(path)

        def case(
            kind: str,
            what: str,
            change: Callable[[Message, FieldDescriptor], None],
            name: str = name,
            path: FieldPath = path,
        ) -> Case:
            return Case(rpc, kind, f"{name}: {what}", (_with(seed, path, change),))

        yield case("empty", "cleared", _cleared)
        if _repeated(fd):
            for limit in COUNT_LIMITS:
                yield case("huge", f"{limit + 1:,} elements", _set_count(limit + 1))
        if fd.message_type is not None:
            yield case("empty", "present and empty", _empty_message)
            continue
        if fd.type == FieldDescriptor.TYPE_STRING:
            yield case("empty", '""', _set_value(""))
            for limit in STRING_LIMITS:
                yield case("huge", f"{limit + 1:,} characters", _set_value("x" * (limit + 1)))
            yield case(
                "huge",
                f"{validation.MAX_ID_CHARS + 1} 4-byte characters",
                _set_value("\U0001f600" * (validation.MAX_ID_CHARS + 1)),
            )
            for label, text in UNICODE_EDGE_CASES.items():
                yield case("unicode", label, _set_value(text))
            if fd.name.endswith("token"):
                for label, token in FORGED_TOKENS.items():
                    yield case("out-of-range", f"forged token, {label}", _set_value(token))
            raw = _with(seed, path, _set_value(MARKER))
            yield Case(
                rpc,
                "unicode",
                f"{name}: invalid UTF-8 bytes",
                (raw.replace(MARKER.encode(), INVALID_UTF8),),
            )
        elif fd.type in _INT32_TYPES or fd.type in _INT64_TYPES:
            values = list(INT32_VALUES) + [limit + 1 for limit in NUMBER_LIMITS]
            if fd.type in _INT64_TYPES:
                values += INT64_VALUES
            for value in values:
                yield case("out-of-range", str(value), _set_value(value))
        elif fd.type in _FLOAT_TYPES:
            for number in FLOAT_VALUES:
                yield case("out-of-range", repr(number), _set_value(number))
        elif fd.type == FieldDescriptor.TYPE_BOOL:
            for flag in (True, False):
                yield case("out-of-range", str(flag), _set_value(flag))
        elif fd.type == FieldDescriptor.TYPE_ENUM:
            numbers = [v.number for v in fd.enum_type.values] + list(ENUM_EXTRA)
            for number in numbers:
                yield case("out-of-range", f"enum {number}", _set_value(number))
        # The field's number with the wrong wire type, after a valid request.
        if len(path) == 1:
            wrong = (
                _tag(fd.number, 0) + _varint(2**64 - 1)
                if fd.type in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_MESSAGE)
                else _length_delimited(fd.number, b"\xff" * 8)
            )
            yield Case(
                rpc, "wrong-type", f"{name}: wrong wire type", (seed.SerializeToString() + wrong,)
            )


def message_cases(rpc: Rpc, seed: Message, other_seeds: Sequence[Message]) -> Iterator[Case]:
    """Cases of the request as a whole: empty, malformed, another type, nested, too big."""
    good = seed.SerializeToString()
    yield Case(rpc, "empty", "no bytes", (b"",))
    if good:
        yield Case(rpc, "malformed", "truncated by one byte", (good[:-1],))
        yield Case(rpc, "malformed", "length beyond the message", (good + b"\x0a\xe8\x07abc",))
    yield Case(rpc, "malformed", "field number 0", (b"\x00\x01",))
    yield Case(rpc, "malformed", "varint of 11 bytes", (b"\x08" + b"\xff" * 10 + b"\x01",))
    yield Case(rpc, "malformed", "group start without end", (b"\x0b",))
    yield Case(rpc, "malformed", "wire type 7", (b"\x0f\x00",))
    randomness = random.Random(f"{rpc.path}")
    for number in range(4):
        noise = bytes(randomness.randrange(256) for _ in range(randomness.randrange(1, 64)))
        yield Case(rpc, "malformed", f"random bytes #{number}", (noise,))
    for other in other_seeds:
        yield Case(rpc, "wrong-type", f"a {other.DESCRIPTOR.name}", (other.SerializeToString(),))
    # Each message field of the request holding the bytes of another message.
    for fd in rpc.request.fields:
        if fd.message_type is not None:
            for other in other_seeds[:3]:
                payload = _length_delimited(fd.number, other.SerializeToString())
                yield Case(
                    rpc, "wrong-type", f"{fd.name}: a {other.DESCRIPTOR.name}", (good + payload,)
                )
    for depth in NESTING_DEPTHS:
        start, end = _tag(1000, 3), _tag(1000, 4)
        yield Case(
            rpc,
            "deep-nesting",
            f"unknown groups {depth} deep",
            (good + start * depth + end * depth,),
        )
    for fd in rpc.request.fields:
        if fd.message_type is not None:
            for depth in NESTING_DEPTHS:
                nested = b""
                for _ in range(depth):
                    nested = _length_delimited(fd.number, nested)
                yield Case(rpc, "deep-nesting", f"{fd.name} nested {depth} deep", (nested,))
    yield Case(
        rpc,
        "huge",
        f"{OVER_TRANSPORT_LIMIT_BYTES:,}-byte message",
        (good + _length_delimited(1000, b"x" * OVER_TRANSPORT_LIMIT_BYTES),),
    )


def stream_cases(rpc: Rpc, seed: Message, cut_seed: Message) -> Iterator[Case]:
    """What only a stream can do: nothing at all, a cut, good messages then bad ones."""
    good = seed.SerializeToString()
    cut = cut_seed.SerializeToString()
    if rpc.client_streaming:
        yield Case(rpc, "empty", "stream of no messages", ())
        yield Case(rpc, "empty", "stream of one empty message", (b"",))
        yield Case(rpc, "stream-cut", "client cancels after 2 good messages", (cut, cut, cut), 2)
        over = type(seed)()
        over.CopyFrom(seed)
        _set_count(COUNT_LIMITS[-1] + 1)(
            _parent(over, (rpc.request.fields[0],)), rpc.request.fields[0]
        )
        text = next(
            p for p in field_paths(rpc.request) if p[-1].type == FieldDescriptor.TYPE_STRING
        )
        bad_messages = {
            "malformed bytes": good[:-1] if good else b"\x0b",
            "invalid UTF-8": _with(seed, text, _set_value(MARKER)).replace(
                MARKER.encode(), INVALID_UTF8
            ),
            "over the per-message limit": over.SerializeToString(),
        }
        for label, bad in bad_messages.items():
            yield Case(rpc, "stream-cut", f"2 good messages, then {label}", (good, good, bad, good))
    if rpc.server_streaming:
        yield Case(rpc, "stream-cut", "client cancels after the first answer", (good,), 1)


def catalogue(seeds: dict[str, Message], cut_seeds: dict[str, Message]) -> list[Case]:
    """Every case of every RPC; `seeds` holds a valid request per RPC name, `cut_seeds` one
    per client-streaming RPC for the streams the client cuts (their effect is checked
    apart, since a cut stream keeps what was acknowledged)."""
    found = rpcs()
    missing = {rpc.name for rpc in found} - set(seeds)
    if missing:
        raise ValueError(f"no seed for {sorted(missing)}")
    cases: list[Case] = []
    for rpc in found:
        seed = seeds[rpc.name]
        others = [seeds[other.name] for other in found if other.request != rpc.request]
        cases.extend(field_cases(rpc, seed))
        cases.extend(message_cases(rpc, seed, others))
        if rpc.client_streaming or rpc.server_streaming:
            cases.extend(stream_cases(rpc, seed, cut_seeds.get(rpc.name, seed)))
    return cases


def sample(cases: Sequence[Case], per_kind: int, seed: int = 0) -> list[Case]:
    """At most `per_kind` cases of each (RPC, kind), drawn at random but reproducibly."""
    groups: dict[tuple[str, str], list[Case]] = {}
    for case in cases:
        groups.setdefault((case.rpc.path, case.kind), []).append(case)
    draw = random.Random(seed)
    picked: list[Case] = []
    for group in groups.values():
        picked.extend(draw.sample(group, min(per_kind, len(group))))
    return picked


@dataclass
class Outcome:
    """One answered case: its status, and the response's bytes when it succeeded."""

    case: Case
    code: grpc.StatusCode
    responses: list[bytes] = field(default_factory=list)
    details: str = ""


async def send(channel: grpc.aio.Channel, case: Case, call_timeout: float) -> Outcome:
    """Sends one case as raw bytes; never raises for a status."""
    rpc = case.rpc
    responses: list[bytes] = []
    try:
        if rpc.client_streaming:
            call = channel.stream_unary(rpc.path)(_stream(case), timeout=call_timeout)
            if case.cancel_after is not None:
                await asyncio.sleep(0.2)
                call.cancel()
            responses.append(await call)
        elif rpc.server_streaming:
            stream = channel.unary_stream(rpc.path)(case.messages[0], timeout=call_timeout)
            async for response in stream:
                responses.append(response)
                if case.cancel_after is not None and len(responses) >= case.cancel_after:
                    stream.cancel()
                    break
            else:
                return Outcome(case, grpc.StatusCode.OK, responses)
            return Outcome(case, await stream.code(), responses)
        else:
            responses.append(
                await channel.unary_unary(rpc.path)(case.messages[0], timeout=call_timeout)
            )
    except grpc.aio.AioRpcError as error:
        return Outcome(case, error.code(), responses, error.details() or "")
    except asyncio.CancelledError:
        return Outcome(case, grpc.StatusCode.CANCELLED, responses)
    return Outcome(case, grpc.StatusCode.OK, responses)


async def _stream(case: Case) -> AsyncIterator[bytes]:
    for number, message in enumerate(case.messages):
        if case.cancel_after is not None and number >= case.cancel_after:
            await asyncio.sleep(3600)  # held open until the client cancels the call
        yield message


async def send_all(
    target: str, cases: Sequence[Case], call_timeout: float = 30.0, concurrency: int = 4
) -> list[Outcome]:
    """Every case, `concurrency` at a time, over one channel to `target` per service."""
    options = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
    outcomes: list[Outcome] = []
    queue = list(reversed(cases))
    async with grpc.aio.insecure_channel(target, options=options) as channel:

        async def worker() -> None:
            while queue:
                outcomes.append(await send(channel, queue.pop(), call_timeout))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return outcomes


def tally(outcomes: Sequence[Outcome]) -> dict[str, Counter[str]]:
    """The count of answers per status code, per RPC."""
    counts: dict[str, Counter[str]] = {}
    for outcome in outcomes:
        counts.setdefault(outcome.case.rpc.name, Counter())[outcome.code.name] += 1
    return counts


FORBIDDEN = (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL)


def failures(outcomes: Sequence[Outcome]) -> list[Outcome]:
    """The answers no hostile request may get: UNKNOWN and INTERNAL."""
    return [outcome for outcome in outcomes if outcome.code in FORBIDDEN]


def _events(user: str, items: Sequence[str], now: float, prefix: str) -> list[common_pb2.Event]:
    return [
        common_pb2.Event(
            event_id=f"{prefix}-{number}",
            user_id=user,
            item_id=item,
            type=common_pb2.EVENT_TYPE_REVIEW,
            value=4.0,
            text="a fine film",
            event_time=validation.timestamp(now - 3600 + number),
        )
        for number, item in enumerate(items)
    ]


def seeds(known_items: Sequence[str], now: float) -> dict[str, Message]:
    """A valid request per RPC, every id one the dataset does not use (CATALOGUE_USER,
    CATALOGUE_ITEM) except the items an inline history or a similarity query must know."""
    items = list(known_items[:3])
    history = ranking_pb2.InlineHistory(
        items=[
            ranking_pb2.HistoryItem(
                item_id=item,
                type=common_pb2.EVENT_TYPE_VIEW,
                event_time=validation.timestamp(now - 60 + number),
            )
            for number, item in enumerate(items)
        ]
    )
    recommend = ranking_pb2.RecommendRequest(
        history=history,
        k=5,
        filter=ranking_pb2.RecommendFilter(exclude_item_ids=[known_items[3]]),
        diversity=0.3,
        exclude_seen=True,
    )
    by_user = ranking_pb2.RecommendRequest(user_id=CATALOGUE_USER, k=5)
    events = _events(CATALOGUE_USER, items, now, "bad-input")
    return {
        "NormalizeText": preprocess_pb2.NormalizeTextRequest(
            texts=["A <b>fine</b> film, https://x.example"],
            options=preprocess_pb2.TextOptions(
                remove_stopwords=True,
                stem=True,
                max_tokens=50,
                language=preprocess_pb2.LANGUAGE_ENGLISH,
            ),
        ),
        "EmbedTexts": embedding_pb2.EmbedTextsRequest(texts=["a fine film"]),
        "GetItemVectors": embedding_pb2.GetItemVectorsRequest(item_ids=[*items, CATALOGUE_ITEM]),
        "UpsertItems": embedding_pb2.UpsertItemsRequest(
            items=[
                embedding_pb2.Item(
                    item_id=CATALOGUE_ITEM,
                    title="A title",
                    text="a fine film about a dog",
                    categories=["Drama"],
                    create_time=validation.timestamp(now - 60),
                )
            ]
        ),
        "SimilarItems": embedding_pb2.SimilarItemsRequest(
            item_id=items[0], k=5, exclude_item_ids=[CATALOGUE_ITEM]
        ),
        "ListTopics": embedding_pb2.ListTopicsRequest(page_size=2),
        "ListItems": embedding_pb2.ListItemsRequest(
            after_revision=0, page_size=2, include_text=True
        ),
        "IngestEvents": interest_pb2.IngestEventsRequest(events=events),
        "StreamEvents": interest_pb2.StreamEventsRequest(events=events),
        "GetUserHistory": interest_pb2.GetUserHistoryRequest(
            user_id=CATALOGUE_USER,
            page_size=2,
            start_time=validation.timestamp(now - 86_400),
            end_time=validation.timestamp(now + 60),
        ),
        "GetRecentItems": interest_pb2.GetRecentItemsRequest(user_id=CATALOGUE_USER, limit=5),
        "GetInterestProfile": interest_pb2.GetInterestProfileRequest(
            user_id=CATALOGUE_USER,
            horizon=5,
            half_life=Duration(seconds=7 * 86_400),
            timeline_bucket=Duration(seconds=86_400),
        ),
        "DeleteUser": interest_pb2.DeleteUserRequest(user_id=f"{CATALOGUE_USER}-deleted"),
        "ExportEvents": interest_pb2.ExportEventsRequest(after_watermark=0, page_size=2),
        "Recommend": recommend,
        "RecommendBatch": ranking_pb2.RecommendBatchRequest(requests=[recommend, by_user]),
        "ForecastInterests": ranking_pb2.ForecastInterestsRequest(history=history, horizon=3),
    }


def cut_seeds(known_items: Sequence[str], now: float) -> dict[str, Message]:
    """The good messages of the client streams that the client cuts: CUT_STREAM_USER's."""
    events = _events(CUT_STREAM_USER, list(known_items[:3]), now, "bad-input-cut")
    return {"StreamEvents": interest_pb2.StreamEventsRequest(events=events)}
