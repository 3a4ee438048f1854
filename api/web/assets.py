"""The package's static files: the site snippet at ``/sdk/``, the pages' CSS and JS at ``/assets/``.

Each is served under a name that carries its content hash (``/assets/<hash>/shop.css``), cached
for a year, so a new release is never mixed with a browser's old copy. ``/sdk/vitrine.js``, the
address sites paste, is cached for five minutes and revalidated by its ETag;
``/sdk/<version>/vitrine.js`` pins one version of the snippet.
"""

from __future__ import annotations

import functools
import hashlib
import re
from importlib import resources

from fastapi import APIRouter, Request, Response

from api.responses import ApiError

router = APIRouter()
_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
          ".svg": "image/svg+xml"}
_NAME = re.compile(r"^[a-z][a-z0-9_-]*\.(js|css|svg)$")
SNIPPET = "vitrine.js"


@functools.cache
def _read(name: str) -> tuple[bytes, str]:
    """The file's bytes and the first 12 hex digits of their SHA-256."""
    data = resources.files("api.web").joinpath("static", name).read_bytes()
    return data, hashlib.sha256(data).hexdigest()[:12]


def snippet_version() -> str:
    """The version written in the snippet's code (``var VERSION = "..."``)."""
    match = re.search(rb'var VERSION = "([0-9.]+)"', _read(SNIPPET)[0])
    return match.group(1).decode() if match else "0"


def snippet_url() -> str:
    """The pinned snippet's address: cached for good, so a page's next visits run it at once."""
    return f"/sdk/{snippet_version()}/vitrine.js"


def asset_url(name: str) -> str:
    return f"/assets/{_read(name)[1]}/{name}"


def _serve(request: Request, name: str, cache: str) -> Response:
    if not _NAME.match(name):
        raise ApiError(404, "no such file")
    try:
        data, digest = _read(name)
    except (FileNotFoundError, IsADirectoryError):
        raise ApiError(404, "no such file") from None
    etag = f'"{digest}"'
    headers = {"ETag": etag, "Cache-Control": cache, "X-Content-Type-Options": "nosniff",
               "Cross-Origin-Resource-Policy": "cross-origin"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(data, media_type=_TYPES[name[name.rindex("."):]], headers=headers)


@router.get("/sdk/vitrine.js", include_in_schema=False)
async def snippet(request: Request) -> Response:
    return _serve(request, SNIPPET, "public, max-age=300")


@router.get("/sdk/{version}/vitrine.js", include_in_schema=False)
async def snippet_pinned(request: Request, version: str) -> Response:
    if version != snippet_version():
        raise ApiError(404, f"no snippet version {version!r} here (this server has {snippet_version()})")
    return _serve(request, SNIPPET, "public, max-age=31536000, immutable")


@router.get("/assets/{digest}/{name}", include_in_schema=False)
async def asset(request: Request, digest: str, name: str) -> Response:
    """Served whatever the digest (a page cached across a release still gets a file); cached for
    good only when it is the current one."""
    try:
        current = _NAME.match(name) is not None and digest == _read(name)[1]
    except (FileNotFoundError, IsADirectoryError):
        current = False
    return _serve(request, name, "public, max-age=31536000, immutable" if current else "no-cache")
