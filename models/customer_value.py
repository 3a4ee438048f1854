"""Fitting the shop-level parameters of the customer value and churn scores (``engine.customers.scores``).

From an order table (one row per order: customer, time, revenue), features are taken at snapshot
times t (orders before t) and labels over [t, t + horizon): whether the customer ordered again, how
many orders, how much revenue. Every label ends by the time the model is fitted for, so no future
leaks in. The fits are small scipy problems because the weights carry sign bounds (sklearn's
logistic and ridge regressions have none, and Vitrine does not depend on sklearn).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import lsq_linear, minimize
from scipy.special import expit

DAY = 86400.0
FEATURES = ("overdue", "overdue_x_orders", "log_orders", "log_basket", "log_tenure")
HINGE = math.log(1.5)  # risk starts to rise once recency passes 1.5x the customer's usual gap
PRIOR_GAPS = 1.0  # pseudo-gaps of the shop's typical gap mixed into each customer's own


@dataclass(frozen=True)
class ShopModel:
    horizon_days: float
    typical_gap_days: float  # g0: median gap between orders of repeat customers
    buy_w: tuple[float, ...]  # logit weights on FEATURES, signs constrained
    buy_b: float
    spend_w: tuple[float, ...]  # log revenue in the horizon given a purchase (smearing folded into b)
    spend_b: float
    orders_w: tuple[float, ...]  # log orders in the horizon given a purchase
    orders_b: float
    means: tuple[float, ...]  # training means of FEATURES: the reference point of the explanation
    bands: tuple[float, float] = (0.3, 0.6)  # P(buy) below the first: high churn risk; below the second: medium

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ShopModel":
        tuples = {k: tuple(float(x) for x in v) for k, v in data.items() if isinstance(v, list)}
        return cls(**{**data, **tuples})


# weight signs: -1 <= 0, +1 >= 0, 0 free
BUY_SIGNS = (-1, -1, 1, 0, -1)  # overdue, overdue x orders, log orders, log basket, log tenure
SPEND_SIGNS = (-1, -1, 1, 1, -1)
ORDERS_SIGNS = BUY_SIGNS
SNAPSHOT_EVERY_DAYS = 7
MIN_HISTORY_DAYS = 60


@dataclass
class Orders:
    """One row per order; ``customer`` holds integer codes."""

    customer: np.ndarray
    ts: np.ndarray  # unix seconds
    revenue: np.ndarray

    @classmethod
    def build(cls, rows: list[tuple[str, float, float]]) -> tuple["Orders", list[str]]:
        names = sorted({r[0] for r in rows})
        code = {n: i for i, n in enumerate(names)}
        return cls(np.array([code[r[0]] for r in rows], dtype=np.int64), np.array([r[1] for r in rows], dtype=float),
                   np.array([r[2] for r in rows], dtype=float)), names


@dataclass
class Snapshot:
    """Customers with an order before ``t`` (``ids``: their codes) and what they did up to t."""

    t: float
    ids: np.ndarray
    orders: np.ndarray
    revenue: np.ndarray
    first: np.ndarray  # unix seconds
    last: np.ndarray
    y_orders: np.ndarray  # in [t, t + horizon)
    y_revenue: np.ndarray

    @property
    def recency_days(self) -> np.ndarray:
        return (self.t - self.last) / DAY

    @property
    def tenure_days(self) -> np.ndarray:
        return (self.t - self.first) / DAY


def snapshot(o: Orders, t: float, horizon_days: float) -> Snapshot:
    n = int(o.customer.max()) + 1 if len(o.customer) else 0
    before = o.ts < t
    after = (o.ts >= t) & (o.ts < t + horizon_days * DAY)
    cb, tb = o.customer[before], o.ts[before]
    orders = np.bincount(cb, minlength=n)
    revenue = np.bincount(cb, weights=o.revenue[before], minlength=n)
    first = np.full(n, np.inf)
    np.minimum.at(first, cb, tb)
    last = np.full(n, -np.inf)
    np.maximum.at(last, cb, tb)
    y_orders = np.bincount(o.customer[after], minlength=n)
    y_revenue = np.bincount(o.customer[after], weights=o.revenue[after], minlength=n)
    ids = np.flatnonzero(orders > 0)
    return Snapshot(t, ids, orders[ids].astype(float), revenue[ids], first[ids], last[ids], y_orders[ids].astype(float),
                    y_revenue[ids])


def typical_gap(s: Snapshot) -> float:
    """The median gap between orders of repeat customers (days); 30 when there are none."""
    rep = s.orders > 1
    if not rep.any():
        return 30.0
    return float(np.median((s.last[rep] - s.first[rep]) / DAY / (s.orders[rep] - 1)))


def feature_matrix(s: Snapshot, g0: float) -> np.ndarray:
    """The vectorised twin of ``engine.customers.scores.features`` (tested equal)."""
    n = s.orders
    gap = np.maximum(((s.last - s.first) / DAY + PRIOR_GAPS * g0) / (n - 1 + PRIOR_GAPS), 1.0)
    ratio = np.maximum(s.recency_days, 0.0) / gap
    overdue = np.where(ratio > 1.5, np.log(np.maximum(ratio, 1e-9)) - HINGE, 0.0)
    lo = np.log(n)
    return np.column_stack([overdue, overdue * lo, lo, np.log1p(s.revenue / n), np.log1p(np.maximum(s.tenure_days, 0))])


@dataclass
class Linear:
    w: np.ndarray
    b: float

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return x @ self.w + self.b


def _bounds(signs: tuple[int, ...]) -> list[tuple[float | None, float | None]]:
    return [(0, None) if s > 0 else (None, 0) if s < 0 else (None, None) for s in signs]


def fit_signed_logit(x: np.ndarray, y: np.ndarray, signs: tuple[int, ...], c: float = 1.0) -> Linear:
    """L2 logistic regression (C = ``c``) on standardised features with bounded weight signs,
    returned on the raw scale."""
    mu, sd = x.mean(0), x.std(0) + 1e-12
    z = (x - mu) / sd
    k = z.shape[1]

    def loss(wb: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = wb[:k], wb[k]
        s = z @ w + b
        g = expit(s) - y
        return float(np.sum(np.logaddexp(0, s) - y * s) + 0.5 * w @ w / c), np.r_[z.T @ g + w / c, g.sum()]

    r = minimize(loss, np.zeros(k + 1), jac=True, method="L-BFGS-B", bounds=[*_bounds(signs), (None, None)])
    w = r.x[:k] / sd
    return Linear(w, float(r.x[k] - np.sum(r.x[:k] * mu / sd)))


def fit_signed_ridge(x: np.ndarray, y: np.ndarray, signs: tuple[int, ...], alpha: float = 1.0) -> Linear:
    mu, sd = x.mean(0), x.std(0) + 1e-12
    z = (x - mu) / sd
    n, k = z.shape
    a = np.vstack([np.c_[z, np.ones(n)], np.c_[np.sqrt(alpha) * np.eye(k), np.zeros(k)]])
    lo = [b[0] if b[0] is not None else -np.inf for b in _bounds(signs)] + [-np.inf]
    hi = [b[1] if b[1] is not None else np.inf for b in _bounds(signs)] + [np.inf]
    r = lsq_linear(a, np.r_[y, np.zeros(k)], bounds=(lo, hi))
    w = r.x[:k] / sd
    return Linear(w, float(r.x[k] - np.sum(r.x[:k] * mu / sd)))


def snapshot_times(o: Orders, until: float, horizon_days: float, every_days: float = SNAPSHOT_EVERY_DAYS) -> list[float]:
    """Most recent first: until - horizon, then back every ``every_days`` while at least
    ``MIN_HISTORY_DAYS`` of orders lie before the snapshot."""
    start = float(o.ts.min()) if len(o.ts) else until
    times, t = [], until - horizon_days * DAY
    while t - start >= MIN_HISTORY_DAYS * DAY:
        times.append(t)
        t -= every_days * DAY
    return times


class NotEnoughHistory(ValueError):
    """Too little order history for a fit (under ``MIN_HISTORY_DAYS`` + the horizon, or no repeat buyer)."""


def fit(o: Orders, until: float, horizon_days: float = 90.0, every_days: float = SNAPSHOT_EVERY_DAYS,
        max_snapshots: int | None = None) -> ShopModel:
    """The shop model from orders before ``until``: snapshots stacked, labels ending by ``until``."""
    times = snapshot_times(o, until, horizon_days, every_days)[:max_snapshots]
    if not times:
        raise NotEnoughHistory(f"need at least {MIN_HISTORY_DAYS + horizon_days:.0f} days of orders")
    snaps = [snapshot(o, t, horizon_days) for t in times]
    g0 = typical_gap(snaps[0])
    x = np.vstack([feature_matrix(s, g0) for s in snaps])
    y_orders = np.concatenate([s.y_orders for s in snaps])
    y_rev = np.concatenate([s.y_revenue for s in snaps])
    y = (y_orders > 0).astype(float)
    if y.min() == y.max():
        raise NotEnoughHistory("every customer (or none) bought again: nothing to learn")
    buy = fit_signed_logit(x, y, BUY_SIGNS)
    pos = (y == 1) & (y_rev > 0)
    spend = fit_signed_ridge(x[pos], np.log(y_rev[pos]), SPEND_SIGNS)
    spend.b += float(np.log(np.mean(np.exp(np.log(y_rev[pos]) - spend(x[pos])))))  # smearing: E[exp] != exp(E)
    orders = fit_signed_ridge(x[pos], np.log(y_orders[pos]), ORDERS_SIGNS)
    orders.b += float(np.log(np.mean(np.exp(np.log(y_orders[pos]) - orders(x[pos])))))
    tup = lambda v: tuple(float(a) for a in v)  # noqa: E731
    return ShopModel(horizon_days=horizon_days, typical_gap_days=g0, buy_w=tup(buy.w), buy_b=buy.b,
                     spend_w=tup(spend.w), spend_b=spend.b, orders_w=tup(orders.w), orders_b=orders.b,
                     means=tup(x.mean(0)))


def predict(m: ShopModel, s: Snapshot) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(P(buy), expected orders, expected revenue) for every customer of the snapshot."""
    x = feature_matrix(s, m.typical_gap_days)
    p = expit(x @ np.array(m.buy_w) + m.buy_b)
    orders = p * np.maximum(np.exp(x @ np.array(m.orders_w) + m.orders_b), 1.0)
    return p, orders, p * np.exp(x @ np.array(m.spend_w) + m.spend_b)



MODEL_FILE = "customer-model.json"


def save(models_dir: Path, model: ShopModel, meta: dict[str, Any]) -> Path:
    """Write the shop model next to the recommendation artifacts (atomically: readers see the old
    one or the new one)."""
    models_dir.mkdir(parents=True, exist_ok=True)
    path = models_dir / MODEL_FILE
    tmp = path.with_name(f".{MODEL_FILE}.tmp")
    tmp.write_text(json.dumps({"model": model.to_json(), "meta": meta}, indent=2))
    tmp.replace(path)
    return path


_loaded: dict[Path, tuple[int, ShopModel]] = {}


def load(models_dir: Path) -> ShopModel | None:
    """The shop model ``vitrine train`` fitted last, re-read only when the file changed; None
    before the first fit."""
    path = models_dir / MODEL_FILE
    try:
        stamp = path.stat().st_mtime_ns
    except FileNotFoundError:
        return None
    cached = _loaded.get(path)
    if cached is None or cached[0] != stamp:
        cached = (stamp, ShopModel.from_json(json.loads(path.read_text())["model"]))
        _loaded[path] = cached
    return cached[1]
