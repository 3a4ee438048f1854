"""`vitrine train` (train, gate, promote) and `vitrine evaluate` (the served recommender against
the baselines): the engine's served ranker wired into the offline protocol of models/."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from redis.exceptions import RedisError

from api.cli.common import print_report, redis_for
from engine.catalog import EMPTY, Catalogue, item_ids
from engine.events.history import interactions, interactions_from_log
from engine.ingest.importer import ImportReport, read_events, read_items
from engine.training.offline import OfflineRanker
from engine.runtime import profile_config
from engine.store.connect import connect_to
from engine.settings import BLEND_SIGNALS, Settings
from engine.training import AfterTrain, gated_train, train_config
from models import datasets, quality, report
from models.evaluate import Protocol
from models.rows import Interaction

# ------------------------------------------------------------------------------- train


def train(settings: Settings, trials: int | None = None, force: bool = False) -> str:
    started = time.perf_counter()
    since = time.time() - settings.train_window_s
    catalogue = _catalogue_ids(settings)
    if settings.mode == "kafka":
        from streaming.topics import history  # noqa: PLC0415 - faust and aiokafka, for Kafka mode only

        rows = interactions(history(settings), settings.consent_required, since, catalogue)
    else:
        rows = interactions_from_log(settings.log_dir, settings.consent_required, since, catalogue)
    artifact, decision = gated_train(rows, settings, trials, force=force)
    data = artifact.meta["data"]
    tuning = artifact.meta.get("tuning")
    if tuning and tuning.get("tuned"):
        params = artifact.meta["params"]
        print(f"tuned on the {tuning['protocol']} protocol in {tuning['seconds']}s: validation NDCG@20 "
              f"{tuning['configured_score']:.4f} as configured -> {tuning['tuned_score']:.4f}; blend "
              f"{json.dumps(params['blend'])}, exclude_seen {params['exclude_seen']}, exclude_purchased "
              f"{params['exclude_purchased']}"
              + (f" (pinned: {', '.join(tuning['pinned'])})" if tuning["pinned"] else ""))
    elif tuning:
        print(f"not tuned: {tuning['reason']}")
    print(f"trained model {artifact.version} in {time.perf_counter() - started:.1f}s: "
          f"{data['events']} interactions, {data['users']} people, {data['items']} items, "
          f"{data['baskets']} orders -> {settings.models_dir / artifact.version}")
    verdict = "promoted" if decision.promoted else f"NOT promoted (still serving {decision.current_version})"
    print(f"{verdict}: {decision.reason}")
    if settings.mode != "kafka":
        _train_customers(settings)
    return artifact.version


def _train_customers(settings: Settings) -> None:
    """The value and churn scores' shop model (engine.customers.training), from the embedded log."""
    from engine.customers.training import train as train_customers  # noqa: PLC0415
    from models.customer_value import NotEnoughHistory  # noqa: PLC0415

    try:
        model = train_customers(settings.log_dir, settings.models_dir, consent_required=settings.consent_required,
                                horizon_days=settings.customer_horizon_days)
    except NotEnoughHistory as exc:
        print(f"customer scores: not trained ({exc}); the customer view shows none")
        return
    print(f"customer scores: trained ({model.horizon_days:g}-day horizon, typical gap {model.typical_gap_days:.0f} d)")


def _catalogue_ids(settings: Settings) -> set[str] | None:
    """The catalogue's item ids, which training keeps to; None when there is no catalogue, or
    when Redis cannot be read (then training uses every item the events name, and says so)."""

    async def read(url: str) -> set[str]:
        redis = connect_to(url, cluster=settings.redis_cluster, timeout_s=settings.redis_socket_timeout_s)
        try:
            return await item_ids(redis)
        finally:
            await redis.aclose()

    try:
        with redis_for(settings) as url:
            return asyncio.run(read(url)) or None
    except (RedisError, OSError, RuntimeError) as exc:
        print(f"vitrine train: the catalogue could not be read ({exc}); training on every item the events "
              "name", file=sys.stderr)
        return None


def cmd_train(args: argparse.Namespace, settings: Settings) -> int:
    try:
        train(settings, args.trials, args.force)
    except ValueError as exc:
        print(f"vitrine train: {exc}", file=sys.stderr)
        return 1
    return 0


# ------------------------------------------------------------------------------- evaluate


def load_history(events: Path, items: Path | None) -> tuple[list[Interaction], Catalogue]:
    """The generic CSV formats of `vitrine import`, read by its own reader (bad rows reported)."""
    catalogue = EMPTY
    if items is not None:
        items_report = ImportReport()
        catalogue = Catalogue(version=1, items={i.item_id: i for i in read_items(items, items_report)})
        print_report("items", items, items_report)
    events_report = ImportReport()
    rows = list(interactions(e.model_dump() for e in read_events(events, events_report, accepted_at=time.time())))
    print_report("event lines", events, events_report)
    return rows, catalogue


def prepare_dataset(name: str, settings: Settings) -> tuple[Path, Path]:
    """(items.csv, events.csv) of a named dataset, converted once into the data dir."""
    out = settings.data_dir / "datasets" / name
    if (out / "events.csv").exists() and (out / "items.csv").exists():
        return out / "items.csv", out / "events.csv"
    if name == "taobao":
        source = settings.shared_data_dir / datasets.TAOBAO_HEAD
        if not source.exists():
            raise FileNotFoundError(f"the Taobao data is not at {source} (it is never committed; "
                                    "set VITRINE_SHARED_DATA_DIR to the folder holding taobao-userbehavior/)")
        return datasets.write_taobao(out, source)
    return datasets.write_online_retail(out)


def settings_env(params: dict[str, Any], protocol: Protocol) -> dict[str, str]:
    """The environment that makes `vitrine train` and the API serve this recipe (``TrainConfig.params``)."""
    return {
        "VITRINE_ALS_FACTORS": str(params["als"]["factors"]),
        "VITRINE_ALS_REGULARIZATION": str(params["als"]["regularization"]),
        "VITRINE_ALS_ALPHA": str(params["als"]["alpha"]),
        "VITRINE_ALS_ITERATIONS": str(params["als"]["iterations"]),
        "VITRINE_EVENT_WEIGHTS": "'" + json.dumps(params["event_weights"]) + "'",
        "VITRINE_BLEND": "'" + json.dumps(params["blend"]) + "'",
        "VITRINE_HISTORY_HALF_LIFE_S": f"{params['history_half_life_s']:g}",
        "VITRINE_NEIGHBOUR_SIMILARITY": params["similarity"],
        "VITRINE_EXCLUDE_SEEN": str(protocol.exclude_seen).lower(),
        "VITRINE_EXCLUDE_PURCHASED": str(protocol.exclude_purchased).lower(),
    }


def cmd_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    if (args.dataset is None) == (args.events is None):
        print("vitrine evaluate: give --events (and optionally --items), or --dataset", file=sys.stderr)
        return 2
    preset = datasets.DATASETS.get(args.dataset) if args.dataset else None
    try:
        items, events = prepare_dataset(args.dataset, settings) if args.dataset else (args.items, args.events)
    except FileNotFoundError as exc:
        print(f"vitrine evaluate: {exc}", file=sys.stderr)
        return 2
    for path in (items, events):
        if path is not None and not path.exists():
            print(f"vitrine evaluate: no such file: {path}", file=sys.stderr)
            return 2

    def choose(name: str, default: object) -> object:
        """The command-line flag, else the named dataset's value, else the setting."""
        flag = getattr(args, name)
        return flag if flag is not None else getattr(preset, name, default)

    sessions = args.protocol == "sessions"
    protocol = Protocol(
        test_span_s=float(choose("test_days", 7)) * 86400,  # type: ignore[arg-type]
        # A session's targets are every next step but the cart, unless the flags say otherwise.
        exclude_seen=bool(args.exclude_seen if sessions else choose("exclude_seen", settings.exclude_seen)),
        exclude_purchased=bool(args.exclude_purchased if sessions
                               else choose("exclude_purchased", settings.exclude_purchased)),
        max_people=args.max_people,
        seed=args.seed,
        reveal=args.reveal,
        sessions=sessions,
        session_gap_s=settings.session_timeout_s,
    )
    if preset is not None:
        print(f"dataset {args.dataset}: {preset.why}")
    rows, catalogue = load_history(events, items)
    if not rows:
        print("vitrine evaluate: no usable events", file=sys.stderr)
        return 1
    if sessions:
        from models.sessions import anonymous  # noqa: PLC0415

        rows = anonymous(rows, settings.session_timeout_s)
    name = ((args.dataset or events.stem) + (f"-reveal{args.reveal}" if args.reveal else "")
            + ("-sessions" if sessions else ""))
    serve = OfflineRanker(catalogue, profile_config(settings), exclude_seen=protocol.exclude_seen,
                          exclude_purchased=protocol.exclude_purchased)
    run = quality.RunConfig(name=name, protocol=protocol, base=train_config(settings), blend_signals=BLEND_SIGNALS,
                            trials=args.trials, progress=not args.no_progress,
                            after_train=AfterTrain(settings, catalogue, args.train_trials, not args.no_progress))
    try:
        result = quality.run(rows, run, serve)
    except ValueError as exc:
        print(f"vitrine evaluate: {exc}", file=sys.stderr)
        return 1
    result["apply"] = settings_env(result["params"]["tuned"], protocol)
    out = args.out / f"evaluate-{name}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    paths = report.write(result, out)
    print()
    print(report.table(result))
    print()
    print(report.target_line(result))
    print(f"\nreport: {', '.join(str(p) for p in paths)}")
    return 0
