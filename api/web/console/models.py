"""The models page: versions on disk, the one served, its evaluation, promote / roll back."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from api.web.console import admin
from api.web.console.guard import page, posted, signed_in

router = APIRouter(include_in_schema=False)


def _metrics(meta: dict[str, Any] | None) -> list[tuple[str, str]]:
    """The served model's evaluation numbers, flattened for a table (``quality.ndcg@20``...)."""
    rows: list[tuple[str, str]] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            rows.append((prefix, f"{value:.4g}"))

    for section in ("metrics", "promotion"):
        if meta and section in meta:
            walk(section, meta[section])
    return rows[:60]


@router.get("/console/models")
async def models_page(request: Request, error: str | None = None) -> Response:
    session = await signed_in(request)
    answer = await admin.call(request, "GET", "/v1/admin/models")
    models = answer.body if answer.ok else {"versions": [], "serving": None, "promoted": None, "meta": None}
    return page(request, session, "models.html", title="Models", section="models", models=models,
                metrics=_metrics(models.get("meta")), meta=models.get("meta") or {},
                error=None if answer.ok else answer.message())


@router.post("/console/models/promote")
async def promote(request: Request) -> Response:
    session, fields = await posted(request)
    answer = await admin.call(request, "POST", "/v1/admin/models/reload", params={"version": fields.get("version", "")})
    if not answer.ok:
        models = (await admin.call(request, "GET", "/v1/admin/models")).body or {}
        return page(request, session, "models.html", answer.status, title="Models", section="models",
                    models=models, metrics=_metrics(models.get("meta")), meta=models.get("meta") or {},
                    error=answer.message())
    return RedirectResponse("/console/models", status_code=303)
