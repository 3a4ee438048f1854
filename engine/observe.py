"""What a process's Engine exports to Prometheus: model and rules versions, degraded answers, the
Redis breaker and latency, the embedded apply queue and log lag, the triggers' outcomes.

A custom collector (prometheus_client's ``Collector`` protocol) rather than gauges and counters
updated as things happen: the request path keeps its plain integer counters, and the values are
read only when Prometheus scrapes. What lives in Redis (trigger counters, the applied-log
checkpoint) is read by ``refresh`` before a scrape, since ``collect`` cannot await.

``families(local=False)`` leaves out what one process counts on its own (degraded answers,
breaker, Redis latency, apply queue): with several uvicorn workers one scrape reaches one of them,
and its counters would look like resets to Prometheus.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from engine.events.log import segments
from engine.ingest.checkpoint import Checkpoint
from engine.ingest.writer import ApplyWriter
from engine.runtime import Engine
from engine.triggers import keys as trigger_keys
from engine.triggers import suppress

log = logging.getLogger(__name__)


# Every counter field engine.triggers.runner writes, so each defined trigger exports them all from
# the start (at 0): a rate over a series that appears only with its first increment misses it.
TRIGGER_FIELDS = ("sent:deliveries", "control:deliveries", f"suppressed:{suppress.NO_CONSENT}",
                  f"suppressed:{suppress.CAPPED}", f"suppressed:{suppress.CONTROL_GROUP}",
                  f"deferred:{suppress.QUIET_HOURS}", "cancelled", "not_in_audience",
                  "webhook:delivered", "webhook:retried", "webhook:dead_letter")


def trigger_families(stats: dict[str, dict[str, int]]) -> list[Metric]:
    """``{trigger: {counter field: value}}`` (``engine.triggers.runner``'s fields) as two families:
    the decisions (sent, control, suppressed and deferred by reason, cancelled, not in audience) and
    the webhook's results (delivered, retried, dead-lettered)."""
    decisions = CounterMetricFamily("vitrine_trigger_decisions", "Trigger occurrences decided, by trigger, outcome "
                                    "and reason (sent/control deliveries, suppressed:no_consent|capped|control_group"
                                    ", deferred:quiet_hours, cancelled, not_in_audience)",
                                    labels=["trigger", "outcome", "reason"])
    webhook = CounterMetricFamily("vitrine_trigger_webhook", "Webhook posts of trigger documents, by trigger and "
                                  "result (delivered, retried, dead_letter)", labels=["trigger", "result"])
    for trigger, counted in sorted(stats.items()):
        fields = {**dict.fromkeys(TRIGGER_FIELDS, 0), **counted}
        for name, value in sorted(fields.items()):
            outcome, _, reason = name.partition(":")
            if outcome == "webhook":
                webhook.add_metric([trigger, reason], value)
            elif reason == "deliveries":  # sent:deliveries, control:deliveries
                decisions.add_metric([trigger, outcome, ""], value)
            else:
                decisions.add_metric([trigger, outcome, reason], value)
    return [decisions, webhook]


def log_lag_bytes(log_dir: Path, applied: dict[str, int]) -> int:
    """Bytes of the event log past the checkpoint: written, not yet applied to the profiles."""
    lag = 0
    for path in segments(log_dir):
        try:
            size = path.stat().st_size
        except FileNotFoundError:  # removed by retention meanwhile
            continue
        lag += max(size - applied.get(path.name, 0), 0)
    return lag


class EngineCollector(Collector):
    def __init__(self, engine: Callable[[], Engine | None],
                 writer: Callable[[], ApplyWriter | None] = lambda: None) -> None:
        """``engine``/``writer``: the process's, once started (None before: nothing is exported)."""
        self._engine = engine
        self._writer = writer
        self._triggers: dict[str, dict[str, int]] = {}
        self._log_lag: int | None = None

    async def refresh(self) -> None:
        """Read what lives in Redis: the defined triggers' counters and the applied-log checkpoint.
        On failure the last values stay (a scrape must answer while Redis is down)."""
        engine = self._engine()
        if engine is None:
            return
        try:
            defined = sorted(engine.rules.current.rules.triggers)
            if defined:
                names = trigger_keys.names(engine.settings.redis_cluster)
                async with engine.redis.pipeline(transaction=False) as pipe:
                    for trigger in defined:
                        pipe.hgetall(names.stats(trigger))
                    replies = await pipe.execute()
                self._triggers = {t: {k.decode(): int(v) for k, v in r.items()} for t, r in zip(defined, replies)}
            else:
                self._triggers = {}
            if self._writer() is not None:
                positions = await Checkpoint(engine.redis).load()
                self._log_lag = log_lag_bytes(engine.settings.log_dir, positions.offsets)
        except Exception as exc:  # noqa: BLE001 - the rest of the scrape still answers
            log.debug("metrics from Redis not refreshed (%s: %s)", type(exc).__name__, exc)

    def collect(self) -> Iterator[Metric]:
        return self.families(local=True)

    def families(self, local: bool) -> Iterator[Metric]:
        engine = self._engine()
        if engine is None:
            return
        yield from self._model(engine)
        yield from self._rules(engine)
        yield from trigger_families(self._triggers)
        if self._log_lag is not None:
            yield GaugeMetricFamily("vitrine_applied_log_lag_bytes", "Bytes of the embedded event log past the "
                                    "applied checkpoint (written, not yet in the profiles)", value=self._log_lag)
        if local:
            yield from self._recommender(engine)
            yield from self._redis_latency(engine)
            yield CounterMetricFamily("vitrine_events_applied", "Events this process applied to the profiles",
                                      value=engine.applier.applied_total)
            yield CounterMetricFamily("vitrine_events_duplicate", "Events this process found applied before "
                                      "(redelivered, retried)", value=engine.applier.duplicates_total)
            writer = self._writer()
            if writer is not None:
                yield from self._apply_queue(writer)

    @staticmethod
    def _model(engine: Engine) -> Iterator[Metric]:
        model = engine.models.current
        info = GaugeMetricFamily("vitrine_model_info", "The model served (1), by version", labels=["version"])
        loaded = GaugeMetricFamily("vitrine_model_loaded", "1 when a model is served, 0 when answers come from "
                                   "popularity and rules only")
        loaded.add_metric([], 1 if model is not None else 0)
        yield loaded
        if model is None:
            return
        info.add_metric([model.version], 1)
        yield info
        created = float(model.artifact.meta.get("created_at") or 0)
        if created:
            yield GaugeMetricFamily("vitrine_model_age_seconds", "Seconds since the served model was trained",
                                    value=max(time.time() - created, 0.0))

    @staticmethod
    def _rules(engine: Engine) -> Iterator[Metric]:
        rules = engine.rules
        info = GaugeMetricFamily("vitrine_rules_info", "The merchandising rules served (1), by version",
                                 labels=["version"])
        info.add_metric([rules.current.version], 1)
        yield info
        yield CounterMetricFamily("vitrine_rules_load_errors", "Rules files rejected since start (each bad version "
                                  "once); the last good version stays served", value=rules.failures)
        yield GaugeMetricFamily("vitrine_rules_last_load_failed", "1 while the rules file on disk is rejected",
                                value=1 if rules.errors else 0)

    @staticmethod
    def _recommender(engine: Engine) -> Iterator[Metric]:
        recommender = engine.recommender
        degraded = CounterMetricFamily("vitrine_degraded_answers", "Answers served without part of what they need, "
                                       "by cause: breaker_open, timeout, redis_error (profile unread: marked "
                                       "degraded), no_model (popularity and rules only)", labels=["cause"])
        for cause, count in list(recommender.degraded_by_cause.items()):
            degraded.add_metric([cause], count)
        yield degraded
        breaker = recommender.breaker
        yield GaugeMetricFamily("vitrine_redis_breaker_open", "1 while the request path skips Redis after a "
                                "failed read", value=0 if breaker.closed else 1)
        yield CounterMetricFamily("vitrine_redis_breaker_trips", "Times the request path's breaker opened",
                                  value=breaker.trips)

    @staticmethod
    def _redis_latency(engine: Engine) -> Iterator[Metric]:
        family = HistogramMetricFamily("vitrine_redis_command_duration_seconds", "Time to Redis's reply, by call: "
                                       "read (a request's profile read), apply_read and apply_write (the event "
                                       "applier's pipelines)", labels=["call"])
        for call, histogram in sorted(list(engine.redis_latency.by_call.items())):
            family.add_metric([call], histogram.cumulative(), sum_value=histogram.total)
        yield family

    @staticmethod
    def _apply_queue(writer: ApplyWriter) -> Iterator[Metric]:
        yield GaugeMetricFamily("vitrine_apply_queue_events", "Events accepted (in the log) and not yet applied "
                                "to the profiles", value=writer.backlog)
        yield CounterMetricFamily("vitrine_apply_spilled_events", "Events left in the log because the in-memory "
                                  "apply queue was full, read back later", value=writer.spilled)
