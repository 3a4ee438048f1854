"""The rules page: the file in an editor checked as you type, a preview for any visitor under the
draft and the live rules side by side, publish, and roll back to any published version."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse

from api.web.console import admin
from api.web.console.guard import page, posted, scripted, signed_in
from api.web.console.sessions import Session

router = APIRouter(include_in_schema=False)
_LIST = re.compile(r"[\s,]+")


async def _state(request: Request) -> dict[str, Any]:
    """The file's text, the live status and the history, from the admin API."""
    text = await admin.call(request, "GET", "/v1/admin/rules/file")
    status = await admin.call(request, "GET", "/v1/admin/rules")
    history = await admin.call(request, "GET", "/v1/admin/rules/history") if text.ok else None
    return {"file": text.body if text.ok else None, "no_file": text.message() if not text.ok else None,
            "live": status.body if status.ok else None,
            "history": history.body["versions"] if history is not None and history.ok else []}


async def _render(request: Request, session: Session, status: int = 200, **context: Any) -> Response:
    state = await _state(request)
    draft = context.pop("draft", None)
    if draft is None:
        draft = state["file"]["text"] if state["file"] else ""
    base = context.pop("base_version", None) or (state["file"]["version"] if state["file"] else "")
    return page(request, session, "rules.html", status, title="Rules", section="rules", draft=draft,
                base_version=base, **state, **context)


@router.get("/console/rules")
async def rules_page(request: Request, published: str | None = None) -> Response:
    session = await signed_in(request)
    notice = f"Published version {published}: it is live." if published and re.fullmatch(r"[0-9a-f]{12}",
                                                                                          published) else None
    return await _render(request, session, notice=notice)


@router.post("/console/rules/check")
async def check(request: Request) -> Response:
    """For the editor's script: the admin API's check of the draft, always as a 200 JSON answer."""
    await scripted(request)
    body = await request.json() if request.headers.get("content-type", "").startswith("application/json") else {}
    rules = body.get("rules") if isinstance(body, dict) else None
    if not isinstance(rules, str):
        return JSONResponse({"valid": False, "errors": [{"line": None, "field": "rules", "message": "send {rules}"}]})
    answer = await admin.call(request, "POST", "/v1/admin/rules/check", json={"rules": rules})
    if answer.ok:
        return JSONResponse({"valid": True, "version": answer.body["version"], "errors": []})
    return JSONResponse({"valid": False, "errors": answer.errors() or [{"line": None, "field": "rules",
                                                                        "message": answer.message()}]})


def _draft(fields: dict[str, str]) -> str:
    """The editor's text as the file will hold it: browsers send a textarea's lines ending in CRLF."""
    return fields.get("rules", "").replace("\r\n", "\n")


def _preview_request(fields: dict[str, str]) -> dict[str, Any]:
    body: dict[str, Any] = {"rules": _draft(fields), "visitor_id": fields.get("visitor_id", "").strip(),
                            "n": 8}
    for name in ("customer_id", "item_id", "category"):
        if fields.get(name, "").strip():
            body[name] = fields[name].strip()
    placements = [p for p in _LIST.split(fields.get("placements", "")) if p]
    if placements:
        body["placements"] = placements
    return body


def _titles(request: Request, preview: dict[str, Any]) -> dict[str, str]:
    items = request.app.state.engine.catalogue.current.items
    ids = {entry["item_id"] for side in ("live", "draft") for reco in preview[side]["recommendations"].values()
           for entry in reco.get("items", [])}
    return {i: items[i].title for i in ids if i in items}


@router.post("/console/rules/preview")
async def preview(request: Request) -> Response:
    session, fields = await posted(request)
    body = _preview_request(fields)
    answer = await admin.call(request, "POST", "/v1/admin/preview", json=body)
    context: dict[str, Any] = {"draft": body["rules"], "base_version": fields.get("base_version"), "form": fields}
    if not answer.ok:
        return await _render(request, session, 422, errors=answer.errors(), error=answer.message(), **context)
    return await _render(request, session, preview=answer.body, titles=_titles(request, answer.body), **context)


@router.post("/console/rules/publish")
async def publish(request: Request) -> Response:
    session, fields = await posted(request)
    draft = _draft(fields)
    body: dict[str, Any] = {"rules": draft}
    if re.fullmatch(r"[0-9a-f]{12}", fields.get("base_version", "")):
        body["base_version"] = fields["base_version"]
    answer = await admin.call(request, "PUT", "/v1/admin/rules", json=body)
    if not answer.ok:
        return await _render(request, session, answer.status, errors=answer.errors(), error=answer.message(),
                             draft=draft, base_version=fields.get("base_version"), form=fields)
    return RedirectResponse(f"/console/rules?published={answer.body['published']}", status_code=303)


@router.post("/console/rules/rollback")
async def rollback(request: Request) -> Response:
    session, fields = await posted(request)
    answer = await admin.call(request, "POST", "/v1/admin/rules/rollback", json={"version": fields.get("version", "")})
    if not answer.ok:
        return await _render(request, session, answer.status, errors=answer.errors(), error=answer.message())
    return RedirectResponse(f"/console/rules?published={answer.body['published']}", status_code=303)
