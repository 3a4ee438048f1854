"""The rules stage on its own (pure): each rule type alone, then combined in the documented order."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from engine.catalog import Item
from engine.merch.schema import PlacementRules
from engine.merch.stage import Effective, Visitor, apply_rules, pool_size
from engine.ranking.request import Pick

NOW = datetime(2026, 12, 10, 12, tzinfo=timezone.utc).timestamp()
DAY = 86400.0

ITEMS = {
    "m1": Item(item_id="m1", category="kitchen.mugs", brand="acme", price=5.0, added_at=NOW - 100 * DAY),
    "m2": Item(item_id="m2", category="kitchen.mugs", brand="acme", price=6.0, added_at=NOW - 2 * DAY),
    "m3": Item(item_id="m3", category="kitchen.mugs", brand="bolt", price=7.0, added_at=NOW - 100 * DAY),
    "t1": Item(item_id="t1", category="kitchen.tableware", brand="bolt", price=12.0, added_at=NOW - 100 * DAY,
               attributes={"colour": "red"}),
    "x1": Item(item_id="x1", category="seasonal.christmas", brand="elf", price=3.0, added_at=NOW - 1 * DAY,
               attributes={"colour": "red", "new": True}),
    "x2": Item(item_id="x2", category="seasonal.christmas", brand="elf", price=30.0, added_at=NOW - 100 * DAY),
    "c1": Item(item_id="c1", category="lighting.candles", brand="glow", price=2.0, in_stock=False,
               added_at=NOW - 100 * DAY),
    "k1": Item(item_id="k1", category="kitchenware", brand="acme", price=4.0, added_at=NOW - 100 * DAY),
}
POOL = [Pick(i, 10.0 - n, "popular") for n, i in enumerate(["m1", "m2", "m3", "t1", "x1", "x2", "c1", "k1"])]
NOBODY = Visitor({}, {})


def rules(**fields: object) -> Effective:
    """An Effective built from rules-file fields, through the schema (as in production)."""
    p = PlacementRules.model_validate(fields)
    return Effective(chain=("popular",), filters=(p.filter,) if p.filter else (),
                     boosts=(*p.boosts, *p.buries), pins=tuple(p.pins), promoted=p.promoted,
                     diversity=p.diversity, repetition=p.repetition, candidates=p.candidates)


def run(eff: Effective, n: int = 5, visitor: Visitor = NOBODY, pool: list[Pick] = POOL,
        excluded: frozenset[str] = frozenset(), **kw: object) -> list[str]:
    picks = apply_rules(pool, eff, n=n, now=NOW, items=ITEMS, visitor=visitor,
                        recommendable=lambda i: i in ITEMS and ITEMS[i].in_stock and i not in excluded)
    return [p.item_id for p in picks]


def test_no_rules_keeps_the_pool_order() -> None:
    assert run(rules(), n=4) == ["m1", "m2", "m3", "t1"]
    assert pool_size(rules(), 10) == 10  # no rules: no bigger pool, no extra work


@pytest.mark.parametrize("selector, expected", [
    ({"category_in": ["kitchen"]}, ["m1", "m2", "m3", "t1"]),  # prefix, but not "kitchenware"
    ({"category_in": ["kitchen.mugs", "seasonal"]}, ["m1", "m2", "m3", "x1", "x2"]),
    ({"category_not_in": ["kitchen"]}, ["x1", "x2", "k1"]),
    ({"price": {"min": 5, "max": 12}}, ["m1", "m2", "m3", "t1"]),
    ({"price": {"max": 4}}, ["x1", "k1"]),
    ({"in_stock": False}, []),  # out of stock is never shown, whatever a filter says
    ({"brand_in": ["elf", "glow"]}, ["x1", "x2"]),
    ({"brand_not_in": ["acme", "bolt"]}, ["x1", "x2"]),
    ({"attributes": {"colour": "red"}}, ["t1", "x1"]),
    ({"attributes": {"colour": ["blue", "red"], "new": True}}, ["x1"]),
    ({"attributes": {"new": 1}}, []),  # true is not 1
    ({"new_arrivals": "7d"}, ["m2", "x1"]),
    ({"items": ["x2", "m3"]}, ["m3", "x2"]),
    ({"category_in": ["kitchen"], "brand_in": ["bolt"]}, ["m3", "t1"]),  # conditions are ANDed
])
def test_each_filter(selector: dict[str, object], expected: list[str]) -> None:
    assert run(rules(filter=selector), n=8) == expected


def test_boosts_and_buries_rerank_by_rank_score_times_factor() -> None:
    # rank scores over a pool of 8: m1 1.0, m2 .875, m3 .75, t1 .625, x1 .5, x2 .375 ...
    boosted = rules(boosts=[{"when": {"category_in": ["seasonal"]}, "factor": 2.5}])
    assert run(boosted, n=4) == ["x1", "m1", "x2", "m2"]  # x1 1.25, x2 .9375
    buried = rules(buries=[{"when": {"brand_in": ["acme"]}, "factor": 0.5}])
    assert run(buried, n=4) == ["m3", "t1", "m1", "x1"]  # m1 .5 ties x1 .5: pool order breaks ties


def test_affinity_boost_scales_with_the_visitors_affinity() -> None:
    eff = rules(boosts=[{"affinity": "category", "factor": 3}])
    # seasonal.christmas at full affinity: x (.5, .375) -> 1.5, 1.125; kitchen (parent) at .1: m1 -> 1.2
    visitor = Visitor({"seasonal.christmas": 1.0, "kitchen": 0.1}, {})
    assert run(eff, n=3, visitor=visitor) == ["x1", "m1", "x2"]
    assert run(eff, n=3) == ["m1", "m2", "m3"]  # no affinities: no change
    by_brand = rules(boosts=[{"affinity": "brand", "factor": 5}])
    assert run(by_brand, n=2, visitor=Visitor({}, {"bolt": 1.0})) == ["m3", "t1"]


def test_a_boost_for_some_segments_moves_only_their_members_lists() -> None:
    eff = rules(boosts=[{"when": {"category_in": ["seasonal"]}, "factor": 2.5, "segments_any": ["vip"]}],
                buries=[{"when": {"brand_in": ["acme"]}, "factor": 0.5, "segments_none": ["new"]}])
    assert run(eff, n=4) == ["m3", "t1", "m1", "x1"]  # in no segment: only the bury
    assert run(eff, n=4, visitor=Visitor({}, {}, segments=["new"])) == ["m1", "m2", "m3", "t1"]
    assert run(eff, n=4, visitor=Visitor({}, {}, segments=["vip", "new"])) == ["x1", "m1", "x2", "m2"]
    assert eff.by_segment and not rules(boosts=[{"affinity": "brand", "factor": 2}]).by_segment


def test_pins_put_an_item_at_its_slot_within_their_dates() -> None:
    eff = rules(pins=[{"item": "x2", "slot": 2},
                      {"item": "t1", "slot": 1, "from": "2026-12-11"},  # not started yet
                      {"item": "k1", "slot": 4, "until": "2026-12-10"}])  # a date end covers that day
    assert run(eff, n=4) == ["m1", "x2", "m2", "k1"]


def test_pins_skip_filters_but_never_show_what_cannot_be_shown() -> None:
    eff = rules(filter={"category_in": ["kitchen.mugs"]},
                pins=[{"item": "x1", "slot": 1}, {"item": "c1", "slot": 2}, {"item": "m3", "slot": 3}])
    # x1 breaks the filter but is pinned; c1 is out of stock; m3 pinned to 3 moves from 3rd place
    assert run(eff, n=4) == ["x1", "m1", "m3", "m2"]
    assert run(eff, n=4, excluded=frozenset({"x1"})) == ["m1", "m2", "m3"]  # e.g. in the cart


def test_a_pin_on_a_taken_slot_moves_down_and_short_lists_close_up() -> None:
    eff = rules(filter={"items": ["m1"]}, pins=[{"item": "x1", "slot": 3}, {"item": "x2", "slot": 3}])
    assert run(eff, n=5) == ["m1", "x1", "x2"]  # x2 takes the next free slot after 3, then gaps close


def test_promoted_share_takes_evenly_spread_slots() -> None:
    eff = rules(promoted={"share": "40%", "select": {"category_in": ["seasonal"]}})
    # 40% of 5 = 2 slots at positions 5//3=1 and 10//3=3
    assert run(eff, n=5) == ["m1", "x1", "m2", "x2", "m3"]


def test_promoted_items_come_from_the_promoted_set_when_the_pool_has_too_few() -> None:
    eff = Effective(chain=("popular",), promoted=rules(
        promoted={"share": 0.5, "select": {"brand_in": ["elf", "zed"]}}).promoted,
        promoted_fallback=("x2", "z9", "x1"))
    pool = [p for p in POOL if p.item_id not in ("x1", "x2")]
    # 2 slots at 4//3=1 and 8//3=2; z9 is not recommendable
    assert run(eff, n=4, pool=pool) == ["m1", "x2", "x1", "m2"]


def test_promoted_items_respect_filters_and_repetition() -> None:
    eff = rules(filter={"price": {"max": 20}}, promoted={"share": 0.4, "select": {"category_in": ["seasonal"]}},
                repetition={"max": 2, "window": "1d"})
    shown = {"x1": 2}
    visitor = Visitor({}, {}, shown=lambda i: shown.get(i, 0))
    assert run(eff, n=5, visitor=visitor) == ["m1", "m2", "m3", "t1", "k1"]  # x2 too dear, x1 shown twice


def test_diversity_caps_items_per_category() -> None:
    assert run(rules(diversity={"max_per_category": 1}), n=4) == ["m1", "t1", "x1", "k1"]
    assert run(rules(diversity={"max_per_category": 2, "depth": 1}), n=5) == ["m1", "m2", "x1", "x2", "k1"]


def test_diversity_counts_pinned_and_promoted_items() -> None:
    eff = rules(diversity={"max_per_category": 1}, pins=[{"item": "m3", "slot": 3}])
    assert run(eff, n=4) == ["t1", "x1", "m3", "k1"]


def test_repetition_drops_items_shown_too_often() -> None:
    shown = {"m1": 3, "m2": 2}
    visitor = Visitor({}, {}, shown=lambda i: shown.get(i, 0))
    assert run(rules(repetition={"max": 3, "window": "1d"}), n=3, visitor=visitor) == ["m2", "m3", "t1"]
    assert run(rules(repetition={"max": 2, "window": "1d"}), n=3, visitor=visitor) == ["m3", "t1", "x1"]


def test_pool_size_grows_with_filter_selectivity() -> None:
    assert pool_size(rules(candidates=60, filter={"in_stock": True}), 10) == 60
    eff = Effective(chain=("popular",), filters=rules(filter={"in_stock": True}).filters, selectivity=0.1)
    assert pool_size(eff, 10) == 400
    assert pool_size(Effective(chain=("popular",), filters=eff.filters, selectivity=0.0), 10) == 2000


def test_combined_rules_apply_in_the_documented_order() -> None:
    """filter -> repetition -> boosts/buries -> pins -> promoted -> diversity -> cut."""
    eff = rules(
        filter={"in_stock": True, "category_not_in": ["kitchenware"]},  # drops c1 and k1
        buries=[{"when": {"category_in": ["kitchen.mugs"]}, "factor": 0.3}],  # mugs sink
        boosts=[{"when": {"attributes": {"colour": "red"}}, "factor": 2}],
        pins=[{"item": "m1", "slot": 1}],  # pinned although buried
        promoted={"share": 0.2, "select": {"brand_in": ["elf"]}},
        diversity={"max_per_category": 1, "depth": 1},
        repetition={"max": 1, "window": "1d"},
    )
    shown = {"t1": 1}
    visitor = Visitor({}, {}, shown=lambda i: shown.get(i, 0))
    # after filter+repetition: m1 m2 m3 x1 x2; scores: x1 .5*2=1, x2 .375, m1 .3, m2 .2625, m3 .225
    # pin m1 at 1; promoted 1 slot (round(.2*5)=1) at 5//2=2 -> best elf item x1 at position 2 (index 2)
    # fill by score with one per top-level category: kitchen already has m1, seasonal has x1 -> nothing else
    assert run(eff, n=5, visitor=visitor) == ["m1", "x1"]
    loose = rules(**{**eff_fields(), "diversity": {"max_per_category": 3, "depth": 1}})
    assert run(loose, n=5, visitor=visitor) == ["m1", "x2", "x1", "m2", "m3"]


def eff_fields() -> dict[str, object]:
    return {
        "filter": {"in_stock": True, "category_not_in": ["kitchenware"]},
        "buries": [{"when": {"category_in": ["kitchen.mugs"]}, "factor": 0.3}],
        "boosts": [{"when": {"attributes": {"colour": "red"}}, "factor": 2}],
        "pins": [{"item": "m1", "slot": 1}],
        "promoted": {"share": 0.2, "select": {"brand_in": ["elf"]}},
        "repetition": {"max": 1, "window": "1d"},
    }


class _Model:
    """The parts of a served model the rules compilation reads (item order and popularity)."""

    version = "m1"
    item_ids = ["m1", "m2", "m3", "t1", "x1", "x2", "c1"]  # k1 is unknown to the model
    item_index = {i: n for n, i in enumerate(item_ids)}

    def view(self, catalogue: object) -> object:
        import numpy as np

        return type("View", (), {"popular_order": np.arange(len(self.item_ids))})()


def test_precomputed_rules_give_the_same_lists_as_item_by_item_evaluation() -> None:
    from engine.catalog import Catalogue
    from engine.merch.experiments import Arm
    from engine.merch.live import parse_snapshot

    text = b"""placements:
  home:
    filter: {category_not_in: [lighting], price: {max: 20}}
    boosts:
      - {when: {attributes: {colour: red}}, factor: 3}
      - {when: {new_arrivals: 7d}, factor: 1.5}
      - {affinity: category, factor: 2}
    buries:
      - {when: {brand_in: [acme]}, factor: 0.5}
    promoted: {share: 20%, select: {category_in: [seasonal]}}
    diversity: {max_per_category: 2}
"""
    snap = parse_snapshot(text, "rules.yaml", None)
    compiled = snap.effective("home", Arm(), NOW, _Model(), Catalogue(version=1, items=ITEMS))  # type: ignore[arg-type]
    assert compiled.allowed is not None and compiled.static_boost is not None
    plain = Effective(chain=compiled.chain, filters=compiled.filters, boosts=compiled.boosts,
                      promoted=compiled.promoted, promoted_fallback=compiled.promoted_fallback,
                      diversity=compiled.diversity)
    visitor = Visitor({"kitchen.mugs": 1.0, "seasonal": 0.4}, {})
    for n in (3, 5, 8):
        assert run(compiled, n=n, visitor=visitor) == run(plain, n=n, visitor=visitor)
    # x2 too dear; scores: x1 .5*3*1.5*1.4=3.15, t1 .625*3, m3 .75*2, m2 .875*1.5*2*.5, m1 1*2*.5, k1 .125*.5
    # x1 is the one promoted item (slot 3); at most 2 mugs, so m1 goes
    assert run(compiled, n=8, visitor=visitor) == ["t1", "m3", "x1", "m2", "k1"]


def test_a_boost_for_some_segments_is_never_precomputed_for_everyone() -> None:
    from engine.catalog import Catalogue
    from engine.merch.experiments import Arm
    from engine.merch.live import parse_snapshot

    text = b"""placements:
  home:
    boosts:
      - {when: {category_in: [seasonal]}, factor: 4, segments_any: [loyal]}
      - {when: {brand_in: [bolt]}, factor: 2}
"""
    compiled = parse_snapshot(text, "rules.yaml", None).effective("home", Arm(), NOW, _Model(),  # type: ignore[arg-type]
                                                                  Catalogue(version=1, items=ITEMS))
    assert compiled.static_boost is not None and len(compiled.dynamic_boosts) == 1
    plain = Effective(chain=compiled.chain, boosts=compiled.boosts)
    for segments in ([], ["loyal"]):
        visitor = Visitor({}, {}, segments=segments)
        assert run(compiled, n=5, visitor=visitor) == run(plain, n=5, visitor=visitor)
    assert run(compiled, n=2, visitor=Visitor({}, {}, segments=["loyal"])) == ["x1", "m3"]
    assert run(compiled, n=2) == ["m3", "t1"]
