"""The import graph keeps its shape: top-level folders import one way, engine/'s packages read
bottom-up in floors, and nothing imports in a loop. Read from the source with ``ast``, so a
deferred import inside a function counts as much as one at the top."""

from __future__ import annotations

import ast
import itertools
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOP = ("engine", "api", "streaming", "models", "load_tests")

# Who may import whom among the top-level folders (a folder always imports itself). The API
# publishes events through streaming/'s producer in Kafka mode; only the `vitrine` command in
# api/cli/ starts the benches.
ALLOWED = {
    "models": set(),
    "engine": {"models"},
    "streaming": {"engine", "models"},
    "load_tests": {"engine", "models", "streaming"},
    "api": {"engine", "models", "streaming", "load_tests"},
}
CLI_ONLY = {("api", "load_tests")}

# engine/, bottom-up: a unit may import only units on lower floors (and itself).
FLOORS = [
    {"engine.settings", "engine.tasks", "engine.threads"},
    {"engine.tenants"},
    {"engine.logs"},
    {"engine.store"},
    {"engine.events"},
    {"engine.catalog"},
    {"engine.profiles"},
    {"engine.ranking"},
    {"engine.merch"},
    {"engine.ingest"},
    {"engine.recommend"},
    {"engine.paging", "engine.customers"},
    {"engine.triggers"},
    {"engine.runtime"},
    {"engine.training"},
    {"engine.observe"},
]
FLOOR = {unit: level for level, units in enumerate(FLOORS) for unit in units}


def modules() -> dict[str, Path]:
    found = {}
    for top in TOP:
        for path in (ROOT / top).rglob("*.py"):
            if ".venv" in path.parts:
                continue
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            found[name] = path
    return found


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """Every project module ``path`` imports, ``from package import module`` resolved; imports for
    type checkers only (under ``if TYPE_CHECKING:``) do not run, so they do not count."""
    out = set()
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                   and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
                   for n in ast.walk(node)}
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in known)
    return {name for name in out if name.split(".")[0] in TOP and name in known}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(path, known) - {name} for name, path in known.items()}


def engine_unit(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_every_engine_unit_has_a_floor() -> None:
    units = {engine_unit(m) for m in modules() if m.startswith("engine.")}
    assert units <= set(FLOOR), f"give these a floor in FLOORS: {sorted(units - set(FLOOR))}"


def test_top_level_folders_import_one_way() -> None:
    wrong = []
    for module, targets in graph().items():
        top = module.split(".")[0]
        for target in targets:
            other = target.split(".")[0]
            if other == top:
                continue
            if other not in ALLOWED[top] or ((top, other) in CLI_ONLY and not module.startswith("api.cli")):
                wrong.append(f"{module} -> {target}")
    assert not wrong, "imports against the direction api/streaming/load_tests -> engine -> models:\n" + "\n".join(wrong)


def test_engine_packages_import_only_lower_floors() -> None:
    wrong = []
    for module, targets in graph().items():
        if not module.startswith("engine."):
            continue
        for target in targets:
            if target.startswith("engine.") and engine_unit(target) != engine_unit(module) \
                    and FLOOR[engine_unit(target)] >= FLOOR[engine_unit(module)]:
                wrong.append(f"{module} -> {target}")
    assert not wrong, "engine/ imports that point up or sideways:\n" + "\n".join(wrong)


def test_no_import_loops() -> None:
    """Between modules, and between engine/'s packages (a loop through two packages' modules is a
    loop of concepts even where no single module loop exists)."""
    edges = graph()
    for label, g in (("modules", edges), ("packages", _collapse(edges))):
        loop = _find_loop(g)
        assert loop is None, f"import loop between {label}: {' -> '.join(loop or [])}"


def _collapse(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    def unit(m: str) -> str:
        return engine_unit(m) if m.startswith("engine.") else m.split(".")[0]
    out: dict[str, set[str]] = defaultdict(set)
    for module, targets in edges.items():
        out[unit(module)].update(unit(t) for t in targets if unit(t) != unit(module))
    return out


def _find_loop(g: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(g.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (loop := visit(nxt)):
                return loop
        path.pop()
        state[node] = 2
        return None

    for node in sorted(g):
        if node not in state and (loop := visit(node)):
            return loop
    return None


def test_the_loop_finder_finds_loops() -> None:
    assert _find_loop({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_loop({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None
    assert list(itertools.chain(*FLOORS)) == list(dict.fromkeys(itertools.chain(*FLOORS)))


def test_the_http_layer_sends_no_redis_command() -> None:
    """Routes and pages call engine functions; what is stored where is the engine's business
    (the `vitrine` command only closes the clients it opened)."""
    calls = []
    for path in (ROOT / "api").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, (ast.Attribute, ast.Name))
                    and getattr(node.func.value, "attr", getattr(node.func.value, "id", None)) == "redis"
                    and node.func.attr != "aclose"):
                calls.append(f"{path.relative_to(ROOT)}:{node.lineno} redis.{node.func.attr}()")
    assert not calls, "\n".join(calls)
