"""The ingest benchmarks' events, one by one: the user, item, time and id of event number n,
so that scripts/bench_interest.py (through the service) and scripts/profile_ingest.py (the
store alone) measure the same traffic. Event n belongs to user n mod USERS at time
START_TIME + n // USERS: the users take turns, and each user's events are in time order.
A module of its own rather than part of bench_interest.py, which imports the data
preparation (and TensorFlow) that profile_ingest's measured process should not hold.
"""

from __future__ import annotations

import argparse
import hashlib
import uuid
from dataclasses import dataclass

USERS = 10_000
START_TIME = 1_600_000_000
ID_KINDS = ("counter", "random", "time-ordered")


@dataclass(frozen=True)
class Shape:
    """What the traffic looks like beyond its size.

    ids: `counter`, the benchmarks' own (a letter and the event's number: the ids of one
    phase sort together, apart from the other phases'); `random`, version-4 UUIDs, as most
    callers make them; `time-ordered`, version-7 UUIDs (the first 48 bits a millisecond since
    1970 within the event's second, the users' events spread over it, as UUIDv7 and ULID
    begin with the time). Both UUIDs are drawn from the event's number, so runs repeat.
    varied_items: each user's events move through the items (and so the topics) instead of
    repeating one item, so that a user's derived state has many rows, as real users' has.
    """

    ids: str = "counter"
    varied_items: bool = False

    @staticmethod
    def add_options(parser: argparse.ArgumentParser) -> None:
        """--event-ids and --varied-items, which `Shape.of` reads."""
        parser.add_argument("--event-ids", choices=ID_KINDS, default="counter")
        parser.add_argument(
            "--varied-items", action="store_true", help="each user's events move through the items"
        )

    @classmethod
    def of(cls, args: argparse.Namespace) -> Shape:
        return cls(args.event_ids, args.varied_items)


def event_fields(n: int, items: int, shape: Shape = Shape()) -> tuple[str, str, int]:
    """User, item and time of event n; the item is the user's own, or the user's next one."""
    step = n // USERS
    item = (n * 7919 + (step * 13 if shape.varied_items else 0)) % items
    return f"user{n % USERS}", f"i{item}", START_TIME + step


def event_id(n: int, shape: Shape, prefix: str, width: int = 0) -> str:
    """Event n's id (`Shape.ids`); a `counter` id is `prefix` and n, zero-padded to `width`
    digits."""
    if shape.ids == "counter":
        return f"{prefix}{n:0{width}d}"
    drawn = int.from_bytes(hashlib.blake2b(n.to_bytes(8, "big"), digest_size=16).digest())
    if shape.ids == "random":
        return str(uuid.UUID(int=drawn, version=4))
    millisecond = (START_TIME + n // USERS) * 1000 + (n % USERS) * 1000 // USERS
    bits = (millisecond << 80) | (drawn & ((1 << 80) - 1))
    bits = (bits & ~(0xF << 76)) | (7 << 76)  # the version, 7
    bits = (bits & ~(0x3 << 62)) | (0x2 << 62)  # the variant of RFC 9562
    return str(uuid.UUID(int=bits))
