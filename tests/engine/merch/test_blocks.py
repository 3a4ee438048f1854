"""engine.merch.blocks: which block a person gets in a slot, and its text.

The README's example (tests/engine/merch/test_templates.py) and the HTTP stories (tests/api/test_merch.py)
pin the common paths; here are the edges: dates at their bounds, caps at their threshold and window
edge, category paths that share a string, missing template values, and what a withdrawn, opted-out
or control-group person is shown. ``BlockPicker.pick`` runs against a small in-memory read path
(its ``Recommendations`` protocol) whose profile read is the real ``load_profiles_with``."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any

import pytest

from engine.catalog import Catalogue, Item
from engine.merch.blocks import (
    BlockPicker,
    Person,
    UnknownSlot,
    cap_reason,
    category_label,
    choose,
    eligible,
    render,
    running,
    template_values,
)
from engine.merch.exposure import Exposure, minute
from engine.merch.live import RulesSnapshot, parse_snapshot
from engine.merch.schema import Block, Condition
from engine.merch.segments import DEFAULT_SET
from engine.profiles import CustomerProfile, VisitorProfile
from engine.profiles.codec import encode
from engine.profiles.store import load_profiles_with
from engine.ranking.request import Read, RecoRequest
from engine.store import keys

NOW = datetime(2026, 12, 10, 12, 0, 30, tzinfo=timezone.utc).timestamp()
HOUR, DAY = 3600.0, 86400.0
TIMEOUT = 1800.0


def snapshot(text: str) -> RulesSnapshot:
    return parse_snapshot(text.encode(), "rules.yaml", None)


def person(visitor: VisitorProfile | None = None, customer: CustomerProfile | None = None,
           customer_id: str | None = None, now: float = NOW) -> Person:
    return Person(visitor or VisitorProfile(), customer, customer_id, now, TIMEOUT, DEFAULT_SET)


def when(**fields: Any) -> Condition:
    return Condition.model_validate(fields)


def seen(now: float = NOW, **visitor: Any) -> VisitorProfile:
    """A visitor in a session under way."""
    return VisitorProfile(**{"first_seen": now - 30 * DAY, "last_seen": now - 60, "visits": 1,
                             "session_start": now - 600, **visitor})


# ------------------------------------------------------------------ eligible


def test_no_conditions_is_everyone() -> None:
    assert eligible(None, person())
    assert eligible(when(), person())


def test_category_affinity_compares_paths_not_strings() -> None:
    # kitchenware is the strongest interest, kitchen.mugs a fifth of it: "likes kitchen" is 0.2
    p = person(seen(category_affinity={"kitchenware": 5.0, "kitchen.mugs": 1.0}))
    assert not eligible(when(category_affinity={"kitchen": 0.5}), p)
    assert eligible(when(category_affinity={"kitchen": 0.2}), p)  # the threshold itself passes
    assert not eligible(when(category_affinity={"kitchen.mugs.large": 0.01}), p)  # a parent is not a child


def test_category_affinity_threshold_is_relative_to_the_strongest() -> None:
    p = person(seen(category_affinity={"lighting": 0.04, "kitchen.baking": 0.02}))  # decayed, same ratio
    assert eligible(when(category_affinity={"kitchen": 0.5}), p)
    assert not eligible(when(category_affinity={"kitchen": 0.51}), p)
    assert eligible(when(category_affinity={"kitchen": 0.5, "lighting": 1.0}), p)
    assert not eligible(when(category_affinity={"kitchen": 0.5, "garden": 0.1}), p)  # all must hold
    assert not eligible(when(category_affinity={"kitchen": 0.0, "garden": 0.1}), person())


def test_category_affinity_is_the_customers_once_they_have_any() -> None:
    visitor = seen(category_affinity={"kitchen": 1.0})
    customer = CustomerProfile(category_affinity={"lighting": 1.0, "kitchen": 0.1})
    assert not eligible(when(category_affinity={"kitchen": 0.5}), person(visitor, customer, "c1"))
    assert eligible(when(category_affinity={"kitchen": 0.5}), person(visitor, CustomerProfile(), "c1"))


def test_last_visit_items_include_a_session_that_timed_out() -> None:
    # The visit ended 2 hours ago with a view, and no event has rolled it over yet.
    v = seen(last_seen=NOW - 2 * HOUR, session_start=NOW - 3 * HOUR, session_items=["a"])
    assert eligible(when(has_last_visit_items=True), person(v))
    in_session = seen(session_items=["a"])  # the same view, in the visit under way
    assert eligible(when(has_last_visit_items=False), person(in_session))


def test_cart_segments_and_visits() -> None:
    carted = seen(visits=2, cart={"a": 1}, cart_updated=NOW - 2 * HOUR)
    assert eligible(when(cart="not_empty", visitor="returning", segments_any=["cart_abandoner", "loyal"]),
                    person(carted))
    assert not eligible(when(segments_none=["cart_abandoner"]), person(carted))
    assert not eligible(when(cart="empty"), person(carted))
    assert eligible(when(cart="empty", visitor="new", segments_none=["returning"]), person(seen()))


def test_tier_needs_a_customer_and_logged_in_needs_their_id() -> None:
    gold = CustomerProfile(traits={"tier": "gold"})
    assert eligible(when(customer_tier=["silver", "gold"]), person(seen(), gold, "c1"))
    assert not eligible(when(customer_tier=["silver"]), person(seen(), gold, "c1"))
    assert not eligible(when(customer_tier=["gold"]), person(seen()))
    assert not eligible(when(customer_tier=["gold"]), person(seen(), CustomerProfile(), "c1"))  # no tier known
    assert eligible(when(logged_in=True), person(seen(), None, "c1"))  # id known, no profile yet
    assert eligible(when(logged_in=False), person(seen()))


@pytest.mark.parametrize("consent, matches_true", [(True, True), (None, False), (False, False)])
def test_consent_condition_is_a_granted_consent(consent: bool | None, matches_true: bool) -> None:
    p = person(seen(consent=consent))
    assert eligible(when(consent=True), p) is matches_true
    assert eligible(when(consent=False), p) is not matches_true


def test_a_customers_grant_covers_the_cookie_for_the_consent_condition() -> None:
    p = person(seen(), CustomerProfile(consent=True), "c1")
    assert eligible(when(consent=True), p)


# ------------------------------------------------------------------ running

RUNNING = """campaigns:
  xmas: {start: 2026-12-01, end: 2026-12-24}
  autumn: {end: 2026-11-30}
blocks:
  - {id: open, slot: s}
  - {id: later, slot: s, start: "2026-12-10T12:01:00Z"}
  - {id: started, slot: s, start: "2026-12-10T12:00:30Z"}
  - {id: ended, slot: s, end: "2026-12-10T12:00:30Z"}
  - {id: today, slot: s, end: 2026-12-10}
  - {id: in-xmas, slot: s, campaign: xmas}
  - {id: in-autumn, slot: s, campaign: autumn}
  - {id: past-in-xmas, slot: s, campaign: xmas, end: 2026-12-05}
"""


@pytest.mark.parametrize("block_id, at, expected", [
    ("open", NOW, True),
    ("later", NOW, False),  # not yet started
    ("started", NOW, True),  # the start is included
    ("ended", NOW, False),  # the end is not
    ("ended", NOW - 1, True),
    ("today", datetime(2026, 12, 10, 23, 59, 59, tzinfo=timezone.utc).timestamp(), True),  # a bare end date
    ("today", datetime(2026, 12, 11, tzinfo=timezone.utc).timestamp(), False),  # includes its whole day
    ("in-xmas", NOW, True),
    ("in-xmas", datetime(2026, 12, 24, 12, tzinfo=timezone.utc).timestamp(), True),
    ("in-xmas", datetime(2026, 12, 25, tzinfo=timezone.utc).timestamp(), False),  # the campaign ended
    ("in-xmas", datetime(2026, 11, 30, 23, 59, tzinfo=timezone.utc).timestamp(), False),  # not begun
    ("in-autumn", NOW, False),  # its own dates are open; its campaign's are over
    ("past-in-xmas", NOW, False),  # the campaign runs; the block's own dates are over
])
def test_running_needs_the_blocks_dates_and_its_campaigns(block_id: str, at: float, expected: bool) -> None:
    snap = snapshot(RUNNING)
    block = next(b for b in snap.rules.blocks if b.id == block_id)
    assert running(block, snap, at) is expected


# ------------------------------------------------------------------ caps

CAPS = """campaigns:
  xmas: {cap: {max: 3, window: 1d}}
  sale: {}
frequency: {max: 4, window: 1w}
blocks:
  - {id: a, slot: s, campaign: xmas, cap: {max: 2, window: 1h}}
  - {id: b, slot: s, campaign: xmas}
  - {id: c, slot: s, campaign: sale}
  - {id: free, slot: s, cap: {max: 1, window: 1d}}
"""


def shown(**impressions: list[float]) -> Exposure:
    """Block id -> how long ago each impression was."""
    return Exposure(blocks={b: [minute(NOW - ago) for ago in agos] for b, agos in impressions.items()})


def cap_of(block_id: str, x: Exposure) -> str | None:
    snap = snapshot(CAPS)
    return cap_reason(next(b for b in snap.rules.blocks if b.id == block_id), snap, x, person())


def test_a_cap_with_segments_holds_only_for_their_members() -> None:
    snap = snapshot(CAPS.replace("frequency: {max: 4, window: 1w}",
                                 "frequency: {max: 1, window: 1w, segments_any: [returning]}"))
    c = next(b for b in snap.rules.blocks if b.id == "c")
    x = shown(c=[60])
    assert cap_reason(c, snap, x, person(VisitorProfile(visits=1))) is None  # new: not capped
    assert cap_reason(c, snap, x, person(VisitorProfile(visits=2))) == "global cap 1 per 1w"


def test_block_cap_is_reached_at_its_max() -> None:
    assert cap_of("a", shown(a=[60])) is None
    assert cap_of("a", shown(a=[60, 120])) == "block cap 2 per 1h"


def test_block_cap_window_edge_counts_to_the_minute() -> None:
    assert cap_of("a", shown(a=[60, HOUR])) == "block cap 2 per 1h"  # exactly a window ago: still inside
    assert cap_of("a", shown(a=[60, HOUR + 60])) is None  # a minute before it: outside


def test_campaign_cap_counts_its_blocks_only() -> None:
    assert cap_of("b", shown(a=[60], b=[60], c=[60], free=[60, 120])) is None  # 2 of 3 in xmas, 3 of 4 overall
    assert cap_of("b", shown(a=[60, 2 * HOUR], b=[60])) == "campaign xmas cap 3 per 1d"
    assert cap_of("b", shown(a=[60, 2 * HOUR], b=[DAY + 120])) is None  # one of them left the window


def test_global_cap_counts_campaign_blocks_across_campaigns_and_spares_the_others() -> None:
    x = shown(a=[3 * DAY], b=[2 * DAY], c=[DAY, 60])
    assert cap_of("c", x) == "global cap 4 per 1w"
    assert cap_of("free", x) is None  # a block in no campaign is outside the campaigns' pressure
    assert cap_of("c", shown(a=[3 * DAY], b=[2 * DAY], c=[DAY], free=[8 * DAY, 60])) is None


def test_the_narrowest_reason_is_given_first() -> None:
    assert cap_of("a", shown(a=[60, 120], b=[60, 120])) == "block cap 2 per 1h"


# ------------------------------------------------------------------ choose

CHOOSE = """campaigns:
  over: {end: 2026-01-01}
blocks:
  - {id: low, slot: s, priority: -5}
  - {id: first-of-equals, slot: s, priority: 10, when: {cart: not_empty}}
  - {id: second-of-equals, slot: s, priority: 10}
  - {id: top, slot: s, priority: 100, campaign: over}
  - {id: capped, slot: s, priority: 50, cap: {max: 1, window: 1d}}
  - {id: elsewhere, slot: t, priority: 1000}
"""


def test_choose_tries_by_priority_then_file_order_and_says_why_each_lost() -> None:
    snap = snapshot(CHOOSE)
    block, skipped = choose(snap, "s", person(seen()), shown(capped=[60]))
    assert block is not None and block.id == "second-of-equals"
    assert skipped == [{"id": "top", "reason": "not running"}, {"id": "capped", "reason": "block cap 1 per 1d"},
                       {"id": "first-of-equals", "reason": "not eligible"}]
    block, _ = choose(snap, "s", person(seen(cart={"x": 1})), Exposure())
    assert block is not None and block.id == "capped"


def test_choose_finds_nothing_when_nothing_qualifies() -> None:
    snap = snapshot("blocks:\n  - {id: only, slot: s, when: {logged_in: true}}\n")
    assert choose(snap, "s", person(), Exposure()) == (None, [{"id": "only", "reason": "not eligible"}])
    assert choose(snap, "nowhere", person(), Exposure()) == (None, [])


# ------------------------------------------------------------------ labels and template values


@pytest.mark.parametrize("category, expected", [
    ("kitchen.mugs", "Mugs & cups"),
    ("kitchen.mugs.large", "Mugs & cups"),  # the nearest named parent
    ("kitchen.baking", "Kitchen"),
    ("kitchenware.pans", "pans"),  # "kitchen" names a path, not a string prefix
    ("seasonal.gift_ideas", "gift ideas"),  # an empty label is no label
    ("garden_tools", "garden tools"),
])
def test_category_label(category: str, expected: str) -> None:
    names = {"kitchen": "Kitchen", "kitchen.mugs": "Mugs & cups", "seasonal": ""}
    assert category_label(category, names) == expected


CATALOGUE = Catalogue(version=1, items={
    "mug": Item(item_id="mug", title="Blue mug", category="kitchen.mugs"),
    "untitled": Item(item_id="untitled", category="kitchen.mugs"),
})
LABELS = snapshot('category_names: {kitchen.mugs: "mugs & cups"}\n')


def test_template_values_of_a_person_with_no_history_are_all_missing() -> None:
    values = template_values(person(), CATALOGUE, LABELS)
    assert values == dict.fromkeys(values) and set(values) == {
        "first_name", "tier", "favourite_category", "last_visit_item", "last_visit_item_id", "cart_items",
        "visits"}


def test_template_values_of_a_known_customer() -> None:
    v = seen(visits=3, cart={"mug": 2, "untitled": 3}, last_visit_items=["untitled", "mug"],
             category_affinity={"lighting": 5.0})
    c = CustomerProfile(traits={"first_name": "Anne", "tier": "gold"},
                        category_affinity={"kitchen.mugs": 2.0, "lighting": 1.0})
    values = template_values(person(v, c, "c1"), CATALOGUE, LABELS)
    assert values == {"first_name": "Anne", "tier": "gold", "favourite_category": "mugs & cups",
                      "last_visit_item": "untitled",  # no title: its id
                      "last_visit_item_id": "untitled", "cart_items": "5", "visits": "3"}


def test_an_item_gone_from_the_catalogue_has_an_id_but_no_title() -> None:
    values = template_values(person(seen(last_visit_items=["gone"])), CATALOGUE, LABELS)
    assert values["last_visit_item"] is None and values["last_visit_item_id"] == "gone"


# ------------------------------------------------------------------ render

RENDER = """template_defaults: {favourite_category: "our picks"}
blocks:
  - id: plain
    slot: s
    title: "Hi {first_name|there}"
    body: "More {favourite_category} for you"
  - id: rich
    slot: s
    format: html
    kind: promo
    title: "<b>Hi {first_name}</b>"
    cta: "See {last_visit_item}"
    link: /sale
    image: https://cdn.example.com/x.png
"""


def block_of(snap: RulesSnapshot, block_id: str) -> Block:
    return next(b for b in snap.rules.blocks if b.id == block_id)


def test_a_text_block_keeps_values_as_they_are_and_fills_missing_ones() -> None:
    snap = snapshot(RENDER)
    out = render(block_of(snap, "plain"), {"first_name": "<Zoé>"}, snap)
    assert out == {"id": "plain", "kind": "banner", "format": "text", "campaign": None,
                   "title": "Hi <Zoé>", "body": "More our picks for you", "cta": ""}  # no link, no image


def test_an_html_block_escapes_values_but_not_its_own_markup() -> None:
    snap = snapshot(RENDER)
    out = render(block_of(snap, "rich"), {"first_name": "A&B", "last_visit_item": '"x" <y>'}, snap)
    assert out["title"] == "<b>Hi A&amp;B</b>" and out["cta"] == "See &quot;x&quot; &lt;y&gt;"
    assert (out["link"], out["image"], out["kind"]) == ("/sale", "https://cdn.example.com/x.png", "promo")
    missing = render(block_of(snap, "rich"), {}, snap)
    assert missing["title"] == "<b>Hi </b>" and missing["cta"] == "See what you saw last time"


# ------------------------------------------------------------------ BlockPicker.pick

PICK = """control_group: {share: 0%}
blocks:
  - {id: vip, slot: home, priority: 30, when: {customer_tier: [gold]}, title: "Hi {first_name|you}"}
  - id: cart
    slot: home
    priority: 20
    when: {cart: not_empty}
    title: "{cart_items} in your cart"
    recommendations: {placement: cart, n: 2}
    cap: {max: 1, window: 1d}
  - {id: ask, slot: home, priority: 10, when: {consent: false}, title: "May we remember you{ first_name}?"}
  - {id: hello, slot: home, title: "Hello{ first_name| there}"}
  - {id: side, slot: aside}
"""


class ReadPath:
    """What blocks need of the read path (``Recommendations``), over stored values in a dict."""

    def __init__(self, rules: str, stored: dict[str, bytes], degraded: bool = False) -> None:
        self.rules = SimpleNamespace(current=snapshot(rules))
        self.catalogue = SimpleNamespace(current=CATALOGUE)
        self.stored = stored
        self.degraded = degraded
        self.reads: list[list[str]] = []
        self.strips: list[tuple[RecoRequest, RulesSnapshot | None, float | None]] = []
        self.scorer = None

    async def _mget(self, wanted: list[str]) -> list[bytes | None]:
        self.reads.append(list(wanted))
        return [self.stored.get(k) for k in wanted]

    async def read(self, req: RecoRequest, needs_trending: bool, extra_keys: tuple[str, ...] = (),
                   preferences: bool = False) -> Read:
        return Read(await load_profiles_with(self._mget, req.visitor_id, req.customer_id, extra_keys, preferences),
                    [], self.degraded)

    async def recommend(self, req: RecoRequest, snapshot: RulesSnapshot | None = None,
                        now: float | None = None) -> dict[str, Any]:
        self.strips.append((req, snapshot, now))
        return {"recommendation_id": "r", "items": [{"item_id": "mug"}]}


GOLD = CustomerProfile(traits={"first_name": "Anne", "tier": "gold"})


def store(visitor: VisitorProfile | None = None, customer: CustomerProfile | None = None,
          exposure: Exposure | None = None) -> dict[str, bytes]:
    out = {}
    if visitor is not None:
        out[keys.visitor("v1")] = encode(visitor)
    if customer is not None:
        out[keys.customer("c1")] = encode(customer)
    if exposure is not None:
        out[keys.exposure("v1")] = exposure.encode()
    return out


def pick(path: ReadPath, slot: str = "home", consent_required: bool = False, **kw: Any) -> dict[str, Any]:
    picker = BlockPicker(path, TIMEOUT, consent_required=consent_required)
    return asyncio.run(picker.pick(slot, kw.pop("visitor_id", "v1"), now=NOW, **kw))


def test_an_unknown_slot_names_the_configured_ones() -> None:
    with pytest.raises(UnknownSlot, match="no blocks for slot 'nowhere'; slots: aside, home"):
        pick(ReadPath(PICK, {}), "nowhere")
    with pytest.raises(UnknownSlot, match="slots: none configured"):
        pick(ReadPath("blocks: []\n", {}), "home")


def test_profile_and_exposure_are_read_together_and_a_linked_customer_after() -> None:
    path = ReadPath(PICK, store(seen(customer_id="c1"), GOLD))
    body = pick(path)
    assert body == {"slot": "home", "rules_version": path.rules.current.version,
                    "block": {"id": "vip", "kind": "banner", "format": "text", "campaign": None,
                              "title": "Hi Anne", "body": "", "cta": ""}}
    assert path.reads == [[keys.visitor("v1"), keys.exposure("v1")], [keys.customer("c1")]]


def test_without_a_cookie_no_exposure_is_read() -> None:
    path = ReadPath(PICK, store(customer=GOLD))
    assert pick(path, visitor_id=None, customer_id="c1")["block"]["id"] == "vip"
    assert path.reads == [[keys.customer("c1")]]


def test_a_capped_block_gives_way_and_explain_says_why() -> None:
    carted = seen(consent=True, cart={"mug": 1}, cart_updated=NOW - 60)
    fresh = pick(ReadPath(PICK, store(carted)), explain=True)
    assert fresh["block"]["id"] == "cart" and fresh["skipped"] == [{"id": "vip", "reason": "not eligible"}]
    capped = pick(ReadPath(PICK, store(carted, exposure=shown(cart=[DAY - 60]))), explain=True)
    assert capped["block"]["id"] == "hello"
    assert capped["skipped"] == [{"id": "vip", "reason": "not eligible"},
                                 {"id": "cart", "reason": "block cap 1 per 1d"},
                                 {"id": "ask", "reason": "not eligible"}]
    assert "skipped" not in pick(ReadPath(PICK, store(carted)))


def test_a_blocks_strip_is_asked_for_with_the_same_person_rules_and_time() -> None:
    path = ReadPath(PICK, store(seen(cart={"mug": 1}, cart_updated=NOW - 60)))
    body = pick(path, item_id="mug")
    assert body["block"]["recommendations"] == {"recommendation_id": "r", "items": [{"item_id": "mug"}]}
    assert path.strips == [(RecoRequest(placement="cart", visitor_id="v1", customer_id=None, item_id="mug", n=2),
                            path.rules.current, NOW)]


def test_a_degraded_read_is_said() -> None:
    assert pick(ReadPath(PICK, {}, degraded=True))["degraded"] is True
    assert "degraded" not in pick(ReadPath(PICK, {}))


@pytest.mark.parametrize("visitor, customer, consent_required", [
    (seen(consent=False, customer_id="c1", cart={"mug": 1}), GOLD, False),  # withdrawn on this cookie
    (seen(customer_id="c1", cart={"mug": 1}),
     CustomerProfile(consent=False, traits={"first_name": "Anne", "tier": "gold"}), False),  # on another device
    (seen(customer_id="c1", cart={"mug": 1}), GOLD, True),  # opt-in, never granted
], ids=["withdrawn-here", "withdrawn-elsewhere", "opt-in-not-granted"])
def test_nothing_stored_about_a_person_without_consent_is_used(visitor: VisitorProfile, customer: CustomerProfile,
                                                               consent_required: bool) -> None:
    body = pick(ReadPath(PICK, store(visitor, customer)), consent_required=consent_required, explain=True)
    assert body["block"]["id"] == "ask" and body["block"]["title"] == "May we remember you?"
    assert [s["reason"] for s in body["skipped"]] == ["not eligible", "not eligible"]


def test_opt_in_granted_by_the_customer_covers_the_cookie() -> None:
    granted = CustomerProfile(consent=True, traits={"first_name": "Anne", "tier": "gold"})
    body = pick(ReadPath(PICK, store(seen(customer_id="c1"), granted)), consent_required=True)
    assert body["block"]["title"] == "Hi Anne"


def test_the_control_group_gets_the_non_personalised_baseline() -> None:
    everyone = PICK.replace("share: 0%", "share: 100%")
    carted = seen(customer_id="c1", cart={"mug": 1})
    body = pick(ReadPath(everyone, store(carted, GOLD)), explain=True)
    assert body["block"]["title"] == "May we remember you?"  # no tier, no cart, no first name
    assert [s["id"] for s in body["skipped"]] == ["vip", "cart"]
    assert pick(ReadPath(PICK, store(carted, GOLD)))["block"]["id"] == "vip"
