"""The running world: live 1-minute publishing (metrics, flow-log and discovery lines) and chaos (fail/heal)."""

from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from shadowing.aws import tags as T
from shadowing.world.app import App, build_app
from shadowing.world.discovery import discovery_log_lines
from shadowing.world.inventory import Inventory, write_inventory_csv
from shadowing.world.seeding import (
    alarm_name,
    inventory_from_aws,
    publish_window,
    put_region_health,
)
from shadowing.world.state import WorldClients, WorldState, iso, parse_iso, require_state, save_state
from shadowing.world.traffic import generate_flow_records, write_flow_logs
from shadowing.world.truth import ground_truth, write_truth

log = logging.getLogger(__name__)
MAX_BACKLOG = timedelta(minutes=15)  # after a pause, publish at most this much catch-up


def app_of(state: WorldState) -> App:
    return build_app(state.services, state.seed, state.instances_per_service)


@dataclass
class PublishResult:
    start: str | None
    end: str
    metric_datums: int = 0
    flow_events: int = 0
    discovery_events: int = 0
    healthy: bool = True


@dataclass
class InventoryCache:
    """The inventory read once per seeded world: describing 1 000 instances costs moto ~50 s, and nothing but a
    (re-)seed changes it (chaos stops/starts instances, which keeps their addresses)."""

    key: tuple[str, str, str | None] | None = None
    inventory: Inventory | None = None

    def get(self, clients: WorldClients, state: WorldState, app: App) -> Inventory:
        key = (state.world_id, state.created_at, state.history_seeded_until)
        if self.inventory is None or key != self.key:
            self.inventory, self.key = inventory_from_aws(clients, state, app), key
        return self.inventory


def publish_once(clients: WorldClients, now: datetime | None = None,
                 cache: InventoryCache | None = None) -> PublishResult:
    """Publish every whole minute since the last publication (capped at 15 minutes of backlog)."""
    state = require_state(clients.ssm)
    app = app_of(state)
    end = (now or datetime.now(UTC)).replace(second=0, microsecond=0)
    last = parse_iso(state.live_published_until) if state.live_published_until else end - timedelta(minutes=1)
    start = max(last, end - MAX_BACKLOG)
    result = PublishResult(iso(start) if start < end else None, iso(end), healthy=not state.failed)
    if start < end and not state.failed:  # a failed primary emits nothing but its health signal
        inventory = (cache or InventoryCache()).get(clients, state, app)
        result.metric_datums, result.flow_events, result.discovery_events = publish_window(
            clients, app, state, inventory, start, end, metric_step=60)
    put_region_health(clients, not state.failed, end)
    if start < end:
        # re-read: `chaos` may have flipped `failed` while this minute was being published (lost update)
        latest = require_state(clients.ssm)
        latest.live_published_until = iso(end)
        save_state(clients.ssm, latest)
    return result


def publish_loop(clients: WorldClients, interval: float = 60.0, stop: threading.Event | None = None) -> int:
    """Publish every ``interval`` seconds until SIGTERM/SIGINT (or ``stop`` is set); returns publications made."""
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    count = 0
    cache = InventoryCache()
    while not stop.is_set():
        r = publish_once(clients, cache=cache)
        count += 1
        log.info("published %s..%s: %d datums, %d flow lines, %d discovery lines%s", r.start, r.end,
                 r.metric_datums, r.flow_events, r.discovery_events, "" if r.healthy else " (primary FAILED)")
        stop.wait(interval)
    return count


def _world_instances(clients: WorldClients, world: str, states: list[str]) -> list[str]:
    ids: list[str] = []
    for page in clients.ec2.get_paginator("describe_instances").paginate(Filters=[
            {"Name": f"tag:{T.WORLD}", "Values": [world]}, {"Name": "instance-state-name", "Values": states}]):
        ids += [i["InstanceId"] for r in page["Reservations"] for i in r["Instances"]]
    return ids


def chaos(clients: WorldClients, *, fail: bool) -> dict[str, Any]:
    """Fail the primary (alarm → ALARM, instances stopped, state flag) or heal it (the reverse)."""
    state = require_state(clients.ssm)
    if fail:
        ids = _world_instances(clients, state.world_id, ["pending", "running"])
        for i in range(0, len(ids), 500):
            clients.ec2.stop_instances(InstanceIds=ids[i:i + 500])
        clients.cloudwatch.set_alarm_state(AlarmName=alarm_name(clients.region), StateValue="ALARM",
                                           StateReason="shadowing world chaos: primary region failed")
    else:
        ids = _world_instances(clients, state.world_id, ["stopping", "stopped"])
        for i in range(0, len(ids), 500):
            clients.ec2.start_instances(InstanceIds=ids[i:i + 500])
        clients.cloudwatch.set_alarm_state(AlarmName=alarm_name(clients.region), StateValue="OK",
                                           StateReason="shadowing world chaos: primary region healed")
    state = require_state(clients.ssm)  # re-read: the publisher saved its progress meanwhile
    state.failed = fail
    save_state(clients.ssm, state)
    now = datetime.now(UTC).replace(microsecond=0)
    put_region_health(clients, not fail, now)
    return {"world_id": state.world_id, "failed": fail, "instances": len(ids),
            "alarm": alarm_name(clients.region), "alarm_state": "ALARM" if fail else "OK"}


def export_world(clients: WorldClients, out_dir: str | Path, *, start: datetime | None = None,
                 end: datetime | None = None) -> dict[str, str]:
    """Files for the dependency mapper to score itself, for [start, end) (default: the last hour)."""
    state = require_state(clients.ssm)
    app = app_of(state)
    end = (end or datetime.now(UTC)).replace(second=0, microsecond=0)
    start = start or end - timedelta(hours=1)
    inventory = inventory_from_aws(clients, state, app)
    return write_bundle(app, inventory, state.seed, start, end, out_dir, world_id=state.world_id,
                        history_start=parse_iso(state.history_start))


def write_bundle(app: App, inventory: Any, seed: int, start: datetime, end: datetime, out_dir: str | Path, *,
                 world_id: str | None = None, history_start: datetime | None = None,
                 flows_per_edge: int = 1) -> dict[str, str]:
    """flow-logs-v5.log (header), flow-logs-v2.log (no header), discovery.log, inventory.csv, truth.json."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    records = generate_flow_records(app, inventory, start, end, seed, flows_per_edge=flows_per_edge)
    paths = {
        "flow_logs_v5": write_flow_logs(records, out / "flow-logs-v5.log", 5),
        "flow_logs_v2": write_flow_logs(records, out / "flow-logs-v2.log", 2),
        "inventory": write_inventory_csv(inventory, out / "inventory.csv"),
    }
    disc = out / "discovery.log"
    disc.write_text("".join(f"{line}\n" for line in discovery_log_lines(app, inventory, start, end, seed)))
    paths["discovery"] = disc
    counts: dict[str, int] = {}
    for e in inventory.endpoints:
        if e.kind == "instance" and (e.valid_to is None or e.valid_to > end):
            counts[e.service] = counts.get(e.service, 0) + 1
    truth = ground_truth(app, seed, start=history_start or end - timedelta(days=7), end=end,
                         instance_counts=counts or None, world_id=world_id)
    truth["export_window"] = {"start": iso(start), "end": iso(end)}
    truth["flow_records"] = int(len(records))
    paths["truth"] = write_truth(truth, out / "truth.json")
    return {k: str(v) for k, v in paths.items()}
