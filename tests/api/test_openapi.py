"""The OpenAPI document describes what the API really does: bodies, errors, keys, audiences, and
examples the real app accepts. (tests/api/test_fuzz.py checks the app against it request by request.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema_rs  # schemathesis's validator (test extra)
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from api.app import create_app
from engine.events.schema import Event, Rejection, validate_event
from engine.settings import EVENT_TYPES, Settings
from tests.conftest import ADMIN

AUDIENCES = {"site", "admin", "ops"}
BODY_ERRORS = {"400", "413", "415", "422"}


@pytest.fixture
def settings_overrides(tmp_path: Path) -> dict[str, object]:
    """A rules file, for the examples of the rules routes (publish, then roll back to it)."""
    (tmp_path / "rules.yaml").write_text("placements:\n  home: {}\n")
    return {"rules_file": tmp_path / "rules.yaml"}


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return create_app(Settings(redis_url="redis://127.0.0.1:1/0", admin_key=ADMIN["X-API-Key"])).openapi()


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method.upper(), path, op) for path, item in spec["paths"].items() for method, op in item.items()]


def resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    return spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]] if "$ref" in schema else schema


def refs(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [value["$ref"]] if "$ref" in value else [r for v in value.values() for r in refs(v)]
    if isinstance(value, list):
        return [r for v in value for r in refs(v)]
    return []


def test_every_reference_resolves_and_every_scheme_is_declared(spec: dict[str, Any]) -> None:
    names = set(spec["components"]["schemas"])
    assert {r.rsplit("/", 1)[1] for r in refs(spec)} <= names
    schemes = set(spec["components"]["securitySchemes"])
    assert schemes == {"siteKey", "adminKey", "bearerKey"}
    for _, _, op in operations(spec):
        assert {name for requirement in op.get("security", []) for name in requirement} <= schemes


def test_every_operation_has_one_audience_its_keys_and_a_summary(spec: dict[str, Any]) -> None:
    assert {t["name"] for t in spec["tags"]} == AUDIENCES
    for method, path, op in operations(spec):
        (audience,) = op["tags"]
        assert op["summary"], (method, path)
        security = op.get("security", [])
        if audience == "admin":
            assert security == [{"adminKey": []}, {"bearerKey": []}], (method, path)
            assert {"401", "403"} <= set(op["responses"])
        elif audience == "site":
            assert {} in security and {"siteKey": []} in security, (method, path)  # a key only if configured
        else:
            assert audience == "ops" and not security and path in ("/health", "/ready", "/metrics")
        if audience != "ops":
            assert op["responses"]["429"]["headers"]["Retry-After"]["schema"] == {"type": "integer"}


def test_every_error_answer_has_the_error_shape(spec: dict[str, Any]) -> None:
    for method, path, op in operations(spec):
        for status, response in op["responses"].items():
            if int(status) < 400 or path == "/ready":  # /ready's 503 is its readiness report
                continue
            schema = resolve(spec, response["content"]["application/json"]["schema"])
            assert schema["required"][0] == "error" and "errors" in schema["properties"], (method, path, status)
            assert resolve(spec, schema["properties"]["errors"]["items"])["required"] == ["field", "message"]


def test_every_body_route_documents_its_json_body_with_examples(spec: dict[str, Any]) -> None:
    with_body = {(m, p) for m, p, op in operations(spec) if "requestBody" in op}
    assert with_body == {("POST", "/v1/events"), ("PUT", "/v1/items"), ("DELETE", "/v1/items"),
                         ("POST", "/v1/admin/preview"), ("POST", "/v1/rerank"), ("POST", "/v1/page"),
                         ("POST", "/v1/admin/rules/check"),
                         ("PUT", "/v1/admin/rules"), ("POST", "/v1/admin/rules/rollback"),
                         ("PUT", "/v1/visitors/{visitor_id}/preferences"), ("POST", "/v1/customers/merge")}
    for method, path, op in operations(spec):
        if (method, path) in with_body:
            body = op["requestBody"]
            assert body["required"] and list(body["content"]) == ["application/json"]
            assert body["content"]["application/json"]["examples"]
            assert BODY_ERRORS <= set(op["responses"]), (method, path)


def test_the_event_schema_is_the_wire_format(spec: dict[str, Any]) -> None:
    event = spec["components"]["schemas"]["EventIn"]
    assert {"timestamp", "customer_token", "visitor_id", "items"} <= set(event["properties"])
    assert not {"ts", "rt"} & set(event["properties"]) and "visitor_id" not in event["required"]
    assert event["additionalProperties"] is False
    assert {rule["if"]["properties"]["type"]["enum"][0] for rule in event["allOf"]} >= {"login", "search"}


# What each event type needs beyond event_id, type and visitor_id.
NEEDS: dict[str, dict[str, Any]] = {
    "page_view": {}, "product_view": {"item_id": "A"}, "add_to_cart": {"item_id": "A"},
    "remove_from_cart": {"item_id": "A"}, "add_to_wishlist": {"item_id": "A"},
    "recommendation_click": {"item_id": "A"}, "purchase": {"items": [{"item_id": "A", "quantity": 2}]},
    "login": {"customer_id": "c1"}, "search": {"properties": {"query": "mugs"}},
    "consent": {"properties": {"granted": False}}, "block_impression": {"properties": {"block_id": "b1"}},
    "block_click": {"properties": {"block_id": "b1"}},
}


def test_the_event_schema_needs_per_type_what_the_validator_needs(spec: dict[str, Any]) -> None:
    """The if/then rules of the document (engine.events.schema.TYPE_REQUIREMENTS) against the validator."""
    schema = jsonschema_rs.validator_for({"$ref": "#/components/schemas/EventIn", "components": spec["components"]})
    assert set(NEEDS) == set(EVENT_TYPES)
    for event_type, needs in NEEDS.items():
        minimal = {"event_id": "e1", "type": event_type, "visitor_id": "v1"}
        complete = {**minimal, **needs}
        assert isinstance(validate_event(complete, index=0, prefix="", visitor_id=None), Event), event_type
        assert schema.is_valid(complete), event_type
        if needs:
            assert isinstance(validate_event(minimal, index=0, prefix="", visitor_id=None), Rejection), event_type
            assert not schema.is_valid(minimal), event_type


def test_every_request_example_is_accepted(client: TestClient, spec: dict[str, Any]) -> None:
    # The customers the merge example names.
    logins = [{"event_id": f"l-{c}", "type": "login", "visitor_id": f"v-{c}", "customer_id": c} for c in ("c-42", "c-77")]
    assert client.post("/v1/events", json={"events": logins}, headers=ADMIN).status_code == 200
    sent = 0
    for method, path, op in operations(spec):
        for name, example in op.get("requestBody", {}).get("content", {}).get("application/json", {}).get(
                "examples", {}).items():
            url = path
            for parameter in op.get("parameters", []):
                if parameter["in"] == "path":
                    url = url.replace(f"{{{parameter['name']}}}", parameter["example"])
            r = client.request(method, url, headers=ADMIN, json=example["value"])
            assert r.status_code == 200, (method, path, name, r.text)
            sent += 1
    assert sent >= 5


def test_hot_routes_leave_parsing_to_the_route(spec: dict[str, Any]) -> None:
    """Documentation must not make FastAPI parse anything on the busiest routes (api.query)."""
    app = create_app(Settings(redis_url="redis://127.0.0.1:1/0", admin_key=ADMIN["X-API-Key"]))
    routes = {r.path: r for r in app.routes if isinstance(r, APIRoute)}
    for path in ("/v1/recommendations", "/v1/events", "/v1/blocks/{slot}", "/v1/items/{item_id}", "/v1/rerank",
                 "/health"):
        dependant = routes[path].dependant
        assert routes[path].body_field is None and not dependant.query_params and not dependant.path_params
