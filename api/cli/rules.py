"""`vitrine check-rules`: a merchandising rules file validated as the service would load it."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from redis.exceptions import RedisError

from engine.catalog import Catalogue, load_catalogue
from engine.merch.live import parse_file
from engine.merch.loader import RulesInvalid
from engine.store.connect import connect_to
from engine.settings import Settings
from engine.store.server import running_url


def _catalogue_for_rules(settings: Settings) -> tuple[Catalogue | None, str]:
    """The catalogue the service would check pins against: in the configured Redis, else in the
    data dir's redis-server if one is running (none is started for a check: a fresh one would
    hold nothing, or load a whole shop's data to read one hash). Else None and why."""
    url = settings.redis_url or running_url(settings.redis_dir)
    if url is None:
        return None, (f"no Redis to read the catalogue from (VITRINE_REDIS_URL is not set and no redis-server "
                      f"is running for {settings.redis_dir})")

    async def load() -> Catalogue:
        redis = connect_to(url, cluster=settings.redis_cluster, timeout_s=5.0)
        try:
            return await load_catalogue(redis)
        finally:
            await redis.aclose()

    try:
        return asyncio.run(load()), ""
    except (RedisError, OSError, TimeoutError) as exc:
        return None, f"the catalogue is not reachable ({type(exc).__name__}: {exc})"


def cmd_check_rules(args: argparse.Namespace, settings: Settings) -> int:
    """Validate a rules file before deploying it, as the service would: schema, references,
    windows against VITRINE_EXPOSURE_RETENTION_S, and pinned and promoted items against the
    catalogue when one is reachable (a warning says when it is not). Exit 0 valid, 1 invalid,
    2 the file cannot be read."""
    path: Path = args.path
    try:
        text = path.read_bytes()
    except OSError as exc:
        print(f"vitrine check-rules: cannot read {path}: {exc.strerror}", file=sys.stderr)
        return 2
    catalogue, why = _catalogue_for_rules(settings)
    if catalogue is not None and not len(catalogue):
        why = "the catalogue is empty (the service checks nothing against an empty catalogue)"
    item_exists = catalogue.may_name if catalogue is not None else None
    try:
        snapshot = parse_file(text, str(path), item_exists, settings.exposure_retention_s)
    except RulesInvalid as exc:
        for error in exc.errors:
            print(error, file=sys.stderr)
        code = 1
    else:
        print(f"{path}: valid, version {snapshot.version}")
        code = 0
    if why:
        print(f"warning: pinned and promoted items not checked: {why}", file=sys.stderr)
    return code
