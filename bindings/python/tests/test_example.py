"""examples/python/rollout.py against a real server, with devices enrolled by
flotta.Agent with a Python runtime."""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

from conftest import REPO, Server, eventually

import flotta
from test_agent import RecordingRuntime, make_agent

EXAMPLE = REPO / "examples" / "python" / "rollout.py"


def test_rollout_example_approves_matching_devices_and_waits_until_running(
    server: Server, client: flotta.Client, unique: str, tmp_path: Path
) -> None:
    matching = [f"cam-{unique}-a", f"cam-{unique}-b"]
    other = f"door-{unique}"
    runtimes = {name: RecordingRuntime() for name in [*matching, other]}
    with ExitStack() as stack:
        agents = {
            name: stack.enter_context(make_agent(server, name, tmp_path / name, runtime))
            for name, runtime in runtimes.items()
        }
        for agent in agents.values():
            agent.wait_for(lambda s: s["phase"] == "awaiting-approval")

        result = subprocess.run(
            [
                sys.executable,
                str(EXAMPLE),
                "--config",
                str(server.admin_yaml),
                "--rule",
                f"cam-{unique}-*",
                "--group",
                unique,
                "--workload",
                f"rec-{unique}",
                "--image",
                "registry.local/rec:2",
                "--timeout",
                "90",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env=dict(os.environ),
        )
        assert result.returncode == 0, result.stdout + result.stderr
        for name in matching:
            assert f"approved {name}" in result.stdout
            assert f"rec-{unique}" in runtimes[name].workloads
            assert agents[name].status()["phase"] == "running"
        assert f"left pending {other}" in result.stdout
        assert f"runs on 2 devices: {', '.join(matching)}" in result.stdout
        assert client.signed_requests.get(other).spec.approved is False
        assert agents[other].status()["phase"] == "awaiting-approval"
        assert runtimes[other].workloads == {}
        eventually("labels", lambda: {d.name for d in client.devices.list(label_selector=f"rollout={unique}")} == set(matching))


EVENTS_EXAMPLE = REPO / "examples" / "python" / "device_events.py"


def test_device_events_example_prints_a_registered_device_s_events(
    server: Server, client: flotta.Client, unique: str, tmp_path: Path
) -> None:
    device = f"evx-{unique}"
    with make_agent(server, device, tmp_path / device, RecordingRuntime()) as agent:
        agent.wait_for(lambda s: s["phase"] == "awaiting-approval")
        client.approve(device)
        agent.wait_for(lambda s: s["phase"] == "running")

        def run() -> str | None:
            result = subprocess.run(
                [sys.executable, str(EVENTS_EXAMPLE), device, "--config", str(server.admin_yaml)],
                capture_output=True,
                text=True,
                timeout=60,
                env=dict(os.environ),
            )
            assert result.returncode == 0, result.stdout + result.stderr
            return result.stdout if "Registered" in result.stdout else None

        # The server records the registration just after answering it.
        out = eventually("the Registered event", run)
        assert "Normal" in out
        warnings = subprocess.run(
            [sys.executable, str(EVENTS_EXAMPLE), device, "--warnings", "--config", str(server.admin_yaml)],
            capture_output=True,
            text=True,
            timeout=60,
            env=dict(os.environ),
        )
        assert warnings.returncode == 0, warnings.stderr
        assert f"no events about {device}" in warnings.stdout
