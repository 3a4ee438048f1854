"""A worker's own Prometheus endpoint (``VITRINE_WORKER_METRICS_PORT``): process and runtime
families, the engine's (``engine.observe``: events applied, Redis latency of the applier's
pipelines, model and rules versions), and the consumer lag of each partition it owns.

The engine runs in the worker's applier process (``streaming.applier``), which serves its families
(and its own process families, ``vitrine_applier_process_*``) on a private port; a scrape here
reads them from there, so one endpoint still has the whole worker.

The lag is read from what the consumer already knows, at scrape time: the high watermark each
fetch brings back and the offset faust last committed, so nothing is added to the per-message
path and no request goes to the brokers. prometheus-client's own HTTP server (a daemon thread)
serves it rather than faust's web server: the scrape then reads plain numbers and never waits
for the event loop, which a busy worker keeps occupied.
"""

from __future__ import annotations

import logging
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from prometheus_client import GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR, CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import start_http_server
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector


log = logging.getLogger(__name__)


class StreamApp(Protocol):
    """What the metrics read of the worker's app (``streaming.app.StreamApp``)."""
    consumer: Any
    monitor: Any
    settings: Any
    applier: Any  # streaming.applier.client.ApplierProcess, once started


def partition_lag(highwater: int | None, committed: int | None) -> int | None:
    """Messages in the partition after the committed offset (the next one to process); None
    until both are known (no fetch answered yet, nothing committed yet)."""
    if highwater is None or committed is None:
        return None
    return max(highwater - committed, 0)


class ConsumerLag(Collector):
    """Per assigned partition of the events topic: high watermark, committed offset, lag."""

    def __init__(self, app: StreamApp) -> None:
        self._app = app

    def collect(self) -> Iterator[Metric]:
        labels = ["topic", "partition"]
        lag = GaugeMetricFamily("vitrine_consumer_lag_messages", "Messages of a partition this worker owns not "
                                "yet processed and committed (high watermark - committed offset)", labels=labels)
        end = GaugeMetricFamily("vitrine_consumer_highwater_offset", "A partition's high watermark, as last "
                                "fetched", labels=labels)
        committed_family = GaugeMetricFamily("vitrine_consumer_committed_offset", "The next offset of a partition "
                                             "to process, as this worker last committed it", labels=labels)
        for topic, partition, highwater, committed in self._offsets():
            key = [topic, str(partition)]
            if highwater is not None:
                end.add_metric(key, highwater)
            if committed is not None:
                committed_family.add_metric(key, committed)
            value = partition_lag(highwater, committed)
            if value is not None:
                lag.add_metric(key, value)
        yield from (lag, end, committed_family)

    def _offsets(self) -> list[tuple[str, int, int | None, int | None]]:
        """Read from the scrape's thread: a rebalance may change the assignment meanwhile, in which
        case this scrape reports nothing and the next one the new assignment."""
        consumer: Any = self._app.consumer
        topic = self._app.settings.kafka_events_topic
        committed = self._app.monitor.tp_committed_offsets or {}
        out = []
        try:
            for tp in sorted(consumer.assignment()):
                if tp.topic != topic:
                    continue
                out.append((tp.topic, tp.partition, consumer.highwater(tp), committed.get(tp)))
        except Exception as exc:  # noqa: BLE001 - a partition moved away mid-scrape
            log.debug("consumer offsets not read (%s: %s)", type(exc).__name__, exc)
            return []
        return out


class ApplierFamilies(Collector):
    """The applier process's families, read from its own endpoint at scrape time."""

    def __init__(self, port: Callable[[], int | None], timeout_s: float = 5.0) -> None:
        self._port = port
        self._timeout_s = timeout_s

    def collect(self) -> Iterator[Metric]:
        port = self._port()
        if port is None:
            return
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=self._timeout_s) as answer:
                text = answer.read().decode()
        except OSError as exc:  # restarting: this scrape has the consumer's families only
            log.debug("applier metrics not read (%s: %s)", type(exc).__name__, exc)
            return
        yield from text_string_to_metric_families(text)


class WorkerMetrics:
    """The registry and HTTP server of one worker; started once its engine is up."""

    def __init__(self, app: StreamApp) -> None:
        self.registry = CollectorRegistry()
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            self.registry.register(collector)
        self.registry.register(ApplierFamilies(lambda: app.applier.ready.metrics_port
                                               if app.applier is not None and app.applier.ready else None))
        self.registry.register(ConsumerLag(app))
        self._server: Any = None

    def start(self, host: str, port: int) -> None:
        self._server, _ = start_http_server(port, addr=host, registry=self.registry)
        log.info("worker metrics on http://%s:%d/metrics", host, port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
