"""Whether a due occurrence may go out now: consent, pressure caps, quiet hours, control group.
Pure functions; ``engine.triggers.runner`` reads what they need and acts on the answer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from engine.merch.experiments import bucket
from engine.profiles import consent
from engine.profiles.shapes import CustomerProfile, VisitorProfile
from engine.merch.schema import Pressure, QuietHours, TriggerBase

WEEK_S = 7 * 86400
OVERRIDE_TRAIT = "max_messages_per_week"
NO_CONSENT, CAPPED, QUIET_HOURS, CONTROL_GROUP = "no_consent", "capped", "quiet_hours", "control_group"


def may_contact(v: VisitorProfile, c: CustomerProfile | None, channel: str, required: bool) -> bool:
    """Profiling not withdrawn (nor GPC sent), and an explicit opt-in for the channel."""
    if consent.withdrawn(v, c, required):
        return False
    return consent.state(v, c, required)[channel] == "granted"


def quiet_until(quiet: QuietHours | None, now: float, tz: ZoneInfo) -> float | None:
    """The end of the quiet hours ``now`` falls in (unix seconds), or None when not in them."""
    if quiet is None:
        return None
    local = datetime.fromtimestamp(now, tz)
    minute = local.hour * 60 + local.minute
    start, end = QuietHours.minutes(quiet.start), QuietHours.minutes(quiet.end)
    inside = start <= minute < end if start < end else (minute >= start or minute < end)
    if not inside:
        return None
    until = local.replace(hour=end // 60, minute=end % 60, second=0, microsecond=0)
    if until <= local:
        until = (local + timedelta(days=1)).replace(hour=end // 60, minute=end % 60, second=0, microsecond=0)
    return until.timestamp()


@dataclass(frozen=True)
class Limit:
    """At most ``max`` messages in ``window_s``, counting those on ``channel`` / of ``trigger`` only
    when given."""

    max: int
    window_s: float
    channel: str | None = None
    trigger: str | None = None


def limits(trigger_id: str, trigger: TriggerBase, pressure: Pressure | None, traits: dict[str, str]) -> list[Limit]:
    """Every cap one more message must stay under: the trigger's own, per channel, across channels,
    and the person's own weekly limit (a trait), which can only lower the others."""
    out: list[Limit] = []
    if trigger.cap is not None:
        out.append(Limit(trigger.cap.max, trigger.cap.window_s, trigger=trigger_id))
    if pressure is not None:
        for cap, channel in ((pressure.per_channel, trigger.channel), (pressure.all_channels, None)):
            if cap is not None:
                out.append(Limit(cap.max, cap.window_s, channel=channel))
    own = traits.get(OVERRIDE_TRAIT)
    if own is not None and own.strip().isdigit():
        out.append(Limit(int(own), WEEK_S))
    return out


def held_out(trigger_id: str, trigger: TriggerBase, person: str) -> bool:
    """The trigger's control group: the experiments' hashing, salted per trigger."""
    return trigger.control > 0 and bucket(f"trigger:{trigger_id}", person) < trigger.control
