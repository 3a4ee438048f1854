"""Visitor journeys replayed against a Vitrine host, headless, with SLO gates.

    locust -f load_tests/locustfile.py --headless -u 50 -r 10 -t 2m \
        --host http://127.0.0.1:8000 --csv reports/load --html reports/load.html

Each simulated visitor replays one real journey (see load_tests/sessions.py): it lands on the
home page (for-you list), then for each real event posts it and asks for the page's lists as a
shop would: a product view or a favourite asks for "similar" (and sometimes "recently viewed"), a cart add for
"bought together", a purchase for the home page again. When the journey ends, a new visitor
starts the next one. At the end the run fails (exit code 1) if any endpoint's p99 exceeds
``--slo-p99-ms`` or its error rate exceeds ``--slo-error-rate``.

A run always stops by itself: without ``-t`` it lasts ``--default-run-time`` (60 s). Hosts other
than 127.0.0.1/localhost need ``--allow-remote``, so nobody load-tests production by accident.
"""

from __future__ import annotations

import itertools
import uuid
from urllib.parse import urlparse

import gevent
from locust import FastHttpUser, between, events, task
from locust.env import Environment

from load_tests.sessions import Journey, cycle, load_journeys
from load_tests.slo import EndpointStats, Slo, breaches

_journeys: itertools.cycle | None = None  # type: ignore[type-arg]


@events.init_command_line_parser.add_listener
def _options(parser) -> None:  # noqa: ANN001 - locust's argparse wrapper
    parser.add_argument("--dataset", choices=["auto", "taobao", "demo"], default="auto",
                        help="journeys to replay (auto: Taobao stream sample if present, else demo shop)")
    parser.add_argument("--slo-p99-ms", type=float, default=100.0, help="p99 budget per endpoint (ms)")
    parser.add_argument("--slo-error-rate", type=float, default=0.01, help="max error rate per endpoint")
    parser.add_argument("--default-run-time", type=int, default=60, help="seconds, when -t is not given")
    parser.add_argument("--allow-remote", action="store_true", help="allow a host other than 127.0.0.1")
    parser.add_argument("--api-key", default="", help="site key, if the host requires one")


@events.init.add_listener
def _init(environment: Environment, **_: object) -> None:
    global _journeys
    options = environment.parsed_options
    if options is None:
        return
    host = urlparse(options.host or "http://127.0.0.1:8000").hostname
    if host not in ("127.0.0.1", "localhost", "::1") and not options.allow_remote:
        raise SystemExit(f"refusing to load-test {host}: pass --allow-remote for a staging host")
    if options.headless and not options.run_time:
        options.run_time = options.default_run_time
    source, journeys = load_journeys(options.dataset)
    print(f"replaying {len(journeys)} real journeys from {source}")
    _journeys = cycle(journeys)
    # Loading took seconds without yielding to gevent, whose loop caches "now": refresh it, or the
    # run-time timer would start in the past and stop the test at once.
    gevent.get_hub().loop.update_now()


@events.quitting.add_listener
def _gate(environment: Environment, **_: object) -> None:
    options = environment.parsed_options
    slo = Slo(p99_ms=options.slo_p99_ms, max_error_rate=options.slo_error_rate)
    stats = [EndpointStats(name=f"{e.method} {e.name}", requests=e.num_requests, failures=e.num_failures,
                           p99_ms=float(e.get_response_time_percentile(0.99) or 0))
             for e in environment.stats.entries.values()]
    found = breaches(stats, slo)
    for line in found:
        print(f"SLO BREACH: {line}")
    if found:
        environment.process_exit_code = 1
    else:
        print(f"SLOs met: every endpoint p99 <= {slo.p99_ms:.0f} ms, errors <= {slo.max_error_rate:.2%}")


class ShopVisitor(FastHttpUser):
    wait_time = between(0.2, 1.0)  # think time between pages

    def on_start(self) -> None:
        self._new_journey()

    def _new_journey(self) -> None:
        assert _journeys is not None
        self.journey: Journey = next(_journeys)
        self.step = 0
        self.visitor_id = f"lt-{uuid.uuid4().hex[:12]}"
        key = self.environment.parsed_options.api_key if self.environment.parsed_options else ""
        self.headers = {"X-API-Key": key} if key else {}
        self._recommend("home")

    def _recommend(self, placement: str, **params: str) -> None:
        query = "&".join(f"{k}={v}" for k, v in {"placement": placement, "visitor_id": self.visitor_id,
                                                  **params}.items())
        self.client.get(f"/v1/recommendations?{query}", name=f"/v1/recommendations [{placement}]",
                        headers=self.headers)

    def _post(self, event_type: str, item_id: str) -> None:
        body = {"event_id": uuid.uuid4().hex, "type": event_type, "visitor_id": self.visitor_id, "item_id": item_id}
        if event_type == "purchase":
            body["price"] = 1.0
        with self.client.post("/v1/events", json=body, name=f"/v1/events [{event_type}]", headers=self.headers,
                              catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"{response.status_code}: {response.text[:200]}")

    @task
    def next_page(self) -> None:
        if self.step >= len(self.journey.steps):
            self._new_journey()
            return
        step = self.journey.steps[self.step]
        self.step += 1
        self._post(step.event_type, step.item_id)
        if step.event_type in ("product_view", "add_to_wishlist"):
            self._recommend("product", item_id=step.item_id)
            if self.step % 3 == 0:
                self._recommend("recent")
        elif step.event_type == "add_to_cart":
            self._recommend("cart")
        else:
            self._recommend("home")
