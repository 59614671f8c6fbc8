"""The small demo world the blueprint integration tests refresh, and AWS clients cached per (service, region)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shadowing.aws.clients import client
from shadowing.world.app import App, build_app
from shadowing.world.seeding import seed_world
from shadowing.world.state import WorldClients

# A few minutes of history and one minute of flow logs: enough for a blueprint, fast to seed.
FAST = {"seed": 0, "history_days": 0.01, "flow_minutes": 1}


def seeded_world(endpoint: str) -> App:
    """Seed the default world into the emulator at ``endpoint``; the app it runs."""
    seed_world(WorldClients.connect(endpoint), **FAST)
    return build_app(None, 0)


def client_factory(endpoint: str) -> Callable[[str, str], Any]:
    """``make(service, region)`` → one boto3 client per pair, created on first use."""
    cache: dict[tuple[str, str], Any] = {}

    def make(service: str, region: str) -> Any:
        if (service, region) not in cache:
            cache[(service, region)] = client(service, region, endpoint)
        return cache[(service, region)]

    return make
