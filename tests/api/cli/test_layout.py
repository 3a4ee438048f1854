"""The `vitrine` command's package keeps its shape: only serving imports the HTTP app, the
benchmarks import the engine and never the HTTP layer, and the numeric thread settings are made
by process entry points, never by importing a module."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
HTTP = ("api.app", "api.server", "api.metrics", "api.routes", "api.auth", "api.limits", "api.ratelimit",
        "api.visitor_cookie", "api.query", "api.responses", "fastapi", "starlette", "uvicorn")
SERVING = {"serve.py"}  # `vitrine serve`: the only command module that runs the HTTP app


def imported(path: Path) -> set[str]:
    """Every module a file imports, at any depth of its body."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def reaches(names: set[str], prefixes: tuple[str, ...] | str) -> list[str]:
    prefixes = (prefixes,) if isinstance(prefixes, str) else prefixes
    return sorted(n for n in names if any(n == p or n.startswith(p + ".") for p in prefixes))


def test_only_serving_imports_the_http_layer() -> None:
    modules = sorted((ROOT / "api" / "cli").glob("*.py"))
    assert {"main.py", "serve.py", "data.py", "quality.py"} <= {m.name for m in modules}
    found = {m.name: reaches(imported(m), HTTP) for m in modules if m.name not in SERVING}
    assert found == {name: [] for name in found}
    assert reaches(imported(ROOT / "api" / "cli" / "serve.py"), HTTP)


def test_load_tests_import_the_engine_not_the_api() -> None:
    found = {m.name: reaches(imported(m), "api") for m in (ROOT / "load_tests").glob("*.py")}
    assert found == {name: [] for name in found}


def test_help_and_version_load_no_engine_model_or_http_code() -> None:
    """The command's tree is built without them; a command's module is imported when it runs."""
    code = ("import sys\nfrom api.cli.main import build_parser\nbuild_parser()\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('numpy', 'fastapi', 'redis', 'pydantic')"
            " or m in ('engine.settings', 'engine.runtime')))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_thread_settings_are_made_at_process_entry_only() -> None:
    """Only engine.threads names OPENBLAS_NUM_THREADS: entry points call it, no module sets it
    when it is imported."""
    sources = [p for folder in ("engine", "api", "streaming", "models", "load_tests")
               for p in (ROOT / folder).rglob("*.py")]
    naming = sorted(str(p.relative_to(ROOT)) for p in sources if "OPENBLAS_NUM_THREADS" in p.read_text())
    assert naming == ["engine/threads.py"]
    callers = {str(p.relative_to(ROOT)) for p in sources if "limit_blas_threads()" in p.read_text()}
    assert {"api/cli/main.py", "load_tests/bench_rules.py", "load_tests/bench_memory.py",
            "load_tests/bench_paused.py"} <= callers
