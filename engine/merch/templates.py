"""Safe text templates for content blocks: ``Bonjour{ first_name|, cher client}``.

A template is parsed once, when the rules are loaded, into literal text and named fields; rendering
only substitutes values. Nothing is evaluated: no attribute access, no indexing, no format specs,
and a value is never parsed again, so a visitor who logs in as ``{first_name}`` or
``<script>`` gets exactly that text back (HTML-escaped in HTML blocks).

``{field|fallback}`` gives the text used when the field is missing; without one, the rules file's
``template_defaults`` apply, then the built-in ones below.

Spaces written right after the ``{`` or the ``|`` belong to the substitution, whatever fills it:
with ``Welcome back{ first_name| to the shop}`` Anne reads ``Welcome back Anne`` and a visitor
without a name ``Welcome back to the shop``; with ``Hello{ first_name}!`` the latter reads
``Hello!``, not ``Hello !``. Such a space is left out where the text before already ends with one
(or at the start), so ``Hello { first_name }`` never doubles it. Spaces before ``}`` or ``|``
only lay the braces out.
"""

from __future__ import annotations

import functools
import html
import re
from collections.abc import Mapping
from dataclasses import dataclass

FIELDS: dict[str, str] = {
    "first_name": "",
    "tier": "",
    "favourite_category": "our selection",
    "last_visit_item": "what you saw last time",
    "last_visit_item_id": "",
    "cart_items": "0",
    "visits": "1",
}
_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_FIELD = re.compile(r"^(\s*)([a-z_]+)\s*(?:\|(\s*)(.*?)\s*)?$", re.S)


class TemplateError(ValueError):
    pass


@dataclass(frozen=True)
class Field:
    name: str
    fallback: str | None  # inline fallback text, without the spaces around it
    space: str  # written after ``{`` or ``|``: put before the text that fills the field


@dataclass(frozen=True)
class Template:
    parts: tuple[str | Field, ...]  # literal text, or a field

    def render(self, values: Mapping[str, str | None], defaults: Mapping[str, str], *, as_html: bool) -> str:
        out: list[str] = []  # no empty strings: out[-1] ends with the last character written
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            value = values.get(part.name)
            if value is None or value == "":
                # Fallbacks are the merchandiser's own text, like the literal parts.
                text = part.fallback if part.fallback is not None else defaults.get(part.name, FIELDS[part.name])
            else:
                text = html.escape(value, quote=True) if as_html else value
            if text:
                out.append(text if not out or out[-1][-1].isspace() else part.space + text)
        return "".join(out)


@functools.lru_cache(maxsize=4096)
def parse(text: str) -> Template:
    """Parse once: blocks render their (cached) parsed templates on every request."""
    parts: list[str | Field] = []
    pos = 0
    for m in _TOKEN.finditer(text):
        if m.start() > pos:
            parts.append(text[pos:m.start()])
        token = m.group(0)
        if token in ("{{", "}}"):
            parts.append(token[0])
        elif m.group(1) is None:
            raise TemplateError(f"unmatched {token!r} at character {m.start() + 1} (write {token * 2} for a "
                                f"literal brace)")
        else:
            field = _FIELD.match(m.group(1))
            if field is None or field.group(2) not in FIELDS:
                name = m.group(1).split("|")[0].strip()
                raise TemplateError(f"unknown field {{{name}}}; known: {', '.join(sorted(FIELDS))}")
            space, name, fallback_space, fallback = field.groups()
            parts.append(Field(name, fallback, space or fallback_space or ""))
        pos = m.end()
    if pos < len(text):
        parts.append(text[pos:])
    return Template(tuple(parts))
