"""The experiments page: each experiment of the live rules (and the global control group) with its
placement, dates, variants, status and per-arm numbers (``GET /v1/admin/experiments``), and lift
against control with its 95% interval drawn as SVG on the server."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request, Response

from api.web.console import admin
from api.web.console.guard import page, signed_in

router = APIRouter(include_in_schema=False)
METRICS = (("ctr", "Click-through rate"), ("conversion", "Conversion"), ("revenue_per_visitor", "Revenue per visitor"))


@dataclass(frozen=True)
class Bar:
    label: str
    lift: float
    low: float | None
    high: float | None


@dataclass(frozen=True)
class Chart:
    """Horizontal lift bars around 0 with interval whiskers, in SVG coordinates (0..width)."""

    title: str
    bars: list[Bar]
    width: int = 520
    row: int = 28
    left: int = 150

    @property
    def height(self) -> int:
        return self.row * len(self.bars) + 30

    @property
    def span(self) -> float:
        values = [abs(v) for b in self.bars for v in (b.lift, b.low, b.high) if v is not None]
        return max([0.05, *values]) * 1.1

    def x(self, value: float) -> float:
        middle = self.left + (self.width - self.left) / 2
        return round(middle + value / self.span * (self.width - self.left - 10) / 2, 1)


def charts(report: dict[str, Any]) -> list[Chart]:
    out = []
    for metric, title in METRICS:
        bars = []
        for arm, numbers in report.get("arms", {}).items():
            lift = (numbers.get("lift_vs_control") or {}).get(metric)
            if lift and lift.get("lift") is not None:
                low, high = lift["ci95"] if lift.get("ci95") else (None, None)
                bars.append(Bar(arm, lift["lift"], low, high))
        if bars:
            out.append(Chart(title, bars))
    return out


@router.get("/console/experiments")
async def experiments_page(request: Request) -> Response:
    session = await signed_in(request)
    answer = await admin.call(request, "GET", "/v1/admin/experiments")
    listed = answer.body["experiments"] if answer.ok else []
    return page(request, session, "experiments.html", title="Experiments", section="experiments",
                experiments=[(x, charts(x["report"])) for x in listed], error=None if answer.ok else answer.message())
