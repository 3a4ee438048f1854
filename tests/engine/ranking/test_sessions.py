"""Sessions seen since training reach the session-neighbours index, within a bound."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np

from engine.events.schema import Event
from engine.ranking.sessions import LiveSessions
from engine.ranking.model import ServedModel
from engine.ranking.sessions import session_signals
from engine.runtime import Engine
from models import sknn
from models.rows import Interaction
from models.sessions import SessionLog
from models.train import TrainConfig, fit
from tests.conftest import make_settings

WEIGHTS = {"product_view": 1.0}
HOUR = 3600.0


def log_of(sessions: list[list[int]], first_ts: float = 0.0) -> SessionLog:
    indptr = np.concatenate([[0], np.cumsum([len(s) for s in sessions])]).astype(np.int64)
    items = np.asarray([i for s in sessions for i in s], dtype=np.int32)
    return SessionLog(indptr, items, first_ts + np.arange(len(sessions), dtype=np.float64))


def test_extend_puts_new_sessions_first_and_keeps_the_bound_per_item() -> None:
    index = sknn.build_index(log_of([[0, 1], [0, 2], [1, 2]]), 4, per_item=2)
    grown = sknn.extend(index, log_of([[0, 3], [0, 3, 1]], first_ts=10), 4, per_item=2)
    postings = {item: list(grown.item_sessions[grown.item_indptr[item]:grown.item_indptr[item + 1]])
                for item in range(4)}
    assert postings == {0: [4, 3], 1: [4, 2], 2: [2, 1], 3: [4, 3]}  # newest first, 2 per item
    assert len(grown.session_ts) == 5 and list(grown.session_ts[3:]) == [10.0, 11.0]
    items, votes = sknn.scores(grown, np.array([0], dtype=np.int32), 4, sknn.SknnParams(sample=2, k=2))
    assert 3 in set(items[votes > 0].tolist()) and 2 not in set(items.tolist())


def served(tmp_path: Path) -> ServedModel:
    """A model whose sessions pair a with b; c and d exist but were never seen together with a."""
    rows = [Interaction(n * HOUR + k, f"v{n}", None, "product_view", item)
            for n in range(30) for k, item in enumerate(["a", "b"] if n % 3 else ["c", "d"])]
    config = TrainConfig(weights=WEIGHTS, blend={"session_neighbours": 1.0})
    return ServedModel(fit(config.matrix(rows), config))


def view(visitor: str, item: str, ts: float, n: int = 0, gpc: bool = False) -> Event:
    return Event(event_id=f"{visitor}-{item}-{n}", type="product_view", visitor_id=visitor, item_id=item, ts=ts,
                 rt=ts, gpc=gpc)


def voted(model: ServedModel, item: str) -> set[str]:
    items, votes = session_signals(model, np.array([model.item_index[item]], dtype=np.int32), 1e9)[0]
    return {model.item_ids[i] for i, v in zip(items, votes) if v > 0}


def test_sessions_seen_since_training_become_neighbours(tmp_path: Path) -> None:
    model = served(tmp_path)
    assert voted(model, "a") == {"a", "b"}
    live = LiveSessions(WEIGHTS, gap_s=1800, max_sessions=100)
    later = 100 * HOUR
    live.observe([e for n in range(10) for e in (view(f"w{n}", "a", later + n), view(f"w{n}", "c", later + n + 1))])
    live.observe([view("opted-out", "a", later, gpc=True), view("opted-out", "d", later + 1, gpc=True)])
    assert live.refresh(model) == 10
    assert voted(model, "a") == {"a", "b", "c"}  # d came only from a visitor who opted out
    assert model.artifact.session_index is not None and model.live_index is not model.artifact.session_index


def test_live_sessions_are_bounded_and_cut_by_idle_time() -> None:
    live = LiveSessions(WEIGHTS, gap_s=1800, max_sessions=5, max_steps=3)
    live.observe([view("v", item, 10.0 * k, k) for k, item in enumerate("abcde")])
    live.observe([view("v", "f", 5000.0, 9)])  # after 30 idle minutes: a new session
    assert live.sessions(0) == [(40.0, ["c", "d", "e"]), (5000.0, ["f"])]
    live.observe([view(f"x{n}", "a", 6000.0 + n) for n in range(20)])
    found = live.sessions(0)
    assert len(found) == 5 and found[-1] == (6019.0, ["a"])
    assert live.sessions(6017.0) == [(6018.0, ["a"]), (6019.0, ["a"])]


def test_the_engine_feeds_the_events_it_applies_unless_consent_is_required(data_dir: Path, redis_url: str) -> None:
    async def main(**overrides: object) -> LiveSessions | None:
        eng = Engine(make_settings(data_dir, redis_url, **overrides), redis_url)
        try:
            await eng.applier.apply([view("p1", "a1", 1e9), view("p1", "a2", 1e9 + 5)])
            return eng.live_sessions
        finally:
            await eng.stop()

    live = asyncio.run(main())
    assert live is not None and live.sessions(0) == [(1e9 + 5, ["a1", "a2"])]
    assert asyncio.run(main(consent_required=True)) is None
    assert asyncio.run(main(live_sessions=0)) is None
