"""What ``vitrine demo`` turns on for the demo shop: the storefront, a customer-token secret for
its login, and a rules file to edit in the console. Each only where the user set nothing."""

from __future__ import annotations

import contextlib
import os
import secrets
from importlib import resources
from pathlib import Path

from engine.settings import Settings


def _secret(path: Path) -> str:
    """A secret generated once into ``path`` (mode 0600), as the admin key is."""
    if not path.exists():
        with contextlib.suppress(FileExistsError):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, secrets.token_urlsafe(24).encode())
            os.close(fd)
    return path.read_text().strip()


def demo_environment(settings: Settings, demo_dir: Path) -> dict[str, str]:
    """The ``VITRINE_`` variables to set for the demo's server processes."""
    demo_dir.mkdir(parents=True, exist_ok=True)
    env = {"VITRINE_DEMO_STOREFRONT": "true"}
    if not settings.identity_secret:
        env["VITRINE_IDENTITY_SECRET"] = _secret(demo_dir / "identity_secret")
    if settings.rules_file is None:
        rules = demo_dir / "rules.yaml"
        if not rules.exists():
            rules.write_bytes(resources.files("api.web").joinpath("demo_rules.yaml").read_bytes())
        env["VITRINE_RULES_FILE"] = str(rules.resolve())
    return env
