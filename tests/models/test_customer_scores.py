"""The value and churn scores: their direction (time passing, a purchase), the fit on a known
simulated shop, the vectorised twin, BG/NBD on a known case, and ``vitrine evaluate-customers``."""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from engine.customers.scores import History, explain, features, score
from models.customer_eval import BgInputs, BgNbd, auc, evaluate_cut
from models.customer_value import DAY, Orders, ShopModel, feature_matrix, fit, predict, snapshot
from tests.api.cli.test_serve_and_demo import ROOT, VITRINE

MODEL = ShopModel(horizon_days=90, typical_gap_days=38.0, buy_w=(-0.406, -0.428, 1.256, 0.408, -0.003), buy_b=-2.545,
                  spend_w=(0.0, -0.030, 0.595, 0.759, -0.092), spend_b=2.171,
                  orders_w=(0.0, -0.071, 0.576, 0.093, -0.141), orders_b=0.395, means=(0.3, 0.4, 0.8, 5.5, 4.6))
T0 = 1_700_000_000.0


def simulated_orders(customers: int = 600, days: int = 540, seed: int = 1) -> list[tuple[str, float, float]]:
    """Customers with their own purchase rate who may drop out (BG/NBD's story), so that who buys
    again depends on recency and frequency."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(customers):
        rate = rng.gamma(0.8, 1 / 25)  # orders per day
        dropout = rng.beta(1, 12)
        basket = rng.gamma(2, 30)
        t = rng.uniform(0, days / 2)
        while t < days:
            rows.append((f"c{c}", T0 + t * DAY, float(basket * rng.gamma(4, 0.25))))
            if rng.random() < dropout:
                break
            t += rng.exponential(1 / max(rate, 1e-3))
    return rows


def test_scores_fall_as_time_passes_and_rise_after_a_purchase() -> None:
    h = History(first_order=T0, last_order=T0 + 200 * DAY, orders=4, revenue=400.0)
    previous = score(MODEL, h, h.last_order)
    for week in range(1, 60):
        now = h.last_order + week * 7 * DAY
        current = score(MODEL, h, now)
        assert current is not None and previous is not None
        assert current.p_buy <= previous.p_buy + 1e-12
        assert current.expected_revenue <= previous.expected_revenue + 1e-9
        previous = current
    now = h.last_order + 150 * DAY
    before = score(MODEL, h, now)
    bought = History(h.first_order, now, h.orders + 1, h.revenue + 1.0)  # even a tiny order
    after = score(MODEL, bought, now)
    assert before is not None and after is not None and after.p_buy > before.p_buy
    bands = ["high", "medium", "low"]
    assert bands.index(after.churn_risk) >= bands.index(before.churn_risk)
    lapsed = score(MODEL, History(T0, T0, 1, 20.0), T0 + 400 * DAY)  # one small order, long ago
    assert lapsed is not None and lapsed.churn_risk == "high"
    assert score(MODEL, History(0, 0, 0, 0), now) is None


def test_explanation_names_what_raises_the_risk() -> None:
    h = History(first_order=T0, last_order=T0 + 30 * DAY, orders=8, revenue=3000.0)
    reasons = explain(MODEL, h, T0 + 200 * DAY)
    assert reasons[0]["factor"] == "recency" and reasons[0]["effect"] == "raises risk"
    assert "usual gap" in reasons[0]["detail"]
    assert next(r for r in reasons if r["factor"] == "frequency")["effect"] == "lowers risk"


def test_the_fit_learns_the_signs_and_the_live_score_matches_the_batch_one() -> None:
    orders, names = Orders.build(simulated_orders())
    until = float(orders.ts.max()) + 1
    model = fit(orders, until, 90)
    assert model.buy_w[0] <= 0 and model.buy_w[1] <= 0 and model.buy_w[2] >= 0 and model.buy_w[4] <= 0
    assert model.spend_w[3] >= 0  # a bigger basket never lowers the value
    s = snapshot(orders, until, 90)
    p, expected_orders, value = predict(model, s)
    for i in range(0, len(s.ids), 37):
        h = History(float(s.first[i]), float(s.last[i]), int(s.orders[i]), float(s.revenue[i]))
        live = score(model, h, until)
        assert live is not None
        assert math.isclose(live.p_buy, p[i], rel_tol=1e-9) and math.isclose(live.expected_revenue, value[i], rel_tol=1e-9)
        assert np.allclose(features(h, until, model.typical_gap_days), feature_matrix(s, model.typical_gap_days)[i])
    assert ShopModel.from_json(json.loads(json.dumps(model.to_json()))) == model


def test_evaluation_beats_chance_and_reports_every_baseline() -> None:
    orders, _ = Orders.build(simulated_orders())
    cut = float(orders.ts.min()) + 400 * DAY
    r = evaluate_cut(orders, cut, 90)
    assert set(r["buy"]) == {"recency", "rfm_rank", "bgnbd_p_alive", "bgnbd_expected_purchases", "bgnbd_p_buy", "vitrine"}
    assert set(r["revenue"]) == {"past_revenue_scaled", "bgnbd_x_gamma_gamma", "vitrine"}
    assert r["buy"]["vitrine"]["auc"] > 0.6 and r["revenue"]["vitrine"]["spearman"] > 0.2
    assert len(r["buy"]["vitrine"]["deciles"]) == 10 and r["buy"]["vitrine"]["calibration_error"] is not None
    assert r["target"]["best_auc_baseline"] in r["buy"]


def test_auc_and_bgnbd_on_known_cases() -> None:
    assert auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.3, 0.4])) == 1.0
    assert auc(np.array([0, 1, 0, 1]), np.array([1, 1, 1, 1])) == 0.5
    # One customer with no repeat purchase is alive for sure; a frequent buyer long silent is not.
    bg = BgNbd(r=0.24, alpha=4.41, a=0.79, b=2.43)  # the published CDNOW fit (weeks)
    b = BgInputs(x=np.array([0.0, 10.0]), tx=np.array([0.0, 5.0]), T=np.array([30.0, 40.0]), monetary=np.zeros(2))
    alive = bg.p_alive(b)
    assert alive[0] == 1.0 and alive[1] < 0.05
    # Fader, Hardie & Lee's worked example: x=2, tx=30.43, T=38.86 -> E[X(39)] ~ 1.226
    one = BgInputs(x=np.array([2.0]), tx=np.array([30.43]), T=np.array([38.86]), monetary=np.zeros(1))
    assert abs(bg.expected_purchases(one, 39.0)[0] - 1.226) < 0.01


def test_evaluate_customers_command(tmp_path: Path) -> None:
    csv = tmp_path / "events.csv"
    with csv.open("w") as fh:
        fh.write("timestamp,visitor_id,customer_id,event_type,item_id,quantity,price\n")
        from datetime import datetime, timezone

        for customer, ts, revenue in sorted(simulated_orders(300), key=lambda r: r[1]):
            when = datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            fh.write(f"{when},v{customer},{customer},purchase,85123A,1,{revenue:.2f}\n")
    cut = datetime.fromtimestamp(T0 + 400 * DAY, timezone.utc).strftime("%Y-%m-%d")
    env = {k: v for k, v in os.environ.items() if not k.startswith("VITRINE_")}
    env.update(VITRINE_DATA_DIR=str(tmp_path / "var"))
    done = subprocess.run([*VITRINE, "evaluate-customers", "--events", str(csv), "--cut", cut, "--out",
                           str(tmp_path / "reports")], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "| vitrine | vitrine |" in done.stdout and "rfm_rank" in done.stdout
    [out] = (tmp_path / "reports").iterdir()
    assert {p.name for p in out.iterdir()} == {"customers.json", "customers.md", f"calibration_{cut}.png",
                                               f"lift_{cut}.png"}
    bad = subprocess.run([*VITRINE, "evaluate-customers", "--events", str(csv), "--cut", "2024-13-01"], env=env,
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "--cut" in bad.stderr


@pytest.mark.parametrize("orders", [1, 3])
def test_usual_gap_is_shrunk_towards_the_shop(orders: int) -> None:
    h = History(first_order=T0, last_order=T0 + 10 * DAY * (orders - 1), orders=orders, revenue=100.0)
    x = features(h, h.last_order + 100 * DAY, 38.0)
    assert x[0] > 0  # 100 days is overdue for both


def test_train_fits_the_shop_model_from_the_log_and_leaves_out_withdrawn_people(tmp_path: Path) -> None:
    from engine.customers.training import orders as logged_orders
    from engine.customers.training import train
    from models.customer_value import load

    rows = simulated_orders(300)
    events = [{"event_id": f"e{i}", "type": "purchase", "visitor_id": f"v{c}", "customer_id": c, "ts": ts, "rt": ts,
               "items": [{"item_id": "A", "quantity": 2, "price": round(rev / 2, 2)}]}
              for i, (c, ts, rev) in enumerate(sorted(rows, key=lambda r: r[1]))]
    last = events[-1]["ts"]
    events.append({"event_id": "w", "type": "consent", "visitor_id": "vc0", "properties": {"granted": False},
                   "ts": last, "rt": last})
    kept = logged_orders(events, consent_required=False)
    assert len(kept) == len(rows) - sum(1 for r in rows if r[0] == "c0") and all(c != "c0" for c, _, _ in kept)
    assert abs(kept[0][2] - 2 * round(sorted(rows, key=lambda r: r[1])[0][2] / 2, 2)) < 1e-9

    from engine.events.log import EventLog
    from engine.events.schema import Event

    log = EventLog(tmp_path / "log", fsync=False)
    log.write(Event.model_validate(e) for e in events)
    log.close()
    assert load(tmp_path / "models") is None
    model = train(tmp_path / "log", tmp_path / "models", consent_required=False, horizon_days=90, now=last + DAY)
    assert load(tmp_path / "models") == model and model.horizon_days == 90
