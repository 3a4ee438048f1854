"""``vitrine evaluate-customers``: Vitrine's value and churn scores against the classic models.

Calibrate on the orders before a cut, hold out the next horizon, and score every customer with an
order before the cut:

- buys again in the holdout: ROC AUC and predicted vs observed rate per score decile, for recency
  alone, an RFM rank score (mean percentile of recency, frequency, monetary), BG/NBD probability
  alive and expected purchases, and Vitrine's P(buy);
- holdout revenue: Spearman, mean absolute error and the share of holdout revenue earned by the
  predicted top 10% (and a lift chart), for past revenue scaled to the horizon, BG/NBD x
  Gamma-Gamma, and Vitrine's expected revenue.

Vitrine's model is fitted as ``vitrine train`` fits it, on snapshots whose labels end by the cut.

BG/NBD (Fader, Hardie & Lee 2005) and Gamma-Gamma (Fader, Hardie & Lee 2005b) are fitted here by
maximum likelihood with scipy rather than with the ``lifetimes`` package: lifetimes has had no
release since 2020, pulls pandas, autograd and dill, and its BG/NBD fit raises ConvergenceError on
this data in days with current scipy. Both likelihoods are closed forms of a few lines; the fits
agree with lifetimes 0.11.3 on this data (checked once, outside the suite).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import minimize
from scipy.special import betaln, gammaln, hyp2f1
from scipy.stats import rankdata, spearmanr

from models.customer_value import DAY, Orders, Snapshot, fit, predict, snapshot

WEEK_DAYS = 7.0


# ---------------------------------------------------------------- BG/NBD and Gamma-Gamma


@dataclass(frozen=True)
class BgInputs:
    """BG/NBD's summary in weeks: x = repeat purchase days, tx = last - first purchase day,
    T = cut - first purchase day; monetary = mean revenue of the repeat purchase days."""

    x: np.ndarray
    tx: np.ndarray
    T: np.ndarray
    monetary: np.ndarray


def bg_inputs(o: Orders, s: Snapshot) -> BgInputs:
    before = o.ts < s.t
    day = np.floor(o.ts[before] / DAY).astype(np.int64)
    cust = o.customer[before]
    pairs, inverse = np.unique(np.c_[cust, day], axis=0, return_inverse=True)
    day_rev = np.bincount(inverse.ravel(), weights=o.revenue[before])
    n = int(o.customer.max()) + 1
    days = np.bincount(pairs[:, 0], minlength=n).astype(float)
    first = np.full(n, np.inf)
    np.minimum.at(first, pairs[:, 0], pairs[:, 1])
    last = np.full(n, -np.inf)
    np.maximum.at(last, pairs[:, 0], pairs[:, 1])
    # revenue of repeat days: all days but the first
    is_first = pairs[:, 1] == first[pairs[:, 0]]
    rep_rev = np.bincount(pairs[~is_first, 0], weights=day_rev[~is_first], minlength=n)
    ids, tday = s.ids, math.floor(s.t / DAY)
    x = days[ids] - 1
    monetary = np.divide(rep_rev[ids], x, out=np.zeros(len(ids)), where=x > 0)
    return BgInputs(x, (last[ids] - first[ids]) / WEEK_DAYS, (tday - first[ids]) / WEEK_DAYS, monetary)


def _bg_loglik(params: np.ndarray, b: BgInputs) -> float:
    r, alpha, a, bb = np.exp(params)
    x, tx, T = b.x, b.tx, b.T
    common = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    a1 = betaln(a, bb + x) - betaln(a, bb) - (r + x) * np.log(alpha + T)
    with np.errstate(divide="ignore", invalid="ignore"):
        a2 = np.where(x > 0, betaln(a + 1, bb + np.maximum(x, 1) - 1) - betaln(a, bb) - (r + x) * np.log(alpha + tx),
                      -np.inf)
    return float(np.sum(common + np.logaddexp(a1, a2)))


@dataclass(frozen=True)
class BgNbd:
    r: float
    alpha: float
    a: float
    b: float

    @classmethod
    def fit(cls, b: BgInputs) -> "BgNbd":
        res = minimize(lambda p: -_bg_loglik(p, b), np.zeros(4), method="Nelder-Mead",
                       options={"maxiter": 4000, "xatol": 1e-6, "fatol": 1e-6})
        return cls(*np.exp(res.x))

    def _odds_dead(self, b: BgInputs) -> np.ndarray:
        """a / (b + x - 1) * ((alpha + T) / (alpha + tx))^(r + x) where x > 0, else 0."""
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            log_odds = (np.log(self.a) - np.log(self.b + np.maximum(b.x, 1) - 1)
                        + (self.r + b.x) * (np.log(self.alpha + b.T) - np.log(self.alpha + b.tx)))
            return np.where(b.x > 0, np.exp(log_odds), 0.0)

    def p_alive(self, b: BgInputs) -> np.ndarray:
        return 1.0 / (1.0 + self._odds_dead(b))

    def expected_purchases(self, b: BgInputs, horizon_weeks: float) -> np.ndarray:
        r, alpha, a, bb = self.r, self.alpha, self.a, self.b
        x, T, t = b.x, b.T, horizon_weeks
        hyp = hyp2f1(r + x, bb + x, a + bb + x - 1, t / (alpha + T + t))
        head = (a + bb + x - 1) / (a - 1)
        inner = 1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp
        return head * inner / (1.0 + self._odds_dead(b))

    def p_buy(self, b: BgInputs, horizon_weeks: float) -> np.ndarray:
        """P(at least one purchase in the horizon): alive, and lambda | alive ~ Gamma(r + x, alpha + T)."""
        return self.p_alive(b) * (1 - ((self.alpha + b.T) / (self.alpha + b.T + horizon_weeks)) ** (self.r + b.x))


@dataclass(frozen=True)
class GammaGamma:
    p: float
    q: float
    v: float

    @classmethod
    def fit(cls, b: BgInputs) -> "GammaGamma":
        rep = b.x > 0
        x, m = b.x[rep], b.monetary[rep]

        def nll(params: np.ndarray) -> float:
            p, q, v = np.exp(params)
            ll = (gammaln(p * x + q) - gammaln(p * x) - gammaln(q) + q * np.log(v) + (p * x - 1) * np.log(m)
                  + p * x * np.log(x) - (p * x + q) * np.log(x * m + v))
            return -float(np.sum(ll))

        res = minimize(nll, np.log([1.0, 2.0, float(np.mean(m))]), method="Nelder-Mead",
                       options={"maxiter": 4000, "xatol": 1e-6, "fatol": 1e-6})
        return cls(*np.exp(res.x))

    def expected_spend(self, b: BgInputs) -> np.ndarray:
        """Expected average order value; the population mean for a customer with no repeat day."""
        p, q, v = self.p, self.q, self.v
        return (p * (v + b.x * b.monetary)) / (p * b.x + q - 1)


# ---------------------------------------------------------------- metrics


def auc(y: np.ndarray, s: np.ndarray) -> float:
    """ROC AUC from ranks (Mann-Whitney U), ties counted half."""
    pos = y > 0
    n1, n0 = int(pos.sum()), int((~pos).sum())
    if not n1 or not n0:
        return float("nan")
    ranks = rankdata(s)
    return float((ranks[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def deciles(y: np.ndarray, s: np.ndarray, probability: bool) -> list[dict[str, Any]]:
    """Customers by score, highest first, in 10 equal groups (ties broken by position, so a coarse
    score still gives 10 groups): observed rate, and the mean prediction for a probability."""
    order = np.argsort(-s, kind="stable")
    return [{"decile": i, "n": int(len(idx)), "observed": float(y[idx].mean()),
             "predicted": float(s[idx].mean()) if probability else None}
            for i, idx in enumerate(np.array_split(order, 10), start=1)]


def calibration_error(rows: list[dict[str, Any]]) -> float | None:
    """Size-weighted mean |predicted - observed| over the deciles (None: not a probability)."""
    if rows[0]["predicted"] is None:
        return None
    return float(sum(r["n"] * abs(r["predicted"] - r["observed"]) for r in rows) / sum(r["n"] for r in rows))


def top_share(y: np.ndarray, s: np.ndarray, frac: float = 0.10) -> float:
    top = np.argsort(-s, kind="stable")[:int(np.ceil(frac * len(y)))]
    return float(y[top].sum() / y.sum()) if y.sum() else float("nan")


def lift(y: np.ndarray, s: np.ndarray, points: int = 20) -> list[tuple[float, float]]:
    """(share of customers, share of holdout revenue they earned), best predicted first."""
    cum = np.cumsum(y[np.argsort(-s, kind="stable")]) / max(y.sum(), 1e-12)
    return [(float(f), float(cum[max(int(np.ceil(f * len(y))) - 1, 0)])) for f in np.linspace(0, 1, points + 1)[1:]]


# ---------------------------------------------------------------- one cut


def rfm_rank(s: Snapshot) -> np.ndarray:
    """Mean percentile rank of recency (recent = high), frequency and monetary."""
    n = len(s.ids)
    return (rankdata(-s.recency_days) + rankdata(s.orders) + rankdata(s.revenue)) / (3 * n)


def evaluate_cut(o: Orders, cut: float, horizon_days: float = 90.0) -> dict[str, Any]:
    """Every score and estimate on one cut, with the metrics (a JSON-ready dict)."""
    s = snapshot(o, cut, horizon_days)
    if not len(s.ids):
        raise ValueError("no customer has an order before the cut")
    model = fit(o, cut, horizon_days)
    p, _, value = predict(model, s)
    b = bg_inputs(o, s)
    bg = BgNbd.fit(b)
    gg = GammaGamma.fit(b)
    weeks = horizon_days / WEEK_DAYS
    bg_expected = bg.expected_purchases(b, weeks)
    calibration_days = max((cut - float(o.ts.min())) / DAY, 1.0)  # the whole calibration period
    y_buy = (s.y_orders > 0).astype(float)
    buy_scores = {
        "recency": (-s.recency_days, False, "baseline"),
        "rfm_rank": (rfm_rank(s), False, "baseline"),
        "bgnbd_p_alive": (bg.p_alive(b), True, "baseline"),
        "bgnbd_expected_purchases": (bg_expected, False, "baseline"),
        "bgnbd_p_buy": (bg.p_buy(b, weeks), True, "baseline"),
        "vitrine": (p, True, "vitrine"),
    }
    value_scores = {
        "past_revenue_scaled": (s.revenue * horizon_days / calibration_days, "baseline"),
        "bgnbd_x_gamma_gamma": (bg_expected * gg.expected_spend(b), "baseline"),
        "vitrine": (value, "vitrine"),
    }
    buy = {}
    for name, (score, prob, kind) in buy_scores.items():
        rows = deciles(y_buy, score, prob)
        buy[name] = {"kind": kind, "auc": auc(y_buy, score), "calibration_error": calibration_error(rows),
                     "deciles": rows}
    rev = {}
    for name, (est, kind) in value_scores.items():
        rev[name] = {"kind": kind, "spearman": float(spearmanr(s.y_revenue, est)[0]),
                     "mae": float(np.mean(np.abs(s.y_revenue - est))), "top10_share": top_share(s.y_revenue, est),
                     "predicted_total": float(est.sum()), "lift": lift(s.y_revenue, est)}
    best_auc = max((v["auc"], k) for k, v in buy.items() if v["kind"] == "baseline")
    best_rho = max((v["spearman"], k) for k, v in rev.items() if v["kind"] == "baseline")
    return {
        "cut": cut, "horizon_days": horizon_days, "customers": int(len(s.ids)),
        "buy_rate": float(y_buy.mean()), "holdout_revenue": float(s.y_revenue.sum()),
        "buy": buy, "revenue": rev,
        "target": {"auc_gain": buy["vitrine"]["auc"] - best_auc[0], "best_auc_baseline": best_auc[1],
                   "spearman_gain": rev["vitrine"]["spearman"] - best_rho[0], "best_spearman_baseline": best_rho[1]},
        "shop_model": model.to_json(),
        "bgnbd": vars(bg) | {}, "gamma_gamma": vars(gg) | {},
    }
