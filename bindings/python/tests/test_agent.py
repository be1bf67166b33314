"""flotta.Agent with a Python workload runtime, enrolling against a real server."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from conftest import Server, eventually, workload
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import flotta


class RecordingRuntime:
    """A runtime that records every call, from whichever thread makes it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.workloads: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []
        self.threads: set[int] = set()
        self.refuse: set[str] = set()

    def apply(self, workload: dict[str, Any]) -> None:
        with self.lock:
            self.threads.add(threading.get_ident())
            self.calls.append(("apply", workload["name"]))
            if workload["name"] in self.refuse:
                raise RuntimeError("image not allowed here")
            self.workloads[workload["name"]] = workload

    def remove(self, name: str) -> None:
        with self.lock:
            self.calls.append(("remove", name))
            self.workloads.pop(name, None)

    def list(self) -> list[flotta.WorkloadState]:
        with self.lock:
            return [flotta.WorkloadState(name, "Running") for name in sorted(self.workloads)]


def make_agent(server: Server, device_id: str, state_dir: Path, runtime: Any, **labels: str) -> flotta.Agent:
    return flotta.Agent(
        server=server.edge_url,
        ca=server.ca,
        registration_cert=server.register_cert,
        registration_key=server.register_key,
        device_id=device_id,
        state_dir=state_dir,
        runtime=runtime,
        labels=labels,
        heartbeat_period=1.0,
        config_wait=5.0,
    )


def device_workload_phase(client: flotta.Client, device: str, name: str) -> str | None:
    try:
        status = client.devices.get(device).to_dict().get("status") or {}
    except flotta.NotFound:
        return None
    for entry in status.get("workloads") or []:
        if entry.get("name") == name:
            phase: str | None = entry.get("phase")
            return phase
    return None


def test_a_denied_agent_says_so(server: Server, client: flotta.Client, unique: str, tmp_path: Path) -> None:
    device = f"denied-{unique}"
    with make_agent(server, device, tmp_path, RecordingRuntime(), site=unique) as agent:
        agent.wait_for(lambda s: s["phase"] == "awaiting-approval")
        denied = client.deny(device)
        assert denied.spec.approved is False
        assert [(c["type"], c["status"]) for c in denied.to_dict()["status"]["conditions"]] == [("declined", "True")]
        agent.wait_for(lambda s: s["phase"] == "denied")
        assert {"type": "phase-changed", "phase": "denied"} in agent.events()


def test_agent_enrols_waits_for_approval_and_runs_a_workload(
    server: Server, client: flotta.Client, unique: str, tmp_path: Path
) -> None:
    device = f"cam-{unique}"
    runtime = RecordingRuntime()
    with make_agent(server, device, tmp_path, runtime, site=unique) as agent:
        assert agent.running
        agent.wait_for(lambda s: s["phase"] == "awaiting-approval")
        request = eventually("the enrolment request", lambda: client.signed_requests.list(field_selector=f"metadata.name={device}"))
        assert request[0].spec.approved is False
        client.approve(device)
        agent.wait_for(lambda s: s["phase"] == "running")
        types = [e["type"] for e in agent.events()]
        assert "registered" in types

        # The registered device, once labelled, gets the workloads selecting it.
        eventually("the EdgeDevice", lambda: client.devices.list(field_selector=f"metadata.name={device}"))
        client.devices.patch(device, {"metadata": {"labels": {"site": unique}}})
        registered = client.devices.list(label_selector=f"site={unique}")
        assert [d.name for d in registered] == [device]
        client.workloads.create(workload(f"rec-{unique}", {"site": unique}, image="registry.local/rec:1"))
        applied = eventually("the workload in the runtime", lambda: runtime.workloads.get(f"rec-{unique}"))
        assert "registry.local/rec:1" in applied["specification"]
        assert threading.get_ident() not in runtime.threads
        assert eventually(
            "the workload reported running",
            lambda: device_workload_phase(client, device, f"rec-{unique}") == "Running",
        )

        # A refused workload is rolled back and reported; the good one keeps running.
        runtime.refuse.add(f"bad-{unique}")
        client.workloads.create(workload(f"bad-{unique}", {"site": unique}))
        failed = agent.wait_for(lambda s: s["failed_version"] is not None)
        assert failed["phase"] == "running"
        # The event log is filled by a task of its own: wait for the rollback's entry.
        eventually("the rollback event", lambda: any(e["type"] == "rolled-back" for e in agent.events()))
        failure = next(e for e in agent.events() if e["type"] == "apply-failed")
        assert "image not allowed here" in failure["reason"]
        assert f"rec-{unique}" in runtime.workloads
        assert f"bad-{unique}" not in runtime.workloads

        # Deleting the workloads removes them from the device.
        client.workloads.delete(f"bad-{unique}")
        client.workloads.delete(f"rec-{unique}")
        eventually("the workload removed", lambda: f"rec-{unique}" not in runtime.workloads)
        assert ("remove", f"rec-{unique}") in runtime.calls
    assert not agent.running

    # The device certificate the server issued for the key the agent made.
    certificate = x509.load_pem_x509_certificate((tmp_path / "device.crt").read_bytes())
    ca = x509.load_pem_x509_certificate(server.ca.read_bytes())
    key = serialization.load_pem_private_key((tmp_path / "device.key").read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == device
    assert certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == "default"
    assert certificate.public_key().public_numbers() == key.public_key().public_numbers()  # type: ignore[union-attr]
    certificate.verify_directly_issued_by(ca)
    usage = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in usage


def test_a_restarted_agent_resumes_without_enrolling(server: Server, client: flotta.Client, unique: str, tmp_path: Path) -> None:
    device = f"gw-{unique}"
    runtime = flotta.MemoryRuntime()
    with make_agent(server, device, tmp_path, runtime) as agent:
        agent.wait_for(lambda s: s["phase"] == "awaiting-approval")
        client.approve(device)
        agent.wait_for(lambda s: s["phase"] == "running")
    with make_agent(server, device, tmp_path, runtime) as again:
        again.wait_for(lambda s: s["phase"] == "running")
        types = [e["type"] for e in again.events()]
        assert "resumed" in types
        assert "registered" not in types


def test_bad_settings_and_runtimes_are_refused(server: Server, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        make_agent(server, "x", tmp_path, object())
    with pytest.raises(flotta.AgentError):
        make_agent(server, "bad/id", tmp_path, flotta.MemoryRuntime())
    assert isinstance(flotta.MemoryRuntime(), flotta.WorkloadRuntime)


class InputsRuntime(RecordingRuntime):
    """A runtime that takes the resolved inputs (``apply_with``)."""

    def __init__(self) -> None:
        super().__init__()
        self.inputs: dict[str, dict[str, Any]] = {}

    def apply_with(self, workload: dict[str, Any], inputs: dict[str, Any]) -> None:
        with self.lock:
            self.inputs[workload["name"]] = inputs
        self.apply(workload)


def test_a_python_runtime_receives_env_and_files_from_secrets_and_config_maps(
    server: Server, client: flotta.Client, unique: str, tmp_path: Path
) -> None:
    device = f"env-{unique}"
    runtime = InputsRuntime()
    client.secrets.create(flotta.Secret(f"api-{unique}", string_data={"token": "t-1"}))
    client.config_maps.create(flotta.ConfigMap(f"cfg-{unique}", data={"app.conf": "level=3"}))
    with make_agent(server, device, tmp_path, runtime) as agent:
        agent.wait_for(lambda s: s["phase"] == "awaiting-approval")
        client.approve(device)
        agent.wait_for(lambda s: s["phase"] == "running")
        eventually("the EdgeDevice", lambda: client.devices.list(field_selector=f"metadata.name={device}"))
        client.workloads.create(
            {
                "metadata": {"name": f"reader-{unique}"},
                "spec": {
                    "type": "pod",
                    "device": device,
                    "pod": {
                        "spec": {
                            "containers": [
                                {
                                    "name": "main",
                                    "image": "registry.local/reader:1",
                                    "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": f"api-{unique}", "key": "token"}}}],
                                }
                            ],
                            "volumes": [{"name": "conf", "configMap": {"name": f"cfg-{unique}"}}],
                        }
                    },
                },
            }
        )
        inputs = eventually("the resolved inputs", lambda: runtime.inputs.get(f"reader-{unique}"))
        assert inputs["containers"] == [{"name": "main", "env": {"TOKEN": "t-1"}}]
        assert inputs["volumes"] == [
            {"name": "conf", "secret": False, "files": [{"path": "app.conf", "content": b"level=3", "mode": 0o644}]}
        ]
        assert inputs["auth_file"] is None
