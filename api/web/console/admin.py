"""The console's way to the admin API: the same routes, checks and answers a script gets.

Calls go through the application itself in process (httpx's ASGI transport), with the admin key
of the settings: a signed-in console user holds that key's rights, nothing more.
"""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import Request


class AdminAnswer:
    def __init__(self, status: int, body: Any, text: str) -> None:
        self.status = status
        self.body = body
        self.text = text

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def errors(self) -> list[dict[str, Any]]:
        return list(self.body.get("errors", [])) if isinstance(self.body, dict) else []

    def message(self) -> str:
        return str(self.body.get("error", "")) if isinstance(self.body, dict) else self.text[:300]


async def call(request: Request, method: str, path: str, *, json: Any = None,
               params: dict[str, str] | None = None) -> AdminAnswer:
    app = request.app
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 0))
    headers = {"X-API-Key": app.state.settings.admin_key or "", "X-Requested-By": "console"}
    async with httpx.AsyncClient(transport=transport, base_url="http://console") as client:
        response = await client.request(method, path, json=json, params=params, headers=headers)
    try:
        body = response.json()
    except ValueError:
        body = None
    return AdminAnswer(response.status_code, body, response.text)
