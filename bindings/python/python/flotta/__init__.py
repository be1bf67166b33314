"""flotta: fleet management for edge devices, from Python.

- :class:`Selector`: Kubernetes label selectors.
- :func:`load_manifests` and the resource classes (:class:`EdgeDevice`,
  :class:`EdgeDeviceSet`, :class:`EdgeWorkload`, :class:`EdgeDeviceSignedRequest`,
  :class:`Secret`, :class:`ConfigMap`).
- :class:`Client` / :class:`AsyncClient`: the management API.
- :class:`Agent`: the device agent with a workload runtime written in Python.
- :mod:`flotta.pki`: device keys and certificate requests.
- :mod:`flotta.errors`: the exceptions, also exported here.
"""

from __future__ import annotations

from . import errors, pki
from ._flotta import Selector, __version__
from .agent import Agent, MemoryRuntime, OsUpdater, WorkloadRuntime, WorkloadState
from .client import (
    ApplyOutcome,
    AsyncClient,
    AsyncResources,
    AsyncWatch,
    Client,
    Resources,
    Watch,
    WatchEvent,
)
from .errors import (
    AgentError,
    AlreadyExists,
    ApiError,
    ApplyError,
    BadRequest,
    ConfigError,
    Conflict,
    FlottaError,
    Forbidden,
    Gone,
    Invalid,
    ManifestError,
    NotFound,
    PkiError,
    RequestTimeout,
    SelectorError,
    ServerError,
    TransportError,
    Unauthorized,
    ValidationError,
)
from .resources import (
    API_VERSION,
    AttrView,
    ConfigMap,
    EdgeConfig,
    EdgeDevice,
    EdgeDeviceSet,
    EdgeDeviceSignedRequest,
    EdgeWorkload,
    Event,
    PlaybookExecution,
    Repository,
    Resource,
    ResourceSync,
    Secret,
    dump_manifests,
    load_manifests,
)

__all__ = [
    "API_VERSION",
    "Agent",
    "AgentError",
    "AlreadyExists",
    "ApiError",
    "ApplyError",
    "ApplyOutcome",
    "AsyncClient",
    "AsyncResources",
    "AsyncWatch",
    "AttrView",
    "BadRequest",
    "Client",
    "ConfigError",
    "ConfigMap",
    "Conflict",
    "EdgeConfig",
    "EdgeDevice",
    "EdgeDeviceSet",
    "EdgeDeviceSignedRequest",
    "EdgeWorkload",
    "Event",
    "FlottaError",
    "Forbidden",
    "Gone",
    "Invalid",
    "ManifestError",
    "MemoryRuntime",
    "OsUpdater",
    "NotFound",
    "PkiError",
    "PlaybookExecution",
    "Repository",
    "RequestTimeout",
    "Resource",
    "ResourceSync",
    "Resources",
    "Secret",
    "Selector",
    "SelectorError",
    "ServerError",
    "TransportError",
    "Unauthorized",
    "ValidationError",
    "Watch",
    "WatchEvent",
    "WorkloadRuntime",
    "WorkloadState",
    "__version__",
    "dump_manifests",
    "errors",
    "load_manifests",
    "pki",
]
