"""Running the flotta device agent from Python.

The agent itself is the Rust one (enrolment, registration with a key that never
leaves the device, heartbeats, configuration long-poll, apply with rollback,
persisted state); it runs on the module's runtime threads, in the background. What
it runs on the device is up to a Python object, the *workload runtime*.

The workload runtime contract (any object with these three methods):

``apply(workload: dict) -> None``
    Run exactly this workload, replacing any earlier definition of the same
    ``workload["name"]``. ``workload`` is the Edge API's workload message
    (``name``, ``namespace``, ``labels``, ``annotations``, ``specification`` — the
    pod spec as YAML text —, ``configmaps``, ``imageRegistries``, ...). Return once
    it is started; raise to refuse it: the agent then rolls the device back to the
    last good configuration and reports the failure, and does not retry that
    version.
``apply_with(workload: dict, inputs: dict) -> None`` (optional)
    Called instead of ``apply`` when the runtime has it: ``inputs`` is what the
    workload's containers are given, resolved from its ConfigMaps and the Secrets
    sent with the configuration: ``containers`` (``[{"name", "env": {NAME:
    value}}]``), ``volumes`` (``[{"name", "secret": bool, "files": [{"path",
    "content": bytes, "mode": int}]}]``) and ``auth_file`` (registry credentials
    text, or ``None``). Values may be secrets: do not log them.
``remove(name: str) -> None``
    Stop and delete the workload. Removing an unknown name must succeed.
``list() -> iterable``
    Every workload the runtime has: names (``str``, taken as running), or
    :class:`WorkloadState` / dicts / objects with ``name`` and ``phase``
    (``Running``, ``Deploying``, ``Failed``, podman states such as ``Exited`` are
    understood).

An *OS updater* (optional, ``os_updater=``) lets the agent update the device's
operating system through a backend of your own (A/B partitions, an image swap, a
simulation). The agent owns the sequence and persists it in ``state_dir`` across
the reboot: stage, persist "rebooting", activate, and after the boot compare the
booted deployment with the target, run the health window, then commit or roll back
and reboot (docs/agent.md). The updater only carries out each step:

``booted() -> dict``
    ``{"booted": ..., "staged": ..., "rollback": ...}``, each ``None``, a commit id
    (``str``) or a dict with ``id`` and an optional ``image``.
``stage(target: dict) -> None``
    Prepare ``target`` (the Edge API's ``os`` message: ``commit_id``, ``image``,
    ...) for the next boot without touching the running system.
``activate() -> None``
    Make the staged deployment the next boot and reboot (return once the reboot is
    requested; the agent is expected to be started again after it).
``rollback() -> None``
    Make the deployment booted before the update the next boot; no reboot.
``reboot() -> None``
    Reboot.
``health() -> bool``
    The backend's own judgement of the running system.

Raising from a step fails it with the exception's text; the agent reports each
state in its heartbeat and in :meth:`Agent.status` (``os_update``).

The methods are called from the agent's worker threads, one call at a time per
method kind but possibly concurrently with your own threads, holding the GIL only
for the call. They must not block for long and must not call blocking
``flotta.Client`` methods (use a thread of your own, or :class:`flotta.AsyncClient`
elsewhere).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from . import _flotta


@dataclass(frozen=True)
class WorkloadState:
    """A workload as a runtime reports it."""

    name: str
    phase: str = "Running"


@runtime_checkable
class WorkloadRuntime(Protocol):
    """What :class:`Agent` needs from a workload runtime (see the module docs)."""

    def apply(self, workload: dict[str, Any]) -> None:
        """Runs ``workload``, replacing an earlier definition of the same name."""

    def remove(self, name: str) -> None:
        """Stops and deletes a workload; unknown names succeed."""

    def list(self) -> Iterable[WorkloadState | Mapping[str, Any] | str]:
        """Every workload the runtime has."""


@runtime_checkable
class OsUpdater(Protocol):
    """What :class:`Agent` needs from an OS backend (see the module docs)."""

    def booted(self) -> Mapping[str, Any]:
        """The running, staged and rollback deployments."""

    def stage(self, target: dict[str, Any]) -> None:
        """Prepares ``target`` for the next boot."""

    def activate(self) -> None:
        """Boots into the staged deployment."""

    def rollback(self) -> None:
        """Makes the previous deployment the next boot."""

    def reboot(self) -> None:
        """Reboots the device."""

    def health(self) -> bool:
        """Whether the running system is healthy."""


class MemoryRuntime:
    """A workload runtime that only remembers what it was told, reporting every
    workload as running: for tests, simulations and as a starting point."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.workloads: dict[str, dict[str, Any]] = {}
        """Applied workloads by name."""
        self.refused: set[str] = set()
        """Names whose ``apply`` raises, to exercise rollback."""

    def apply(self, workload: dict[str, Any]) -> None:
        name = workload.get("name") or ""
        if name in self.refused:
            raise RuntimeError(f"workload {name} refused")
        with self._lock:
            self.workloads[name] = workload

    def remove(self, name: str) -> None:
        with self._lock:
            self.workloads.pop(name, None)

    def list(self) -> list[WorkloadState]:
        with self._lock:
            return [WorkloadState(name) for name in sorted(self.workloads)]


def _pem(value: str | os.PathLike[str]) -> str:
    text = os.fspath(value)
    if "-----BEGIN" in text:
        return text
    return Path(text).read_text()


class Agent:
    """The device agent, running in the background with a Python workload runtime.

    ``ca``, ``registration_cert`` and ``registration_key`` are PEM text or file
    paths (the server's ``pki/ca.crt``, ``pki/register.crt``, ``pki/register.key``);
    ``server`` is the Edge API URL. The device key, certificate and configurations
    are persisted in ``state_dir``, so a restarted agent resumes without enrolling
    again. Use it as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        *,
        server: str,
        ca: str | os.PathLike[str],
        registration_cert: str | os.PathLike[str],
        registration_key: str | os.PathLike[str],
        device_id: str,
        state_dir: str | os.PathLike[str],
        runtime: WorkloadRuntime,
        namespace: str = "default",
        labels: Mapping[str, str] | None = None,
        heartbeat_period: float | None = None,
        config_wait: float | None = None,
        os_updater: OsUpdater | None = None,
    ) -> None:
        self.runtime = runtime
        self.os_updater = os_updater
        self._native = _flotta.NativeAgent(
            server=server,
            ca_pem=_pem(ca),
            registration_cert_pem=_pem(registration_cert),
            registration_key_pem=_pem(registration_key),
            device_id=device_id,
            state_dir=Path(state_dir),
            runtime=runtime,
            namespace=namespace,
            labels=dict(labels or {}),
            heartbeat_period=heartbeat_period,
            config_wait=config_wait,
            os_updater=os_updater,
        )

    @property
    def device_id(self) -> str:
        """The device id (the certificate's CN once registered)."""
        return self._native.device_id

    @property
    def running(self) -> bool:
        """Whether the agent is running."""
        return self._native.running

    def start(self) -> None:
        """Starts the agent in the background; returns at once."""
        self._native.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stops the agent and waits for it; raises :class:`flotta.AgentError` if it
        had stopped on an error (unusable persisted state)."""
        self._native.stop(timeout)

    def status(self) -> dict[str, Any]:
        """A snapshot: ``phase`` (``enrolling``, ``registering``,
        ``awaiting-approval``, ``denied``, ``running``, ``renewing`` or ``None``),
        ``config_version``, ``failed_version``, ``last_heartbeat`` and ``os_update``
        (``None``, or the OS update in progress or last finished: ``phase``, one of
        ``Staging``, ``Staged``, ``Rebooting``, ``HealthCheck``, ``Committed``,
        ``RollingBack``, ``RollbackRebooting``, ``RolledBack``, ``Failed``, its
        ``target`` and ``message``)."""
        status: dict[str, Any] = self._native.status()
        return status

    def events(self) -> list[dict[str, Any]]:
        """The most recent events, oldest first, each a dict with a ``type``
        (``phase-changed``, ``registered``, ``resumed``, ``config-applied``,
        ``apply-failed``, ``rolled-back``, ``heartbeat-delivered``,
        ``heartbeat-failed``) and its details."""
        events: list[dict[str, Any]] = self._native.events()
        return events

    def wait_for(
        self,
        condition: Callable[[dict[str, Any]], bool],
        timeout: float = 30.0,
        interval: float = 0.1,
    ) -> dict[str, Any]:
        """Polls :meth:`status` until ``condition(status)`` holds and returns that
        status; raises ``TimeoutError`` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.status()
            if condition(status):
                return status
            if time.monotonic() >= deadline:
                raise TimeoutError(f"agent {self.device_id}: condition not met within {timeout} s; status {status}")
            time.sleep(interval)

    def __enter__(self) -> Agent:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"Agent(device_id={self.device_id!r}, running={self.running})"


__all__ = ["Agent", "MemoryRuntime", "WorkloadRuntime", "WorkloadState"]
