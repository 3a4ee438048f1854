"""What the schema cannot see about triggers (``engine.merch.schema`` defines them): the templates
and placements they name; and error paths mapped back to the file. The segments their audiences
name are checked with every other rule's (``engine.merch.loader``).
"""

from __future__ import annotations

from typing import Any

from engine.merch import templates
from engine.merch.schema import TRIGGER_KINDS

Path_ = tuple[str | int, ...]


def error_path(path: Path_) -> Path_:
    """The union adds the kind's tag after the trigger's name: ``triggers.<id>.<kind>.after`` ->
    ``triggers.<id>.after``, a path of the file (so the error gets its line)."""
    if len(path) > 2 and path[0] == "triggers" and path[2] in TRIGGER_KINDS:
        return (*path[:2], *path[3:])
    return path


def problems(triggers: dict[str, Any], placements: set[str]) -> list[tuple[Path_, str]]:
    """What the schema cannot see: templates and placements the triggers name."""
    out: list[tuple[Path_, str]] = []
    for name, trigger in triggers.items():
        path: Path_ = ("triggers", name)
        for field in ("title", "body"):
            try:
                templates.parse(getattr(trigger.payload, field))
            except templates.TemplateError as exc:
                out.append(((*path, "payload", field), str(exc)))
        strip = trigger.payload.recommendations
        if strip is not None and strip.placement not in placements:
            out.append(((*path, "payload", "recommendations", "placement"),
                        f"unknown placement {strip.placement!r}; known: {', '.join(sorted(placements))}"))
    return out
