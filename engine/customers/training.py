"""``vitrine train``'s customer part: the shop model of the value and churn scores, fitted on the
orders in the event log (one purchase event is one order), honouring consent and erasures as the
recommendation model's training does."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from engine.events.history import Consent
from engine.events.log import read_raw
from models.customer_value import NotEnoughHistory, Orders, ShopModel, fit, save
from models.rows import Interaction


def orders(events: Iterable[dict[str, Any]], consent_required: bool) -> list[tuple[str, float, float]]:
    """(customer_id, time, revenue) of every purchase the person's consent lets us learn from."""
    consent = Consent(consent_required)
    rows: list[Interaction] = []
    revenue: list[float] = []
    for e in events:
        consent.see(e, len(rows))
        if e.get("type") == "purchase" and e.get("customer_id"):
            rows.append(Interaction(float(e["ts"]), e["visitor_id"], e["customer_id"], "purchase", ""))
            revenue.append(_revenue(e))
    return [(r.customer_id, r.ts, revenue[i]) for i, r in enumerate(rows)  # type: ignore[misc]
            if consent.keeps(i, r)]


def _revenue(event: dict[str, Any]) -> float:
    if event.get("revenue") is not None:
        return float(event["revenue"])
    lines = event.get("items") or [{"quantity": event.get("quantity") or 1, "price": event.get("price")}]
    return float(sum((li.get("price") or 0.0) * (li.get("quantity") or 1) for li in lines))


def train(log_dir: Path, models_dir: Path, *, consent_required: bool, horizon_days: float,
          now: float | None = None) -> ShopModel:
    """Fit on the log and save; raises ``NotEnoughHistory`` when the log is too short for it. The
    labels end at the last order logged (an imported history ends before today)."""
    now = time.time() if now is None else now
    rows = orders(read_raw(log_dir), consent_required)
    if not rows:
        raise NotEnoughHistory("no purchase of a known customer in the event log")
    table, names = Orders.build(rows)
    until = min(now, float(table.ts.max()) + 1.0)
    model = fit(table, until, horizon_days)
    save(models_dir, model, {"trained_at": now, "data_until": until, "orders": len(rows), "customers": len(names)})
    return model
