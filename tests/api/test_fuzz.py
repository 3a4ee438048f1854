"""The fuzzing gate: schemathesis generates requests from the OpenAPI document (bodies included,
valid and invalid ones) and sends them with the admin key to the real app on a real socket, backed
by a real Redis holding the demo catalogue, a trained model and the example rules
(engine/merch/example-rules.yaml). Every answer must be documented: no 5xx, and a documented
status, content type, headers and body shape.

Bounded: examples per operation (``VITRINE_FUZZ_EXAMPLES`` raises it for a longer local run),
derandomised so that CI replays the same cases.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from engine.settings import Settings
from tests.conftest import ADMIN, LiveServer, make_settings
from tests.engine.merch.test_loader import example_rules
from tests.redis_clients import async_client, sync_client

EXAMPLES = int(os.environ.get("VITRINE_FUZZ_EXAMPLES", "25"))
# What the schema cannot say, the API still checks: an unknown placement, a customer id without its
# token, a timestamp in the future are refused although schema-valid (so no positive_data_acceptance).
# 413 refuses too much data; a batch with one bad event rejects that event alone (207).
# Every accepted catalogue upsert reloads the whole demo catalogue: PUT /v1/items skips the coverage
# phase (~100 boundary cases, about half of them accepted), which would double the run.
REJECTIONS = ["400", "401", "403", "404", "405", "409", "413", "415", "422", "429"]
CONFIG = SchemathesisConfig.from_dict({
    "checks": {"positive_data_acceptance": {"enabled": False},
               "negative_data_rejection": {"expected-statuses": REJECTIONS}},
    "operations": [{"include-path": "/v1/items", "include-method": "PUT", "phases": {"coverage": {"enabled": False}}},
                   {"include-path": "/v1/events",
                    "checks": {"negative_data_rejection": {"expected-statuses": [*REJECTIONS, "207"]}}},
                   # GET /v1/customers/merge is the view of a customer whose id is "merge" (the
                   # /v1/customers/{customer_id} route), so Allow rightly lists GET beside POST.
                   {"include-path": "/v1/customers/merge", "include-method": "POST",
                    "checks": {"allow_header_conformance": {"enabled": False}}}],
})
sent: Counter[tuple[str, str]] = Counter()  # (operation, phase) -> requests


def _document() -> dict[str, Any]:
    """The app's OpenAPI document; building it needs no Redis (the app is not started)."""
    from api.app import create_app

    return create_app(Settings(redis_url="redis://127.0.0.1:1/0", admin_key=ADMIN["X-API-Key"])).openapi()


schema = schemathesis.openapi.from_dict(_document(), config=CONFIG)


@pytest.fixture(scope="module")
def fuzz_server(session_redis_url: str, demo_files: tuple[Path, Path], trained_models: Path,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    from api.app import create_app
    from engine.catalog import upsert_items
    from engine.ingest.importer import ImportReport, read_items

    with sync_client(session_redis_url) as client:
        client.flushall()

    async def load() -> None:
        client = async_client(session_redis_url)
        await upsert_items(client, read_items(demo_files[0], ImportReport()))
        await client.aclose()

    asyncio.run(load())
    data_dir = tmp_path_factory.mktemp("fuzz")
    shutil.copytree(trained_models, data_dir / "models")
    (data_dir / "rules.yaml").write_text(example_rules())
    app = create_app(make_settings(data_dir, session_redis_url, site_keys=["fuzz-site-key"],
                                   identity_secret="fuzz-identity-secret-0123456789",
                                   rules_file=data_dir / "rules.yaml"))
    with LiveServer(app) as server:
        yield server
    phases: Counter[str] = Counter()
    for (_, phase), n in sent.items():
        phases[phase] += n
    print(f"\nfuzzing: {len({op for op, _ in sent})} operations, {sum(sent.values())} requests {dict(phases)}")


def test_the_served_document_is_the_one_fuzzed(fuzz_server: LiveServer) -> None:
    assert httpx.get(f"{fuzz_server.url}/openapi.json").json() == schema.raw_schema


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_every_answer_is_documented(case: schemathesis.Case, fuzz_server: LiveServer) -> None:
    sent[(case.operation.label, case.meta.phase.name.value if case.meta else "explicit")] += 1
    case.call_and_validate(base_url=fuzz_server.url, headers=ADMIN)


def test_every_operation_was_fuzzed() -> None:
    """Runs after the fuzzing above (file order): a gate that sent nothing would pass silently."""
    operations = {f"{method.upper()} {path}" for path, item in schema.raw_schema["paths"].items()
                  for method in item}
    assert {op for op, _ in sent} == operations
    assert all(sent[(op, "fuzzing")] > 0 for op in operations)
