"""Where a validation error is, spelled one way everywhere: ``events[3].items[0].price``.

Names are joined by dots and list positions are in brackets, as a front-end developer or a
merchandiser would write the path. Events, item uploads, query strings, the CSV importer and
the rules file all report errors through this, so one field never has two spellings.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

# pydantic's own steps in an error location (``function-after[...]``, ``list[str]``, union
# members such as ``literal['a','b']``): not part of the path the sender wrote.
_PYDANTIC_STEP = re.compile(r"^[\w-]+\[.*\]$")


class FieldRequired(ValueError):
    """Raised by a check across fields (a model validator) about one of them: pydantic gives such
    an error the model's location, so it carries the field's own, which ``error_location`` adds
    (``events[0].properties.query``, not ``events[0]``)."""

    def __init__(self, loc: tuple[str, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


def error_location(error: Mapping[str, Any]) -> tuple[str | int, ...]:
    """Where one of pydantic's errors (``ValidationError.errors()``) is, ``FieldRequired``'s field included."""
    loc = location(error["loc"])
    cause = (error.get("ctx") or {}).get("error")
    return loc + cause.loc if isinstance(cause, FieldRequired) else loc


def location(loc: Iterable[str | int]) -> tuple[str | int, ...]:
    """A pydantic error location without pydantic's own steps."""
    return tuple(p for p in loc if not (isinstance(p, str) and _PYDANTIC_STEP.match(p)))


def field_path(loc: Iterable[str | int], prefix: str = "") -> str:
    path = prefix
    for part in location(loc):
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def field_errors(exc: ValidationError, prefix: str = "", whole: str = "body") -> list[dict[str, str]]:
    """``[{"field", "message"}]`` for each error; ``whole`` names an error about the whole value."""
    return [{"field": field_path(error_location(e), prefix) or whole, "message": e["msg"]}
            for e in exc.errors(include_url=False)]
