"""What a trigger did: per arm (sent, control) the people reached, the deliveries, the people who
converted (a purchase or a return visit within the attribution window) and their revenue, and the
lift of sent over control with a 95% interval (the experiments' statistics); suppressions by
reason and webhook outcomes. Read on demand from the counters the runner and the apply path keep.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from engine.merch.experiments import report as experiment_report
from engine.store import cluster
from engine.triggers import keys

ARMS = ("sent", "control")


async def counters(redis: Redis, trigger_id: str) -> dict[str, Any]:
    names = keys.names(cluster.on_cluster(redis))
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(names.stats(trigger_id))
        for arm in ARMS:
            pipe.scard(names.people(trigger_id, arm))
            pipe.scard(names.converted(trigger_id, arm))
            pipe.hvals(names.revenue(trigger_id, arm))
        replies = await pipe.execute()
    stats = {k.decode(): int(v) for k, v in replies[0].items()}
    out: dict[str, Any] = {"stats": stats}
    for i, arm in enumerate(ARMS):
        people, converted, revenues = replies[1 + 3 * i: 4 + 3 * i]
        values = [float(r) for r in revenues]
        out[arm] = {"people": people, "deliveries": stats.get(f"{arm}:deliveries", 0), "conversions": converted,
                    "revenue": sum(values), "revenue_sq": sum(v * v for v in values)}
    return out


def shape(trigger_id: str, definition: Any, raw: dict[str, Any]) -> dict[str, Any]:
    """The report from ``counters``; ``definition`` None for a trigger gone from the rules."""
    # The experiments' report, with people as its visitors and deliveries as its impressions.
    flat = {f"{'personalised' if arm == 'sent' else 'control'}:{m}": float(v)
            for arm in ARMS for m, v in (("visitors", raw[arm]["people"]), ("impressions", raw[arm]["deliveries"]),
                                         ("conversions", raw[arm]["conversions"]), ("revenue", raw[arm]["revenue"]),
                                         ("revenue_sq", raw[arm]["revenue_sq"]))}
    xp = experiment_report(trigger_id, ["personalised", "control"], "control", flat)["arms"]
    arms = {}
    for arm, name in (("sent", "personalised"), ("control", "control")):
        row = xp[name]
        arms[arm] = {"people": row["visitors"], "deliveries": row["impressions"], "conversions": row["conversions"],
                     "conversion_rate": row["conversion"], "revenue": row["revenue"],
                     "revenue_per_person": row["revenue_per_visitor"]}
    lift = xp["personalised"].get("lift_vs_control", {})
    stats = raw["stats"]
    return {
        "trigger": trigger_id,
        "defined": definition is not None,
        "kind": definition.kind if definition is not None else None,
        "channel": definition.channel if definition is not None else None,
        "enabled": definition.enabled if definition is not None else None,
        "control_share": definition.control if definition is not None else None,
        "attribution": definition.attribution if definition is not None else None,
        "arms": arms,
        "lift": {"conversion_rate": lift.get("conversion"), "revenue_per_person": lift.get("revenue_per_visitor")},
        "suppressed": {k.split(":", 1)[1]: v for k, v in stats.items() if k.startswith("suppressed:")},
        "deferred": {k.split(":", 1)[1]: v for k, v in stats.items() if k.startswith("deferred:")},
        "dropped": {k: stats[k] for k in ("cancelled", "not_in_audience") if k in stats},
        "webhook": {k.split(":", 1)[1]: v for k, v in stats.items() if k.startswith("webhook:")},
        "topic": {k.split(":", 1)[1]: v for k, v in stats.items() if k.startswith("topic:")},
    }


async def trigger_report(redis: Redis, trigger_id: str, definition: Any) -> dict[str, Any]:
    return shape(trigger_id, definition, await counters(redis, trigger_id))


async def reported(redis: Redis, defined: set[str]) -> list[str]:
    """The triggers with a report: those defined, and those gone from the rules that left counters
    (every trigger that decided an occurrence is listed in ``Names.ids``)."""
    listed = await redis.smembers(keys.names(cluster.on_cluster(redis)).ids)
    return sorted(defined | {tid.decode() for tid in listed})


async def has_counters(redis: Redis, trigger_id: str) -> bool:
    return bool(await redis.exists(keys.names(cluster.on_cluster(redis)).stats(trigger_id)))
