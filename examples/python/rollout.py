#!/usr/bin/env python3
"""Approve the pending devices that match a rule, roll out a workload to them, and
wait until it runs on every one.

    python rollout.py --rule 'cam-*' --group cameras --image registry.local/rec:2

1. Every pending enrolment request (EdgeDeviceSignedRequest not yet approved)
   whose device id matches the ``--rule`` glob is approved.
2. Each approved device, once registered, gets the label ``rollout=GROUP``.
3. An EdgeWorkload selecting ``rollout=GROUP`` is applied (created or updated).
4. The devices are watched until each reports the workload ``Running``, or
   ``--timeout`` seconds pass (exit code 1).

The client configuration comes from ``--config``, else ``$FLOTTA_CONFIG``, else
``./flotta-data/admin.yaml`` (what the server writes on start-up).
"""

from __future__ import annotations

import argparse
import fnmatch
import sys
import time

import flotta


def approve_matching(client: flotta.Client, rule: str) -> list[str]:
    """Approves pending requests whose device id matches `rule`; returns the ids."""
    approved = []
    for request in client.signed_requests.list(field_selector="spec.approved=false"):
        if fnmatch.fnmatchcase(request.name, rule):
            client.approve(request.name, request.namespace or "default")
            print(f"approved {request.name}")
            approved.append(request.name)
        else:
            print(f"left pending {request.name} (does not match {rule!r})")
    return approved


def label_devices(client: flotta.Client, devices: list[str], group: str, deadline: float) -> None:
    """Labels each device `rollout=group` once it has registered."""
    waiting = set(devices)
    while waiting:
        for name in sorted(waiting):
            try:
                client.devices.patch(name, {"metadata": {"labels": {"rollout": group}}})
            except flotta.NotFound:
                continue  # not registered yet
            print(f"labelled {name} rollout={group}")
            waiting.discard(name)
        if waiting and time.monotonic() > deadline:
            raise TimeoutError(f"devices never registered: {', '.join(sorted(waiting))}")
        if waiting:
            time.sleep(0.2)


def roll_out(client: flotta.Client, group: str, name: str, image: str) -> None:
    workload = flotta.EdgeWorkload(
        name,
        labels={"rollout": group},
        spec={
            "type": "pod",
            "deviceSelector": {"matchLabels": {"rollout": group}},
            "pod": {"spec": {"containers": [{"name": name, "image": image}]}},
        },
    )
    workload.validate()
    for outcome in client.apply([workload]):
        print(f"workload {outcome.name} {outcome.action}")


def phase_on(device: flotta.EdgeDevice, workload: str) -> str | None:
    status = device.to_dict().get("status") or {}
    for entry in status.get("workloads") or []:
        if entry.get("name") == workload:
            phase: str | None = entry.get("phase")
            return phase
    return None


def wait_running(client: flotta.Client, group: str, workload: str, deadline: float) -> bool:
    """Watches the group's devices until each reports `workload` running."""
    phases: dict[str, str | None] = {}
    with client.devices.watch(label_selector=f"rollout={group}") as watch:
        while time.monotonic() < deadline:
            event = watch.next(timeout=max(0.0, deadline - time.monotonic()))
            if event is None:
                break
            devices = event.objects if event.type == "RESTARTED" else [event.object]
            for device in devices:
                if device is None:
                    continue
                if event.type == "DELETED":
                    phases.pop(device.name, None)
                else:
                    phases[device.name] = phase_on(device, workload)
            if phases and all(p == "Running" for p in phases.values()):
                print(f"{workload} runs on {len(phases)} devices: {', '.join(sorted(phases))}")
                return True
    print(f"timed out; phases: {phases}", file=sys.stderr)
    return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="client configuration file (admin.yaml)")
    parser.add_argument("--rule", required=True, help="glob the device ids to approve must match, e.g. 'cam-*'")
    parser.add_argument("--group", default="default", help="value of the rollout label (default: default)")
    parser.add_argument("--workload", default="app", help="workload name (default: app)")
    parser.add_argument("--image", required=True, help="container image to run")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait (default: 120)")
    args = parser.parse_args()

    client = flotta.Client.from_config(args.config)
    deadline = time.monotonic() + args.timeout
    approved = approve_matching(client, args.rule)
    label_devices(client, approved, args.group, deadline)
    roll_out(client, args.group, args.workload, args.image)
    return 0 if wait_running(client, args.group, args.workload, deadline) else 1


if __name__ == "__main__":
    sys.exit(main())
