"""`vitrine evaluate` and the gate of `vitrine train`: the engine's served recommender
(engine.ranking.offline) wired into the offline protocol of models/, which cannot import it."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.settings import BLEND_SIGNALS, Settings

if TYPE_CHECKING:  # the heavy imports (implicit, matplotlib) happen when a command runs, not on --help
    from engine.catalog import Catalogue
    from models.artifacts import Artifact
    from models.evaluate import Protocol, Ranker, Split
    from models.interactions import Interaction
    from models.lifecycle import Decision
    from models.train import TrainConfig


@dataclass(frozen=True)
class Dataset:
    """A named real dataset and the settings that fit the shop it comes from."""

    test_days: float
    exclude_seen: bool
    exclude_purchased: bool
    why: str


DATASETS: dict[str, Dataset] = {
    "taobao": Dataset(1, exclude_seen=False, exclude_purchased=True, why=(
        "Taobao UserBehavior head (../shared/data): views, carts, favourites, purchases over 9 days; "
        "people come back to items they viewed, rarely rebuy the same one within days")),
    "online-retail": Dataset(30, exclude_seen=False, exclude_purchased=False, why=(
        "UCI Online Retail II 2009-2010 (models/data): a wholesale gift shop's orders; customers "
        "restock the same items, so already-bought items stay in the lists")),
}


def train_config(settings: Settings) -> TrainConfig:
    """The recipe as configured; the exclusion flags only where set explicitly (else serving's
    settings decide, or `vitrine train` tunes them)."""
    from models.als import ALSParams  # noqa: PLC0415
    from models.train import TrainConfig  # noqa: PLC0415

    pinned = settings.model_fields_set
    return TrainConfig(
        weights=settings.event_weights,
        als=ALSParams(factors=settings.als_factors, regularization=settings.als_regularization,
                      alpha=settings.als_alpha, iterations=settings.als_iterations),
        neighbours=settings.neighbours,
        similarity=settings.neighbour_similarity,
        popularity_half_life_s=settings.popularity_half_life_s,
        history_half_life_s=settings.history_half_life_s,
        blend=settings.blend,
        session_gap_s=settings.session_timeout_s,
        exclude_seen=settings.exclude_seen if "exclude_seen" in pinned else None,
        exclude_purchased=settings.exclude_purchased if "exclude_purchased" in pinned else None,
    )


def _train_serve(settings: Settings) -> Callable[[Artifact], Ranker]:
    """The served ranker as training scores it: no catalogue (training does not need Redis), so
    every trained item counts as available, for every model alike."""
    from engine.catalog import EMPTY  # noqa: PLC0415
    from engine.ranking.offline import OfflineRanker  # noqa: PLC0415
    from engine.runtime import profile_config  # noqa: PLC0415

    return OfflineRanker(EMPTY, profile_config(settings), exclude_seen=settings.exclude_seen,
                         exclude_purchased=settings.exclude_purchased)


def trained_recipe(rows: Sequence[Interaction], settings: Settings, trials: int | None = None,
                   progress: bool = True) -> tuple[TrainConfig, dict[str, Any] | None]:
    """The recipe `vitrine train` trains from ``rows`` (sorted by time), and how it was chosen:
    tuned (models.autotune) on the data before the promotion gate's hold-out, so that the gate
    still compares models on data neither was tuned on. Settings set explicitly stay as set."""
    from models.autotune import tune_recipe  # noqa: PLC0415
    from models.lifecycle import holdout_cutoff  # noqa: PLC0415
    from models.tuning import TUNABLE  # noqa: PLC0415

    base = train_config(settings)
    trials = settings.tune_trials if trials is None else trials
    if trials == 0 or not rows:
        return base, None
    cutoff = holdout_cutoff(list(rows), settings.promote_holdout)
    before = [r for r in rows if r.ts < cutoff]
    pinned = sorted(settings.model_fields_set & set(TUNABLE))
    tuned = tune_recipe(before, base, _train_serve(settings), BLEND_SIGNALS, pinned=pinned, trials=trials,
                        progress=progress)
    return tuned.config, tuned.record


def gated_train(rows: Iterable[Interaction], settings: Settings, trials: int | None = None,
                progress: bool = True, force: bool = False) -> tuple[Artifact, Decision]:
    """Tune the recipe, train it, score it against the served model on the held-out tail (per
    person, or per session step for a log of one-session visitors, as the tuning does), promote it
    if not worse (or if ``force``)."""
    from models.autotune import shape  # noqa: PLC0415
    from models.evaluate import Protocol  # noqa: PLC0415
    from models.lifecycle import train_and_gate  # noqa: PLC0415

    rows = sorted(rows, key=lambda r: r.ts)
    config, tuning = trained_recipe(rows, settings, trials, progress)
    protocol = Protocol(test_span_s=0, ks=(10, 20), session_gap_s=config.session_gap_s,
                        sessions=bool(rows) and shape(rows, config.session_gap_s) == "sessions",
                        exclude_seen=settings.exclude_seen if config.exclude_seen is None else config.exclude_seen,
                        exclude_purchased=settings.exclude_purchased if config.exclude_purchased is None
                        else config.exclude_purchased)
    return train_and_gate(rows, config, settings.models_dir, _train_serve(settings), protocol=protocol,
                          holdout=settings.promote_holdout, tolerance=settings.promote_tolerance,
                          keep=settings.models_keep, tuning=tuning, force=force)


class AfterTrain:
    """`vitrine evaluate`'s "after train" method: what `vitrine train` would serve if run on the
    split's training rows (tuned exactly as it tunes, with the same settings), as the API serves
    it. What it chose is kept for the report."""

    def __init__(self, settings: Settings, catalogue: Catalogue, trials: int | None, progress: bool) -> None:
        from engine.ranking.offline import OfflineRanker  # noqa: PLC0415
        from engine.runtime import profile_config  # noqa: PLC0415

        self.settings, self.trials, self.progress = settings, trials, progress
        self.serve = OfflineRanker(catalogue, profile_config(settings), exclude_seen=settings.exclude_seen,
                                   exclude_purchased=settings.exclude_purchased)
        self.chosen: dict[str, Any] | None = None

    def __call__(self, split: Split) -> Ranker:
        from models.evaluate import served  # noqa: PLC0415

        config, tuning = trained_recipe(sorted(split.train, key=lambda r: r.ts), self.settings, self.trials,
                                        self.progress)
        self.chosen = {"params": config.params(), "tuning": tuning}
        return served(config, self.serve)(split)


# ------------------------------------------------------------------------------- evaluate


def load_history(events: Path, items: Path | None) -> tuple[list[Interaction], Catalogue]:
    """The generic CSV formats of `vitrine import`, read by its own reader (bad rows reported)."""
    from api.cli import _print_report  # noqa: PLC0415
    from engine.catalog import EMPTY, Catalogue  # noqa: PLC0415
    from engine.events.history import interactions  # noqa: PLC0415
    from engine.ingest.importer import ImportReport, read_events, read_items  # noqa: PLC0415

    catalogue = EMPTY
    if items is not None:
        report = ImportReport()
        catalogue = Catalogue(version=1, items={i.item_id: i for i in read_items(items, report)})
        _print_report("items", items, report)
    report = ImportReport()
    rows = list(interactions(e.model_dump() for e in read_events(events, report, accepted_at=time.time())))
    _print_report("event lines", events, report)
    return rows, catalogue


def prepare_dataset(name: str, settings: Settings) -> tuple[Path, Path]:
    """(items.csv, events.csv) of a named dataset, converted once into the data dir."""
    from models import datasets  # noqa: PLC0415

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
    from engine.ranking.offline import OfflineRanker  # noqa: PLC0415
    from engine.runtime import profile_config  # noqa: PLC0415
    from models import quality, report  # noqa: PLC0415
    from models.evaluate import Protocol  # noqa: PLC0415

    if (args.dataset is None) == (args.events is None):
        print("vitrine evaluate: give --events (and optionally --items), or --dataset", file=sys.stderr)
        return 2
    preset = DATASETS.get(args.dataset) if args.dataset else None
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


def _positive(cast: type[int] | type[float], zero: bool = False) -> Any:
    def parse(text: str) -> int | float:
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value < 0 or (value == 0 and not zero):
            raise argparse.ArgumentTypeError(f"must be {'>= 0' if zero else '> 0'}, got {text}")
        return value
    return parse


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("evaluate", help="measure the served recommender against baselines on a time split")
    p.add_argument("--events", type=Path, help="events.csv in the `vitrine import` format")
    p.add_argument("--items", type=Path, help="items.csv in the `vitrine import` format (optional)")
    p.add_argument("--dataset", choices=sorted(DATASETS), help="a named real dataset instead of CSV files")
    p.add_argument("--test-days", type=_positive(float), help="test period: the data's last N days (default 7; "
                                                   "taobao 1, online-retail 30)")
    p.add_argument("--exclude-seen", action=argparse.BooleanOptionalAction, default=None,
                   help="for-you leaves out items already seen (default: the dataset's, else VITRINE_EXCLUDE_SEEN)")
    p.add_argument("--exclude-purchased", action=argparse.BooleanOptionalAction, default=None,
                   help="leave out items already bought (default: the dataset's, else VITRINE_EXCLUDE_PURCHASED)")
    p.add_argument("--reveal", type=_positive(int, zero=True), default=0, help="session so far: give each person's first N events "
                                                         "after the cut-off and predict what came next (default 0)")
    p.add_argument("--protocol", choices=("people", "sessions"), default="people",
                   help="people: what each person used after the cut-off (default); sessions: cut the log into "
                        "sessions (VITRINE_SESSION_TIMEOUT_S idle), each an anonymous visitor, and predict the next "
                        "item at every step of the held-out ones (HR@20, MRR@20 as session-rec and SR-GNN report)")
    p.add_argument("--trials", type=_positive(int), default=20, help="ALS / event-weight search trials (default 20)")
    p.add_argument("--train-trials", type=_positive(int, zero=True),
                   help="the same for the \"after train\" row (default VITRINE_TUNE_TRIALS, as `vitrine train`)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--max-people", type=_positive(int), help="score a seeded sample of at most N people per split")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--out", type=Path, default=Path("reports"), help="reports folder (default ./reports)")
    p.set_defaults(func=cmd_evaluate)
