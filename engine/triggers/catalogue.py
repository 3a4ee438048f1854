"""A catalogue write's side of the triggers: each changed item goes to the trigger hook with the
watchers index's lookup (``engine.profiles.preferences.watchers``), never a scan of profiles."""

from __future__ import annotations

import logging

from redis.asyncio import Redis
from redis.exceptions import RedisError

from engine.catalog import Change
from engine.profiles import preferences
from engine.profiles.viewers import viewers
from engine.triggers.hook import TriggerHook
from engine.triggers.newitems import new_item_triggers

log = logging.getLogger(__name__)


async def item_triggers(redis: Redis, hook: TriggerHook, changes: list[Change]) -> int:
    """Arm the catalogue-driven triggers for ``changes`` (``engine.catalog.upsert_changes``): the
    number of occurrences armed. A Redis failure is logged, not raised: the catalogue is written."""
    armed = 0

    async def watchers(item_id: str) -> list[preferences.Watcher]:
        return preferences.with_viewers(await preferences.watchers(redis, item_id), await viewers(redis, item_id))

    for old, new in changes:
        try:
            armed += await hook.on_item_changed(old, new, watchers)
        except RedisError as exc:
            log.warning("catalogue triggers for one item lost (%s: %s)", type(exc).__name__, exc)
    return armed + await new_item_triggers(redis, hook, changes)
