"""How the processes log: plain lines for a terminal, or one JSON object per line for a log
collector (``VITRINE_LOG_FORMAT=json``).

The JSON lines carry the time, level, logger and message (and a traceback when there is one),
nothing taken from the request: the log lines themselves never name a person (ids of visitors and
customers stay out of messages). In a process serving several shops (api.tenants) each line says
whose work it is: ``tenant`` in JSON, ``[tenant]`` before a text line's message. python-json-logger
does the formatting (escaping, exceptions, ``extra`` fields) rather than a hand-written formatter.
"""

from __future__ import annotations

import logging
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from engine.tenants import current

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JSON_FIELDS = ("asctime", "levelname", "name", "message")
DATE_FORMAT = "%Y-%m-%dT%H:%M:%S%z"
RENAMED = {"asctime": "time", "levelname": "level", "name": "logger"}


class TenantFilter(logging.Filter):
    """Names the current shop on each record: a ``tenant`` field, and the text line's prefix."""

    def filter(self, record: logging.LogRecord) -> bool:
        tenant = current()
        if tenant is not None and getattr(record, "tenant", None) is None:
            record.tenant = tenant
            record.msg = f"[{tenant}] {record.msg}"
        return True


def formatter(log_format: str) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter(JSON_FIELDS, rename_fields=RENAMED, datefmt=DATE_FORMAT)
    return logging.Formatter(TEXT_FORMAT)


def configure(log_format: str, level: int = logging.INFO) -> None:
    """A stderr handler on the root logger if it has none (a spawned uvicorn worker), then every
    root handler in ``log_format``. Idempotent: the command and each worker it spawns call it."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=level, format=TEXT_FORMAT)
    for handler in root.handlers:
        if log_format == "json":
            handler.setFormatter(formatter(log_format))
    name_the_shop()


def name_the_shop() -> None:
    """The shop on every line of the root handlers, also those a library set up itself (faust's
    worker replaces them as it starts). Idempotent."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, TenantFilter) for f in handler.filters):
            handler.addFilter(TenantFilter())


def dict_config(log_format: str, level: str = "INFO") -> dict[str, Any] | None:
    """For what configures logging with ``logging.config.dictConfig`` itself (a faust worker):
    the JSON formatter on the root handler; None keeps that tool's own lines."""
    if log_format != "json":
        return None
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter, "fmt": JSON_FIELDS, "rename_fields": RENAMED,
                                "datefmt": DATE_FORMAT}},
        "handlers": {"default": {"class": "logging.StreamHandler", "formatter": "json",
                                 "stream": "ext://sys.stderr"}},
        "root": {"handlers": ["default"], "level": level.upper()},
    }

