"""A catalogue write's new items to the ``new_item`` triggers: each item new to the catalogue goes
to the trigger hook with the people the declared-interest index names for its category and brand
(``engine.profiles.preferences.interested``), never a scan of profiles."""

from __future__ import annotations

import logging

from redis.asyncio import Redis
from redis.exceptions import RedisError

from engine.catalog import Change
from engine.profiles import preferences
from engine.triggers.hook import TriggerHook

log = logging.getLogger(__name__)


async def new_item_triggers(redis: Redis, hook: TriggerHook, changes: list[Change]) -> int:
    """Arm the ``new_item`` triggers for the new items among ``changes``: the number of occurrences
    armed. A Redis failure is logged, not raised: the catalogue is written."""
    armed = 0
    for old, new in changes:
        if old is not None:
            continue

        async def people(item_id: str, category: str | None = new.category,
                         brand: str | None = new.brand) -> list[preferences.Watcher]:
            return [preferences.Watcher(m, None, True) for m in await preferences.interested(redis, category, brand)]

        try:
            armed += await hook.on_item_changed(old, new, people, index="interests")
        except RedisError as exc:
            log.warning("new-item triggers for one item lost (%s: %s)", type(exc).__name__, exc)
    return armed
