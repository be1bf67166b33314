"""Rollout controls from Python: a batch waits for approval, against real agents."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import Server, eventually
from test_agent import RecordingRuntime, make_agent

import flotta


def image_in(runtime: RecordingRuntime, name: str) -> str:
    with runtime.lock:
        workload = runtime.workloads.get(name)
    return "" if workload is None else str(workload.get("specification", ""))


def test_a_rollout_batch_waits_for_approval(server: Server, client: flotta.Client, unique: str, tmp_path: Path) -> None:
    devices = sorted([f"ro-a-{unique}", f"ro-b-{unique}"])
    runtimes = [RecordingRuntime(), RecordingRuntime()]
    name = f"ro-{unique}"
    with (
        make_agent(server, devices[0], tmp_path / "a", runtimes[0], site=unique) as first,
        make_agent(server, devices[1], tmp_path / "b", runtimes[1], site=unique) as second,
    ):
        for agent, device in ((first, devices[0]), (second, devices[1])):
            agent.wait_for(lambda s: s["phase"] == "awaiting-approval")
            eventually("the enrolment request", lambda: client.signed_requests.list(field_selector=f"metadata.name={device}"))
            client.approve(device)
            agent.wait_for(lambda s: s["phase"] == "running")
            eventually("the EdgeDevice", lambda: client.devices.list(field_selector=f"metadata.name={device}"))
            client.devices.patch(device, {"metadata": {"labels": {"site": unique}}, "spec": {"heartbeat": {"periodSeconds": 1}}})

        spec: dict[str, Any] = {
            "type": "pod",
            "deviceSelector": {"matchLabels": {"site": unique}},
            "rolloutPolicy": {"batches": [{"limit": 1}], "manualApproval": True},
            "pod": {"spec": {"containers": [{"name": "main", "image": "registry.local/ro:1"}]}},
        }
        client.workloads.create(flotta.EdgeWorkload(name, spec=spec))
        eventually("v1 on both devices", lambda: all("ro:1" in image_in(r, name) for r in runtimes))

        def rollout() -> dict[str, Any] | None:
            return client.rollout_status(name)

        eventually("the first revision complete", lambda: (rollout() or {}).get("complete"))
        client.workloads.patch(name, {"spec": {"pod": {"spec": {"containers": [{"name": "main", "image": "registry.local/ro:2"}]}}}})
        waiting = eventually("batch 2 awaiting approval", lambda: (r := rollout()) and r.get("reason") == "AwaitingApproval" and r)
        assert waiting["releasedBatches"] == 1
        assert "ro:2" in image_in(runtimes[0], name)
        assert "ro:1" in image_in(runtimes[1], name), "batch 2 keeps the old revision until approved"

        client.approve_rollout(name)
        eventually("v2 on both devices", lambda: all("ro:2" in image_in(r, name) for r in runtimes))
        eventually("the rollout complete", lambda: (rollout() or {}).get("complete"))
        with pytest.raises(flotta.errors.RolloutError, match="nothing to approve"):
            client.approve_rollout(name)
        assert [r["generation"] for r in client.rollout_history(name)] == [1, 2]


def test_a_device_set_rollout_batch_waits_for_approval(
    server: Server, client: flotta.Client, unique: str, tmp_path: Path
) -> None:
    devices = sorted([f"rs-a-{unique}", f"rs-b-{unique}"])
    name = f"rs-{unique}"
    with (
        make_agent(server, devices[0], tmp_path / "a", RecordingRuntime(), site=unique) as first,
        make_agent(server, devices[1], tmp_path / "b", RecordingRuntime(), site=unique) as second,
    ):
        agents = [first, second]
        for agent, device in zip(agents, devices):
            agent.wait_for(lambda s: s["phase"] == "awaiting-approval")
            eventually("the enrolment request", lambda: client.signed_requests.list(field_selector=f"metadata.name={device}"))
            client.approve(device)
            agent.wait_for(lambda s: s["phase"] == "running")
            eventually("the EdgeDevice", lambda: client.devices.list(field_selector=f"metadata.name={device}"))
            client.devices.patch(device, {"metadata": {"labels": {f"rs-{unique}": "yes"}}})

        def spec(include_hardware: bool) -> dict[str, Any]:
            return {
                "selector": {"matchLabels": {f"rs-{unique}": "yes"}},
                "rolloutPolicy": {"batches": [{"limit": 1}], "manualApproval": True},
                "heartbeat": {"periodSeconds": 1, "hardwareProfile": {"include": include_hardware}},
            }

        def rollout() -> dict[str, Any] | None:
            return client.rollout_status(name, kind="EdgeDeviceSet")

        client.device_sets.create(flotta.EdgeDeviceSet(name, spec=spec(False)))
        eventually("the first revision complete", lambda: (rollout() or {}).get("complete"))
        eventually(
            "both members report it",
            lambda: all(b["succeeded"] == 1 for b in (rollout() or {}).get("batches", [])),
        )
        before = [agent.status()["config_version"] for agent in agents]

        client.device_sets.patch(name, {"spec": {"heartbeat": {"hardwareProfile": {"include": True}}}})
        waiting = eventually(
            "batch 2 awaiting approval",
            lambda: (r := rollout()) and r.get("reason") == "AwaitingApproval" and r,
        )
        assert waiting["releasedBatches"] == 1
        assert first.status()["config_version"] != before[0], "batch 1 runs the new revision"
        assert second.status()["config_version"] == before[1], "batch 2 keeps the old one until approved"

        approved = client.approve_rollout(name, kind="EdgeDeviceSet")
        assert isinstance(approved, flotta.EdgeDeviceSet)
        eventually("the rollout complete", lambda: (rollout() or {}).get("complete"))
        eventually("batch 2 runs it", lambda: second.status()["config_version"] != before[1])
        assert len(client.rollout_history(name, kind="EdgeDeviceSet")) == 2
        with pytest.raises(ValueError, match="only EdgeWorkload and EdgeDeviceSet"):
            client.rollout_status(name, kind="EdgeDevice")


@pytest.mark.asyncio
async def test_the_async_client_reads_a_rollout(server: Server, client: flotta.Client, unique: str) -> None:
    name = f"ra-{unique}"
    spec: dict[str, Any] = {
        "type": "pod",
        "device": f"nobody-{unique}",
        "pod": {"spec": {"containers": [{"name": "main", "image": "registry.local/ra:1"}]}},
    }
    client.workloads.create(flotta.EdgeWorkload(name, spec=spec))
    aclient = flotta.AsyncClient.from_config(server.admin_yaml)
    assert await aclient.rollout_status(name) is None, "no target device: no rollout recorded"
    with pytest.raises(flotta.errors.RolloutError, match="nothing to approve"):
        await aclient.approve_rollout(name)
