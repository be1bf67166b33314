"""The management API client: :class:`Client` (blocking) and :class:`AsyncClient`
(asyncio), both over the Rust client (rustls, retries, resumable watches).

Blocking calls release the GIL while they wait, so other Python threads run.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from . import _flotta
from .errors import ApplyError, FlottaError
from .resources import (
    ConfigMap,
    Event,
    EdgeConfig,
    EdgeDevice,
    EdgeDeviceSet,
    EdgeDeviceSignedRequest,
    EdgeWorkload,
    PlaybookExecution,
    Repository,
    Resource,
    ResourceSync,
    Secret,
    _unwrap,
    api_version_of,
)

T = TypeVar("T", bound=Resource)

DEFAULT_NAMESPACE = "default"


def _default_config_path() -> Path:
    env = os.environ.get("FLOTTA_CONFIG")
    if env:
        return Path(env)
    return Path("flotta-data") / "admin.yaml"


def _ca_pem(ca: str | os.PathLike[str] | None) -> str | None:
    if ca is None:
        return None
    text = os.fspath(ca)
    if "-----BEGIN" in text:
        return text
    return Path(text).read_text()


@dataclass(frozen=True)
class WatchEvent(Generic[T]):
    """One change seen by a watch.

    ``type`` is ``ADDED``, ``MODIFIED``, ``DELETED`` or ``RESTARTED``. For
    ``RESTARTED`` (the server had forgotten where the watch was, so it listed
    again) ``object`` is ``None`` and ``objects`` holds every current object.
    """

    type: str
    object: T | None
    objects: list[T] = field(default_factory=list)


@dataclass(frozen=True)
class ApplyOutcome:
    """What ``apply`` did with one document.

    ``action`` is ``created``, ``configured``, ``unchanged`` or, for a
    server-side apply, ``serverside-applied``; ``None`` when it failed, with the
    exception in ``error``.
    """

    index: int
    kind: str | None
    namespace: str | None
    name: str | None
    action: str | None
    error: FlottaError | None = None


def _event(cls: type[T], raw: tuple[str, Any]) -> WatchEvent[T]:
    kind, payload = raw
    if kind == "RESTARTED":
        return WatchEvent(kind, None, [cls._adopt(item) for item in payload])
    return WatchEvent(kind, cls._adopt(payload))


def _outcomes(rows: list[tuple[Any, ...]]) -> list[ApplyOutcome]:
    outcomes = [ApplyOutcome(*row) for row in rows]
    failed = [o for o in outcomes if o.error is not None]
    if failed:
        detail = "; ".join(f"document {o.index} ({o.kind} {o.name}): {o.error}" for o in failed)
        raise ApplyError(f"{len(failed)} of {len(outcomes)} documents failed: {detail}", outcomes)
    return outcomes


def _documents(source: str | Resource | Iterable[Resource | Mapping[str, Any]]) -> str | list[Any]:
    if isinstance(source, str):
        return source
    if isinstance(source, Resource):
        return [source.to_dict()]
    items: Iterable[Resource | Mapping[str, Any]] = source
    return [_unwrap(item) if isinstance(item, Resource) else dict(item) for item in items]


class Watch(Generic[T]):
    """A blocking iterator of :class:`WatchEvent`. It starts with ``ADDED`` for
    every current object, then follows changes, reconnecting by itself; it ends
    only on an error that retrying cannot fix (raised) or :meth:`close`.

    The watch connects in the background as soon as it is made; a change made
    before the connection is established shows in the initial ``ADDED`` events
    (or not at all if the object is gone by then). ``watch.next(timeout=...)``
    returning ``None`` means the watch is connected and idle.

    ``Ctrl-C`` interrupts a waiting iteration. Use it as a context manager to close
    the connection when done.
    """

    def __init__(self, cls: type[T], native: _flotta.NativeWatch) -> None:
        self._cls = cls
        self._native = native

    def __iter__(self) -> Iterator[WatchEvent[T]]:
        return self

    def __next__(self) -> WatchEvent[T]:
        while True:
            raw = self._native.next_event(None)
            if raw is not None:
                return _event(self._cls, raw)

    def next(self, timeout: float | None = None) -> WatchEvent[T] | None:
        """The next event, or ``None`` when ``timeout`` seconds pass without one.
        Raises ``StopIteration`` when the watch has ended."""
        raw = self._native.next_event(timeout)
        return None if raw is None else _event(self._cls, raw)

    def close(self) -> None:
        """Ends the watch and closes its connection."""
        self._native.close()

    def __enter__(self) -> Watch[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncWatch(Generic[T]):
    """The asyncio form of :class:`Watch`: ``async for event in watch``."""

    def __init__(self, cls: type[T], native: _flotta.NativeWatch) -> None:
        self._cls = cls
        self._native = native

    def __aiter__(self) -> AsyncIterator[WatchEvent[T]]:
        return self

    async def __anext__(self) -> WatchEvent[T]:
        raw = await self._native.next_event_async()
        return _event(self._cls, raw)

    async def close(self) -> None:
        """Ends the watch and closes its connection."""
        self._native.close()

    async def __aenter__(self) -> AsyncWatch[T]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class Resources(Generic[T]):
    """The objects of one kind, e.g. ``client.devices``."""

    def __init__(self, native: _flotta.NativeClient, cls: type[T]) -> None:
        self._native = native
        self._cls = cls

    def list(
        self,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> builtins.list[T]:
        """Every matching object, in ``namespace`` or (``None``) every namespace."""
        items = self._native.list(self._cls.kind, namespace, label_selector, field_selector)
        return [self._cls._adopt(item) for item in items]

    def get(self, name: str, namespace: str = DEFAULT_NAMESPACE) -> T:
        """One object; raises :class:`flotta.NotFound` when there is none."""
        return self._cls._adopt(self._native.get(self._cls.kind, namespace, name))

    def create(self, resource: T | Mapping[str, Any], namespace: str | None = None) -> T:
        """Creates the object (in its own namespace, else ``namespace``, else
        ``default``) and returns it as stored."""
        data = _data_of(self._cls, resource)
        ns = namespace or data.get("metadata", {}).get("namespace") or DEFAULT_NAMESPACE
        return self._cls._adopt(self._native.create(self._cls.kind, ns, data))

    def update(self, resource: T | Mapping[str, Any]) -> T:
        """Replaces the object. When it carries ``metadata.resourceVersion`` (as
        returned by ``get``), a concurrent change raises :class:`flotta.Conflict`."""
        data = _data_of(self._cls, resource)
        ns = data.get("metadata", {}).get("namespace") or DEFAULT_NAMESPACE
        return self._cls._adopt(self._native.replace(self._cls.kind, ns, data))

    def patch(self, name: str, merge_patch: Mapping[str, Any], namespace: str = DEFAULT_NAMESPACE) -> T:
        """Applies a JSON merge patch (RFC 7396) and returns the result."""
        return self._cls._adopt(self._native.patch(self._cls.kind, namespace, name, dict(merge_patch)))

    def delete(self, name: str, namespace: str = DEFAULT_NAMESPACE) -> T:
        """Deletes the object and returns its last state."""
        return self._cls._adopt(self._native.delete(self._cls.kind, namespace, name))

    def watch(
        self,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> Watch[T]:
        """A :class:`Watch` of the matching objects."""
        return Watch(self._cls, self._native.watch(self._cls.kind, namespace, label_selector, field_selector))


class AsyncResources(Generic[T]):
    """The asyncio form of :class:`Resources`."""

    def __init__(self, native: _flotta.NativeClient, cls: type[T]) -> None:
        self._native = native
        self._cls = cls

    async def list(
        self,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> builtins.list[T]:
        """Every matching object, in ``namespace`` or (``None``) every namespace."""
        items = await self._native.list_async(self._cls.kind, namespace, label_selector, field_selector)
        return [self._cls._adopt(item) for item in items]

    async def get(self, name: str, namespace: str = DEFAULT_NAMESPACE) -> T:
        """One object; raises :class:`flotta.NotFound` when there is none."""
        return self._cls._adopt(await self._native.get_async(self._cls.kind, namespace, name))

    async def create(self, resource: T | Mapping[str, Any], namespace: str | None = None) -> T:
        """Creates the object and returns it as stored."""
        data = _data_of(self._cls, resource)
        ns = namespace or data.get("metadata", {}).get("namespace") or DEFAULT_NAMESPACE
        return self._cls._adopt(await self._native.create_async(self._cls.kind, ns, data))

    async def update(self, resource: T | Mapping[str, Any]) -> T:
        """Replaces the object (see :meth:`Resources.update`)."""
        data = _data_of(self._cls, resource)
        ns = data.get("metadata", {}).get("namespace") or DEFAULT_NAMESPACE
        return self._cls._adopt(await self._native.replace_async(self._cls.kind, ns, data))

    async def patch(self, name: str, merge_patch: Mapping[str, Any], namespace: str = DEFAULT_NAMESPACE) -> T:
        """Applies a JSON merge patch (RFC 7396) and returns the result."""
        return self._cls._adopt(await self._native.patch_async(self._cls.kind, namespace, name, dict(merge_patch)))

    async def delete(self, name: str, namespace: str = DEFAULT_NAMESPACE) -> T:
        """Deletes the object and returns its last state."""
        return self._cls._adopt(await self._native.delete_async(self._cls.kind, namespace, name))

    def watch(
        self,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> AsyncWatch[T]:
        """An :class:`AsyncWatch` of the matching objects."""
        return AsyncWatch(self._cls, self._native.watch(self._cls.kind, namespace, label_selector, field_selector))


def _data_of(cls: type[Resource], resource: Resource | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(resource, Resource):
        if not isinstance(resource, cls):
            raise TypeError(f"expected {cls.kind}, got {resource.kind}")
        return resource.to_dict()
    data = dict(resource)
    data.setdefault("apiVersion", api_version_of(cls.kind))
    data.setdefault("kind", cls.kind)
    return cls.from_dict(data).to_dict()


class _ClientBase:
    _native: _flotta.NativeClient

    @property
    def server(self) -> str:
        """Base URL of the management API."""
        return self._native.server

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.server!r})"


class Client(_ClientBase):
    """Blocking client of a flotta server's management API.

    ``Client(url, token=..., ca=...)`` where ``ca`` is the PEM text or the path of
    the CA certificate that signs the server's certificate (``None``: the system's
    roots). :meth:`from_config` reads the server's ``admin.yaml``.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str,
        ca: str | os.PathLike[str] | None = None,
        timeout: float | None = None,
    ) -> None:
        self._native = _flotta.NativeClient(url, token, _ca_pem(ca), timeout)
        self._attach()

    def _attach(self) -> None:
        self.devices: Resources[EdgeDevice] = Resources(self._native, EdgeDevice)
        self.device_sets: Resources[EdgeDeviceSet] = Resources(self._native, EdgeDeviceSet)
        self.workloads: Resources[EdgeWorkload] = Resources(self._native, EdgeWorkload)
        self.signed_requests: Resources[EdgeDeviceSignedRequest] = Resources(self._native, EdgeDeviceSignedRequest)
        self.edge_configs: Resources[EdgeConfig] = Resources(self._native, EdgeConfig)
        self.playbook_executions: Resources[PlaybookExecution] = Resources(
            self._native, PlaybookExecution
        )
        self.repositories: Resources[Repository] = Resources(self._native, Repository)
        self.resource_syncs: Resources[ResourceSync] = Resources(self._native, ResourceSync)
        self.secrets: Resources[Secret] = Resources(self._native, Secret)
        self.config_maps: Resources[ConfigMap] = Resources(self._native, ConfigMap)
        self.events: Resources[Event] = Resources(self._native, Event)
        """Events (read-only): list and watch with field selectors on
        ``involvedObject.name``, ``involvedObject.kind``, ``reason``, ``type``."""

    @classmethod
    def from_config(cls, path: str | os.PathLike[str] | None = None) -> Client:
        """A client from a ``FlottaClientConfig`` file: ``path``, else
        ``$FLOTTA_CONFIG``, else ``./flotta-data/admin.yaml`` (as the CLI)."""
        client = cls.__new__(cls)
        client._native = _flotta.NativeClient.from_config(Path(path) if path else _default_config_path())
        client._attach()
        return client

    def apply(
        self,
        manifest: str | Resource | Iterable[Resource | Mapping[str, Any]],
        namespace: str = DEFAULT_NAMESPACE,
        *,
        server_side: bool = False,
        field_manager: str = "flotta-python",
        force_conflicts: bool = False,
    ) -> list[ApplyOutcome]:
        """Creates or updates every document of a YAML/JSON manifest text, or every
        given resource, in order (objects without a namespace go to ``namespace``).

        With ``server_side=True`` each object is sent as a server-side apply: the
        server records ``field_manager`` as the owner of every field it sets, and a
        field another manager owns with a different value fails that document with
        a conflict naming it, unless ``force_conflicts``; the outcome's action is
        ``serverside-applied``.

        Returns one :class:`ApplyOutcome` per document. If any failed, the others
        are still applied and :class:`flotta.ApplyError` is raised with all
        outcomes.
        """
        manager = field_manager if server_side else None
        documents = _documents(manifest)
        if isinstance(documents, str):
            return _outcomes(self._native.apply_text(namespace, documents, manager, force_conflicts))
        return _outcomes(self._native.apply_objects(namespace, documents, manager, force_conflicts))

    def approve(self, name: str, namespace: str = DEFAULT_NAMESPACE) -> EdgeDeviceSignedRequest:
        """Approves a device's enrolment request (its ``EdgeDeviceSignedRequest``,
        named after the device id) so the device can register; its status gets an
        ``approved`` condition."""
        return EdgeDeviceSignedRequest._adopt(self._native.decide_enrolment(namespace, name, True))

    def deny(self, name: str, namespace: str = DEFAULT_NAMESPACE) -> EdgeDeviceSignedRequest:
        """Denies a device's enrolment request: ``spec.approved`` false and a
        ``declined`` condition. The device is refused (403 ``EnrolmentDenied``)
        until :meth:`approve`."""
        return EdgeDeviceSignedRequest._adopt(self._native.decide_enrolment(namespace, name, False))

    def events_for(self, resource: Resource, namespace: str | None = None) -> builtins.list[Event]:
        """The events about ``resource`` (e.g. a device's ``ApplyFailed`` and
        ``RolledBack``), least recently seen first."""
        found = self.events.list(namespace or resource.namespace or DEFAULT_NAMESPACE, field_selector=_about(resource))
        return sorted(found, key=_last_seen)

    def rollout_status(self, name: str, namespace: str = DEFAULT_NAMESPACE, kind: str = "EdgeWorkload") -> dict[str, Any] | None:
        """The rollout record of workload ``name`` (its ``status.rollout``: current
        and previous revision, batches, paused and why), or ``None`` before the
        server recorded one. Every rollout method takes ``kind="EdgeDeviceSet"``
        to act on a device set's rollout instead."""
        record: dict[str, Any] | None = self._native.rollout(namespace, name, "status", kind)
        return record

    def rollout_history(self, name: str, namespace: str = DEFAULT_NAMESPACE, kind: str = "EdgeWorkload") -> list[dict[str, Any]]:
        """The revisions the server keeps of workload ``name``, oldest first."""
        revisions: list[dict[str, Any]] = self._native.rollout(namespace, name, "history", kind)
        return revisions

    def pause_rollout(self, name: str, namespace: str = DEFAULT_NAMESPACE, kind: str = "EdgeWorkload") -> EdgeWorkload | EdgeDeviceSet:
        """Pauses the workload's rollout: nothing more is given or released."""
        return _rollout_object(kind, self._native.rollout(namespace, name, "pause", kind))

    def resume_rollout(self, name: str, namespace: str = DEFAULT_NAMESPACE, kind: str = "EdgeWorkload") -> EdgeWorkload | EdgeDeviceSet:
        """Resumes a rollout paused with :meth:`pause_rollout`."""
        return _rollout_object(kind, self._native.rollout(namespace, name, "resume", kind))

    def approve_rollout(self, name: str, namespace: str = DEFAULT_NAMESPACE, kind: str = "EdgeWorkload") -> EdgeWorkload | EdgeDeviceSet:
        """Approves the next batch (policy ``manualApproval: true``); raises
        :class:`flotta.errors.RolloutError` when no rollout is in progress."""
        return _rollout_object(kind, self._native.rollout(namespace, name, "approve", kind))

    def undo_rollout(self, name: str, namespace: str = DEFAULT_NAMESPACE, kind: str = "EdgeWorkload") -> EdgeWorkload | EdgeDeviceSet:
        """Rolls the workload back to its previous revision, itself a rollout; raises
        :class:`flotta.errors.RolloutError` when there is none."""
        return _rollout_object(kind, self._native.rollout(namespace, name, "undo", kind))


class AsyncClient(_ClientBase):
    """The asyncio form of :class:`Client`: the same surface, with ``await``."""

    def __init__(
        self,
        url: str,
        *,
        token: str,
        ca: str | os.PathLike[str] | None = None,
        timeout: float | None = None,
    ) -> None:
        self._native = _flotta.NativeClient(url, token, _ca_pem(ca), timeout)
        self._attach()

    def _attach(self) -> None:
        self.devices: AsyncResources[EdgeDevice] = AsyncResources(self._native, EdgeDevice)
        self.device_sets: AsyncResources[EdgeDeviceSet] = AsyncResources(self._native, EdgeDeviceSet)
        self.workloads: AsyncResources[EdgeWorkload] = AsyncResources(self._native, EdgeWorkload)
        self.signed_requests: AsyncResources[EdgeDeviceSignedRequest] = AsyncResources(
            self._native, EdgeDeviceSignedRequest
        )
        self.edge_configs: AsyncResources[EdgeConfig] = AsyncResources(self._native, EdgeConfig)
        self.playbook_executions: AsyncResources[PlaybookExecution] = AsyncResources(
            self._native, PlaybookExecution
        )
        self.repositories: AsyncResources[Repository] = AsyncResources(self._native, Repository)
        self.resource_syncs: AsyncResources[ResourceSync] = AsyncResources(self._native, ResourceSync)
        self.secrets: AsyncResources[Secret] = AsyncResources(self._native, Secret)
        self.config_maps: AsyncResources[ConfigMap] = AsyncResources(self._native, ConfigMap)
        self.events: AsyncResources[Event] = AsyncResources(self._native, Event)

    @classmethod
    def from_config(cls, path: str | os.PathLike[str] | None = None) -> AsyncClient:
        """See :meth:`Client.from_config`."""
        client = cls.__new__(cls)
        client._native = _flotta.NativeClient.from_config(Path(path) if path else _default_config_path())
        client._attach()
        return client

    async def apply(
        self,
        manifest: str | Resource | Iterable[Resource | Mapping[str, Any]],
        namespace: str = DEFAULT_NAMESPACE,
        *,
        server_side: bool = False,
        field_manager: str = "flotta-python",
        force_conflicts: bool = False,
    ) -> list[ApplyOutcome]:
        """See :meth:`Client.apply`."""
        manager = field_manager if server_side else None
        documents = _documents(manifest)
        if isinstance(documents, str):
            return _outcomes(await self._native.apply_text_async(namespace, documents, manager, force_conflicts))
        return _outcomes(await self._native.apply_objects_async(namespace, documents, manager, force_conflicts))

    async def approve(self, name: str, namespace: str = DEFAULT_NAMESPACE) -> EdgeDeviceSignedRequest:
        """See :meth:`Client.approve`."""
        return EdgeDeviceSignedRequest._adopt(await self._native.decide_enrolment_async(namespace, name, True))

    async def deny(self, name: str, namespace: str = DEFAULT_NAMESPACE) -> EdgeDeviceSignedRequest:
        """See :meth:`Client.deny`."""
        return EdgeDeviceSignedRequest._adopt(await self._native.decide_enrolment_async(namespace, name, False))

    async def events_for(self, resource: Resource, namespace: str | None = None) -> builtins.list[Event]:
        """See :meth:`Client.events_for`."""
        found = await self.events.list(
            namespace or resource.namespace or DEFAULT_NAMESPACE, field_selector=_about(resource)
        )
        return sorted(found, key=_last_seen)

    async def rollout_status(self, name: str, namespace: str = DEFAULT_NAMESPACE, kind: str = "EdgeWorkload") -> dict[str, Any] | None:
        """See :meth:`Client.rollout_status`."""
        record: dict[str, Any] | None = await self._native.rollout_async(namespace, name, "status", kind)
        return record

    async def rollout_history(self, name: str, namespace: str = DEFAULT_NAMESPACE, kind: str = "EdgeWorkload") -> list[dict[str, Any]]:
        """See :meth:`Client.rollout_history`."""
        revisions: list[dict[str, Any]] = await self._native.rollout_async(namespace, name, "history", kind)
        return revisions

    async def pause_rollout(self, name: str, namespace: str = DEFAULT_NAMESPACE, kind: str = "EdgeWorkload") -> EdgeWorkload | EdgeDeviceSet:
        """See :meth:`Client.pause_rollout`."""
        return _rollout_object(kind, await self._native.rollout_async(namespace, name, "pause", kind))

    async def resume_rollout(self, name: str, namespace: str = DEFAULT_NAMESPACE, kind: str = "EdgeWorkload") -> EdgeWorkload | EdgeDeviceSet:
        """See :meth:`Client.resume_rollout`."""
        return _rollout_object(kind, await self._native.rollout_async(namespace, name, "resume", kind))

    async def approve_rollout(self, name: str, namespace: str = DEFAULT_NAMESPACE, kind: str = "EdgeWorkload") -> EdgeWorkload | EdgeDeviceSet:
        """See :meth:`Client.approve_rollout`."""
        return _rollout_object(kind, await self._native.rollout_async(namespace, name, "approve", kind))

    async def undo_rollout(self, name: str, namespace: str = DEFAULT_NAMESPACE, kind: str = "EdgeWorkload") -> EdgeWorkload | EdgeDeviceSet:
        """See :meth:`Client.undo_rollout`."""
        return _rollout_object(kind, await self._native.rollout_async(namespace, name, "undo", kind))


def _about(resource: Resource) -> str:
    """The field selector of the events about ``resource``."""
    return f"involvedObject.kind={resource.kind},involvedObject.name={resource.name}"


def _rollout_object(kind: str, value: Any) -> EdgeWorkload | EdgeDeviceSet:
    if kind == "EdgeDeviceSet":
        return EdgeDeviceSet._adopt(value)
    return EdgeWorkload._adopt(value)


def _last_seen(event: Event) -> str:
    # RFC 3339 in UTC: sorts as time does.
    return str(event.to_dict().get("lastTimestamp") or "")


__all__ = [
    "ApplyOutcome",
    "AsyncClient",
    "AsyncResources",
    "AsyncWatch",
    "Client",
    "Resources",
    "Watch",
    "WatchEvent",
]
