"""Redis keys of the triggers. The queues share the hash tag ``{tg}``: a claim script touches
both keys of one queue. None carries a TTL: what is scheduled or counted must survive memory
pressure. A person's own keys (their send log and touches) are ``engine.store.keys``', beside
their other keys, so an erasure finds them.

On a Redis Cluster (``names(True)``) every shared key (once-index, streams, dead letters, counters)
also carries ``{tg}``, so a decision's transaction and the hook's scripts stay in one slot; the
catalogue changes' outbox carries the catalogue's ``{items}`` instead, as it is written in the
catalogue's own transaction. One Redis keeps the names below."""

from __future__ import annotations

from engine.tenants import key_prefix

OCCURRENCES = "tg:{tg}:o"  # pending occurrences: a due-time zset, and a hash of their data (":d")
OUTBOX = "tg:{tg}:w"  # webhook documents to post: a next-attempt zset and a hash of the documents
TOPIC = "tg:{tg}:k"  # documents to produce to the outbound Kafka topic: the same shape
CHANGES = "tg:{tg}:i"  # catalogue changes to fan out to watchers: the same shape
ONCE = "tg:once"  # hash "<trigger>|<person>" -> 1: kinds that fire once per person ever
DELIVERIES = "tg:deliveries"  # stream of documents decided for sending (the pull API)
HELD_OUT = "tg:held"  # stream of the control group's "would have been sent"
DEAD = "tg:dead"  # list of dead-lettered webhook documents


def data(queue: str) -> str:
    return f"{queue}:d"


class Names:
    """The shared keys' names: ``prefix`` is ``tg:`` on one Redis, ``tg:{tg}:`` on a cluster, each
    after the shop's own prefix (``shop``, engine.tenants) in a process serving several."""

    def __init__(self, cluster: bool, shop: str = "") -> None:
        self.cluster = cluster
        self.prefix = f"{shop}tg:{{tg}}:" if cluster else f"{shop}tg:"
        self.occurrences, self.outbox, self.topic = shop + OCCURRENCES, shop + OUTBOX, shop + TOPIC
        self.changes = f"{shop}{{items}}:tg:i" if cluster else shop + CHANGES
        self.committed = f"{shop}tg:{{tg}}:i:c"  # cluster only: catalogue changes already fanned out (id -> time)
        self.once = self.prefix + "once"
        self.deliveries = self.prefix + "deliveries"
        self.held_out = self.prefix + "held"
        self.dead = self.prefix + "dead"
        self.ids = self.prefix + "ids"  # set: the triggers with counters (the report's list, an erasure's index)

    def stats(self, trigger: str) -> str:
        """Counters: suppressions by reason, deliveries and webhook outcomes."""
        return f"{self.prefix}n:{trigger}"

    def people(self, trigger: str, arm: str) -> str:
        return f"{self.prefix}p:{trigger}:{arm}"

    def converted(self, trigger: str, arm: str) -> str:
        return f"{self.prefix}c:{trigger}:{arm}"

    def revenue(self, trigger: str, arm: str) -> str:
        """Hash person -> revenue within the attribution window."""
        return f"{self.prefix}r:{trigger}:{arm}"


_NAMES: dict[tuple[bool, str], Names] = {}


def names(cluster: bool) -> Names:
    """The current shop's names (engine.tenants)."""
    shop = key_prefix()
    found = _NAMES.get((cluster, shop))
    if found is None:
        found = _NAMES[(cluster, shop)] = Names(cluster, shop)
    return found


def stats(trigger: str) -> str:
    """Counters on one Redis (``Names.stats``)."""
    return names(False).stats(trigger)


def people(trigger: str, arm: str) -> str:
    return names(False).people(trigger, arm)


def converted(trigger: str, arm: str) -> str:
    return names(False).converted(trigger, arm)


def revenue(trigger: str, arm: str) -> str:
    return names(False).revenue(trigger, arm)
