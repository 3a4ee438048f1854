"""The demo shop: what a customer's site looks like with Vitrine in it (``VITRINE_DEMO_STOREFRONT``).

It is a site like any other: its pages are its own (catalogue pages rendered from the catalogue),
and everything personal comes from the snippet (``/sdk/vitrine.js``) calling the public API from
the browser. Its only backend duty towards Vitrine is the one the README gives every site: at
login it signs the customer id with ``VITRINE_IDENTITY_SECRET`` (the customer token).
"""

from __future__ import annotations

import re
from collections import Counter

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from api.responses import ApiError
from api.web.pages import form, render
from engine.catalog import Item
from engine.events.schema import ID_PATTERN
from engine.profiles.tokens import customer_token

router = APIRouter(include_in_schema=False)
CUSTOMER_COOKIE = "demo_customer"
CART_COOKIE = "demo_cart"
# Customers of UCI Online Retail II with orders in its first months (the demo's login suggestions).
DEMO_CUSTOMERS = ("13085", "13078", "15362", "18102", "12682", "14911", "17841")
_ID = re.compile(ID_PATTERN)
PAGE_SIZE = 24


def _catalogue(request: Request) -> dict[str, Item]:
    return request.app.state.engine.catalogue.current.items


def _customer(request: Request) -> tuple[str | None, str | None]:
    """The signed-in demo customer and their token, when the shop can sign (identity secret set)."""
    customer = request.cookies.get(CUSTOMER_COOKIE)
    secret = request.app.state.settings.identity_secret
    if not customer or not _ID.match(customer) or not secret:
        return None, None
    return customer, customer_token(secret, customer)


def _cart(request: Request) -> list[str]:
    return [i for i in request.cookies.get(CART_COOKIE, "").split(",") if _ID.match(i)][:50]


def categories(items: dict[str, Item]) -> list[tuple[str, int]]:
    """Top-level categories with their in-stock item counts, largest first: a pass over the whole
    catalogue, so each snapshot's is counted once (a snapshot's items never change)."""
    if _counted[0] is not items:
        counts = Counter(item.category.split(".")[0] for item in items.values() if item.category and item.in_stock)
        _counted[:] = [items, counts.most_common()]
    return _counted[1]


_counted: list = [None, []]  # the snapshot's items last counted (held, so its id is not reused), their counts


def shop_page(request: Request, name: str, status: int = 200, **context: object) -> Response:
    """A shop page: the template with the header's context (customer, categories, basket)."""
    customer, token = _customer(request)
    items = _catalogue(request)
    return render(request, f"shop/{name}", {
        "customer": customer, "customer_token": token, "can_login": bool(request.app.state.settings.identity_secret),
        "demo_customers": DEMO_CUSTOMERS, "categories": categories(items)[:12], "cart_count": len(_cart(request)),
        **context}, status)


@router.get("/")
async def home(request: Request) -> Response:
    return shop_page(request, "home.html", title="Home")


@router.get("/category/{category}")
async def category(request: Request, category: str, page: int = 1) -> Response:
    category = category.lower()
    chosen = sorted((item for item in _catalogue(request).values()
                     if item.in_stock and item.category and (item.category == category
                                                             or item.category.startswith(category + "."))),
                    key=lambda item: item.title)
    if not chosen:
        return shop_page(request, "notfound.html", 404, title="Not found",
                         message=f"There is no category {category!r} in this shop.")
    page = max(1, page)
    shown = chosen[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]
    more = len(chosen) > page * PAGE_SIZE
    return shop_page(request, "category.html", title=category.replace(".", " / ").title(), category=category,
                 items=shown, page=page, more=more, total=len(chosen))


@router.get("/product/{item_id}")
async def product(request: Request, item_id: str) -> Response:
    item = _catalogue(request).get(item_id) if _ID.match(item_id) else None
    if item is None:
        return shop_page(request, "notfound.html", 404, title="Not found",
                         message=f"There is no product {item_id!r} in this shop.")
    return shop_page(request, "product.html", title=item.title or item.item_id, item=item)


@router.get("/cart")
async def cart(request: Request) -> Response:
    items = _catalogue(request)
    lines = [items[i] for i in _cart(request) if i in items]
    return shop_page(request, "cart.html", title="Basket", lines=lines,
                 total=round(sum(item.price or 0 for item in lines), 2))


@router.post("/cart")
async def add_to_cart(request: Request) -> Response:
    fields = await form(request)
    item_id = fields.get("item_id", "")
    if not _ID.match(item_id) or item_id not in _catalogue(request):
        raise ApiError(422, "no such item", [{"field": "item_id", "message": "not in the catalogue"}])
    lines = [i for i in _cart(request) if i != item_id]
    if fields.get("action") != "remove":
        lines.append(item_id)
    response = RedirectResponse("/cart", status_code=303)
    response.set_cookie(CART_COOKIE, ",".join(lines[-50:]), httponly=True, samesite="lax", path="/")
    return response


@router.post("/login")
async def login(request: Request) -> Response:
    """The shop's own login (here: pick a customer of the dataset). Its page then carries the
    customer's id and the token this backend signed, for the snippet."""
    customer = (await form(request)).get("customer_id", "").strip()
    if not _ID.match(customer):
        raise ApiError(422, "invalid customer id", [{"field": "customer_id", "message": "invalid characters"}])
    if not request.app.state.settings.identity_secret:
        raise ApiError(409, "the demo cannot sign customers in: VITRINE_IDENTITY_SECRET is not set",
                       [{"field": "identity_secret", "message": "not set"}])
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(CUSTOMER_COOKIE, customer, httponly=True, samesite="lax", path="/")
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(CUSTOMER_COOKIE, path="/")
    response.delete_cookie("vt_login", path="/")
    return response
