"""Protobuf enum values as people read them: `CANDIDATE_SOURCE_MARKOV` -> `markov`."""

from __future__ import annotations

import re
from typing import Any


def enum_label(enum: Any, value: int) -> str:
    """The name of `value` in the generated `enum` wrapper, without the enum's own prefix
    (the UPPER_SNAKE form of its type name, as buf's lint rules require), in lower case."""
    prefix = re.sub(r"(?<!^)(?=[A-Z])", "_", enum.DESCRIPTOR.name).upper() + "_"
    return str(enum.Name(value)).removeprefix(prefix).lower()
