"""Rules file validation: a typo is rejected with the file, the line and the field it is in."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.store.server import free_port
from engine.merch.loader import RulesInvalid, load_rules

EXAMPLE_RULES = Path(__file__).parents[3] / "engine" / "merch" / "example-rules.yaml"
CATALOGUE = {"85123A", "22086", "21212", "84991", "20725"}


def example_rules() -> str:
    """The complete rules example that engine/merch/README.md documents."""
    return EXAMPLE_RULES.read_text()


def errors_of(text: str, items: set[str] | None = None) -> list[tuple[int | None, str, str]]:
    with pytest.raises(RulesInvalid) as info:
        load_rules(text, "rules.yaml", (lambda i: i in items) if items is not None else None)
    for e in info.value.errors:
        assert e.file == "rules.yaml"
    return [(e.line, e.field, e.message) for e in info.value.errors]


def test_the_example_rules_are_valid_for_the_demo_shop(demo_files: tuple[Path, Path]) -> None:
    items_csv, _ = demo_files
    demo_items = {line.split(",", 1)[0] for line in items_csv.read_text().splitlines()[1:]}
    rules = load_rules(example_rules(), "example-rules.yaml", demo_items.__contains__)
    assert rules.campaigns["christmas"].placements["home"].pins and len(rules.blocks) == 5
    assert rules.experiments["home-ranking"].control == "current"


def test_empty_file_is_the_built_in_rules() -> None:
    assert load_rules("", "rules.yaml").placements == {}
    assert load_rules("# nothing yet\n", "rules.yaml").blocks == []


@pytest.mark.parametrize("text, expected", [
    # wrong types
    ("placements:\n  home:\n    pins:\n      - item: '85123A'\n        slot: three\n",
     (5, "placements.home.pins[0].slot", "Input should be a valid integer (got 'three')")),
    ("placements:\n  home:\n    filter:\n      in_stock: 'yes'\n",
     (4, "placements.home.filter.in_stock", "Input should be a valid boolean (got 'yes')")),
    ("placements:\n  home:\n    filter:\n      category_in: kitchen\n",
     (4, "placements.home.filter.category_in", "Input should be a valid list (got 'kitchen')")),
    ("placements: [home]\n", (1, "placements", "Input should be a valid dictionary")),
    # unknown fields
    ("placements:\n  home:\n    pin:\n      - {item: '85123A', slot: 1}\n",
     (3, "placements.home.pin", "unknown field")),
    ("placements:\n  home:\n    boosts:\n      - when: {categry_in: [kitchen]}\n        factor: 2\n",
     (4, "placements.home.boosts[0].when.categry_in", "unknown field")),
    ("blocks:\n  - id: b1\n    slot: home_top\n    titel: Hi\n", (4, "blocks[0].titel", "unknown field")),
    # bad dates
    ("campaigns:\n  xmas:\n    start: 2026-13-01\n",
     (3, "campaigns.xmas.start", "not a date (2026-12-24) or date-time (2026-12-24T18:00:00+01:00): "
                                 "'2026-13-01'")),
    ("campaigns:\n  xmas:\n    start: 2026-12-20\n    end: 2026-12-01\n",
     (2, "campaigns.xmas", "end (2026-12-02T00:00:00+00:00) must be after start (2026-12-20T00:00:00+00:00)")),
    ("placements:\n  home:\n    pins:\n      - {item: '85123A', slot: 1, until: tomorrow}\n",
     (4, "placements.home.pins[0].end", "not a date (2026-12-24) or date-time (2026-12-24T18:00:00+01:00): "
                                        "'tomorrow'")),
    # unknown placements and scenarios
    ("placements:\n  hom:\n    candidates: 40\n",
     (2, "placements.hom", "unknown placement 'hom': a new placement needs `scenarios`; built-in: home, "
                           "product, cart, category, trending, popular, recent")),
    ("campaigns:\n  xmas:\n    placements:\n      homepage:\n        pins: []\n",
     (4, "campaigns.xmas.placements.homepage", "unknown placement 'homepage'; known: cart, category, home, "
                                               "popular, product, recent, trending")),
    ("experiments:\n  e1:\n    placement: nowhere\n    variants: [{name: a, weight: 1}]\n",
     (3, "experiments.e1.placement", "unknown placement 'nowhere'; known: cart, category, home, popular, "
                                     "product, recent, trending")),
    ("placements:\n  gifts:\n    scenarios: [popular, bestsellers]\n",
     (3, "placements.gifts.scenarios[1]", "unknown scenario 'bestsellers'; known: for_you, similar, similar_content, "
                                          "same_category, complements, similar_to_cart, category_bestsellers, "
                                          "trending, popular, recently_viewed")),
    # shares over 100%
    ("placements:\n  home:\n    promoted: {share: 120%, select: {category_in: [kitchen]}}\n",
     (3, "placements.home.promoted.share", "120% is outside 0%..100%")),
    ("control_group: {share: 1.5}\n",
     (1, "control_group.share", "1.5 is over 100%: write a fraction (0.2) or a percentage ('20%')")),
    # values out of range
    ("placements:\n  home:\n    buries:\n      - {when: {brand_in: [x]}, factor: 2}\n",
     (4, "placements.home.buries[0].factor", "Input should be less than 1 (got 2)")),
    ("blocks:\n  - {id: b1, slot: s, cap: {max: 3, window: 1 day}}\n",
     (2, "blocks[0].cap.window", "must be a duration such as 30m, 12h, 1d or 2w, not '1 day'")),
    ("placements:\n  home:\n    repetition: {max: 9, window: 1d}\n",
     (3, "placements.home.repetition.max", "Input should be less than or equal to 5 (got 9)")),
    # YAML itself
    ("placements:\n  home: {pins: [\n", (2, "", "invalid YAML: expected the node content, but found "
                                          "'<stream end>' (while parsing a flow node, noticed on line 3)")),
    ("placements:\n  home: {}\n  home: {}\n", (3, "placements.home", "duplicate key")),
    ("base: &b {in_stock: true}\nplacements:\n  home: {filter: *b}\n",
     (1, "base", "anchors and aliases (&name / *name) are not supported")),
    ("placements:\n  home: {filter: *b}\n", (2, "", "invalid YAML: found undefined alias 'b'")),
    ("- just\n- a list\n", (1, "", "the rules file must be a mapping (placements:, campaigns:, blocks:, ...)")),
    ("placements: !!python/object:os.system {}\n",
     (1, "placements", "unsupported YAML tag 'tag:yaml.org,2002:python/object:os.system'")),
    ("placements:\n  home:\n    candidates: !!python/object/apply:os.system [echo]\n",
     (3, "placements.home.candidates", "unsupported YAML tag 'tag:yaml.org,2002:python/object/apply:os.system'")),
    ("placements:\n  home:\n    candidates: !!python/name:os.system ''\n",
     (3, "placements.home.candidates", "unsupported YAML tag 'tag:yaml.org,2002:python/name:os.system'")),
    ("placements:\n  home:\n    candidates: !!int 40\n",
     (3, "placements.home.candidates", "unsupported YAML tag 'tag:yaml.org,2002:int'")),
    ("placements:\n  home: {<<: {candidates: 40}}\n", (2, "placements.home", "merge keys (<<) are not supported")),
])
def test_bad_config_names_line_and_field(text: str, expected: tuple[int, str, str]) -> None:
    assert errors_of(text)[0] == expected


def test_pins_and_promoted_items_must_be_in_the_catalogue() -> None:
    text = """placements:
  home:
    pins:
      - {item: '85123A', slot: 1}
      - {item: 'NOPE1', slot: 2}
    promoted:
      share: 10%
      select: {items: ['22086', 'NOPE2']}
"""
    assert errors_of(text, CATALOGUE) == [
        (5, "placements.home.pins[1].item", "item 'NOPE1' is not in the catalogue"),
        (8, "placements.home.promoted.select.items[1]", "item 'NOPE2' is not in the catalogue"),
    ]


def test_cross_reference_errors_are_all_reported() -> None:
    text = """placements:
  home:
    pins:
      - {item: '85123A', slot: 1}
      - {item: '22086', slot: 1}
blocks:
  - {id: hello, slot: top, campaign: summer, title: 'Hi {firstname}'}
  - {id: hello, slot: top, when: {segments_any: [vip]}}
experiments:
  e1: {placement: home, variants: [{name: a, weight: 1}]}
  e2: {placement: home, start: 2026-01-01, variants: [{name: b, weight: 1}]}
  holdout: {placement: cart, variants: [{name: c, weight: 1}]}
"""
    assert errors_of(text) == [
        (5, "placements.home.pins[1].slot", "slot 1 is already pinned by pins[0] over the same dates"),
        (7, "blocks[0].campaign", "unknown campaign 'summer'; known: none defined"),
        (7, "blocks[0].title", "unknown field {firstname}; known: cart_items, favourite_category, first_name, "
                               "last_visit_item, last_visit_item_id, tier, visits"),
        (8, "blocks[1].id", "duplicate block id 'hello' (also blocks[0])"),
        (8, "blocks[1].when.segments_any[0]", "unknown segment 'vip'; known: at_risk, cart_abandoner, "
                                             "high_value, loyal, new, returning"),
        (11, "experiments.e2.placement", "placement 'home' already has experiment 'e1' over the same dates"),
        (12, "experiments.holdout", "'holdout' is reserved for the control group's report"),
    ]


def test_pins_on_one_slot_at_different_dates_are_fine() -> None:
    text = """placements:
  home:
    pins:
      - {item: '85123A', slot: 1, from: 2026-12-01, until: 2026-12-10}
      - {item: '22086', slot: 1, from: 2026-12-11}
"""
    rules = load_rules(text, "rules.yaml", CATALOGUE.__contains__)
    assert [p.item for p in rules.placements["home"].pins] == ["85123A", "22086"]


def test_experiment_variants_are_checked() -> None:
    text = """experiments:
  e1:
    placement: home
    control: base
    variants:
      - {name: a, weight: 0}
      - {name: control, weight: 1}
"""
    assert errors_of(text)[0] == (6, "experiments.e1.variants[0].weight", "Input should be greater than 0 (got 0)")
    text = text.replace("weight: 0", "weight: 1")
    assert errors_of(text) == [(2, "experiments.e1", "`control` is reserved for the global control group; "
                                                     "name the variant otherwise")]


def test_check_rules_command(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                             monkeypatch: pytest.MonkeyPatch) -> None:
    from api.cli.main import main

    monkeypatch.setenv("VITRINE_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("VITRINE_REDIS_URL", raising=False)
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(example_rules())
    bad.write_text("placements:\n  home:\n    diversity: {max_per_category: none}\n")
    no_catalogue = (f"warning: pinned and promoted items not checked: no Redis to read the catalogue from "
                    f"(VITRINE_REDIS_URL is not set and no redis-server is running for {tmp_path / 'redis'})\n")
    assert main(["check-rules", str(good)]) == 0
    out = capsys.readouterr()
    assert "valid, version" in out.out and out.err == no_catalogue
    assert main(["check-rules", str(bad)]) == 1
    assert capsys.readouterr().err == (f"{bad}:3: placements.home.diversity.max_per_category: "
                                       "Input should be a valid integer (got 'none')\n" + no_catalogue)
    for text, error in [("placements:\n  home:\x0c\n", f"{bad}:2: invalid YAML: character U+000C (a control "
                                                       f"character) at column 8 is not allowed in YAML text; remove it"),
                        ("placements: " + "[" * 10_000 + "\n", f"{bad}:1: invalid YAML: nested more than 32 levels deep"),
                        ("  \n", f"{bad}: the rules file is empty (unset VITRINE_RULES_FILE to use the built-in rules)"),
                        ("frequency: {max: 3, window: 6w}\n", f"{bad}:1: frequency.window: 6w is longer than "
                                                              f"impressions are kept (30d, VITRINE_EXPOSURE_RETENTION_S)")]:
        bad.write_text(text)
        assert main(["check-rules", str(bad)]) == 1
        assert capsys.readouterr().err == error + "\n" + no_catalogue
    assert main(["check-rules", str(tmp_path / "missing.yaml")]) == 2
    assert main(["check-rules", str(tmp_path)]) == 2  # a directory


PINS = "placements:\n  home:\n    pins:\n      - {item: '85123A', slot: 1}\n      - {item: 'NOPE-1', slot: 2}\n"


def test_check_rules_checks_items_against_the_configured_redis(
        tmp_path: Path, redis_url: str, demo_files: tuple[Path, Path], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """What the service rejects, the command rejects: a pin of an item not in the catalogue."""
    import asyncio

    import redis

    from api.cli.main import main
    from engine.catalog import upsert_items
    from engine.ingest.importer import ImportReport, read_items

    async def load() -> None:
        async with redis.asyncio.Redis.from_url(redis_url) as client:
            await upsert_items(client, read_items(demo_files[0], ImportReport()))

    monkeypatch.setenv("VITRINE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("VITRINE_REDIS_URL", redis_url)
    path = tmp_path / "rules.yaml"
    path.write_text(PINS)
    assert main(["check-rules", str(path)]) == 0  # an empty catalogue checks nothing, in the service too
    assert capsys.readouterr().err == ("warning: pinned and promoted items not checked: the catalogue is empty (the "
                                       "service checks nothing against an empty catalogue)\n")
    asyncio.run(load())
    assert main(["check-rules", str(path)]) == 1
    assert capsys.readouterr().err == f"{path}:5: placements.home.pins[1].item: item 'NOPE-1' is not in the catalogue\n"
    path.write_text(PINS.replace("NOPE-1", "22086"))
    assert main(["check-rules", str(path)]) == 0
    out = capsys.readouterr()
    assert out.out.startswith(f"{path}: valid") and out.err == ""
    monkeypatch.setenv("VITRINE_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")  # nobody listens there
    path.write_text(PINS)
    assert main(["check-rules", str(path)]) == 0
    err = capsys.readouterr().err
    assert err.startswith("warning: pinned and promoted items not checked: the catalogue is not reachable "
                          "(ConnectionError: ")


def test_check_rules_reads_the_catalogue_of_the_data_dirs_running_redis(
        tmp_path: Path, demo_files: tuple[Path, Path], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Without VITRINE_REDIS_URL, the data dir's redis-server when one is running (e.g. for
    `vitrine serve`); none is started for the check."""
    from api.cli.main import main
    from engine.store.server import managed_redis

    monkeypatch.setenv("VITRINE_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("VITRINE_REDIS_URL", raising=False)
    path = tmp_path / "rules.yaml"
    path.write_text(PINS)
    with managed_redis(tmp_path / "redis"):
        assert main(["import", "--items", str(demo_files[0])]) == 0
        capsys.readouterr()
        assert main(["check-rules", str(path)]) == 1
        assert capsys.readouterr().err == (f"{path}:5: placements.home.pins[1].item: item 'NOPE-1' is not in the "
                                           f"catalogue\n")
    assert main(["check-rules", str(path)]) == 0  # stopped: not started again for the check
    assert "no redis-server is running" in capsys.readouterr().err
    assert not (tmp_path / "redis" / "redis.json").exists()


def test_windows_cannot_outlast_the_impressions_kept() -> None:
    text = "frequency: {max: 5, window: 6w}\nplacements:\n  home:\n    repetition: {max: 2, window: 2w}\n"
    with pytest.raises(RulesInvalid) as info:
        load_rules(text, "rules.yaml", None, max_window_s=30 * 86400)
    assert [(e.line, e.field, e.message) for e in info.value.errors] == [
        (1, "frequency.window", "6w is longer than impressions are kept (30d, VITRINE_EXPOSURE_RETENTION_S)")]
    assert load_rules(text.replace("6w", "4w"), "rules.yaml", None, max_window_s=30 * 86400).frequency


def test_new_rules_are_prepared_before_they_go_live(tmp_path: Path) -> None:
    """The engine compiles a new rules file's placements in ``prepare``, off the request path:
    requests keep the old rules until the new ones are ready, and bad rules are never prepared."""
    from engine.merch.live import RulesHolder, RulesSnapshot

    path = tmp_path / "rules.yaml"
    seen: list[tuple[str, str]] = []  # (snapshot being prepared, snapshot live meanwhile)
    holder: RulesHolder

    def prepare(snapshot: RulesSnapshot) -> None:
        seen.append((snapshot.version, holder.current.version))

    holder = RulesHolder(path, CATALOGUE.__contains__, prepare=prepare)
    before = holder.current.version
    path.write_text("placements:\n  home:\n    diversity: {max_per_category: 2}\n")
    assert holder.reload(force=True)
    path.write_text("placements:\n  home:\n    diversity: {max_per_categry: 2}\n")
    assert not holder.reload(force=True) and holder.errors
    assert seen == [(holder.current.version, before)]


TEN_LINES = """# rules.yaml
placements:
  home:
    filter: {in_stock: true}
    diversity: {max_per_category: 3}
  product:
    filter: {in_stock: true}
blocks:
  - id: b1
    slot: home_top
"""


@pytest.mark.parametrize("line11, message", [
    # scanner
    ("    title Hello\n    link: /x\n", "invalid YAML: could not find expected ':' (while scanning a simple key, "
                                       "noticed on line 12)"),
    ('    title: "Hello\n', "invalid YAML: found unexpected end of stream (while scanning a quoted scalar, noticed "
                            "on line 14)"),
    ("    title: Hello: world\n", "invalid YAML: mapping values are not allowed here"),
    ("\tlink: /x\n", "invalid YAML: found character '\\t' that cannot start any token (while scanning for the next "
                     "token): indent with spaces, not tabs"),
    ('    title: "a\\qb"\n', "invalid YAML: found unknown escape character 'q' (while scanning a double-quoted "
                             "scalar)"),
    # parser
    ("    when: {cart: empty\n", "invalid YAML: expected ',' or '}', but got ':' (while parsing a flow mapping, "
                                 "noticed on line 12)"),
    ("   link: /x\n", "invalid YAML: expected <block end>, but found '<block mapping start>' (while parsing a "
                      "block collection)"),
    ("    when: [a, b]]\n", "invalid YAML: expected <block end>, but found ']' (while parsing a block mapping)"),
    # composer
    ("    title: *nope\n", "invalid YAML: found undefined alias 'nope'"),
    ("    when: " + "[" * 40 + "]" * 40 + "\n", "invalid YAML: nested more than 32 levels deep"),
    # reader
    ("    title: Hello\x0c\n", "invalid YAML: character U+000C (a control character) at column 17 is not allowed "
                               "in YAML text; remove it"),
])
def test_yaml_errors_are_reported_on_the_line_to_fix(line11: str, message: str) -> None:
    """Each mistake is on line 11; PyYAML notices some of them on a later line."""
    text = TEN_LINES + line11 + "  - id: b2\n    slot: s\n"
    assert errors_of(text)[0] == (11, "", message)


@pytest.mark.parametrize("line11, field, message", [
    ("    slot: again\n", "blocks[0].slot", "duplicate key"),
    ("    priority: high\n", "blocks[0].priority", "Input should be a valid integer (got 'high')"),
    ("    titel: Hello\n", "blocks[0].titel", "unknown field"),
    ("    campaign: summer\n", "blocks[0].campaign", "unknown campaign 'summer'; known: none defined"),
    ("    title: !!str Hello\n", "blocks[0].title", "unsupported YAML tag 'tag:yaml.org,2002:str'"),
])
def test_schema_errors_are_reported_on_their_line(line11: str, field: str, message: str) -> None:
    assert errors_of(TEN_LINES + line11)[0] == (11, field, message)


@pytest.mark.parametrize("newline", ["\r\n", "\r"])
def test_lines_are_counted_whatever_the_line_breaks(newline: str) -> None:
    text = (TEN_LINES + "    title Hello\n    link: /x\n").replace("\n", newline)
    assert errors_of(text)[0][0] == 11
    assert errors_of((TEN_LINES + "    priority: high\n").replace("\n", newline))[0][0] == 11


def test_unicode_line_separators_inside_a_line_do_not_shift_lines() -> None:
    """An editor shows U+2028 and U+0085 inside a line (PyYAML counts them as line breaks)."""
    text = TEN_LINES.replace("# rules.yaml", 'category_names: {a: "x\u2028y\x85z"}') + "    priority: high\n"
    assert errors_of(text)[0] == (11, "blocks[0].priority", "Input should be a valid integer (got 'high')")
