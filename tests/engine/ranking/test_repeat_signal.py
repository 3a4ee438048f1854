"""The blend's repeat signal: a visit's own items, by how often the shop's visits go back that far."""

from __future__ import annotations

from dataclasses import replace

from engine.catalog import EMPTY
from engine.runtime import profile_config
from engine.training.offline import OfflineRanker
from models.evaluate import Query
from models.rows import Interaction
from models.train import TrainConfig, fit
from engine.settings import Settings

HOUR = 3600.0
WEIGHTS = {"product_view": 1.0}


def trained(blend: dict[str, float]) -> object:
    """Visits that compare two items and go back to the first (a b a), plus best-sellers p0..p4."""
    rows = [Interaction(n * HOUR + k * 60, f"v{n}", None, "product_view", item)
            for n in range(40) for k, item in enumerate((f"a{n % 5}", f"b{n % 5}", f"a{n % 5}"))]
    rows += [Interaction(50 * HOUR + n * HOUR + k * 60, f"w{n}", None, "product_view", f"p{k}")
             for n in range(40) for k in range(5)]
    config = TrainConfig(weights=WEIGHTS, blend=blend, exclude_seen=False, exclude_purchased=False)
    return fit(config.matrix(rows), config)


def ranked(blend: dict[str, float]) -> list[str]:
    ranker = OfflineRanker(EMPTY, profile_config(Settings()), exclude_seen=False, exclude_purchased=False)
    now = 200 * HOUR
    history = (Interaction(now - 120, "anon", None, "product_view", "x1"),
               Interaction(now - 60, "anon", None, "product_view", "a1"),
               Interaction(now, "anon", None, "product_view", "b1"))
    return ranker(trained(blend))(Query("v:anon", "anon", None, history, now, 5, frozenset(), 3))


def test_the_curve_is_learned_at_train_time() -> None:
    curve = trained({"popularity": 1.0}).meta["repeat_curve"]
    # a b a goes back to the second latest item; the best-sellers p0..p4 (three chances each) never do
    assert curve[0] == 0.0 and curve[1] == 0.25


def test_the_item_visits_go_back_to_comes_first() -> None:
    assert ranked({"popularity": 1.0})[0].startswith("p")  # without the signal: best-sellers
    got = ranked({"popularity": 1.0, "repeat": 2.0})
    assert got[0] == "a1"  # the second latest item, not the one on screen (b1)
    assert "b1" not in got[:1]


def test_an_artifact_without_a_curve_serves_no_repeat_term() -> None:
    artifact = trained({"popularity": 1.0, "repeat": 2.0})
    artifact.meta["repeat_curve"] = []
    ranker = OfflineRanker(EMPTY, profile_config(Settings()), exclude_seen=False, exclude_purchased=False)
    history = (Interaction(0.0, "anon", None, "product_view", "a1"), Interaction(60.0, "anon", None, "product_view", "b1"))
    assert ranker(artifact)(Query("v:anon", "anon", None, history, 60.0, 5, frozenset(), 2))[0].startswith("p")
