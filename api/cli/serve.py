"""`vitrine serve`: the HTTP API under uvicorn (the only command module that imports the HTTP
app), with the optional periodic retraining of embedded mode."""

from __future__ import annotations

import argparse
import os
import signal
import sys

import uvicorn

from api.cli.common import ensure_admin_key, redis_for
from api.cli.retrain import Retrainer
from api.metrics import export_task_failures
from api.server import raise_open_files_limit, uvicorn_options
from engine.tenants import config as tenants
from engine.settings import Settings


def serve(settings: Settings, redis_url: str, banner: str | None = None) -> None:
    """Every shop of the tenants file when there is one (``api.tenants``), else the one shop."""
    raise_open_files_limit()  # before the workers start: they inherit it
    os.environ["VITRINE_REDIS_URL"] = redis_url
    os.environ["VITRINE_ADMIN_KEY"] = ensure_admin_key(settings)
    os.environ["VITRINE_DATA_DIR"] = str(settings.data_dir.resolve())
    if settings.workers > 1:
        metrics_dir = settings.data_dir.resolve() / "prometheus"
        metrics_dir.mkdir(parents=True, exist_ok=True)
        for stale in metrics_dir.glob("*.db"):
            stale.unlink()
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    if banner:
        print(banner, flush=True)
    shops = tenants.load(settings.model_copy(update={"redis_url": redis_url}))
    retrainers = []
    if settings.retrain_interval_s:
        export_task_failures()  # this process is not an app's when there are several workers
        for tenant, shop in (shops or {None: settings}).items():
            if shop.mode == "embedded":
                retrainers.append(Retrainer(settings.retrain_interval_s,
                                            {**os.environ, **({"VITRINE_TENANT": tenant} if tenant else {})}))
                retrainers[-1].start()
    # uvicorn shuts down gracefully on SIGTERM (what process managers and `docker stop` send),
    # then raises the signal again with the handler it found installed. Python's default would
    # end the process there, skipping the cleanup below and the managed Redis's (its data unsaved,
    # the server left running); this handler exits normally instead, as Ctrl-C does.
    previous = signal.signal(signal.SIGTERM, _exit_after_shutdown)
    try:
        uvicorn.run("api.tenants:tenants_factory" if shops else "api.app:app_factory", factory=True,
                    host=settings.host, port=settings.port,
                    workers=settings.workers, loop="uvloop", log_level="warning", access_log=False,
                    lifespan="on", **uvicorn_options(settings))
    finally:
        signal.signal(signal.SIGTERM, previous)
        for retrainer in retrainers:
            retrainer.stop()


def _exit_after_shutdown(signum: int, frame: object) -> None:
    raise SystemExit(0)


def with_http_args(args: argparse.Namespace, settings: Settings) -> Settings:
    updates = {k: getattr(args, k) for k in ("host", "port", "workers") if getattr(args, k, None) is not None}
    return settings.model_copy(update=updates)


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    settings = with_http_args(args, settings)
    if settings.tenant:
        print("vitrine serve: it serves every shop of the tenants file; unset VITRINE_TENANT", file=sys.stderr)
        return 2
    if settings.tenants_file and settings.workers > 1:
        print("vitrine serve: one worker process with a tenants file (each shop's metrics are its process's)",
              file=sys.stderr)
        return 2
    try:
        tenants.load(settings)  # refused now rather than in the server process
    except tenants.TenantsInvalid as exc:
        print(f"vitrine serve: invalid settings: {exc}", file=sys.stderr)
        return 2
    with redis_for(settings) as url:
        base = f"http://{settings.host}:{settings.port}"
        serve(settings, url, f"Vitrine serving on {base} ({settings.workers} worker(s), "
                              f"{settings.mode} mode). Ctrl-C stops it.")
    return 0
