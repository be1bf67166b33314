"""Resources: ``EdgeDevice``, ``EdgeDeviceSet``, ``EdgeWorkload`` and
``EdgeDeviceSignedRequest``, Kubernetes-shaped objects of the group
``management.project-flotta.io/v1alpha1``, and the Kubernetes ``v1`` ``Secret`` and
``ConfigMap``.

A resource is a thin object over its JSON form (a ``dict``), with attribute access
that accepts the wire's camelCase names or their snake_case spelling::

    device.metadata.name
    device.status.last_seen          # status.lastSeen
    workload.spec["deviceSelector"]  # item access works too

Nested mappings are live views: ``device.metadata.labels["tier"] = "edge"`` changes
the resource.
"""

from __future__ import annotations

import base64
import copy
import re
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from typing import Any, ClassVar, TypeVar

from . import _flotta
from .errors import ValidationError

_KINDS: dict[str, dict[str, Any]] = {info["kind"]: info for info in _flotta.kinds()}
"""Core's kind table (names, plurals, short names), keyed by ``kind``."""

API_VERSION: str = _KINDS["EdgeDevice"]["api_version"]


def api_version_of(kind: str) -> str:
    """The ``apiVersion`` of objects of ``kind`` (``v1`` for Secret and ConfigMap)."""
    return str(_KINDS[kind]["api_version"]) if kind in _KINDS else API_VERSION

_SNAKE = re.compile(r"_([a-z0-9])")


def _camel(name: str) -> str:
    return _SNAKE.sub(lambda m: m.group(1).upper(), name)


def _key_of(data: Mapping[str, Any], name: str) -> str | None:
    if name in data:
        return name
    camel = _camel(name)
    if camel in data:
        return camel
    return None


def _wrap(value: Any) -> Any:
    if isinstance(value, dict):
        return AttrView(value)
    if isinstance(value, list):
        return [_wrap(item) for item in value]
    return value


class AttrView(MutableMapping[str, Any]):
    """A live view of a JSON object with attribute access (``view.periodSeconds``
    or ``view.period_seconds``). Missing attributes raise ``AttributeError``;
    missing items raise ``KeyError``."""

    __slots__ = ("_data",)
    _data: dict[str, Any]

    def __init__(self, data: dict[str, Any]) -> None:
        object.__setattr__(self, "_data", data)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "_data":
            raise AttributeError(name)
        key = _key_of(self._data, name)
        if key is None:
            raise AttributeError(f"no field {name!r} (have: {', '.join(self._data) or 'none'})")
        return _wrap(self._data[key])

    def __setattr__(self, name: str, value: Any) -> None:
        key = _key_of(self._data, name) or _camel(name)
        self._data[key] = _unwrap(value)

    def __getitem__(self, key: str) -> Any:
        return _wrap(self._data[key])

    def __setitem__(self, key: str, value: Any) -> None:
        self._data[key] = _unwrap(value)

    def __delitem__(self, key: str) -> None:
        del self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, AttrView):
            return self._data == other._data
        if isinstance(other, Mapping):
            return self._data == dict(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"AttrView({self._data!r})"

    def to_dict(self) -> dict[str, Any]:
        """A deep copy of the underlying JSON object."""
        return copy.deepcopy(self._data)


def _unwrap(value: Any) -> Any:
    if isinstance(value, AttrView):
        return value.to_dict()
    if isinstance(value, Resource):
        return value.to_dict()
    return value


R = TypeVar("R", bound="Resource")


class Resource:
    """Base class of the four resource kinds.

    Build one with keyword arguments (``EdgeWorkload("web", labels={...},
    spec={...})``), from a dict (``Resource.from_dict(d)`` picks the class by
    ``kind``), or from a manifest (:func:`load_manifests`). Construction checks
    field types and raises :class:`flotta.ManifestError` naming the field;
    :meth:`validate` checks the values (names, selectors, ranges).
    """

    kind: ClassVar[str] = ""
    """The resource's ``kind``."""
    plural: ClassVar[str] = ""
    """The resource's plural name in API paths (from core's kind table)."""
    singular: ClassVar[str] = ""
    """The resource's singular name, e.g. ``edgedevice`` (from core's kind table)."""
    short_names: ClassVar[tuple[str, ...]] = ()
    """The resource's short names, e.g. ``("edsr",)`` (from core's kind table)."""

    __slots__ = ("_data",)
    _data: dict[str, Any]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # A subclass names its kind; every other name comes from the native table so
        # Python cannot drift from Rust.
        info = _KINDS.get(cls.kind)
        if info is not None:
            cls.plural = info["plural"]
            cls.singular = info["singular"]
            cls.short_names = tuple(info["short_names"])

    def __init__(
        self,
        name: str | None = None,
        *,
        namespace: str | None = None,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        spec: Mapping[str, Any] | None = None,
        status: Mapping[str, Any] | None = None,
    ) -> None:
        if type(self) is Resource:
            raise TypeError("Resource is abstract: use EdgeDevice, EdgeDeviceSet, EdgeWorkload or EdgeDeviceSignedRequest")
        metadata: dict[str, Any] = {}
        if name is not None:
            metadata["name"] = name
        if namespace is not None:
            metadata["namespace"] = namespace
        if labels is not None:
            metadata["labels"] = dict(labels)
        if annotations is not None:
            metadata["annotations"] = dict(annotations)
        data: dict[str, Any] = {"apiVersion": API_VERSION, "kind": self.kind, "metadata": metadata}
        data["spec"] = _unwrap(dict(spec)) if spec is not None else {}
        if status is not None:
            data["status"] = dict(status)
        object.__setattr__(self, "_data", _flotta.parse_resource(data))

    @classmethod
    def from_dict(cls: type[R], data: Mapping[str, Any]) -> R:
        """The resource a JSON object describes, as the class its ``kind`` names.

        Raises :class:`flotta.ManifestError` for an unknown kind or a field of the
        wrong type, and ``TypeError`` when called on a subclass with another kind.
        """
        parsed = _flotta.parse_resource(dict(data))
        return cls._adopt(parsed)

    @classmethod
    def _adopt(cls: type[R], parsed: dict[str, Any]) -> R:
        kind = parsed.get("kind", "")
        target = _CLASSES.get(kind)
        if target is None:
            raise TypeError(f"unknown kind {kind!r}")
        if cls is not Resource and not issubclass(target, cls):
            raise TypeError(f"expected kind {cls.kind}, got {kind}")
        instance = object.__new__(target)
        object.__setattr__(instance, "_data", parsed)
        return instance  # type: ignore[return-value]

    # ---------------------------------------------------------------- access

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "_data":
            raise AttributeError(name)
        key = _key_of(self._data, name)
        if key is None:
            raise AttributeError(f"{self.kind} has no field {name!r}")
        return _wrap(self._data[key])

    def __setattr__(self, name: str, value: Any) -> None:
        key = _key_of(self._data, name) or _camel(name)
        self._data[key] = _unwrap(value)

    def __getitem__(self, key: str) -> Any:
        return _wrap(self._data[key])

    def __setitem__(self, key: str, value: Any) -> None:
        self._data[key] = _unwrap(value)

    def __contains__(self, key: str) -> bool:
        return key in self._data

    @property
    def name(self) -> str:
        """``metadata.name`` (empty when unset)."""
        return str(self._data.get("metadata", {}).get("name") or "")

    @property
    def namespace(self) -> str | None:
        """``metadata.namespace``, when set."""
        value = self._data.get("metadata", {}).get("namespace")
        return str(value) if value is not None else None

    @property
    def labels(self) -> dict[str, str]:
        """``metadata.labels`` as a live ``dict`` (created empty when absent)."""
        metadata: dict[str, Any] = self._data.setdefault("metadata", {})
        labels: dict[str, str] = metadata.setdefault("labels", {})
        return labels

    @property
    def resource_version(self) -> str | None:
        """``metadata.resourceVersion``, set by the server."""
        value = self._data.get("metadata", {}).get("resourceVersion")
        return str(value) if value is not None else None

    # ---------------------------------------------------------------- forms

    def to_dict(self) -> dict[str, Any]:
        """A deep copy of the resource's JSON form."""
        return copy.deepcopy(self._data)

    def to_json(self, indent: int | None = None) -> str:
        """The resource as JSON text (pretty-printed when ``indent`` is given)."""
        return _flotta.dump_json(self._data, indent)

    def to_yaml(self) -> str:
        """The resource as a YAML document (``---`` first)."""
        return _flotta.dump_yaml([self._data])

    def validation_errors(self) -> list[tuple[str, str]]:
        """Every problem found, as ``(path, message)`` pairs; empty when valid."""
        return [(path, message) for path, message in _flotta.validation_errors(self._data)]

    def validate(self) -> None:
        """Raises :class:`flotta.ValidationError` listing every problem, if any."""
        errors = self.validation_errors()
        if errors:
            summary = "; ".join(f"{path}: {message}" for path, message in errors)
            raise ValidationError(f"{self.kind} {self.name or '(unnamed)'} is not valid: {summary}", errors)

    def copy(self: R) -> R:
        """An independent copy."""
        return type(self)._adopt(self.to_dict())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Resource):
            return NotImplemented
        return self._data == other._data

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        namespace = self.namespace
        where = f", namespace={namespace!r}" if namespace else ""
        return f"{type(self).__name__}(name={self.name!r}{where})"


class EdgeDevice(Resource):
    """A device of the fleet (created by the server when a device registers)."""

    kind: ClassVar[str] = "EdgeDevice"
    __slots__ = ()


class EdgeDeviceSet(Resource):
    """A set of devices sharing configuration, chosen by ``spec.selector``."""

    kind: ClassVar[str] = "EdgeDeviceSet"
    __slots__ = ()


class EdgeWorkload(Resource):
    """A pod to run on the devices that ``spec.deviceSelector`` (or ``spec.device``)
    chooses, with an optional ``spec.rolloutPolicy``."""

    kind: ClassVar[str] = "EdgeWorkload"
    __slots__ = ()


class EdgeDeviceSignedRequest(Resource):
    """A device's enrolment request; setting ``spec.approved`` lets it register."""

    kind: ClassVar[str] = "EdgeDeviceSignedRequest"
    __slots__ = ()


class EdgeConfig(Resource):
    """Ansible playbooks (``spec.edgePlaybook.playbooks``, the YAML base64-encoded in
    ``content``) for the devices labelled ``config/device-by-config=<name>``."""

    kind: ClassVar[str] = "EdgeConfig"
    __slots__ = ()


class PlaybookExecution(Resource):
    """One run of an ``EdgeConfig``'s playbook on one device (``<device>-<config>``),
    created by the server; ``status.conditions`` follow the device's reports."""

    kind: ClassVar[str] = "PlaybookExecution"
    __slots__ = ()


class Repository(Resource):
    """A git repository that ``ResourceSync``s read: ``spec.url``, ``spec.type``
    (``git``) and ``spec.secretRef`` naming a Secret with its credentials."""

    kind: ClassVar[str] = "Repository"
    __slots__ = ()


class ResourceSync(Resource):
    """Objects applied from a path of a ``Repository``: ``spec.repository``,
    ``spec.targetRevision``, ``spec.path``, ``spec.pollInterval``; the status
    holds ``observedCommit``, conditions and each object's outcome."""

    kind: ClassVar[str] = "ResourceSync"
    __slots__ = ()


def _core_object(
    kind: str,
    name: str | None,
    namespace: str | None,
    labels: Mapping[str, str] | None,
    annotations: Mapping[str, str] | None,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {}
    if name is not None:
        metadata["name"] = name
    if namespace is not None:
        metadata["namespace"] = namespace
    if labels is not None:
        metadata["labels"] = dict(labels)
    if annotations is not None:
        metadata["annotations"] = dict(annotations)
    return {"apiVersion": _KINDS[kind]["api_version"], "kind": kind, "metadata": metadata}


class Secret(Resource):
    """A Kubernetes ``v1`` Secret, sent only to the devices whose workloads use it.

    ``data`` takes bytes (base64-encoded here), ``string_data`` text; on the server
    both end up in ``data``, sealed at rest. ``repr`` never shows a value.
    """

    kind: ClassVar[str] = "Secret"
    __slots__ = ()

    def __init__(
        self,
        name: str | None = None,
        *,
        namespace: str | None = None,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        data: Mapping[str, bytes] | None = None,
        string_data: Mapping[str, str] | None = None,
        type: str = "Opaque",
    ) -> None:
        body = _core_object(self.kind, name, namespace, labels, annotations)
        body["type"] = type
        if data is not None:
            body["data"] = {key: base64.b64encode(value).decode("ascii") for key, value in data.items()}
        if string_data is not None:
            body["stringData"] = dict(string_data)
        object.__setattr__(self, "_data", _flotta.parse_resource(body))

    def value(self, key: str) -> bytes | None:
        """The decoded value of ``key``, if the secret has it."""
        encoded = self._data.get("data", {}).get(key)
        return base64.b64decode(encoded) if encoded is not None else None


class ConfigMap(Resource):
    """A Kubernetes ``v1`` ConfigMap: text ``data`` and bytes ``binary_data``."""

    kind: ClassVar[str] = "ConfigMap"
    __slots__ = ()

    def __init__(
        self,
        name: str | None = None,
        *,
        namespace: str | None = None,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
        binary_data: Mapping[str, bytes] | None = None,
    ) -> None:
        body = _core_object(self.kind, name, namespace, labels, annotations)
        if data is not None:
            body["data"] = dict(data)
        if binary_data is not None:
            body["binaryData"] = {key: base64.b64encode(value).decode("ascii") for key, value in binary_data.items()}
        object.__setattr__(self, "_data", _flotta.parse_resource(body))


class Event(Resource):
    """A Kubernetes ``v1`` Event the server recorded: something that happened to an
    object (``involved_object``), with ``reason``, ``message``, ``type``
    (``Normal`` or ``Warning``), ``count`` and first/last timestamps. Device events
    (a failed apply, a rollback) and the server's own (an enrolment approved, a
    device registered) are both events. Read-only: the server records them, so
    there is no constructor and writes are refused."""

    kind: ClassVar[str] = "Event"
    __slots__ = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("events are recorded by the server; read them with client.events")

    @property
    def reason(self) -> str:
        """The short reason, e.g. ``ApplyFailed``."""
        return str(self._data.get("reason") or "")

    @property
    def message(self) -> str:
        """What happened."""
        return str(self._data.get("message") or "")

    @property
    def type(self) -> str:
        """``Normal`` or ``Warning``."""
        return str(self._data.get("type") or "")

    @property
    def count(self) -> int:
        """How many times it happened."""
        return int(self._data.get("count") or 1)

    @property
    def involved(self) -> tuple[str, str]:
        """``(kind, name)`` of the object the event is about."""
        involved = self._data.get("involvedObject") or {}
        return (str(involved.get("kind") or ""), str(involved.get("name") or ""))


_CLASSES: dict[str, type[Resource]] = {
    cls.kind: cls
    for cls in (
        EdgeDevice,
        EdgeDeviceSet,
        EdgeWorkload,
        EdgeDeviceSignedRequest,
        EdgeConfig,
        PlaybookExecution,
        Repository,
        ResourceSync,
        Secret,
        ConfigMap,
        Event,
    )
}


def load_manifests(text: str) -> list[Resource]:
    """Every resource of a YAML (``---``-separated documents) or JSON manifest.

    Raises :class:`flotta.ManifestError` with the document index and the field
    path for bad YAML, an unknown kind or a field of the wrong type. Values are not
    checked here: call :meth:`Resource.validate` on each.
    """
    return [Resource._adopt(item) for item in _flotta.parse_manifests(text)]


def dump_manifests(resources: Iterable[Resource | Mapping[str, Any]]) -> str:
    """Resources as a multi-document YAML manifest."""
    return _flotta.dump_yaml([_unwrap(r) if isinstance(r, Resource) else dict(r) for r in resources])


__all__ = [
    "API_VERSION",
    "AttrView",
    "ConfigMap",
    "api_version_of",
    "EdgeConfig",
    "EdgeDevice",
    "EdgeDeviceSet",
    "EdgeDeviceSignedRequest",
    "EdgeWorkload",
    "Event",
    "PlaybookExecution",
    "Repository",
    "Resource",
    "ResourceSync",
    "Secret",
    "dump_manifests",
    "load_manifests",
]
