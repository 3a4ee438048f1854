"""Several shops in one deployment: the tenants file, and each shop's own settings.

One server process serves every shop the file names (api.tenants routes ``/t/{tenant}/...`` to the
shop's own app). Each shop has its own admin and site keys, data dir (models, rules, event log,
audit), events topic and Redis keys (all under ``t.<tenant>:``, in the deployment's Redis or
cluster; ``redis_db`` or ``redis_url`` puts a shop in a database or a Redis of its own), and any
setting that differs between shops (event weights, consent mode, time zone...). A command
(`vitrine train`, `import`, `worker`...) works for the one shop ``VITRINE_TENANT`` names. Without a
tenants file nothing changes: one shop.

```yaml
tenants:
  shop-a:
    admin_key: a-long-admin-key-of-shop-a
    site_keys: [pk-shop-a]
    shop_timezone: Europe/Paris
  shop-b:
    admin_key: a-long-admin-key-of-shop-b
    redis_db: 2
    consent_required: true
```
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import yaml
from pydantic import ValidationError

from engine.settings import Settings

TENANT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
# Settings of the process, not of a shop: a tenant cannot set them.
PROCESS_WIDE = frozenset({"host", "port", "workers", "tenants_file", "tenant", "tenant_memory_mb", "log_format",
                          "redis_server", "redis_maxmemory", "redis_maxmemory_policy", "retrain_interval_s"})
# Pages whose links assume the site's root (api.web): not served under /t/<tenant>/.
ONE_SHOP_PAGES = frozenset({"console", "demo_storefront"})
# What a tenant's entry may hold besides settings: its database on the deployment's Redis.
REDIS_DB = "redis_db"


class TenantsInvalid(ValueError):
    """The tenants file cannot be used; ``field`` names where (``tenants.shop-a.admin_key``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def load(base: Settings) -> dict[str, Settings]:
    """Every shop of ``base.tenants_file`` with its settings: ``base``'s, changed by its entry."""
    path = base.tenants_file
    if path is None:
        return {}
    try:
        document = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise TenantsInvalid("tenants_file", f"cannot read {path}: {exc}") from None
    entries = document.get("tenants") if isinstance(document, dict) else None
    if not isinstance(entries, dict) or not entries:
        raise TenantsInvalid("tenants", f"{path} has no `tenants:` mapping of tenant id to settings")
    shops = {tenant: _shop(base, str(tenant), entry) for tenant, entry in entries.items()}
    _check_apart(shops)
    return shops


def settings_for(base: Settings) -> Settings:
    """The settings a command works with: the shop ``VITRINE_TENANT`` names, else ``base``."""
    if base.tenant is None:
        return base
    if base.tenants_file is None:
        raise TenantsInvalid("tenant", "VITRINE_TENANT is set without VITRINE_TENANTS_FILE")
    shops = load(base)
    if base.tenant not in shops:
        raise TenantsInvalid("tenant", f"no tenant {base.tenant!r} in {base.tenants_file} "
                                       f"(known: {', '.join(sorted(shops))})")
    return shops[base.tenant]


def _shop(base: Settings, tenant: str, entry: Any) -> Settings:
    where = f"tenants.{tenant}"
    if not TENANT_ID.match(tenant):
        raise TenantsInvalid(where, "a tenant id is 1-32 lower-case letters, digits, '-' or '_'")
    if not isinstance(entry, dict):
        raise TenantsInvalid(where, "expected a mapping of settings")
    changes = dict(entry)
    for name in changes:
        if name in PROCESS_WIDE:
            raise TenantsInvalid(f"{where}.{name}", "a setting of the whole process, not of one shop")
        if name in ONE_SHOP_PAGES and changes[name]:
            raise TenantsInvalid(f"{where}.{name}", "a page of a one-shop deployment; a shop of a tenants file "
                                                    "manages its rules through its admin API")
        if name != REDIS_DB and name not in Settings.model_fields:
            raise TenantsInvalid(f"{where}.{name}", "not a setting (engine/README.md lists them)")
    if not changes.get("admin_key"):
        raise TenantsInvalid(f"{where}.admin_key", "each shop needs its own admin key")
    db = changes.pop(REDIS_DB, None)
    if db is not None:
        if not isinstance(db, int) or isinstance(db, bool) or db < 1:
            raise TenantsInvalid(f"{where}.{REDIS_DB}", "a database number of the deployment's Redis (1 or more)")
        if "redis_url" in changes:
            raise TenantsInvalid(f"{where}.{REDIS_DB}", "give redis_url or redis_db, not both")
        if base.redis_cluster:
            raise TenantsInvalid(f"{where}.{REDIS_DB}", "a Redis Cluster has one database: shops share it, each "
                                                       "under its own key prefix")
        if base.redis_url:
            changes["redis_url"] = with_database(base.redis_url, db)
    changes.setdefault("data_dir", base.data_dir / "tenants" / tenant)
    values = {name: getattr(base, name) for name in Settings.model_fields}
    values.update(changes, tenant=tenant, **dict.fromkeys(ONE_SHOP_PAGES, False))
    try:
        return Settings(**values)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"])
        raise TenantsInvalid(f"{where}.{field}" if field else where, error["msg"]) from None


def with_database(url: str, db: int) -> str:
    """``url`` on database ``db``: the path of a ``redis://`` URL, the ``db`` parameter of a socket's."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        query = [(k, v) for k, v in parse_qsl(parts.query) if k != "db"] + [("db", str(db))]
        return f"{url.partition('?')[0]}?{urlencode(query)}"  # urlunsplit would drop the empty host's //
    return urlunsplit(parts._replace(path=f"/{db}"))


def _check_apart(shops: dict[str, Settings]) -> None:
    """No two shops may share what keeps them apart: keys, data dir, rules file, events topic. They
    may share a Redis: each shop's keys start with its own prefix (engine.tenants)."""
    seen: dict[tuple[str, str], str] = {}
    for tenant, shop in shops.items():
        owned = [("admin_key", shop.admin_key or "")] + [("site_keys", key) for key in shop.site_keys]
        owned += [("data_dir", str(shop.data_dir.resolve())),
                  ("rules_file", str(shop.rules_file.resolve()) if shop.rules_file else "")]
        if shop.mode == "kafka":
            owned += [("kafka_events_topic", shop.kafka_events_topic), ("kafka_group_id", shop.kafka_group_id)]
        for name, value in owned:
            kind = "key" if name in ("admin_key", "site_keys") else name
            other = seen.setdefault((kind, value), tenant)
            if other != tenant and value:
                raise TenantsInvalid(f"tenants.{tenant}.{name}", f"the same as tenant {other!r}'s: each shop "
                                                                  f"needs its own")
