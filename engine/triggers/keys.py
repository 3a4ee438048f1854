"""Redis keys of the triggers. The queues share the hash tag ``{tg}``: a claim script touches
both keys of one queue. None carries a TTL: what is scheduled or counted must survive memory
pressure. A person's own keys (their send log and touches) are ``engine.store.keys``', beside
their other keys, so an erasure finds them."""

from __future__ import annotations

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


def stats(trigger: str) -> str:
    """Counters: suppressions by reason, deliveries and webhook outcomes."""
    return f"tg:n:{trigger}"


def people(trigger: str, arm: str) -> str:
    return f"tg:p:{trigger}:{arm}"


def converted(trigger: str, arm: str) -> str:
    return f"tg:c:{trigger}:{arm}"


def revenue(trigger: str, arm: str) -> str:
    """Hash person -> revenue within the attribution window."""
    return f"tg:r:{trigger}:{arm}"

