"""The request-scoped values that cross service hops: the request id and the deadline.

The server interceptor sets them when a call comes in; the logs read the request id and the
client interceptor forwards both on every outbound call made while handling it. Context
variables keep them right under asyncio, where many calls interleave on one thread.
"""

from __future__ import annotations

import os
import random
import time
from contextvars import ContextVar

REQUEST_ID_KEY = "x-request-id"
# Marks the calls a background poller repeats every few seconds ("1"); the access log keeps
# their successes at DEBUG.
POLL_KEY = "x-evorec-poll"

request_id: ContextVar[str | None] = ContextVar("evorec_request_id", default=None)
# The inbound call's deadline, as a time.monotonic() instant; None when the caller set none.
deadline: ContextVar[float | None] = ContextVar("evorec_deadline", default=None)

# Request ids' own generator: seeding the shared one (Keras' set_random_seed does, in a
# process that trains) must not make them repeat. Seeded anew in a forked child.
_ids = random.Random()
os.register_at_fork(after_in_child=_ids.seed)


def new_request_id() -> str:
    """A fresh id for a call that arrived without one: 32 hex digits, like a UUID's.

    Why not `uuid.uuid4()`: it reads the system's random source, a system call at every
    call, for an id that must differ from the others, not be unpredictable."""
    return f"{_ids.getrandbits(128):032x}"


def remaining_seconds() -> float | None:
    """Seconds left before the inbound call's deadline, or None when it has none."""
    end = deadline.get()
    return None if end is None else end - time.monotonic()
