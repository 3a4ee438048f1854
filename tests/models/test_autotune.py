"""Self-tuning at train time (models.autotune): which protocol the data calls for, the validation
tail, pinned settings left alone, and the record kept in the model's meta, on real demo data."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from models.autotune import shape, tune_recipe, validation_split
from models.rows import Interaction
from models.train import TrainConfig

WEIGHTS = {"product_view": 1.0, "add_to_cart": 4.0, "purchase": 8.0}


def row(minute: float, visitor: str, item: str) -> Interaction:
    return Interaction(minute * 60, visitor, None, "product_view", item)


def test_the_protocol_follows_whether_people_come_back() -> None:
    one_visit_each = [row(m, f"v{n}", f"i{m}") for n in range(10) for m in range(3)]
    assert shape(one_visit_each, 1800) == "sessions"
    back_after_a_day = one_visit_each + [row(24 * 60 + m, f"v{n}", "x") for n in range(6) for m in range(3)]
    assert shape(back_after_a_day, 1800) == "people"


def test_validation_is_the_last_tenth_of_the_events() -> None:
    rows = [row(day * 1440 + n, f"v{n % 7}", f"i{(day + n) % 11}") for day in range(20) for n in range(10)]
    split = validation_split(rows, TrainConfig(weights=WEIGHTS), "people")
    assert split.cutoff == rows[180].ts and max(r.ts for r in split.train) < split.cutoff
    sessions = validation_split(rows, TrainConfig(weights=WEIGHTS), "sessions")
    assert sessions.queries and all(len(t) == 1 for t in sessions.targets)


def test_tuning_leaves_pinned_settings_alone_and_records_what_it_chose(demo_files: tuple[Path, Path]) -> None:
    from engine.training import served_ranker
    from engine.events.history import interactions
    from engine.ingest.importer import ImportReport, read_events
    from engine.settings import BLEND_SIGNALS, Settings
    from models.als import ALSParams

    events = read_events(demo_files[1], ImportReport(), accepted_at=time.time())
    rows = sorted(interactions(e.model_dump() for _, e in zip(range(40_000), events)), key=lambda r: r.ts)
    blend = {"als": 0.5, "recent": 1.0}
    base = TrainConfig(weights={"purchase": 1.0}, als=ALSParams(factors=16, iterations=5), blend=blend,
                       exclude_seen=True)
    tuned = tune_recipe(rows, base, served_ranker(Settings()), BLEND_SIGNALS, pinned=["blend", "exclude_seen"],
                        trials=2, progress=False)
    record = tuned.record
    assert record["tuned"] and record["protocol"] == "people" and record["pinned"] == ["blend", "exclude_seen"]
    assert tuned.config.blend == blend and tuned.config.exclude_seen is True
    assert tuned.config.exclude_purchased in (False, True)
    assert record["trials"]["als"] == 2 and record["tuned_score"] >= record["configured_score"] > 0
    assert record["validation"]["people_scored"] >= 20

    chosen = tune_recipe(rows, replace(base, exclude_seen=None), served_ranker(Settings()), BLEND_SIGNALS,
                         pinned=["blend", "history_half_life_s"], trials=1, progress=False)
    assert chosen.config.exclude_seen is not None  # chosen, so the model serves its choice
    assert chosen.record["tuned_score"] >= chosen.record["configured_score"]

    few = tune_recipe(rows[:300], base, served_ranker(Settings()), BLEND_SIGNALS, pinned=[], trials=1, progress=False)
    assert not few.record["tuned"] and "fewer than 20" in few.record["reason"] and few.config.blend == blend


def test_the_session_neighbours_parameters_are_searched_with_its_weight(demo_files: tuple[Path, Path]) -> None:
    from engine.training import served_ranker
    from engine.events.history import interactions
    from engine.ingest.importer import ImportReport, read_events
    from engine.ranking.model import ServedModel
    from engine.settings import Settings
    from models.als import ALSParams
    from models.train import fit
    from models.tuning import SKNN_GRID, tune_blend

    events = read_events(demo_files[1], ImportReport(), accepted_at=time.time())
    rows = sorted(interactions(e.model_dump() for _, e in zip(range(10_000), events)), key=lambda r: r.ts)
    base = TrainConfig(weights={"product_view": 1.0, "purchase": 1.0}, als=ALSParams(factors=16, iterations=5),
                       blend={"session_neighbours": 1.0})
    split = validation_split(rows, base, "sessions")
    split.queries, split.targets = split.queries[:100], split.targets[:100]  # a search, not a measurement
    config, trials = tune_blend(split, base, served_ranker(Settings()), ("session_neighbours",), rounds=1)
    for name, grid in SKNN_GRID.items():
        assert {t.params[name] for t in trials} == set(grid), name
    best = next(t for t in trials if t.score == max(t.score for t in trials))
    chosen = (config.sknn.k, config.sknn.last_n, config.sknn.idf_weight)
    assert chosen == (best.params["sknn_k"], best.params["sknn_last_n"], best.params["sknn_idf_weight"])
    artifact = fit(split.matrix(config), config)
    assert ServedModel(artifact).sknn == config.sknn  # what the model serves

    pinned, _ = tune_blend(split, base, served_ranker(Settings()), ("session_neighbours",), rounds=1, pinned=["blend"])
    assert pinned.sknn == base.sknn
