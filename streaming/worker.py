"""``vitrine worker``: one faust worker process applying the events topic to Redis.

Run as many as there are partitions to spread; they form one consumer group, Kafka hands each a
share of the partitions and moves them when a worker joins, leaves or dies.
"""

from __future__ import annotations

import asyncio
import logging

import faust
import uvloop

from engine import logs
from engine.settings import Settings
from streaming.app import StreamApp


def use_uvloop() -> None:
    """What faust's own ``-L uvloop`` does: the worker's loop and its consumer thread's loop,
    which carry faust's per-message path, become uvloop's (cheaper per message)."""
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


class _Worker(faust.Worker):
    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        """Once faust has replaced the root handlers with its own: each line names the shop too."""
        super().on_setup_root_logger(logger, level)
        logs.name_the_shop()


def run_worker(settings: Settings, redis_url: str, *, loglevel: str = "info") -> None:
    """Blocks until SIGINT/SIGTERM; a graceful stop commits what was applied."""
    if settings.mode != "kafka":
        raise SystemExit("vitrine worker: set VITRINE_KAFKA_BROKERS (host:port[,host:port...])")
    use_uvloop()
    app = StreamApp(settings, redis_url, loglevel=loglevel)
    _Worker(app, loglevel=loglevel, redirect_stdouts=False,
            logging_config=logs.dict_config(settings.log_format, loglevel)).execute_from_commandline()
