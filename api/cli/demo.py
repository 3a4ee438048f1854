"""`vitrine demo`: the demo shop imported (first run), a model trained, the API served."""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import time

from api.cli.common import ensure_admin_key, redis_for
from api.cli.data import import_files
from api.cli.quality import train
from api.cli.serve import serve, with_http_args
from api.web.demo import demo_environment
from engine.settings import Settings
from models import artifacts
from models.datasets import write_online_retail


def demo_banner(base: str, admin_key: str, visitor: str, item: str, customer: str) -> str:
    return f"""
Vitrine demo shop (UCI Online Retail II, CC BY 4.0) is serving on {base}. Ctrl-C stops it.
  The shop: {base}/    the merchandiser console: {base}/console (sign in with the admin key: {admin_key})
Try the API:
  curl -s '{base}/v1/recommendations?placement=home&visitor_id={visitor}'
  curl -s -X POST {base}/v1/events -H 'content-type: application/json' -d '{{"event_id": "e-{secrets.token_hex(3)}", "type": "product_view", "visitor_id": "{visitor}", "item_id": "{item}"}}'
  curl -s '{base}/v1/recommendations?placement=product&visitor_id={visitor}&item_id={item}'
  curl -s -H 'X-API-Key: {admin_key}' '{base}/v1/recommendations?placement=home&customer_id={customer}'
  curl -s -H 'X-API-Key: {admin_key}' {base}/v1/profiles/{visitor}
  API docs: {base}/docs    metrics: {base}/metrics
"""


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    settings = with_http_args(args, settings)
    demo_dir = settings.data_dir / "demo"
    marker = demo_dir / ".imported"
    with redis_for(settings) as url:
        if not marker.exists():
            print("Preparing the demo shop from UCI Online Retail II (first run only)...", flush=True)
            items, events = write_online_retail(demo_dir)
            asyncio.run(import_files(settings, url, items, events))
            marker.write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        if artifacts.current_version(settings.models_dir) is None:
            train(settings)
        base = f"http://{settings.host}:{settings.port}"
        admin_key = ensure_admin_key(settings)
        os.environ.update(demo_environment(settings, demo_dir))
        serve(settings, url, demo_banner(base, admin_key, "demo-visitor-1", "85123A", "13085"))
    return 0
