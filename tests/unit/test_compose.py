"""``docker-compose.yml`` parses, and no service of it listens beyond the host's loopback.

No Docker engine runs where the tests do, so the file is checked as data: what each service would
listen on, and that the profiles match what the fixtures start (tests/servers.py and friends)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

COMPOSE = Path(__file__).parents[2] / "docker-compose.yml"


def services() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text("utf-8"))
    found: dict[str, Any] = document["services"]
    return found


def test_every_published_port_is_bound_to_loopback() -> None:
    for name, service in services().items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"


def test_host_network_services_bind_loopback_themselves() -> None:
    for name, service in services().items():
        if service.get("network_mode") != "host" or name == "cluster-create":
            continue
        command = " ".join(map(str, service.get("command", [])))
        assert "127.0.0.1" in command, f"{name} runs on the host's network without binding loopback"


def test_the_profiles_are_the_deployments_the_fixtures_start() -> None:
    found = services()
    profiles = {p for service in found.values() for p in service.get("profiles", [])}
    assert profiles == {"cluster", "sentinel", "postgres", "tls", "aof"}
    assert sorted(n for n in found if n.startswith("cluster-7")) == [
        f"cluster-{p}" for p in range(7000, 7006)
    ]
    assert "profiles" not in found["redis"], "plain `docker compose up -d` starts the demo's Redis"
    assert found["redis"]["image"].startswith("redis:7"), "tiered mode needs Redis >= 7 (allow-oom)"
