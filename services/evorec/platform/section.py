"""The base of every group of settings, whichever module defines it."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

MIB = 1024 * 1024


class Section(BaseModel):
    """A group of settings: unknown keys are errors, values never change after start."""

    model_config = ConfigDict(extra="forbid", frozen=True)
