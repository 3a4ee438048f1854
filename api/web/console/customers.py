"""The customer page: look up a customer (the single customer view, ``GET /v1/customers/{id}``) or
an anonymous visitor (``GET /v1/profiles/{id}``); export everything held on them as a download;
erase them after a confirmation."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request, Response

from api.web.console import admin
from api.web.console.experiments import Bar, Chart
from api.web.console.guard import page, posted, signed_in
from engine.events.schema import ID_PATTERN

router = APIRouter(include_in_schema=False)
_ID = re.compile(ID_PATTERN)


def reason_chart(scores: dict[str, Any] | None) -> Chart | None:
    """The churn reasons as bars of log-odds against the shop's average customer (right: more
    likely to buy again, so a lower churn risk)."""
    reasons = (scores or {}).get("reasons") or []
    if not reasons:
        return None
    return Chart("What moves this customer's chance to buy again",
                 [Bar(r["factor"], r["log_odds"], None, None) for r in reasons])


def reason_text(reason: dict[str, Any]) -> str:
    """``{"factor": "recency", "effect": "raises risk", "detail": "last order 90 d ago..."}`` in words."""
    return f"{reason['detail'].capitalize()}: {reason['effect']} of churn ({reason['factor']})."


async def lookup(request: Request, person_id: str) -> tuple[str, dict[str, Any] | None, str | None]:
    """("customer" | "visitor", its view, None), or (kind, None, why not)."""
    if not _ID.fullmatch(person_id):
        return "customer", None, "An id has letters, digits and . _ : @ + - only (up to 128)."
    customer = await admin.call(request, "GET", f"/v1/customers/{quote(person_id, safe='')}")
    if customer.ok:
        return "customer", customer.body, None
    if customer.status != 404:
        return "customer", None, customer.message()
    visitor = await admin.call(request, "GET", f"/v1/profiles/{quote(person_id, safe='')}")
    if visitor.ok:
        return "visitor", visitor.body, None
    if visitor.status != 404:
        return "visitor", None, visitor.message()
    return "customer", None, f"No customer and no visitor with the id {person_id!r}."


@router.get("/console/customers")
async def customers_page(request: Request, id: str = "") -> Response:  # noqa: A002 - the form's field
    session = await signed_in(request)
    person_id = id.strip()
    if not person_id:
        return page(request, session, "customers.html", title="Customers", section="customers", person_id="")
    kind, view, error = await lookup(request, person_id)
    scores = view.get("scores") if view and kind == "customer" else None
    return page(request, session, "customers.html", 404 if error else 200, title=f"Customer {person_id}",
                section="customers", person_id=person_id, kind=kind, view=view, error=error,
                chart=reason_chart(scores), reasons=[reason_text(r) for r in (scores or {}).get("reasons", [])],
                titles=_titles(request, view))


def _titles(request: Request, view: dict[str, Any] | None) -> dict[str, str]:
    if not view:
        return {}
    items = request.app.state.engine.catalogue.current.items
    ids = [*view.get("recent_items", []), *view.get("purchases", {})]
    return {i: items[i].title or i for i in ids if i in items}


@router.get("/console/customers/{person_id}/export")
async def export(request: Request, person_id: str) -> Response:
    """``GET /v1/people/{id}/export`` as a file to save."""
    session = await signed_in(request)
    answer = await admin.call(request, "GET", f"/v1/people/{quote(person_id, safe='')}/export")
    if not answer.ok:
        return page(request, session, "customers.html", answer.status, title="Export", section="customers",
                    person_id=person_id, view=None, error=answer.message())
    name = re.sub(r"[^A-Za-z0-9._-]", "_", person_id)
    return Response(answer.text, media_type="application/json",
                    headers={"Content-Disposition": f'attachment; filename="vitrine-export-{name}.json"',
                             "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})


@router.get("/console/customers/{person_id}/erase")
async def erase_form(request: Request, person_id: str) -> Response:
    session = await signed_in(request)
    return page(request, session, "erase.html", title=f"Erase {person_id}", section="customers",
                person_id=person_id, done=None, error=None)


@router.post("/console/customers/{person_id}/erase")
async def erase(request: Request, person_id: str) -> Response:
    """Erase after the confirmation: the form must carry the session's CSRF token and the id typed
    again."""
    session, fields = await posted(request)
    if fields.get("confirm", "").strip() != person_id:
        return page(request, session, "erase.html", 422, title=f"Erase {person_id}", section="customers",
                    person_id=person_id, done=None, error="Type the id exactly as shown to confirm.")
    answer = await admin.call(request, "DELETE", f"/v1/people/{quote(person_id, safe='')}")
    return page(request, session, "erase.html", 200 if answer.ok else answer.status, title=f"Erase {person_id}",
                section="customers", person_id=person_id, done=answer.body if answer.ok else None,
                error=None if answer.ok else answer.message())
