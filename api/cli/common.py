"""What several commands share: the Redis a command works on, the admin key, import reports."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from engine.settings import Settings, generated_secret
from engine.store.server import managed_redis

if TYPE_CHECKING:
    from engine.ingest.importer import ImportReport


@contextlib.contextmanager
def redis_for(settings: Settings) -> Iterator[str]:
    """The configured Redis, else the data dir's own redis-server: the one already running for
    another command (e.g. `vitrine serve`), or one started now and stopped by its last user."""
    if settings.redis_url:
        yield settings.redis_url
        return
    with managed_redis(settings.redis_dir, maxmemory=int(settings.redis_maxmemory),
                       maxmemory_policy=settings.redis_maxmemory_policy) as url:
        yield url


def ensure_admin_key(settings: Settings) -> str:
    """An explicit VITRINE_ADMIN_KEY, else one generated once into the data dir (mode 0600)."""
    if settings.admin_key:
        return settings.admin_key
    return generated_secret(settings.data_dir / "admin_key")


def print_report(what: str, path: Path, report: ImportReport) -> None:
    print(f"{path}: {report.loaded}/{report.rows} {what} loaded, {report.error_count} rejected")
    for line in report.errors:
        print(f"  {line}")
