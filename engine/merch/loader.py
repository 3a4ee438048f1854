"""Rules file text -> validated rules, or errors that name the file, the line and the field.

A merchandiser fixing a typo needs ``rules.yaml:14: placements.home.pins[0].slot: Input should be
a valid integer``, not a stack trace. So the YAML is read node by node, remembering the line of
every key and value, and each schema or cross-reference error is mapped back to the line it
comes from. Dates stay strings until the schema parses them (PyYAML would turn ``2026-13-01``
into an exception without a position), duplicate keys are errors (PyYAML keeps the last one
silently) and anchors/aliases are refused (a reference-expansion bomb in a draft cannot hurt).
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from engine.merch import templates
from engine.events.fields import field_path, location
from engine.merch.schema import Audience, RulesFile, RuleSet, Window, Windowed, shown
from engine.merch.segments import DEFAULTS, SegmentCycle, evaluation_order
from engine.ranking.scenarios import DEFAULT_PLACEMENTS, SCENARIOS
from engine.merch import triggers as trigger_checks

Path_ = tuple[str | int, ...]
RESERVED_EXPERIMENTS = ("holdout",)


@dataclass(frozen=True)
class RulesError:
    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "field": self.field, "message": self.message}


class RulesInvalid(ValueError):
    def __init__(self, errors: list[RulesError]) -> None:
        super().__init__("; ".join(str(e) for e in errors))
        self.errors = errors


MAX_DEPTH = 32  # nesting levels; the schema needs 10, a recursion bomb needs thousands
_REFUSED_ANCHOR = "anchors and aliases (&name / *name) are not supported"


class _Lines:
    """Character offset -> 1-based line, counting line breaks as editors do (``\\n``, ``\\r\\n``,
    ``\\r``). PyYAML's own line numbers also count U+0085, U+2028 and U+2029, which editors show
    inside a line: its marks' offsets are mapped here instead."""

    def __init__(self, text: str) -> None:
        self._starts = [0] + [m.end() for m in re.finditer(r"\r\n|\n|\r", text)]

    def of(self, index: int) -> int:
        return bisect.bisect_right(self._starts, index)

    def column(self, index: int) -> int:
        return index - self._starts[self.of(index) - 1] + 1


class _Loader(yaml.SafeLoader):
    """SafeLoader without the implicit timestamp type (dates reach the schema as text), that
    refuses nesting beyond ``MAX_DEPTH`` (PyYAML composes recursively, and its scanner's work per
    token grows with the ``[``/``{`` still open) and notes the nodes written with a tag or an
    anchor, refused where their path is known."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.depth = 0
        self.refused: dict[int, str] = {}  # id(node) -> why it is refused

    def fetch_flow_collection_start(self, TokenClass: type) -> None:  # noqa: N803 - PyYAML's name
        if self.flow_level >= MAX_DEPTH:
            raise yaml.scanner.ScannerError(None, None, f"nested more than {MAX_DEPTH} levels deep", self.get_mark())
        super().fetch_flow_collection_start(TokenClass)

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node:
        event = self.peek_event()
        if self.depth >= MAX_DEPTH:
            raise yaml.composer.ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep",
                                              event.start_mark)
        why = None
        if isinstance(event, yaml.AliasEvent) or event.anchor is not None:
            why = _REFUSED_ANCHOR
        elif getattr(event, "tag", None) is not None:
            why = f"unsupported YAML tag {event.tag!r}"
        self.depth += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self.depth -= 1
        if why is not None:
            self.refused.setdefault(id(node), why)
        return node


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _mark_of(exc: yaml.MarkedYAMLError, open_flow: yaml.Mark | None) -> yaml.Mark | None:
    """Where the mistake most likely is. The problem mark is where PyYAML noticed it; for a
    construct left open (a key without ``:``, a quote, a flow ``{`` or ``[``) that is the line
    after, or the end of the file, and the line to fix is where the construct starts: the context
    mark, or for a flow collection the innermost one still open. For a block collection the
    context is its first line, far from the mistake."""
    if (exc.context or "").startswith("while parsing a flow") and open_flow is not None:
        return open_flow
    if exc.context_mark is not None and (isinstance(exc, yaml.scanner.ScannerError) or exc.problem_mark is None):
        return exc.context_mark
    return exc.problem_mark


def _reader_error(exc: yaml.reader.ReaderError, filename: str, lines: _Lines) -> RulesError:
    char = int(exc.character)  # for text, the code point the reader refused
    kind = {"Cc": "a control character", "Cs": "half of a surrogate pair"}.get(unicodedata.category(chr(char)),
                                                                            "not a character")
    return RulesError(filename, lines.of(exc.position), "",
                      f"invalid YAML: character U+{char:04X} ({kind}) at column {lines.column(exc.position)} "
                      f"is not allowed in YAML text; remove it")


def parse_yaml(text: str, filename: str) -> tuple[Any, dict[Path_, int]]:
    """The document as plain data, and the 1-based line of every path in it."""
    where = _Lines(text)
    try:
        loader = _Loader(text)  # the reader checks every character first
    except yaml.reader.ReaderError as exc:
        raise RulesInvalid([_reader_error(exc, filename, where)]) from None
    lines: dict[Path_, int] = {}

    def fail(n: yaml.Node, path: Path_, message: str) -> RulesInvalid:
        return RulesInvalid([RulesError(filename, where.of(n.start_mark.index), field_path(path), message)])

    def scalar(n: yaml.Node, path: Path_) -> Any:
        try:
            return loader.construct_object(n, deep=True)
        except (ValueError, OverflowError) as exc:  # an integer of thousands of digits
            raise fail(n, path, f"invalid value: {str(exc).split(';')[0]}") from None

    def build(n: yaml.Node, path: Path_) -> Any:
        why = loader.refused.get(id(n))
        if why is not None:
            raise fail(n, path, why)
        lines.setdefault(path, where.of(n.start_mark.index))
        if isinstance(n, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in n.value:
                why = loader.refused.get(id(key_node))
                if why is not None:
                    raise fail(key_node, path, why)
                if key_node.tag == "tag:yaml.org,2002:merge":
                    raise fail(key_node, path, "merge keys (<<) are not supported")
                key = scalar(key_node, path) if isinstance(key_node, yaml.ScalarNode) else None
                if not isinstance(key, (str, int, float, bool)):
                    raise fail(key_node, path, "keys must be plain text")
                key = str(key) if not isinstance(key, str) else key
                if key in out:
                    raise fail(key_node, (*path, key), "duplicate key")
                lines[(*path, key)] = where.of(key_node.start_mark.index)
                out[key] = build(value_node, (*path, key))
            return out
        if isinstance(n, yaml.SequenceNode):
            return [build(item, (*path, i)) for i, item in enumerate(n.value)]
        return scalar(n, path)

    try:
        node = loader.get_single_node()
        if node is None:
            return {}, lines
        return build(node, ()), lines
    except yaml.MarkedYAMLError as exc:
        flows = [m for m in loader.marks if text[m.index:m.index + 1] in ("[", "{")]  # collections open
        mark = _mark_of(exc, flows[-1] if flows else None)
        line = where.of(mark.index) if mark else None
        message = str(exc.problem or exc.context or exc)
        if exc.problem and exc.context and exc.context.startswith("while "):
            noticed = where.of(exc.problem_mark.index) if exc.problem_mark else line
            message += f" ({exc.context}" + (f", noticed on line {noticed}" if noticed != line else "") + ")"
        elif exc.problem and exc.context:
            message = f"{exc.context}, {exc.problem}"
        if "'\\t'" in message:
            message += ": indent with spaces, not tabs"
        raise RulesInvalid([RulesError(filename, line, "", f"invalid YAML: {message}")]) from None
    except yaml.YAMLError as exc:
        raise RulesInvalid([RulesError(filename, None, "", f"invalid YAML: {exc}")]) from None
    finally:
        loader.dispose()


def _line(lines: dict[Path_, int], path: Path_) -> int | None:
    for end in range(len(path), -1, -1):
        if path[:end] in lines:
            return lines[path[:end]]
    return None


def _schema_errors(exc: ValidationError, filename: str, lines: dict[Path_, int]) -> list[RulesError]:
    errors = []
    for err in exc.errors(include_url=False):
        path = trigger_checks.error_path(location(err["loc"]))
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown field"
        elif err["type"] not in ("missing", "value_error") and isinstance(err.get("input"), (str, int, float, bool)):
            message += f" (got {shown(err['input'])})"
        errors.append(RulesError(filename, _line(lines, path), field_path(path), message))
    # One message per field: unions report each member's complaint, the first says enough.
    unique: dict[str, RulesError] = {}
    for e in errors:
        unique.setdefault(e.field, e)
    return list(unique.values())


def _overlap(a: Window, b: Window) -> bool:
    a_start = a.start.timestamp() if a.start else float("-inf")
    b_start = b.start.timestamp() if b.start else float("-inf")
    a_end = a.end.timestamp() if a.end else float("inf")
    b_end = b.end.timestamp() if b.end else float("inf")
    return a_start < b_end and b_start < a_end


def _audiences(node: Any, path: Path_) -> Iterator[tuple[Path_, Audience]]:
    """Every rule in the file that selects people by segment, with its path."""
    if isinstance(node, Audience):
        yield path, node
    if isinstance(node, BaseModel):
        for name in node.model_fields_set:
            yield from _audiences(getattr(node, name), (*path, name))
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _audiences(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _audiences(value, (*path, i))


def _segment_problems(rules: RulesFile) -> list[tuple[Path_, str]]:
    """Segment names that exist (built-in or defined), and definitions that do not refer to
    themselves through others."""
    problems: list[tuple[Path_, str]] = []
    defined = {**DEFAULTS, **rules.segments}
    known = ", ".join(sorted(defined))

    def check(path: Path_, names: list[str] | None) -> None:
        for j, name in enumerate(names or []):
            if name not in defined:
                problems.append(((*path, j), f"unknown segment {name!r}; known: {known}"))

    for name, segment in rules.segments.items():
        for key in ("all_of", "any_of", "none_of"):
            check(("segments", name, key), getattr(segment, key))
    for path, audience in _audiences(rules, ()):
        check((*path, "segments_any"), audience.segments_any)
        check((*path, "segments_none"), audience.segments_none)
    try:
        evaluation_order(defined)
    except SegmentCycle as cycle:
        first, then = cycle.path[0], cycle.path[1]
        key = next(k for k in ("all_of", "any_of", "none_of") if then in (getattr(defined[first], k) or []))
        at = (getattr(defined[first], key) or []).index(then)
        problems.append((("segments", first, key, at), f"segments refer to each other in a loop: "
                                                       f"{' -> '.join(cycle.path)}"))
    return problems


def _check_references(rules: RulesFile, item_exists: Callable[[str], bool] | None,
                      max_window_s: int | None) -> list[tuple[Path_, str]]:
    """Errors the schema cannot see: names that must exist elsewhere in the file or the shop, and
    windows longer than impressions are kept."""
    problems: list[tuple[Path_, str]] = []

    def window(path: Path_, limit: Windowed | None) -> None:
        if limit is not None and max_window_s is not None and limit.window_s > max_window_s:
            problems.append(((*path, "window"), f"{limit.window} is longer than impressions are kept "
                                                f"({max_window_s // 86400}d, VITRINE_EXPOSURE_RETENTION_S)"))

    placements = set(DEFAULT_PLACEMENTS) | set(rules.placements)
    known_placements = ", ".join(sorted(placements))

    def placement_ref(path: Path_, name: str) -> None:
        if name not in placements:
            problems.append((path, f"unknown placement {name!r}; known: {known_placements}"))

    def scenario_refs(path: Path_, names: list[str] | None) -> None:
        for i, name in enumerate(names or []):
            if name not in SCENARIOS:
                problems.append(((*path, i), f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}"))

    def items_of(path: Path_, rule_set: RuleSet) -> None:
        if item_exists is None:
            return
        for i, pin in enumerate(rule_set.pins):
            if not item_exists(pin.item):
                problems.append(((*path, "pins", i, "item"), f"item {pin.item!r} is not in the catalogue"))
        selectors = [("filter", rule_set.filter), ("promoted", rule_set.promoted.select if rule_set.promoted else None)]
        selectors += [(f"boosts.{i}", b.when) for i, b in enumerate(rule_set.boosts)]
        selectors += [(f"buries.{i}", b.when) for i, b in enumerate(rule_set.buries)]
        for where, selector in selectors:
            for i, item in enumerate(selector.items or [] if selector else []):
                if not item_exists(item):
                    sub: Path_ = tuple(int(p) if p.isdigit() else p for p in where.split("."))
                    extra = ("select",) if where == "promoted" else ()
                    problems.append(((*path, *sub, *extra, "items", i), f"item {item!r} is not in the catalogue"))

    def pin_slots(path: Path_, rule_set: RuleSet) -> None:
        for i, pin in enumerate(rule_set.pins):
            for j, other in enumerate(rule_set.pins[:i]):
                if pin.slot == other.slot and _overlap(pin, other):
                    problems.append(((*path, "pins", i, "slot"),
                                     f"slot {pin.slot} is already pinned by pins[{j}] over the same dates"))

    for name, rule in rules.placements.items():
        path: Path_ = ("placements", name)
        if name not in DEFAULT_PLACEMENTS and not rule.scenarios:
            problems.append((path, f"unknown placement {name!r}: a new placement needs `scenarios`; "
                                   f"built-in: {', '.join(DEFAULT_PLACEMENTS)}"))
        scenario_refs((*path, "scenarios"), rule.scenarios)
        items_of(path, rule)
        pin_slots(path, rule)
        window((*path, "repetition"), rule.repetition)
    window(("frequency",), rules.frequency)
    for cname, campaign in rules.campaigns.items():
        window(("campaigns", cname, "cap"), campaign.cap)
        for pname, rule_set in campaign.placements.items():
            path = ("campaigns", cname, "placements", pname)
            placement_ref(path, pname)
            items_of(path, rule_set)
            pin_slots(path, rule_set)
    block_ids: dict[str, int] = {}
    for i, block in enumerate(rules.blocks):
        path = ("blocks", i)
        if block.id in block_ids:
            problems.append(((*path, "id"), f"duplicate block id {block.id!r} (also blocks[{block_ids[block.id]}])"))
        block_ids.setdefault(block.id, i)
        if block.campaign is not None and block.campaign not in rules.campaigns:
            problems.append(((*path, "campaign"), f"unknown campaign {block.campaign!r}; known: "
                                                  f"{', '.join(sorted(rules.campaigns)) or 'none defined'}"))
        window((*path, "cap"), block.cap)
        if block.recommendations is not None:
            placement_ref((*path, "recommendations", "placement"), block.recommendations.placement)
        for field in ("title", "body", "cta"):
            try:
                templates.parse(getattr(block, field))
            except templates.TemplateError as exc:
                problems.append(((*path, field), str(exc)))
    for field, _ in rules.template_defaults.items():
        if field not in templates.FIELDS:
            problems.append((("template_defaults", field),
                             f"unknown template field; known: {', '.join(sorted(templates.FIELDS))}"))
    problems += _segment_problems(rules)
    running: dict[str, list[tuple[str, Window]]] = {}
    for ename, exp in rules.experiments.items():
        path = ("experiments", ename)
        if ename in RESERVED_EXPERIMENTS:
            problems.append((path, f"{ename!r} is reserved for the control group's report"))
        placement_ref((*path, "placement"), exp.placement)
        for i, variant in enumerate(exp.variants):
            vpath: Path_ = (*path, "variants", i)
            scenario_refs((*vpath, "scenarios"), variant.scenarios)
            window((*vpath, "repetition"), variant.repetition)
            items_of(vpath, variant)
            pin_slots(vpath, variant)
        for other_name, other in running.get(exp.placement, []):
            if _overlap(exp, other):
                problems.append(((*path, "placement"), f"placement {exp.placement!r} already has experiment "
                                                       f"{other_name!r} over the same dates"))
        running.setdefault(exp.placement, []).append((ename, exp))
    problems += trigger_checks.problems(rules.triggers, placements)
    return problems


def load_rules(text: str, filename: str, item_exists: Callable[[str], bool] | None = None,
               max_window_s: int | None = None) -> RulesFile:
    """Validate a whole rules file; raise ``RulesInvalid`` with every error found.

    ``item_exists`` checks pinned and promoted items against the catalogue; ``max_window_s`` is
    how long impressions are kept, the longest cap or repetition window that can be honoured."""
    data, lines = parse_yaml(text, filename)
    if data is None or data == {}:
        return RulesFile()
    if not isinstance(data, dict):
        raise RulesInvalid([RulesError(filename, 1, "", "the rules file must be a mapping "
                                                        "(placements:, campaigns:, blocks:, ...)")])
    try:
        rules = RulesFile.model_validate(data)
    except ValidationError as exc:
        raise RulesInvalid(_schema_errors(exc, filename, lines)) from None
    problems = _check_references(rules, item_exists, max_window_s)
    if problems:
        found = [RulesError(filename, _line(lines, path), field_path(path), message) for path, message in problems]
        raise RulesInvalid(sorted(found, key=lambda e: e.line or 0))  # in the file's order, as people read it
    return rules
