"""Several shops in one process (api.tenants, engine.tenants): each at /t/<tenant>/, on a real Redis,
with its own keys, database, data dir and settings; no key of one shop opens another's data."""

from __future__ import annotations

import io
import json
import logging
import re
import shutil
from pathlib import Path

import pytest
import redis
import yaml
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from api.auth import require_admin
from api.tenants import TenantRouter
from engine import logs
from engine.tenants import CURRENT
from engine.tenants import config as tenants
from engine.settings import Settings
from engine.store import keys
from engine.tenants.config import TenantsInvalid, with_database
from tests.conftest import make_settings
from tests.redis_clients import CLUSTER_MODE, sync_client
from tests.redis_cluster import Cluster

KEY_A, KEY_B = "admin-key-of-shop-a-0123", "admin-key-of-shop-b-0123"
SHOPS = {"shop-a": {"admin_key": KEY_A, "site_keys": ["pk-a"]},  # the deployment's Redis, shared
         "shop-b": {"admin_key": KEY_B, "site_keys": ["pk-b"], "redis_db": 2, "consent_required": True,
                    "event_weights": {"product_view": 2.0, "purchase": 8.0}}}
# The session's Redis: on a cluster (database 0 only) shop-b shares it under its own prefix.
SESSION_SHOPS = {tenant: {k: v for k, v in shop.items() if not (CLUSTER_MODE and k == "redis_db")}
                 for tenant, shop in SHOPS.items()}
OWN_DATABASE = pytest.mark.single_redis("shop-b keeps its keys in database 2; a cluster has one database "
                                        "(test_shops_share_a_redis_cluster_each_under_its_own_prefix)")


def base_settings(tmp_path: Path, redis_url: str, shops: dict, **settings: object) -> Settings:
    path = tmp_path / "tenants.yaml"
    path.write_text(yaml.safe_dump({"tenants": shops}))
    return make_settings(tmp_path, redis_url, tenants_file=path, **settings)


@pytest.fixture
def router(tmp_path: Path, redis_url: str, trained_models: Path) -> TenantRouter:
    for tenant in SHOPS:
        shutil.copytree(trained_models, tmp_path / "tenants" / tenant / "models")
    return TenantRouter(tenants.load(base_settings(tmp_path, redis_url, SESSION_SHOPS)))


def views(visitor_id: str, *items: str, consent: bool = False) -> dict:
    events = [{"event_id": f"{visitor_id}-{n}", "type": "product_view", "visitor_id": visitor_id, "item_id": item}
              for n, item in enumerate(items)]
    if consent:
        events.insert(0, {"event_id": f"{visitor_id}-c", "type": "consent", "visitor_id": visitor_id,
                          "properties": {"granted": True}})
    return {"events": events}


@OWN_DATABASE
def test_each_shop_keeps_its_own_profiles_keys_and_settings(router: TenantRouter, redis_url: str) -> None:
    with TestClient(router) as client:
        for tenant, key in (("shop-a", "pk-a"), ("shop-b", "pk-b")):
            sent = client.post(f"/t/{tenant}/v1/events", json=views("v-1", "85123A", "71053"),
                               headers={"X-API-Key": key})
            assert sent.status_code == 200, sent.text
        recent = client.get("/t/shop-a/v1/recommendations", params={"placement": "recent", "visitor_id": "v-1"},
                            headers={"X-API-Key": "pk-a"})
        assert [i["item_id"] for i in recent.json()["items"]] == ["71053", "85123A"]
        # shop-b asks for consent first (its own setting): the same events left no profile there
        nothing = client.get("/t/shop-b/v1/recommendations", params={"placement": "recent", "visitor_id": "v-1"},
                             headers={"X-API-Key": "pk-b"})
        assert nothing.json()["items"] == []
        client.post("/t/shop-b/v1/events", json=views("v-2", "22423", consent=True), headers={"X-API-Key": "pk-b"})
        # a site key of one shop is no key of another's
        for tenant, key in (("shop-b", "pk-a"), ("shop-a", "pk-b"), ("shop-b", KEY_A)):
            refused = client.get(f"/t/{tenant}/v1/recommendations", params={"placement": "home"},
                                 headers={"X-API-Key": key})
            assert refused.status_code == 403, (tenant, key)
    shared, own = sync_client(redis_url), sync_client(with_database(redis_url, 2))
    assert shared.exists("t.shop-a:v:{v-1}") and not shared.exists(keys.visitor("v-1"))
    assert {key[:9] for key in shared.keys()} == {b"t.shop-a:"}  # every key of shop-a carries its id
    assert own.exists("t.shop-b:v:{v-2}") and not own.exists("t.shop-b:v:{v-1}")
    for tenant in SHOPS:  # each shop's event log in its own data dir
        log_dir = router._shops[tenant].settings.data_dir / "log"
        assert any(log_dir.glob("*.jsonl")), tenant


def test_shops_share_a_redis_cluster_each_under_its_own_prefix(cluster: Cluster, tmp_path: Path,
                                                               trained_models: Path) -> None:
    shops = {"shop-a": {"admin_key": KEY_A, "site_keys": ["pk-a"]},
             "shop-b": {"admin_key": KEY_B, "site_keys": ["pk-b"], "session_timeout_s": 600}}
    for tenant in shops:
        shutil.copytree(trained_models, tmp_path / "tenants" / tenant / "models")
    router = TenantRouter(tenants.load(base_settings(tmp_path, cluster.url, shops, redis_cluster=True)))
    with TestClient(router) as client:
        for tenant, items in (("shop-a", ("85123A", "71053")), ("shop-b", ("22423",))):
            sent = client.post(f"/t/{tenant}/v1/events", json=views("v-1", *items),
                               headers={"X-API-Key": f"pk-{tenant[-1]}"})
            assert sent.status_code == 200 and sent.json()["profiles_updated"] is True, sent.text
        for tenant, items in (("shop-a", ["71053", "85123A"]), ("shop-b", ["22423"])):
            recent = client.get(f"/t/{tenant}/v1/recommendations", headers={"X-API-Key": f"pk-{tenant[-1]}"},
                                params={"placement": "recent", "visitor_id": "v-1"})
            assert [i["item_id"] for i in recent.json()["items"]] == items
        exported = client.get("/t/shop-b/v1/people/v-1/export", headers={"X-API-Key": KEY_B}).json()
        assert [e["item_id"] for e in exported["events"]] == ["22423"]
    nodes = [redis.Redis(host="127.0.0.1", port=server.port) for server in cluster.servers
             if server.process.poll() is None]
    found = {key for node in nodes for key in node.keys("*v:{v-1}")}
    assert found == {b"t.shop-a:v:{v-1}", b"t.shop-b:v:{v-1}"}


def test_no_admin_route_of_a_shop_opens_to_another_shops_admin_key(router: TenantRouter) -> None:
    """Every admin route of shop-b, called with shop-a's admin key: 403, whatever the route."""
    with TestClient(router) as client:
        assert client.get("/t/shop-b/v1/admin/models", headers={"X-API-Key": KEY_B}).status_code == 200
        app = router._shops["shop-b"].app
        routes = [r for r in app.routes if isinstance(r, APIRoute)  # type: ignore[union-attr]
                  and any(d.dependency is require_admin for d in r.dependencies)]
        assert len(routes) >= 20
        for route in routes:
            path = re.sub(r"\{[^}]+\}", "x", route.path)
            for method in route.methods:
                answer = client.request(method, f"/t/shop-b{path}", headers={"X-API-Key": KEY_A}, json={})
                assert answer.status_code == 403, (method, route.path, answer.status_code)


def test_an_unknown_or_missing_tenant_is_a_404_naming_it(router: TenantRouter) -> None:
    with TestClient(router) as client:
        for path in ("/t/shop-z/v1/recommendations?placement=home", "/v1/recommendations?placement=home", "/t/"):
            answer = client.get(path)
            assert answer.status_code == 404 and answer.json()["errors"][0]["field"] == "tenant", path
        assert client.get("/health").status_code == 200
        assert router.running() == []  # nothing started for them


@OWN_DATABASE
def test_shops_start_at_their_first_request_and_stop_past_the_memory_budget(tmp_path: Path, redis_url: str,
                                                                             trained_models: Path) -> None:
    for tenant in SHOPS:
        shutil.copytree(trained_models, tmp_path / "tenants" / tenant / "models")
    router = TenantRouter(tenants.load(base_settings(tmp_path, redis_url, SHOPS)), memory_mb=1)
    with TestClient(router) as client:
        assert router.running() == []
        home = {"placement": "home", "visitor_id": "v-9"}
        assert client.get("/t/shop-a/v1/recommendations", params=home, headers={"X-API-Key": "pk-a"}).json()["items"]
        assert router.running() == ["shop-a"]
        client.get("/t/shop-b/v1/recommendations", params=home, headers={"X-API-Key": "pk-b"})
        assert router.running() == ["shop-b"]  # over 1 MB: the one not asked for lately stopped
        again = client.get("/t/shop-a/v1/recommendations", params=home, headers={"X-API-Key": "pk-a"})
        assert again.status_code == 200 and again.json()["model_version"] and router.running() == ["shop-a"]
    # shop-b lives in a database of its own: the shared one holds only shop-a's keys
    assert {key[:9] for key in sync_client(redis_url).keys()} == {b"t.shop-a:"}


def test_a_shop_with_triggers_is_not_stopped_past_the_budget(tmp_path: Path, redis_url: str,
                                                             trained_models: Path) -> None:
    """Its runner sends what falls due at any hour: only the shop without triggers is stopped."""
    rules = tmp_path / "shop-b-rules.yaml"
    rules.write_text("triggers:\n  cart:\n    kind: cart_abandoned\n    after: 60m\n    channel: email\n")
    shops = {"shop-a": SESSION_SHOPS["shop-a"], "shop-b": {**SESSION_SHOPS["shop-b"], "rules_file": str(rules)}}
    for tenant in shops:
        shutil.copytree(trained_models, tmp_path / "tenants" / tenant / "models")
    router = TenantRouter(tenants.load(base_settings(tmp_path, redis_url, shops)), memory_mb=1)
    with TestClient(router) as client:
        home = {"placement": "home", "visitor_id": "v-9"}
        client.get("/t/shop-b/v1/recommendations", params=home, headers={"X-API-Key": "pk-b"})
        client.get("/t/shop-a/v1/recommendations", params=home, headers={"X-API-Key": "pk-a"})
        assert router.running() == ["shop-b", "shop-a"]
        client.get("/t/shop-b/v1/recommendations", params=home, headers={"X-API-Key": "pk-b"})
        assert router.running() == ["shop-a", "shop-b"]  # shop-a stays too: shop-b was running already


@pytest.mark.parametrize(("change", "field"), [
    ({"shop-a": {"site_keys": ["pk-a"], "redis_db": 1}}, "tenants.shop-a.admin_key"),
    ({"Shop A": {"admin_key": KEY_A, "redis_db": 1}}, "tenants.Shop A"),
    ({"shop-a": {"admin_key": KEY_A, "redis_db": 1, "port": 9000}}, "tenants.shop-a.port"),
    ({"shop-a": {"admin_key": KEY_A, "redis_db": 1, "colour": "red"}}, "tenants.shop-a.colour"),
    ({"shop-a": {"admin_key": KEY_A, "redis_db": 0}}, "tenants.shop-a.redis_db"),
    ({"shop-a": {"admin_key": KEY_A, "redis_db": 1, "shop_timezone": "Mars/Olympus"}}, "tenants.shop-a.shop_timezone"),
    ({"shop-a": {"admin_key": "short", "redis_db": 1}}, "tenants.shop-a.admin_key"),
    ({"shop-a": {"admin_key": KEY_A, "redis_db": 1}, "shop-b": {"admin_key": KEY_A, "redis_db": 2}},
     "tenants.shop-b.admin_key"),
    ({"shop-a": {"admin_key": KEY_A, "redis_db": 1, "site_keys": [KEY_B]}, "shop-b": {"admin_key": KEY_B,
                                                                                     "redis_db": 2}},
     "tenants.shop-b.admin_key"),
    ({"shop-a": {"admin_key": KEY_A, "redis_db": 1, "redis_url": "redis://127.0.0.1:1/0"}},
     "tenants.shop-a.redis_db"),
    ({"shop-a": {"admin_key": KEY_A, "console": True}}, "tenants.shop-a.console"),
    ({"shop-a": {"admin_key": KEY_A, "redis_db": 1, "rules_file": "rules.yaml"},
      "shop-b": {"admin_key": KEY_B, "redis_db": 2, "rules_file": "rules.yaml"}}, "tenants.shop-b.rules_file"),
])
def test_a_tenants_file_that_cannot_keep_shops_apart_is_refused_naming_the_field(
        tmp_path: Path, change: dict, field: str) -> None:
    with pytest.raises(TenantsInvalid) as refused:
        tenants.load(base_settings(tmp_path, "redis://127.0.0.1:6379/0", change))
    assert refused.value.field == field


def test_a_command_works_for_the_shop_vitrine_tenant_names(tmp_path: Path) -> None:
    base = base_settings(tmp_path, "unix:///srv/redis.sock", SHOPS)
    shop = tenants.settings_for(base.model_copy(update={"tenant": "shop-b"}))
    assert shop.redis_url == "unix:///srv/redis.sock?db=2" and shop.consent_required
    assert shop.data_dir == tmp_path / "tenants" / "shop-b" and shop.admin_key == KEY_B
    assert shop.event_weights["product_view"] == 2.0
    assert tenants.settings_for(base) is base  # no VITRINE_TENANT: the process's own
    with pytest.raises(TenantsInvalid, match="shop-z"):
        tenants.settings_for(base.model_copy(update={"tenant": "shop-z"}))
    assert with_database("redis://:pw@host:6380/0", 3) == "redis://:pw@host:6380/3"


def test_log_lines_say_whose_work_they_are() -> None:
    """Within a shop's request or task a line names the shop; elsewhere it is as before."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.formatter("json"))
    handler.addFilter(logs.TenantFilter())
    logger = logging.getLogger("tests.tenants")
    logger.addHandler(handler)
    try:
        logger.warning("no shop")
        token = CURRENT.set("shop-a")
        logger.warning("model %s loaded", "m1")
        CURRENT.reset(token)
    finally:
        logger.removeHandler(handler)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert "tenant" not in first and first["message"] == "no shop"
    assert second["tenant"] == "shop-a" and second["message"] == "[shop-a] model m1 loaded"
