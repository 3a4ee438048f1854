"""Interaction history -> the sparse matrices the models learn from.

Rows come from the event log or an imported CSV as plain ``Interaction`` tuples. A person is a
customer when we know one (login stitches the cookie's earlier events to it), else the cookie.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from scipy.sparse import csr_matrix

from models.rows import Interaction, user_key
from models.sessions import SESSION_GAP_S, SessionLog, split_sessions


@dataclass
class InteractionMatrix:
    """User x item confidences plus the index maps and the baskets, aligned with each other."""

    user_ids: list[str]
    item_ids: list[str]
    user_items: csr_matrix  # float32 weighted sums
    basket_items: csr_matrix  # orders x items, 1 where bought together
    item_weight: np.ndarray  # float32 recency-decayed popularity per item
    first_ts: float
    last_ts: float
    n_events: int
    user_recent: csr_matrix | None = None  # user_items decayed to last_ts: the person's history by recency
    sessions: SessionLog | None = None  # the visitors' sessions over these items (models.sessions)

    @property
    def item_index(self) -> dict[str, int]:
        return {item: i for i, item in enumerate(self.item_ids)}


def build_matrix(
    rows: Iterable[Interaction],
    weights: Mapping[str, float],
    *,
    popularity_half_life_s: float,
    history_half_life_s: float = 30 * 86400,
    item_ids: list[str] | None = None,
    session_gap_s: float = SESSION_GAP_S,
) -> InteractionMatrix:
    """Sum per-type weights per (person, item); keep orders as baskets for bought-together.

    Next to the plain sums (what ALS learns from), ``user_recent`` holds the same sums with each
    event decayed by its age at the end of the data: a person's own items ranked by how much and
    how lately they used them.

    ``item_ids`` fixes the item index (e.g. to evaluate on a catalogue); otherwise it is every
    item seen with a positive weight, in order of first appearance.
    """
    rows = [r for r in rows if weights.get(r.event_type, 0.0) > 0]
    linked: dict[str, str] = {}
    for r in rows:
        if r.customer_id:
            linked.setdefault(r.visitor_id, r.customer_id)
    fixed = item_ids is not None
    item_index: dict[str, int] = {i: n for n, i in enumerate(item_ids or [])}
    user_index: dict[str, int] = {}
    basket_index: dict[str, int] = {}
    u_idx, i_idx, vals, b_rows, b_cols, ts_list = [], [], [], [], [], []
    for r in rows:
        item = item_index.get(r.item_id)
        if item is None:
            if fixed:
                continue
            item = item_index[r.item_id] = len(item_index)
        key = user_key(r.visitor_id, r.customer_id or linked.get(r.visitor_id))
        user = user_index.setdefault(key, len(user_index))
        u_idx.append(user)
        i_idx.append(item)
        vals.append(weights[r.event_type])
        ts_list.append(r.ts)
        if r.basket is not None:
            b_rows.append(basket_index.setdefault(r.basket, len(basket_index)))
            b_cols.append(item)
    n_items = len(item_index)
    ts = np.asarray(ts_list, dtype=np.float64)
    first_ts = float(ts.min()) if len(ts) else 0.0
    last_ts = float(ts.max()) if len(ts) else 0.0
    user_items = csr_matrix(
        (np.asarray(vals, dtype=np.float32), (np.asarray(u_idx), np.asarray(i_idx))),
        shape=(len(user_index), n_items),
        dtype=np.float32,
    )
    user_items.sum_duplicates()
    age = last_ts - ts
    user_recent = csr_matrix(
        (np.asarray(vals, dtype=np.float64) * 0.5 ** (age / history_half_life_s), (np.asarray(u_idx), np.asarray(i_idx))),
        shape=user_items.shape,
    ).astype(np.float32)
    user_recent.sum_duplicates()
    baskets = csr_matrix(
        (np.ones(len(b_rows), dtype=np.float32), (np.asarray(b_rows), np.asarray(b_cols))),
        shape=(len(basket_index), n_items),
        dtype=np.float32,
    )
    baskets.sum_duplicates()
    baskets.data[:] = 1.0
    decay = 0.5 ** ((last_ts - ts) / popularity_half_life_s) if len(ts) else ts
    item_weight = np.bincount(
        np.asarray(i_idx, dtype=np.int64), weights=np.asarray(vals) * decay, minlength=n_items
    ).astype(np.float32)
    inverse = {i: item for item, i in item_index.items()}
    return InteractionMatrix(
        user_ids=list(user_index),
        item_ids=[inverse[i] for i in range(n_items)],
        user_items=user_items,
        basket_items=baskets,
        item_weight=item_weight,
        first_ts=first_ts,
        last_ts=last_ts,
        n_events=len(rows),
        user_recent=user_recent,
        sessions=split_sessions(rows, item_index, weights, session_gap_s),
    )
