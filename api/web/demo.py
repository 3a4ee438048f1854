"""What ``vitrine demo`` turns on for the demo shop: the storefront, a customer-token secret for
its login, and a rules file to edit in the console. Each only where the user set nothing."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from engine.settings import Settings, generated_secret


def demo_environment(settings: Settings, demo_dir: Path) -> dict[str, str]:
    """The ``VITRINE_`` variables to set for the demo's server processes."""
    demo_dir.mkdir(parents=True, exist_ok=True)
    env = {"VITRINE_DEMO_STOREFRONT": "true"}
    if not settings.identity_secret:
        env["VITRINE_IDENTITY_SECRET"] = generated_secret(demo_dir / "identity_secret")
    if settings.rules_file is None:
        rules = demo_dir / "rules.yaml"
        if not rules.exists():
            rules.write_bytes(resources.files("api.web").joinpath("demo_rules.yaml").read_bytes())
        env["VITRINE_RULES_FILE"] = str(rules.resolve())
    return env
