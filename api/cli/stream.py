"""`vitrine worker` (Kafka mode): one faust worker applying the events topic to the profiles."""

from __future__ import annotations

import argparse

from api.cli.common import redis_for
from engine.settings import Settings
from streaming.worker import run_worker


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    with redis_for(settings) as url:
        run_worker(settings, url, loglevel=args.loglevel)
    return 0
