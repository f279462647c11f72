"""The base of every settings table: frozen, and strict (an unknown key is an error naming it)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """A table of settings: immutable once read, unknown keys refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")
