"""Admin: the rules file's text, checking a draft, publishing it, its history and roll back.

What the console's editor does, and what a script can do with curl: the same validation as the
service's poll (file, line, field), then an atomic write of ``VITRINE_RULES_FILE`` that this process
serves at once and the others within their poll (engine.merch.publish).
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from api.auth import require_admin
from api.openapi import doc, ok, request_body
from api.query import parse_body, require_json
from api.responses import ApiError, json_response
from api.routes.merch import RulesStatus, _rules_error
from engine.merch import publish
from engine.merch.live import MAX_RULES_BYTES, parse_file, version_of
from engine.merch.loader import RulesInvalid

router = APIRouter(dependencies=[Depends(require_admin)])
VERSION = r"^[0-9a-f]{12}$"
_EXAMPLE = "placements:\n  home:\n    pins:\n      - {item: \"85123A\", slot: 1}\n"


class RulesText(BaseModel):
    file: str
    text: str = Field(description="The rules file as it is on disk (it may be invalid: see `GET /v1/admin/rules`).")
    version: str = Field(description="The version of that text (first 12 hex digits of its SHA-256).")
    live_version: str = Field(description="The version served by this process.")


class RulesDraft(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    rules: str = Field(max_length=MAX_RULES_BYTES, description="The rules file's text (YAML).")
    base_version: str | None = Field(None, pattern=VERSION, description="Publish only if the file on disk is still "
                                     "this version (what the editor loaded): a 409 instead of overwriting "
                                     "someone else's change.")


class RulesChecked(BaseModel):
    valid: bool
    version: str


class RulesPublished(RulesStatus):
    published: str = Field(description="The version written.")
    changed: bool


class Rollback(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    version: str = Field(pattern=VERSION, description="A version from `GET /v1/admin/rules/history`.")


class HistoryEntry(BaseModel):
    version: str
    published_at: float


class RulesHistory(BaseModel):
    live_version: str
    versions: list[HistoryEntry] = Field(description="Newest first.")




def _file(request: Request) -> Any:
    holder = request.app.state.engine.rules
    if holder.path is None:
        raise ApiError(409, "no rules file configured (set VITRINE_RULES_FILE)",
                       [{"field": "rules_file", "message": "not set"}])
    return holder


def _check(holder: Any, text: bytes) -> None:
    try:
        parse_file(text, str(holder.path), holder.item_exists, holder.max_window_s)
    except RulesInvalid as exc:
        raise _rules_error("the rules are invalid", exc.errors) from None


async def _publish(request: Request, text: bytes) -> Response:
    holder = _file(request)
    settings = request.app.state.settings
    await asyncio.to_thread(_check, holder, text)
    published = await asyncio.to_thread(publish.publish, holder.path, text, settings.rules_history)
    changed = await asyncio.to_thread(holder.reload, force=True)
    return json_response({**holder.status(), "published": published.version, "changed": changed})


@router.get("/v1/admin/rules/file", **doc("admin", "The rules file's text, to edit it", {
    200: ok(RulesText, "The text on disk and the version served."),
    409: "No rules file configured (`VITRINE_RULES_FILE`).",
}))
async def rules_text(request: Request) -> Response:
    holder = _file(request)
    try:
        text = await asyncio.to_thread(holder.path.read_bytes)
    except FileNotFoundError:
        text = b""
    return json_response({"file": str(holder.path), "text": text.decode("utf-8", "replace"),
                          "version": version_of(text), "live_version": holder.current.version})


@router.post("/v1/admin/rules/check", **doc("admin", "Validate a draft rules file (nothing is written)", {
    200: ok(RulesChecked, "The draft is valid."),
    422: "The draft is invalid: `errors` give file, line and field, as the service's own check.",
}, body=request_body(RulesDraft, {"a pin": {"rules": _EXAMPLE}})))
async def rules_check(request: Request) -> Response:
    require_json(request)
    draft = parse_body(RulesDraft, await request.body(), "{\"rules\": ...}")
    holder = request.app.state.engine.rules
    text = draft.rules.encode()
    await asyncio.to_thread(_check, holder, text)
    return json_response({"valid": True, "version": version_of(text)})


@router.put("/v1/admin/rules", **doc("admin", "Publish a rules file: validate, write atomically, serve", {
    200: ok(RulesPublished, "Written, kept in the history and served by this process (the others follow "
                            "within their poll)."),
    409: "No rules file configured, or the file changed since `base_version`.",
    422: "The rules are invalid (`errors` give line and field): nothing was written.",
}, body=request_body(RulesDraft, {"a pin": {"rules": _EXAMPLE}})))
async def rules_publish(request: Request) -> Response:
    require_json(request)
    draft = parse_body(RulesDraft, await request.body(), "{\"rules\": ...}")
    holder = _file(request)
    if draft.base_version is not None:
        try:
            on_disk = version_of(await asyncio.to_thread(holder.path.read_bytes))
        except FileNotFoundError:
            on_disk = version_of(b"")
        if on_disk != draft.base_version:
            raise ApiError(409, f"the rules file changed since {draft.base_version} (now {on_disk}): reload it",
                           [{"field": "base_version", "message": f"the file is now {on_disk}"}])
    return await _publish(request, draft.rules.encode())


@router.get("/v1/admin/rules/history", **doc("admin", "Published rules versions, newest first", {
    200: ok(RulesHistory, "The versions kept (`VITRINE_RULES_HISTORY`)."),
    409: "No rules file configured (`VITRINE_RULES_FILE`).",
}))
async def rules_history(request: Request) -> Response:
    holder = _file(request)
    entries = await asyncio.to_thread(publish.history, holder.path)
    return json_response({"live_version": holder.current.version,
                          "versions": [{"version": e.version, "published_at": e.published_at} for e in entries]})


@router.post("/v1/admin/rules/rollback", **doc("admin", "Publish a version from the history again", {
    200: ok(RulesPublished, "That version is the rules file again, served by this process."),
    404: "No such version in the history.",
    409: "No rules file configured (`VITRINE_RULES_FILE`).",
    422: "The version is not valid any more (e.g. it pins an item removed since): `errors` say why.",
}, body=request_body(Rollback, {"back": {"version": version_of(_EXAMPLE.encode())}})))
async def rules_rollback(request: Request) -> Response:
    require_json(request)
    body = parse_body(Rollback, await request.body(), "{\"version\": ...}")
    holder = _file(request)
    text = await asyncio.to_thread(publish.published_text, holder.path, body.version)
    if text is None:
        raise ApiError(404, f"no published version {body.version!r}",
                       [{"field": "version", "message": "not in the history"}])
    return await _publish(request, text)

