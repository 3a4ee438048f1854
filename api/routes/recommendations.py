"""GET /v1/recommendations: a placement's list for a visitor (and customer, page item), filtered
and paged as the page asks."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from api.plain_route import PlainRoute
from api.auth import require_customer, require_site
from api.visitor_cookie import request_visitor, with_visitor_cookie
from api.openapi import doc, ok
from api.query import invalid_request, openapi_parameters, parse_query
from api.responses import ApiError, json_response
from engine.catalog import CATEGORY_PATTERN
from engine.catalog.details import FIELDS, unknown_fields, with_details
from engine.events.schema import ID_PATTERN
from engine.paging import MAX_ITEMS
from engine.ranking.filters import ItemFilter
from engine.ranking.request import RecoRequest
from engine.recommend import UnknownPlacement

router = APIRouter(route_class=PlainRoute)
FIELDS_PATTERN = r"^[a-z_]+(,[a-z_]+)*$"
FIELDS_DESCRIPTION = (f"Item fields to carry with each item (`details`), comma-separated, among {', '.join(FIELDS)}; "
                      "each item then also has `reason_title`, the title of the item its reason names. A page "
                      "draws its strip from this one answer.")


def detail_fields(fields: str | None) -> tuple[str, ...]:
    """The ``fields`` parameter as a tuple; a 422 naming it when it asks for an unknown field."""
    if not fields:
        return ()
    asked = tuple(dict.fromkeys(fields.split(",")))
    unknown = unknown_fields(asked)
    if unknown:
        raise invalid_request([{"field": "fields", "message": f"unknown {unknown}; known: {', '.join(FIELDS)}"}])
    return asked


def normal_categories(asked: list[str] | None) -> tuple[str, ...]:
    """Category filters as the catalogue keys them: trimmed, lower case, each once, in the order asked."""
    return tuple(dict.fromkeys(c.strip().lower() for c in asked or ()))


class RecommendationsQuery(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    placement: str = Field(min_length=1, max_length=64, description="home, product, cart, category, ...",
                           examples=["home"])
    visitor_id: str | None = Field(None, pattern=ID_PATTERN, description="default: the vt_vid cookie")
    customer_id: str | None = Field(None, pattern=ID_PATTERN, description="needs customer_token or the admin key")
    customer_token: str | None = Field(None, max_length=128, description="HMAC-SHA256 of customer_id (api/README.md)")
    item_id: str | None = Field(None, pattern=ID_PATTERN, description="the page's item (product, cart)")
    category: list[Annotated[str, Field(max_length=200, pattern=CATEGORY_PATTERN)]] | None = Field(
        None, min_length=1, max_length=20,
        description="Only items in these categories (each with its subcategories); repeat it for several "
                    "(`category=kitchen&category=garden`). The first is the page's category (`category` placement).")
    brand: list[Annotated[str, Field(min_length=1, max_length=100)]] | None = Field(
        None, min_length=1, max_length=20, description="Only items of these brands (case-insensitive); repeatable.")
    price_min: float | None = Field(None, ge=0, le=1e9, description="Only items with a price, at least this.")
    price_max: float | None = Field(None, ge=0, le=1e9, description="Only items with a price, at most this.")
    in_stock: bool = Field(True, description="false: out-of-stock items may be recommended too.")
    attr: dict[Annotated[str, Field(min_length=1, max_length=100)],
               Annotated[str, Field(max_length=100)]] | None = Field(
        None, max_length=10, description="Attribute equality, `attr[color]=red`: only items whose attribute has "
                                         "this value (numbers by value, booleans as true/false).")
    n: int = Field(10, ge=1, le=100)
    offset: int | None = Field(None, ge=0, lt=MAX_ITEMS,
                               description="A page of a list: items from this position. Send the first page's "
                                           "`recommendation_id` with the next ones: no item repeats across the "
                                           f"pages of one id (up to {MAX_ITEMS} items in all).")
    recommendation_id: str | None = Field(None, max_length=200, pattern=r"^[0-9a-f]{16}(\.[^.]+\.[^.]+)?$",
                                          description="With `offset`: the list whose next page to give.")
    fields: str | None = Field(None, max_length=100, pattern=FIELDS_PATTERN, description=FIELDS_DESCRIPTION,
                               examples=["title,price"])

    def item_filter(self) -> ItemFilter | None:
        """The filters asked for, or None when there are none."""
        if not (self.category or self.brand or self.attr or self.price_min is not None
                or self.price_max is not None or not self.in_stock):
            return None
        return ItemFilter(categories=normal_categories(self.category),
                          brands=tuple(dict.fromkeys(b.strip().lower() for b in self.brand or ())),
                          price_min=self.price_min, price_max=self.price_max, in_stock=self.in_stock,
                          attributes=tuple(sorted((self.attr or {}).items())))


class RecommendedItem(BaseModel):
    item_id: str
    score: float
    reason: str = Field(description="Why it is here: `because_you_viewed:ITEM`, `similar_to:ITEM`, `trending`, "
                                    "`pinned`... (api/README.md, Recommendations)")
    details: dict[str, Any] | None = Field(None, description="With `fields`: those the catalogue has for the item.")
    reason_title: str | None = Field(None, description="With `fields`: the title of the item the reason names.")


class ExperimentArm(BaseModel):
    id: str = Field(description="The experiment (or `holdout`).")
    arm: str


class Recommendations(BaseModel):
    recommendation_id: str = Field(description="Send it back as `properties.recommendation_id` of the "
                                               "`recommendation_click` event.")
    placement: str
    model_version: str | None = Field(description="null: no model loaded yet.")
    rules_version: str
    items: list[RecommendedItem]
    experiment: ExperimentArm | None = Field(None, description="Present when an experiment built this list.")
    degraded: bool = Field(False, description="Present (true) when Redis was slow or down: the list comes "
                                              "from the model alone.")


_EXAMPLE = {"recommendation_id": "9f2c41d07a6b4e2c", "placement": "home", "model_version": "20261123T212413Z-fdba61",
            "rules_version": "default",
            "items": [{"item_id": "21733", "score": 0.158, "reason": "because_you_viewed:85123A"}]}


@router.get("/v1/recommendations", **doc(
    "site", "A placement's list for a visitor", {
        200: ok(Recommendations, "The list, best first; a new visitor gets the `vt_vid` cookie.", _EXAMPLE),
        403: "Site key not valid, or `customer_id` without a valid `customer_token` (and no admin key).",
        422: "A query parameter is invalid, or the placement is unknown: `errors` names it.",
    }, parameters=[{**p, "style": "deepObject", "explode": True} if p["name"] == "attr" else p
                   for p in openapi_parameters(RecommendationsQuery)]))
async def get_recommendations(request: Request) -> Response:
    """The hot path: checks and parsing are plain calls, not FastAPI dependencies (see api.query)."""
    await require_site(request)
    query = _parse(request)
    if query.offset is not None or query.recommendation_id is not None or query.price_max is not None:
        _check(query)
    fields = detail_fields(query.fields)
    await require_customer(request, query.customer_id, query.customer_token)
    visitor_id, issued = request_visitor(request, query.visitor_id)
    reco_request = RecoRequest(placement=query.placement, visitor_id=visitor_id, customer_id=query.customer_id,
                               item_id=query.item_id, category=query.category[0].strip().lower() if query.category
                               else None, n=query.n, filter=query.item_filter())
    engine = request.app.state.engine
    try:
        if query.offset is None:
            body = await engine.recommender.recommend(reco_request)
        else:
            body = await engine.pager.page(reco_request, query.offset, query.recommendation_id)
    except UnknownPlacement as exc:
        raise ApiError(422, str(exc), [{"field": "placement", "message": str(exc)}]) from None
    if fields:
        body = with_details(body, engine.catalogue.current.items, fields)
    return with_visitor_cookie(request, json_response(body), issued)


def _parse(request: Request) -> RecommendationsQuery:
    raw = request.scope["query_string"]
    if b"category" not in raw and b"brand" not in raw and b"attr" not in raw and b"%" not in raw:
        return parse_query(RecommendationsQuery, request)  # the usual request: nothing repeatable
    try:
        return parse_query(RecommendationsQuery, request, **_repeated(request))
    except ApiError as exc:  # errors name the parameters as sent: category (repeated), attr[colour]
        raise invalid_request([dict(e, field=_as_sent(e["field"])) for e in exc.errors or []]) from None


def _as_sent(field: str) -> str:
    name = field.partition("[")[0]
    if name in ("category", "brand"):
        return name
    if field.startswith("attr."):
        return f"attr[{field[5:].split('.')[0]}]"
    return field


def _repeated(request: Request) -> dict[str, Any]:
    """The query's repeatable parameters as lists, and ``attr[NAME]`` ones as a dict (a plain
    query keeps its last value per name, api.query)."""
    raw, params, out = request.scope["query_string"], request.query_params, {}
    for name in ("category", "brand"):
        if name in params:
            out[name] = params.getlist(name)
    if b"attr" in raw or b"%" in raw:
        attrs = {k[5:-1]: v for k, v in params.multi_items() if k.startswith("attr[") and k.endswith("]")}
        if attrs:
            out["attr"] = attrs
    return out


def _check(query: RecommendationsQuery) -> None:
    errors = []
    if query.price_min is not None and query.price_max is not None and query.price_min > query.price_max:
        errors.append({"field": "price_max", "message": "must be at least price_min"})
    if query.offset is not None and query.offset + query.n > MAX_ITEMS:
        errors.append({"field": "offset", "message": f"offset + n must be at most {MAX_ITEMS}"})
    if query.recommendation_id is not None and query.offset is None:
        errors.append({"field": "recommendation_id", "message": "is only used with offset (the next page)"})
    if errors:
        raise invalid_request(errors)
