"""OS updates through a custom OS backend written in Python: the agent owns the
sequence (stage, reboot, health window, commit or roll back) and persists it across
the reboot; the backend, two A/B slots here, only carries out each step. A reboot
ends the agent as it would on a device, and the test starts it again on the same
state directory."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from conftest import Server, eventually
from test_agent import RecordingRuntime

import flotta


class AbSlots:
    """Two slots: ``stage`` writes the other slot, ``activate`` makes it the next
    boot, ``rollback`` makes the slot booted before the update the next boot, and
    :meth:`boot` is what the firmware does when the device restarts."""

    def __init__(self, booted: str) -> None:
        self.lock = threading.Lock()
        self.booted_id = booted
        self.staged: str | None = None
        self.previous: str | None = None
        self.next_boot: str | None = None
        self.unhealthy: set[str] = set()
        self.calls: list[str] = []
        self.reboot_requested = threading.Event()

    def booted(self) -> dict[str, Any]:
        with self.lock:
            return {"booted": self.booted_id, "staged": self.staged, "rollback": self.previous}

    def stage(self, target: dict[str, Any]) -> None:
        with self.lock:
            self.calls.append(f"stage {target['commit_id']}")
            self.staged = target["commit_id"]

    def activate(self) -> None:
        with self.lock:
            self.calls.append("activate")
            self.next_boot = self.staged
        self.reboot_requested.set()

    def rollback(self) -> None:
        with self.lock:
            self.calls.append("rollback")
            self.next_boot = self.previous
            self.staged = None

    def reboot(self) -> None:
        with self.lock:
            self.calls.append("reboot")
        self.reboot_requested.set()

    def health(self) -> bool:
        with self.lock:
            return self.booted_id not in self.unhealthy

    def boot(self) -> None:
        with self.lock:
            if self.next_boot is not None and self.next_boot != self.booted_id:
                self.previous, self.booted_id = self.booted_id, self.next_boot
            self.next_boot = None
            self.staged = None
        self.reboot_requested.clear()


def os_agent(server: Server, device: str, state: Path, slots: AbSlots) -> flotta.Agent:
    return flotta.Agent(
        server=server.edge_url,
        ca=server.ca,
        registration_cert=server.register_cert,
        registration_key=server.register_key,
        device_id=device,
        state_dir=state,
        runtime=RecordingRuntime(),
        heartbeat_period=1.0,
        config_wait=2.0,
        os_updater=slots,
    )


def upgrade_of(client: flotta.Client, device: str) -> dict[str, Any]:
    status = client.devices.get(device).to_dict().get("status") or {}
    info: dict[str, Any] = status.get("upgradeInformation") or {}
    return info


def reboot(agent: flotta.Agent, slots: AbSlots) -> None:
    """Waits for the agent to ask for a reboot, ends it, and boots the slots."""
    assert slots.reboot_requested.wait(60), f"no reboot requested; calls {slots.calls}"
    agent.stop()
    slots.boot()


def test_a_python_os_backend_is_driven_across_reboots(
    server: Server, client: flotta.Client, unique: str, tmp_path: Path
) -> None:
    device = f"os-{unique}"
    state = tmp_path / "state"
    slots = AbSlots("c1")
    agent = os_agent(server, device, state, slots)
    agent.start()
    try:
        agent.wait_for(lambda s: s["phase"] == "awaiting-approval")
        eventually("the enrolment request", lambda: client.signed_requests.list(field_selector=f"metadata.name={device}"))
        client.approve(device)
        agent.wait_for(lambda s: s["phase"] == "running")
        eventually("the EdgeDevice", lambda: client.devices.list(field_selector=f"metadata.name={device}"))
        eventually("the booted commit reported", lambda: upgrade_of(client, device).get("currentCommitID") == "c1")

        # An update that boots healthy: staged, the reboot ends the agent, the agent
        # started after the boot commits it.
        client.devices.patch(device, {"spec": {"osInformation": {"automaticallyUpgrade": True, "commitID": "c2"}}})
        eventually("rebooting into c2", lambda: (agent.status()["os_update"] or {}).get("phase") == "Rebooting")
        reboot(agent, slots)
        assert slots.booted_id == "c2"
        agent = os_agent(server, device, state, slots)
        agent.start()
        committed = agent.wait_for(lambda s: (s["os_update"] or {}).get("phase") == "Committed", timeout=60)
        assert committed["os_update"]["target"] == "c2"
        eventually("c2 reported", lambda: upgrade_of(client, device).get("currentCommitID") == "c2")
        assert slots.calls == ["stage c2", "activate"]

        # An update whose health fails after the boot: rolled back through the
        # backend, rebooted into c2 again, reported, and not tried again.
        slots.unhealthy.add("c3")
        client.devices.patch(
            device,
            {"spec": {"osInformation": {"automaticallyUpgrade": True, "commitID": "c3", "rollbackAfterSeconds": 2}}},
        )
        eventually("rebooting into c3", lambda: (agent.status()["os_update"] or {}).get("phase") == "Rebooting")
        reboot(agent, slots)
        assert slots.booted_id == "c3"
        agent = os_agent(server, device, state, slots)
        agent.start()
        reboot(agent, slots)
        assert slots.booted_id == "c2", f"rolled back; calls {slots.calls}"
        assert slots.calls[-2:] == ["rollback", "reboot"], slots.calls
        agent = os_agent(server, device, state, slots)
        agent.start()
        rolled_back = agent.wait_for(lambda s: (s["os_update"] or {}).get("phase") == "RolledBack", timeout=60)
        assert "unhealthy" in (rolled_back["os_update"]["message"] or ""), rolled_back
        failed = eventually(
            "the failure reported",
            lambda: (info := upgrade_of(client, device)).get("currentCommitID") == "c2" and info,
        )
        assert "c3" in str(failed), failed
        calls = len(slots.calls)
        agent.wait_for(lambda s: s["last_heartbeat"] is not None and s["last_heartbeat"].get("delivered"), timeout=10)
        assert len(slots.calls) == calls, "the failed target is not staged again"
        assert slots.staged is None
    finally:
        agent.stop()
