"""Bounded request values: ids, offsets and strings the database can hold.

Every id column is an ``INTEGER`` (32 bits signed on PostgreSQL), so an id or a paging
offset beyond ``2**31 - 1`` can never match a row; unbounded, such a value reached the
driver and failed there with a 500. NUL characters are refused in strings because neither
file paths nor PostgreSQL text can carry them. Path, query and body parameters use these
types, so the OpenAPI document states the same bounds the routes enforce (422 beyond).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path, Query
from pydantic import AfterValidator, Field

MAX_DB_ID = 2**31 - 1
"""The largest value of an ``INTEGER`` column on PostgreSQL (and of any of our ids)."""
MAX_OFFSET = MAX_DB_ID
"""No table holds more rows than its ids can number."""
NO_NUL_PATTERN = r"^[^\u0000]*$"

PathId = Annotated[int, Path(ge=1, le=MAX_DB_ID, description="A row id (1 to 2**31-1).")]
FilterId = Annotated[
    int | None, Query(ge=1, le=MAX_DB_ID, description="Only rows of this id (1 to 2**31-1).")
]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Rows to skip (0 to 2**31-1).")]
BodyId = Annotated[int, Field(ge=1, le=MAX_DB_ID, description="A row id (1 to 2**31-1).")]


NoNulText = Annotated[str, Field(pattern=NO_NUL_PATTERN)]
"""A string without NUL characters (a file path, a name)."""


def find_nul(value: Any, where: str) -> str | None:
    """The location (``where.key.0``...) of the first string holding a NUL, or None.

    Walks the dict keys and values and the list items of a decoded JSON value.
    """
    if isinstance(value, str):
        return where if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in str(key):
                return where
            found = find_nul(item, f"{where}.{key}")
            if found:
                return found
    if isinstance(value, list):
        for i, item in enumerate(value):
            found = find_nul(item, f"{where}.{i}")
            if found:
                return found
    return None


def _without_nul(value: dict[str, Any]) -> dict[str, Any]:
    where = find_nul(value, "value")
    if where is not None:
        raise ValueError(f"{where}: NUL characters (\\u0000) are not allowed in strings")
    return value


NoNulObject = Annotated[dict[str, Any], AfterValidator(_without_nul)]
"""A free-form JSON object none of whose keys or strings holds a NUL (PostgreSQL's JSONB
cannot store one)."""
