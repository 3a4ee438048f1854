"""The documentation stays true: the settings table is the code's, the example rules file passes
`vitrine check-rules`, every link between the READMEs leads somewhere, and the README stays short."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from engine.catalog import upsert_items
from engine.ingest.importer import ImportReport, read_items
from engine.settings import README as ENGINE_README
from engine.settings import Settings, settings_table, with_settings_table
from tests.conftest import without_settings
from tests.engine.merch.test_loader import EXAMPLE_RULES

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted(p for p in ROOT.rglob("*.md")
              if not any(part.startswith(".") or part in ("var", "reports") for part in p.relative_to(ROOT).parts))
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def test_the_settings_table_is_the_codes() -> None:
    text = ENGINE_README.read_text()
    assert text == with_settings_table(text), "the settings table is stale: run python -m engine.settings --write"
    for name in Settings.model_fields:
        assert f"| `VITRINE_{name.upper()}` |" in text


def test_every_setting_is_described() -> None:
    missing = [name for name, field in Settings.model_fields.items() if not (field.description or "").strip()]
    assert not missing, f"settings without a description: {missing}"


def test_the_table_shows_defaults_as_people_read_them() -> None:
    rows = {line.split(" | ")[0][3:-1]: line.split(" | ")[1] for line in settings_table().splitlines()[2:]}
    assert rows["VITRINE_VISITOR_TTL_S"] == "`15552000` (180 days)"
    assert rows["VITRINE_LOG_SEGMENT_BYTES"] == "`67108864` (64 MiB)"
    assert rows["VITRINE_REDIS_MAXMEMORY"] == "`1073741824` (1 GiB)"
    assert rows["VITRINE_REDIS_URL"] == "unset"
    assert rows["VITRINE_SHARED_DATA_DIR"] == "`../shared/data`"  # not this machine's absolute path
    assert rows["VITRINE_STORE_LISTS"] == "`true`"


def test_the_table_is_rendered_anew_between_its_markers() -> None:
    stale = ENGINE_README.read_text().replace("| `VITRINE_PORT` |", "| `VITRINE_PORTE` |")
    assert with_settings_table(stale) == ENGINE_README.read_text()
    with pytest.raises(ValueError, match="markers"):
        with_settings_table("# no table here\n")
    listed = subprocess.run([sys.executable, "-m", "engine.settings"], capture_output=True, text=True, check=True,
                            cwd=ROOT, env=without_settings())
    assert listed.stdout == settings_table()


def test_the_example_rules_pass_check_rules_against_the_demo_catalogue(
        tmp_path: Path, redis_url: str, demo_files: tuple[Path, Path]) -> None:
    """What CI runs (.ci/run), with the catalogue there too, so a pin of an item the demo shop does
    not sell fails as well as a stale field."""
    async def load() -> None:
        async with redis.asyncio.Redis.from_url(redis_url) as client:
            await upsert_items(client, read_items(demo_files[0], ImportReport()))

    asyncio.run(load())
    env = without_settings() | {"VITRINE_DATA_DIR": str(tmp_path), "VITRINE_REDIS_URL": redis_url}
    vitrine = Path(sys.executable).with_name("vitrine")
    done = subprocess.run([str(vitrine), "check-rules", str(EXAMPLE_RULES)], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=120)
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    assert done.stdout.startswith(f"{EXAMPLE_RULES}: valid, version ")
    stale = tmp_path / "stale.yaml"
    stale.write_text(EXAMPLE_RULES.read_text().replace("slot: home_top", "slott: home_top", 1))
    done = subprocess.run([str(vitrine), "check-rules", str(stale)], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=120)
    assert done.returncode == 1 and "unknown field" in done.stderr


def _anchors(path: Path) -> set[str]:
    """GitHub's anchors of a markdown file's headings."""
    anchors = set()
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", title)))
    return anchors


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_between_the_docs_lead_somewhere(doc: Path) -> None:
    broken = []
    for target in LINK.findall(doc.read_text()):
        if re.match(r"[a-z]+:", target):  # http(s), mailto: not checked here
            continue
        file, _, anchor = target.partition("#")
        path = (doc.parent / file).resolve() if file else doc
        if not path.exists() or (anchor and path.suffix == ".md" and anchor not in _anchors(path)):
            broken.append(target)
    assert not broken, f"{doc.relative_to(ROOT)}: broken links {broken}"


def test_the_readme_stays_a_short_entry_point() -> None:
    """Reference chapters live next to their code (api/README.md, engine/merch/README.md, ...)."""
    assert os.path.getsize(ROOT / "README.md") <= 12 * 1024
