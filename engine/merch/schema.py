"""The merchandiser's rules file, as a typed schema.

Everything a merchandiser can write is declared here with ``extra="forbid"`` and strict types, so a
typo (``pin:`` for ``pins:``, ``slot: "three"``) is an error that names the field instead of a rule
that silently does nothing. Rules are data: nothing in the file is ever evaluated as code.
Cross-references (placements, scenarios, items, campaigns) are checked in ``engine.merch.loader``.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, timezone
from collections.abc import Collection
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

NAME = r"^[a-z0-9][a-z0-9_-]{0,31}$"
MAX_CAP = 20  # impressions remembered per block: caps up to this are exact (engine.merch.exposure)
MAX_REPETITION = 5  # impressions remembered per item
_DURATION = re.compile(r"^\s*(\d{1,9})\s*(m|h|d|w)\s*$")
_UNIT_S = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
Name = Annotated[str, Field(pattern=NAME)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


def shown(value: Any, limit: int = 60) -> str:
    """A value quoted in an error message, cut short: a typo is recognisable in 60 characters."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def parse_duration(value: Any) -> int:
    """``30m``, ``12h``, ``1d``, ``2w`` -> seconds (windows are read by people, not computers)."""
    if isinstance(value, str) and (m := _DURATION.match(value)) and int(m.group(1)) > 0:
        return int(m.group(1)) * _UNIT_S[m.group(2)]
    raise ValueError(f"must be a duration such as 30m, 12h, 1d or 2w, not {shown(value)}")


def parse_share(value: Any) -> float:
    """A fraction 0..1 or a percentage string ``"20%"``."""
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            share = float(value.strip()[:-1]) / 100
        except ValueError:
            raise ValueError(f"not a percentage: {shown(value)}") from None
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        share = float(value)
        if share > 1:
            raise ValueError(f"{shown(value)} is over 100%: write a fraction (0.2) or a percentage ('20%')")
    else:
        raise ValueError(f"must be a fraction (0.2) or a percentage ('20%'), not {shown(value)}")
    if not 0 <= share <= 1:
        raise ValueError(f"{value if len(str(value)) <= 60 else shown(value)} is outside 0%..100%")
    return share


def parse_instant(value: Any, *, end: bool) -> datetime:
    """A date or ISO date-time, as UTC. A bare date as an end means the whole day is included."""
    if isinstance(value, str):
        try:
            if len(value) == 10:
                day = date.fromisoformat(value)
                if end and day == date.max:  # "until 9999-12-31": for ever
                    return datetime.max.replace(tzinfo=timezone.utc)
                return datetime.combine(day + timedelta(days=1) if end else day, time(), timezone.utc)
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"not a date (2026-12-24) or date-time (2026-12-24T18:00:00+01:00): "
                             f"{shown(value)}") from None
        return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    raise ValueError(f"must be a date such as 2026-12-24, not {shown(value)}")


class Window(Strict):
    """Start and end dates; either may be left out (open-ended)."""

    start: datetime | None = None
    end: datetime | None = None

    @field_validator("start", mode="before")
    @classmethod
    def _start(cls, v: Any) -> Any:
        return None if v is None else parse_instant(v, end=False)

    @field_validator("end", mode="before")
    @classmethod
    def _end(cls, v: Any) -> Any:
        return None if v is None else parse_instant(v, end=True)

    @model_validator(mode="after")
    def _ordered(self) -> "Window":
        if self.start and self.end and self.end <= self.start:
            raise ValueError(f"end ({self.end.isoformat()}) must be after start ({self.start.isoformat()})")
        return self

    def active(self, now: float) -> bool:
        return ((self.start is None or self.start.timestamp() <= now)
                and (self.end is None or now < self.end.timestamp()))


class PriceRange(Strict):
    min: float | None = Field(None, ge=0)
    max: float | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> "PriceRange":
        if self.min is not None and self.max is not None and self.max < self.min:
            raise ValueError(f"max ({self.max}) is below min ({self.min})")
        return self


AttributeValue = str | int | float | bool


class Selector(Strict):
    """A set of items: every condition given must hold. Categories match by prefix (``kitchen``
    matches ``kitchen.mugs``)."""

    category_in: list[str] | None = Field(None, min_length=1)
    category_not_in: list[str] | None = Field(None, min_length=1)
    brand_in: list[str] | None = Field(None, min_length=1)
    brand_not_in: list[str] | None = Field(None, min_length=1)
    price: PriceRange | None = None
    in_stock: bool | None = None
    attributes: dict[str, AttributeValue | list[AttributeValue]] | None = None
    new_arrivals: str | None = Field(None, description="Added to the catalogue within this duration, e.g. 30d.")
    items: list[str] | None = Field(None, min_length=1)

    @field_validator("category_in", "category_not_in")
    @classmethod
    def _categories(cls, values: list[str] | None) -> list[str] | None:
        return [v.strip().lower() for v in values] if values else values

    @field_validator("new_arrivals")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value

    @property
    def new_arrivals_s(self) -> int | None:
        return parse_duration(self.new_arrivals) if self.new_arrivals else None


class Audience(Strict):
    """Who a rule is for, by segment (``segments:``, or the built-in ones): members of at least one
    of ``segments_any`` and of none of ``segments_none``. Both left out: everyone."""

    segments_any: list[str] | None = Field(None, min_length=1)
    segments_none: list[str] | None = Field(None, min_length=1)

    @property
    def restricted(self) -> bool:
        return self.segments_any is not None or self.segments_none is not None

    def admits(self, members: Collection[str]) -> bool:
        return ((self.segments_any is None or any(s in members for s in self.segments_any))
                and (self.segments_none is None or not any(s in members for s in self.segments_none)))


class Boost(Audience):
    """Multiply the score of items that match ``when`` by ``factor``; or, with ``affinity``, by
    ``1 + (factor - 1) * a`` where ``a`` in 0..1 is the visitor's affinity to the item's category
    or brand (relative to their strongest one). With ``segments_any``/``segments_none``, only for
    those people."""

    when: Selector | None = None
    affinity: Literal["category", "brand"] | None = None
    factor: float = Field(gt=0, le=100)

    @model_validator(mode="after")
    def _one_target(self) -> "Boost":
        if (self.when is None) == (self.affinity is None):
            raise ValueError("give exactly one of `when` (item conditions) or `affinity` (category or brand)")
        return self


class BoostUp(Boost):
    factor: float = Field(gt=1, le=100, description="Above 1; use buries to push items down.")


class Bury(Boost):
    factor: float = Field(gt=0, lt=1, description="Below 1; use boosts to push items up.")


class Pin(Window):
    item: str
    slot: int = Field(ge=1, le=100, description="1 = first position.")

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, data: Any) -> Any:
        # `from`/`until` read better for pins than start/end; both spellings work.
        if isinstance(data, dict):
            data = dict(data)
            for alias, name in (("from", "start"), ("until", "end")):
                if alias in data:
                    if name in data:
                        raise ValueError(f"give `{alias}` or `{name}`, not both")
                    data[name] = data.pop(alias)
        return data


class Promoted(Strict):
    share: float
    select: Selector

    @field_validator("share", mode="before")
    @classmethod
    def _share(cls, v: Any) -> float:
        return parse_share(v)


class Diversity(Strict):
    max_per_category: int = Field(ge=1, le=100)
    depth: int | None = Field(None, ge=1, le=10, description="Category level compared; default the full path.")


class Windowed(Strict):
    """At most ``max`` per sliding ``window`` (a duration such as ``1d``)."""

    window: str

    @field_validator("window")
    @classmethod
    def _window(cls, v: str) -> str:
        parse_duration(v)
        return v

    @property
    def window_s(self) -> int:
        return parse_duration(self.window)


class Repetition(Windowed):
    max: int = Field(ge=1, le=MAX_REPETITION)


class RuleSet(Strict):
    """Rules a campaign can add to a placement; a placement has these and more."""

    filter: Selector | None = None
    boosts: list[BoostUp] = Field(default_factory=list)
    buries: list[Bury] = Field(default_factory=list)
    pins: list[Pin] = Field(default_factory=list)
    promoted: Promoted | None = None


class PlacementRules(RuleSet):
    """How one placement is built. Every field is optional: a built-in placement given without
    ``scenarios`` keeps its built-in chain."""

    scenarios: list[str] | None = Field(None, min_length=1)
    candidates: int | None = Field(None, ge=1, le=1000, description="Pool size before rules; default sized "
                                                                               "by the filters' selectivity.")
    diversity: Diversity | None = None
    repetition: Repetition | None = None


class Cap(Windowed, Audience):
    """With ``segments_any``/``segments_none``, the cap holds only for those people."""

    max: int = Field(ge=1, le=MAX_CAP)


class Campaign(Window):
    cap: Cap | None = None
    placements: dict[str, RuleSet] = Field(default_factory=dict)


class Condition(Audience):
    """Who a block is for: every condition given must hold."""

    visitor: Literal["new", "returning"] | None = None
    has_last_visit_items: bool | None = None
    cart: Literal["empty", "not_empty"] | None = None
    category_affinity: dict[str, float] | None = Field(
        None, description="category -> minimum affinity (0..1, relative to the visitor's strongest).")
    customer_tier: list[str] | None = Field(None, min_length=1)
    logged_in: bool | None = None
    consent: bool | None = None
    declared_categories: list[str] | None = Field(None, min_length=1, description="The person declared one of "
                                                  "these categories (or one below it) a favourite.")
    declared_brands: list[str] | None = Field(None, min_length=1, description="The person declared one of these "
                                              "brands a favourite.")

    @field_validator("declared_categories", "declared_brands")
    @classmethod
    def _lower(cls, values: list[str] | None) -> list[str] | None:
        return [v.strip().lower() for v in values] if values else values

    @field_validator("category_affinity")
    @classmethod
    def _categories(cls, values: dict[str, float] | None) -> dict[str, float] | None:
        return _thresholds(values, lower=True)


class Strip(Strict):
    placement: str
    n: int = Field(4, ge=1, le=50)


class Block(Window):
    id: Name
    slot: Name
    kind: Literal["banner", "headline", "promo"] = "banner"
    format: Literal["text", "html"] = "text"
    priority: int = Field(0, ge=-1000, le=1000)
    campaign: str | None = None
    when: Condition | None = None
    title: str = Field("", max_length=500)
    body: str = Field("", max_length=5000)
    cta: str = Field("", max_length=200)
    link: str | None = Field(None, max_length=2000, pattern=r"^(https?://|/)")
    image: str | None = Field(None, max_length=2000, pattern=r"^(https?://|/)")
    recommendations: Strip | None = None
    cap: Cap | None = None


class FrequencyCap(Cap):
    """Global pressure: impressions of campaign blocks per visitor, across campaigns."""


class ControlGroup(Strict):
    share: float
    salt: str = Field("control", min_length=1, max_length=64)

    @field_validator("share", mode="before")
    @classmethod
    def _share(cls, v: Any) -> float:
        return parse_share(v)


class Variant(PlacementRules):
    name: Name
    weight: float = Field(gt=0)


class Experiment(Window, Audience):
    """With ``segments_any``/``segments_none``, only those people enter; others get the placement's
    own rules, as if no experiment ran."""

    placement: str
    salt: str | None = Field(None, min_length=1, max_length=64)
    control: str | None = Field(None, description="Variant lift is measured against; default the control group.")
    variants: list[Variant] = Field(min_length=1, max_length=10)

    @model_validator(mode="after")
    def _variants(self) -> "Experiment":
        names = [v.name for v in self.variants]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"variant names must be unique: {dup}")
        if "control" in names:
            raise ValueError("`control` is reserved for the global control group; name the variant otherwise")
        if self.control is not None and self.control not in names:
            raise ValueError(f"control {self.control!r} is not one of the variants {names}")
        return self


class Range(Strict):
    """Bounds on a number: ``min``/``max`` include the bound, ``above``/``below`` exclude it."""

    min: float | None = Field(None, ge=0)
    max: float | None = Field(None, ge=0)
    above: float | None = Field(None, ge=0)
    below: float | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _bounds(self) -> "Range":
        if self.min is not None and self.above is not None:
            raise ValueError("give `min` or `above`, not both")
        if self.max is not None and self.below is not None:
            raise ValueError("give `max` or `below`, not both")
        low = self.min if self.min is not None else self.above
        high = self.max if self.max is not None else self.below
        if low is None and high is None:
            raise ValueError("give at least one of min, max, above, below")
        if low is not None and high is not None and (high < low or (high == low and (
                self.above is not None or self.below is not None))):
            raise ValueError("no number is within these bounds")
        return self


def _thresholds(values: dict[str, float] | None, lower: bool) -> dict[str, float] | None:
    if values:
        for key, threshold in values.items():
            if not 0 <= threshold <= 1:
                raise ValueError(f"threshold for {key!r} must be between 0 and 1")
        return {k.strip().lower() if lower else k: v for k, v in values.items()}
    return values


class Segment(Strict):
    """A segment of people: every condition given must hold. Evaluated from the profile on read
    (``engine.merch.segments``); nothing is stored per segment.

    A new condition is a field below plus its check in ``engine.merch.segments.CHECKS``."""

    description: str = Field("", max_length=200)
    visits: Range | None = Field(None, description="Visits of the cookie.")
    orders: Range | None = Field(None, description="Orders, the cookie's before login plus the customer's.")
    revenue: Range | None = Field(None, description="Revenue, the cookie's before login plus the customer's.")
    days_since_last_order: Range | None = Field(None, description="False when no order date is known.")
    days_since_last_visit: Range | None = None
    expected_revenue: Range | None = Field(None, description="Customer value over the scores' horizon "
                                                             "(`vitrine train`); false without scores.")
    churn_risk: list[Literal["high", "medium", "low"]] | None = Field(None, min_length=1)
    category_affinity: dict[str, float] | None = Field(
        None, description="category -> minimum affinity (0..1, relative to the person's strongest).")
    brand_affinity: dict[str, float] | None = Field(
        None, description="brand -> minimum affinity (0..1, relative to the person's strongest).")
    cart: Literal["empty", "not_empty"] | None = None
    cart_age_hours: Range | None = Field(None, description="Hours since the cart last changed; false for an "
                                                           "empty cart.")
    consent: bool | None = Field(None, description="Consent to profiling granted (and not withdrawn).")
    email_opt_in: bool | None = Field(None, description="Agreed to be contacted by email.")
    push_opt_in: bool | None = Field(None, description="Agreed to push notifications.")
    logged_in: bool | None = Field(None, description="A customer id is known.")
    customer_tier: list[str] | None = Field(None, min_length=1)
    prefers_category: list[str] | None = Field(None, min_length=1, description="Declared a favourite category "
                                               "at or below one of these (`PUT /v1/visitors/{id}/preferences`).")
    prefers_brand: list[str] | None = Field(None, min_length=1, description="Declared one of these brands a "
                                            "favourite.")
    all_of: list[str] | None = Field(None, min_length=1, description="Members of every one of these segments.")
    any_of: list[str] | None = Field(None, min_length=1, description="Members of at least one of these segments.")
    none_of: list[str] | None = Field(None, min_length=1, description="Members of none of these segments.")

    @field_validator("prefers_category", "prefers_brand")
    @classmethod
    def _declared(cls, values: list[str] | None) -> list[str] | None:
        return [v.strip().lower() for v in values] if values is not None else None  # as preferences are stored

    @field_validator("category_affinity")
    @classmethod
    def _categories(cls, values: dict[str, float] | None) -> dict[str, float] | None:
        return _thresholds(values, lower=True)

    @field_validator("brand_affinity")
    @classmethod
    def _brands(cls, values: dict[str, float] | None) -> dict[str, float] | None:
        return _thresholds(values, lower=False)

    @model_validator(mode="after")
    def _something(self) -> "Segment":
        if not self.model_fields_set - {"description"}:
            raise ValueError("give at least one condition")
        return self

    @property
    def references(self) -> list[str]:
        return [*(self.all_of or []), *(self.any_of or []), *(self.none_of or [])]


# ---------------------------------------------------------------- triggers (engine/triggers/README.md)
# Each kind has a model with the parameters it takes, joined into one union on ``kind``; what a kind
# does is engine.triggers.kinds' (a floor above: the rules file is validated without it).

_CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


class QuietHours(Strict):
    """No delivery between ``start`` and ``end`` (shop time, ``VITRINE_SHOP_TIMEZONE``); what falls
    in them goes out at ``end``. ``start`` after ``end`` spans midnight."""

    start: str
    end: str

    @field_validator("start", "end")
    @classmethod
    def _clock(cls, v: str) -> str:
        if not _CLOCK.match(v):
            raise ValueError(f"must be a time of day such as 21:00, not {shown(v)}")
        return v

    @model_validator(mode="after")
    def _distinct(self) -> "QuietHours":
        if self.start == self.end:
            raise ValueError("start and end are the same time")
        return self

    @staticmethod
    def minutes(clock: str) -> int:
        hours, minutes = clock.split(":")
        return int(hours) * 60 + int(minutes)


class Payload(Strict):
    """Text rendered with the blocks' safe templates, plus items from a placement."""

    title: str = Field("", max_length=500)
    body: str = Field("", max_length=5000)
    link: str | None = Field(None, max_length=2000, pattern=r"^(https?://|/)")
    recommendations: Strip | None = None


class Pressure(Strict):
    """Messages per person across every trigger: per channel, and all channels together. A
    customer trait ``max_messages_per_week`` lowers (never raises) the all-channel limit."""

    per_channel: Cap | None = None
    all_channels: Cap | None = None


class TriggerBase(Strict):
    kind: str
    audience: Condition | None = None
    channel: Literal["email", "push"]
    payload: Payload = Field(default_factory=Payload)
    quiet_hours: QuietHours | None = None
    cap: Cap | None = Field(None, description="Deliveries of this trigger per person.")
    control: float = Field(0.1, description="Share held out as the control group (nothing sent).")
    attribution: str = Field("7d", description="A purchase or return visit this long after counts.")
    enabled: bool = True

    @field_validator("control", mode="before")
    @classmethod
    def _share(cls, v: Any) -> float:
        return parse_share(v)

    @field_validator("attribution")
    @classmethod
    def _attribution(cls, v: str) -> str:
        parse_duration(v)
        return v

    @property
    def attribution_s(self) -> int:
        return parse_duration(self.attribution)


class Delayed(TriggerBase):
    """A trigger that fires ``after`` a quiet period following the event that arms it."""

    after: str = "60m"

    @field_validator("after")
    @classmethod
    def _after(cls, v: str) -> str:
        parse_duration(v)
        return v

    @property
    def after_s(self) -> int:
        return parse_duration(self.after)


class CartAbandoned(Delayed):
    """No checkout ``after`` the last cart change."""

    kind: Literal["cart_abandoned"]


class BrowseAbandoned(Delayed):
    """``min_views`` distinct items of one category viewed in a visit, nothing carted."""

    kind: Literal["browse_abandoned"]
    min_views: int = Field(3, ge=1, le=20, description="Distinct items of one category viewed in the visit.")
    depth: int | None = Field(None, ge=1, le=10, description="Category level compared; default the full path.")


class ChurnRisk(TriggerBase):
    """The customer's churn band (engine.customers.scores) reaches ``band``."""

    kind: Literal["churn_risk"]
    band: Literal["medium", "high"] = "high"


class Welcome(Delayed):
    """The first identified visit."""

    kind: Literal["welcome"]
    after: str = "5m"


class PriceDrop(TriggerBase):
    """A watched item's price fell by at least ``min_drop`` of the old price; a person with a price
    alert on it only when the new price is at or below the alert's. With ``min_views`` or
    ``carted``, also the people who viewed the item that often, or carted it, lately."""

    kind: Literal["price_drop"]
    min_drop: float = Field(0.05, description="Smallest fall that counts, as a share of the old price.")
    min_views: int | None = Field(None, ge=1, le=100, description="Also reach who viewed the item this many times "
                                  "lately (`VITRINE_TRIGGER_VIEWERS_TTL_S`).")
    carted: bool = Field(False, description="Also reach who put the item in their cart lately.")

    @field_validator("min_drop", mode="before")
    @classmethod
    def _min_drop(cls, v: Any) -> float:
        share = parse_share(v)
        if share <= 0:
            raise ValueError("must be more than 0%")
        return share


class BackInStock(TriggerBase):
    """A watched item came back in stock."""

    kind: Literal["back_in_stock"]


class ValueTier(TriggerBase):
    """A customer's value tier changed. The tiers are either ``bands`` of the scores' expected
    revenue (engine.customers.scores, name -> lowest value) or the shop's own ``tier`` trait
    (``tiers``: its values, lowest first, as the ``customer_tier`` condition reads them)."""

    kind: Literal["value_tier"]
    bands: dict[Name, Annotated[float, Field(ge=0)]] | None = Field(
        None, description="tier -> lowest expected revenue over the scores' horizon.")
    tiers: list[Name] | None = Field(None, min_length=2, description="The `tier` trait's values, lowest first.")
    from_: list[Name] | None = Field(None, alias="from", min_length=1, description="Fires only when leaving one of "
                                     "these tiers.")
    to: list[Name] | None = Field(None, min_length=1, description="Fires only when reaching one of these tiers.")
    direction: Literal["up", "down", "any"] = "any"

    @model_validator(mode="after")
    def _tiers(self) -> "ValueTier":
        if (self.bands is None) == (self.tiers is None):
            raise ValueError("give `bands` (expected revenue) or `tiers` (the tier trait), one of them")
        if self.bands is not None and len(self.bands) < 2:
            raise ValueError("`bands` needs at least two tiers")
        if self.tiers is not None and len(set(self.tiers)) != len(self.tiers):
            raise ValueError("`tiers` names a tier twice")
        known = self.ranked()
        for name, values in (("from", self.from_), ("to", self.to)):
            unknown = [v for v in values or () if v not in known]
            if unknown:
                raise ValueError(f"`{name}` names unknown tiers {', '.join(unknown)}; known: {', '.join(known)}")
        return self

    def ranked(self) -> list[str]:
        """The tier names, lowest first."""
        if self.bands is not None:
            return [name for name, _ in sorted(self.bands.items(), key=lambda kv: kv[1])]
        return list(self.tiers or ())


class NewItem(TriggerBase):
    """An item new to the catalogue, in stock, matches a favourite category or brand the person
    declared."""

    kind: Literal["new_item"]


TRIGGER_MODELS = (CartAbandoned, BrowseAbandoned, ChurnRisk, Welcome, PriceDrop, BackInStock, ValueTier, NewItem)
TRIGGER_KINDS = tuple(m.model_fields["kind"].annotation.__args__[0] for m in TRIGGER_MODELS)  # type: ignore[union-attr]
Trigger = Annotated[Union[TRIGGER_MODELS], Field(discriminator="kind")]  # type: ignore[valid-type]


class RulesFile(Strict):
    placements: dict[str, PlacementRules] = Field(default_factory=dict)
    campaigns: dict[Name, Campaign] = Field(default_factory=dict)
    blocks: list[Block] = Field(default_factory=list)
    frequency: FrequencyCap | None = None
    control_group: ControlGroup | None = None
    experiments: dict[Name, Experiment] = Field(default_factory=dict)
    segments: dict[Name, Segment] = Field(default_factory=dict, description="Overrides and adds to the "
                                                                            "built-in segments.")
    category_names: dict[str, str] = Field(default_factory=dict, description="Labels for templates.")
    template_defaults: dict[str, str] = Field(default_factory=dict,
                                              description="Text used when a template field is missing.")
    triggers: dict[Name, Trigger] = Field(default_factory=dict, description="engine/triggers/README.md")
    pressure: Pressure | None = None
