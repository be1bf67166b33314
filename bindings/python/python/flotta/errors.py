"""The exceptions flotta raises.

Everything derives from :class:`FlottaError`. Errors the server answers with are
:class:`ApiError` subclasses chosen by HTTP status, carrying the server's message,
the status and the Kubernetes reason::

    try:
        client.devices.get("camera-17")
    except flotta.NotFound as e:
        print(e.status, e.reason, e.server_message)
"""

from __future__ import annotations

from typing import Any


class FlottaError(Exception):
    """Base class of every flotta exception."""


class ApiError(FlottaError):
    """The server answered with an error status (a Kubernetes ``Status`` object).

    Attributes:
        status: HTTP status code, e.g. 404.
        reason: Kubernetes reason, e.g. ``NotFound``, ``Conflict``, ``Invalid``.
        server_message: the server's own message.
        method: HTTP method of the request.
        path: path of the request.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int = 0,
        reason: str = "",
        server_message: str = "",
        method: str = "",
        path: str = "",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.server_message = server_message
        self.method = method
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild_api_error,
            (type(self), str(self), self.status, self.reason, self.server_message, self.method, self.path),
        )


def _rebuild_api_error(
    cls: type[ApiError], message: str, status: int, reason: str, server_message: str, method: str, path: str
) -> ApiError:
    return cls(message, status=status, reason=reason, server_message=server_message, method=method, path=path)


class BadRequest(ApiError):
    """400: the request was malformed (e.g. a bad selector)."""


class Invalid(BadRequest):
    """422: the object failed the server's validation; the message names each field."""


class Unauthorized(ApiError):
    """401: the token is missing, unknown or revoked."""


class Forbidden(ApiError):
    """403: the token's role may not do this."""


class NotFound(ApiError, LookupError):
    """404: no such object."""


class Conflict(ApiError):
    """409: the object changed since it was read (stale ``resourceVersion``)."""


class AlreadyExists(Conflict):
    """409 ``AlreadyExists``: an object of that name exists."""


class Gone(ApiError):
    """410: the resource version asked for is no longer retained."""


class ServerError(ApiError):
    """5xx: the server failed or is unavailable."""


class TransportError(FlottaError, ConnectionError):
    """The server could not be reached, or the connection failed mid-request."""


class RequestTimeout(TransportError, TimeoutError):
    """The request took longer than the client's timeout."""


class ConfigError(FlottaError, ValueError):
    """The client configuration is unusable (file, URL, CA certificate, name)."""


class ValidationError(FlottaError, ValueError):
    """A resource is not valid.

    Attributes:
        errors: every problem found, as ``(path, message)`` pairs, e.g.
            ``("spec.heartbeat.periodSeconds", "must be at least 1, got 0")``.
    """

    def __init__(self, message: str, errors: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.errors: list[tuple[str, str]] = list(errors or [])

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.errors))


class ManifestError(ValidationError):
    """A manifest document could not be read (bad YAML, unknown kind, wrong field type).

    Attributes:
        document: index (0-based) of the offending document.
        errors: ``(path, message)`` pairs; the path is empty when the problem is not
            about one field.
    """

    def __init__(self, message: str, errors: list[tuple[str, str]] | None = None, *, document: int = 0) -> None:
        super().__init__(message, errors)
        self.document = document

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_manifest_error, (str(self), self.errors, self.document))


def _rebuild_manifest_error(message: str, errors: list[tuple[str, str]], document: int) -> ManifestError:
    return ManifestError(message, errors, document=document)


class SelectorError(FlottaError, ValueError):
    """A label or field selector is not valid.

    Attributes:
        offset: byte offset in the selector text where the problem starts.
        field: for structured selectors, the offending part
            (e.g. ``matchExpressions[1].values[0]``); ``None`` for text.
    """

    def __init__(self, message: str, *, offset: int = 0, field: str | None = None) -> None:
        super().__init__(message)
        self.offset = offset
        self.field = field


class ApplyError(FlottaError):
    """Some documents of an ``apply`` failed; the others were applied.

    Attributes:
        outcomes: one :class:`flotta.ApplyOutcome` per document, failed or not.
    """

    def __init__(self, message: str, outcomes: list[Any]) -> None:
        super().__init__(message)
        self.outcomes = outcomes

    @property
    def failures(self) -> list[Any]:
        """The outcomes that carry an error."""
        return [o for o in self.outcomes if o.error is not None]


class RolloutError(FlottaError):
    """A rollout operation had nothing to act on: no rollout in progress to approve,
    no previous revision to undo to."""


class AgentError(FlottaError):
    """The agent could not be set up, or stopped on an error."""


class PkiError(FlottaError, ValueError):
    """A key or certificate request could not be made (bad key PEM, bad device id)."""


__all__ = [
    "RolloutError",
    "AgentError",
    "AlreadyExists",
    "ApiError",
    "ApplyError",
    "BadRequest",
    "ConfigError",
    "Conflict",
    "FlottaError",
    "Forbidden",
    "Gone",
    "Invalid",
    "ManifestError",
    "NotFound",
    "PkiError",
    "RequestTimeout",
    "SelectorError",
    "ServerError",
    "TransportError",
    "Unauthorized",
    "ValidationError",
]
