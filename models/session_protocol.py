"""The session-based protocol: predict the next item at every position of a held-out session.

As the session-rec framework (Ludewig & Jannach) and the SR-GNN paper (Wu et al. 2019) evaluate:
the log is cut into sessions (``models.sessions``); the sessions that end in the test period are
held out whole and training is every session that ended before it. In a held-out session only the
items training knows are kept; for each step after the first, a method is given the steps so far
(the events they came from) and ranks the catalogue; the target is the next step's item. HR@20 (the
hit rate, which the SR-GNN paper calls P@20) and MRR@20 averaged over all those predictions are
what those papers report; NDCG@20 with one target is the same idea with a log discount.

As in the user-level protocol, what production never shows at that point (the cart, and by setting
what was bought or seen) is left out of every ranking, and a step whose item is left out is not
scored (counted as "nothing new"). Sessions are scored as anonymous visitors: the query knows
nothing but the session so far.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

from models.evaluate import Protocol, Query, Split, exclusions, time_split
from models.rows import Interaction, user_key
from models.sessions import runs


def session_split(rows: Sequence[Interaction], cutoff: float, protocol: Protocol, weights: Mapping[str, float],
                  *, end: float | None = None) -> Split:
    """Training: sessions that ended before ``cutoff``; queries: every next step of the sessions
    that ended in [cutoff, end] (at most ``protocol.max_people`` sessions, seeded)."""
    rows = sorted(rows, key=lambda r: r.ts)
    if end is None:
        end = rows[-1].ts if rows else cutoff
    sessions = runs([r for r in rows if r.ts <= end], protocol.session_gap_s)
    train = sorted((r for s in sessions if s[-1].ts < cutoff for r in s), key=lambda r: r.ts)
    known = {r.item_id for r in train if weights.get(r.event_type, 0.0) > 0}
    held_out = [s for s in sessions if s[-1].ts >= cutoff]
    if protocol.max_people is not None and len(held_out) > protocol.max_people:
        keep = sorted(random.Random(protocol.seed).sample(range(len(held_out)), protocol.max_people))
        held_out = [held_out[i] for i in keep]
    queries: list[Query] = []
    targets: list[set[str]] = []
    cold = nothing_new = 0
    for session in held_out:
        kept = [r for r in session if weights.get(r.event_type, 0.0) > 0 and r.item_id in known]
        ends = [n for n in range(len(kept)) if n + 1 == len(kept) or kept[n + 1].item_id != kept[n].item_id]
        if len(ends) < 2:
            cold += 1
            continue
        for step in range(1, len(ends)):
            prefix = kept[:ends[step - 1] + 1]
            target = kept[ends[step]].item_id
            exclude = exclusions(prefix, protocol)
            if target in exclude:
                nothing_new += 1
                continue
            last = prefix[-1]
            queries.append(Query(user_key(last.visitor_id, last.customer_id), last.visitor_id, last.customer_id,
                                 tuple(prefix), last.ts, protocol.depth, frozenset(exclude), len(prefix)))
            targets.append({target})
    return Split(cutoff, end, train, queries, targets, len(held_out), cold, nothing_new)


def split_at_tail(rows: Sequence[Interaction], protocol: Protocol, weights: Mapping[str, float]
                  ) -> tuple[Split, Split]:
    """(validation, test): test is the last ``test_span_s`` of the data; validation is the same
    span just before it, carved from the training period (tuning never sees the test period)."""
    split = session_split if protocol.sessions else time_split
    last = max(r.ts for r in rows)
    test_cut = last - protocol.test_span_s
    validation_cut = test_cut - protocol.test_span_s
    validation = split([r for r in rows if r.ts < test_cut], validation_cut, protocol, weights, end=test_cut)
    return validation, split(rows, test_cut, protocol, weights, end=last)
