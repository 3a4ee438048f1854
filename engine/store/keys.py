"""Redis key names in one place.

In a process serving several shops (engine.tenants) every name starts with the current shop's
``t.<tenant>:``, outside the hash tag; a one-shop deployment's names are as below.

Visitor-scoped keys share the hash tag ``{visitor_id}`` so that a visitor's profile and its
dedup bucket land in the same slot. Names are short on purpose: key bytes count against the
per-visitor memory bar.

Which keys carry a TTL decides what a full Redis may evict: the managed one evicts only keys with
a TTL, least recently used first (``VITRINE_REDIS_MAXMEMORY_POLICY``).
- No TTL, never evicted: the catalogue (``items``, ``items:v``, ``items:g``), experiment counters
  (``xp:{experiment}``, engine.merch.exposure), the watchers index (``w:{item}``, which cleans
  itself as it is read, engine.profiles.preferences) and the declared-interest index (``ic:``,
  ``ib:``, engine.profiles.interests, cleaned the same way). A new key that must survive memory pressure (a
  checkpoint, a counter) gets no TTL.
- No TTL: erasures (``er:``, below), which must outlive any event still waiting to be applied.
- No TTL: identity (``ca:``, ``ci:``, ``em:``, ``cm:``, ``cmq``, engine.customers.merge): which customer ids are
  one person must outlive the profiles, or a merged id's later events would start a second record.
- A TTL, evictable: visitors (``v:``, ``d:``, ``x:``, ``f:``, ``pv:``), customers (``c:``, ``pc:``)
  and trending epochs (``tr:``); on a cluster also the dedup memory of customers and counters
  (``dc:``, ``tk:``), which lives as long as the visitors' ``d:``. A full Redis forgets its idlest visitors as if their TTL had passed. Every
  apply of a visitor reads and writes their profile, dedup buckets and exposure together, so these
  age together; and the events a retry, a redelivery or a catch-up replays are recent ones, whose
  dedup buckets are among the most recently used keys, which go last.
"""

from __future__ import annotations

import functools
import hashlib
from typing import NamedTuple

from redis.crc import key_slot

from engine.tenants import key_prefix as _p


class CatalogueKeys(NamedTuple):
    items: str
    version: str
    grown: str


def catalogue_keys(cluster: bool) -> CatalogueKeys:
    """The catalogue's keys. Its transactions span all three, which a Redis Cluster allows in one
    slot only: there they share the hash tag ``{items}`` (one Redis keeps its names)."""
    items = f"{_p()}{{items}}" if cluster else f"{_p()}items"
    return CatalogueKeys(items, f"{items}:v", f"{items}:g")  # ``:g``: bumped when an item becomes recommendable


def log_applied() -> str:
    """How far the durable log is applied (engine.ingest.checkpoint)."""
    return f"{_p()}log:applied"


# Everything the apply path derives from events: profiles, customers, dedup memory, trending,
# exposure state and experiment counters. Rebuilding one without the others would count events
# twice (counters) or skip them (dedup), so replay resets them together.
DERIVED_FROM_EVENTS = ("v:*", "c:*", "d:*", "tr:*", "x:*", "xp:*", "dc:*", "tk:*")


def derived_from_events() -> list[str]:
    """``DERIVED_FROM_EVENTS`` as SCAN patterns of the current shop's keys."""
    return [_p() + pattern for pattern in DERIVED_FROM_EVENTS]


def visitor(visitor_id: str) -> str:
    return f"{_p()}v:{{{visitor_id}}}"


def customer(customer_id: str) -> str:
    return f"{_p()}c:{{{customer_id}}}"


def alias(customer_id: str) -> str:
    """The customer a merged-away customer id now stands for (engine.customers.merge). Not derived
    from events (replay keeps it, and follows it), no TTL: ``c:*`` does not match ``ca:``."""
    return f"{_p()}ca:{{{customer_id}}}"


def identity(customer_id: str) -> str:
    """A surviving customer's identity record (hash): ``m:<id>`` per id merged into it (when, by
    whom), ``e:<email sha256>`` per hashed email seen at its logins. No TTL, kept by replay."""
    return f"{_p()}ci:{{{customer_id}}}"


def merging(customer_id: str) -> str:
    """A customer id's merge begun and not finished, on a Redis Cluster (engine.customers.merge_apart):
    the profile, identity record and event fingerprints the survivor absorbs. No TTL."""
    return f"{_p()}cm:{{{customer_id}}}"


def merges_pending() -> str:
    """The customer ids whose merge began on a Redis Cluster and is not finished (sorted set, score:
    when it began), which a sweep completes once they are old (engine.customers.merge.sweep)."""
    return f"{_p()}cmq"


def email(email_sha256: str) -> str:
    """Hashed email -> the customer id that first logged in with it (automatic merges)."""
    return f"{_p()}em:{email_sha256}"


def is_customer(key: str) -> bool:
    return key.startswith(f"{_p()}c:")


def customer_of(key: str) -> str:
    """The id a ``customer(id)`` key names."""
    return key[len(customer("")) - 1:-1]


def visitor_of(key: str) -> str:
    """The id a ``visitor(id)`` key names."""
    return key[len(visitor("")) - 1:-1]


def dedup(visitor_id: str, bucket: int) -> str:
    return f"{_p()}d:{{{visitor_id}}}:{bucket}"


def customer_dedup(customer_id: str, bucket: int) -> str:
    """The events already applied to a customer's profile, on a Redis Cluster (engine.ingest.cluster),
    where the customer is written apart from the visitor: same slot as ``c:{id}``."""
    return f"{_p()}dc:{{{customer_id}}}:{bucket}"


@functools.cache
def _slot_tags() -> dict[int, str]:
    """A short hash tag per cluster slot: the table Redis's CRC16 gives for 0, 1, 2, ..."""
    tags: dict[int, str] = {}
    n = 0
    while len(tags) < 16384:
        tags.setdefault(key_slot(str(n).encode()), str(n))
        n += 1
    return tags


def counter_token(key: str, bucket: int) -> str:
    """The events already counted in a shared counter (trending, experiment, watchers) on a Redis
    Cluster (engine.ingest.cluster). It must share the counter's slot whatever the counter's name
    holds (an item id may contain braces), hence a tag looked up by slot rather than copied."""
    if "{" not in key and "}" not in key:
        return f"{_p()}tk:{{{key}}}:{bucket}"
    return f"{_p()}tk:{{{_slot_tags()[key_slot(key.encode())]}}}:{key}:{bucket}"


@functools.lru_cache(maxsize=8192)  # each applied visitor's is named by the read and by the write
def erasure(profile_key: str) -> str:
    """When a person (``visitor(id)`` or ``customer(id)``) was last erased: events accepted up to
    then are not applied (engine.ingest.apply), wherever they still wait (the apply queue, a Kafka
    topic). In the profile's slot, so applying compares it with the profile; the id is hashed, as
    in the log's tombstones (engine.events.erased). No TTL: a topic can hold events for ever."""
    digest = hashlib.sha256(profile_key.encode()).hexdigest()
    return f"{_p()}er:{{{_slot_tags()[key_slot(profile_key.encode())]}}}:{digest}"


def trending(epoch: int) -> str:
    return f"{_p()}tr:{epoch}"


def for_you(visitor_id: str) -> str:
    """The for-you list computed when the visitor's events were applied (engine.ranking.stored)."""
    return f"{_p()}f:{{{visitor_id}}}"


def exposure(visitor_id: str) -> str:
    """Impressions and clicks (engine.merch.exposure): caps, anti-repetition, attribution."""
    return f"{_p()}x:{{{visitor_id}}}"


def experiment(experiment_id: str) -> str:
    """Per-arm visitor, impression and click counters of one experiment (engine.merch.exposure)."""
    return f"{_p()}xp:{experiment_id}"


def pages(visitor_id: str) -> str:
    """Hash recommendation id -> the items served so far under it, page by page (engine.paging).
    One key per visitor, so an erase deletes it by name."""
    return f"{_p()}pg:{{{visitor_id}}}"


def console_session(session_id: str) -> str:
    """A merchandiser console sign-in (engine.store.console); it expires when idle."""
    return f"{_p()}console:{session_id}"


def visitor_preferences(visitor_id: str) -> str:
    """What an anonymous visitor declared (engine.profiles.preferences); same slot as their profile."""
    return f"{_p()}pv:{{{visitor_id}}}"


def customer_preferences(customer_id: str) -> str:
    """What a customer declared (engine.profiles.preferences)."""
    return f"{_p()}pc:{{{customer_id}}}"


def watchers(item_id: str) -> str:
    """The people watching an item (a sorted set of ``v:ID``/``c:ID``; engine.profiles.preferences):
    a catalogue change fans out to them without scanning profiles. No TTL: it outlives evictions and
    cleans itself as it is read."""
    return f"{_p()}w:{item_id}"


def interest_category(category: str) -> str:
    """The people who declared a category a favourite (a set of ``v:ID``/``c:ID``;
    engine.profiles.interests): a new item reaches them without a scan. No TTL, cleaned as read."""
    return f"{_p()}ic:{category}"


def interest_brand(brand: str) -> str:
    """The people who declared a brand a favourite (as ``interest_category``)."""
    return f"{_p()}ib:{brand}"


def item_viewers(item_id: str) -> str:
    """The people who viewed or carted an item lately (a sorted set of ``v:ID``/``c:ID`` by their
    last signal; engine.profiles.viewers), for a price drop to reach them. A TTL, capped."""
    return f"{_p()}wb:{item_id}"


def viewed_items(person: str) -> str:
    """Hash item -> views, ``+item`` -> cart adds, of one person (``v:ID``/``c:ID``): the counts the
    ``item_viewers`` entries stand for, and what an erasure removes from them. A TTL."""
    return f"{_p()}wp:{person}"


def trigger_sends(person: str) -> str:
    """Zset of a person's messages (``channel|trigger|key`` by time), for the triggers' caps
    (engine.triggers); ``person`` is their customer id, else their visitor id."""
    return f"{_p()}tg:s:{person}"


def trigger_touches(person: str) -> str:
    """Hash trigger -> ``arm|ts|window`` of the person's last delivery (or would-be delivery)."""
    return f"{_p()}tg:t:{person}"


def trigger_tiers(person: str) -> str:
    """Hash trigger -> the value tier last seen for the person (engine.triggers.kinds.tier)."""
    return f"{_p()}tg:vt:{person}"
