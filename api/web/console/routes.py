"""The console's routes, one module per page group."""

from __future__ import annotations

from fastapi import APIRouter

from api.web.console import customers, experiments, models, ops, rules, segments, signin, triggers

router = APIRouter(include_in_schema=False)
for module in (signin, rules, experiments, triggers, customers, segments, models, ops):
    router.routes.extend(module.router.routes)
