"""One error model: a hierarchy of service errors, each mapped to one HTTP status.

Routes and services raise these; ``app.problems`` turns them into RFC 9457
``application/problem+json`` responses. Nothing else builds error responses.
"""

from typing import Any, ClassVar


class ServiceError(Exception):
    """Base of every error a client can be told about."""

    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal-error"
    title: ClassVar[str] = "Internal server error"

    def __init__(
        self,
        detail: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}


class BadRequest(ServiceError):
    status, slug, title = 400, "bad-request", "Bad request"


class UndecodableImage(BadRequest):
    slug, title = "undecodable-image", "Image could not be decoded"


class Unauthorized(ServiceError):
    status, slug, title = 401, "unauthorized", "Missing or invalid API key"


class Forbidden(ServiceError):
    status, slug, title = 403, "forbidden", "Forbidden"


class NotFound(ServiceError):
    status, slug, title = 404, "not-found", "Not found"


class Conflict(ServiceError):
    status, slug, title = 409, "conflict", "Conflict"


class VersionRefused(BadRequest):
    """A model version that failed its checks on load; the served version keeps serving."""

    slug, title = "version-refused", "Model version refused"


class PayloadTooLarge(ServiceError):
    status, slug, title = 413, "payload-too-large", "Request body too large"


class HeadersTooLarge(ServiceError):
    """Refused by the connection guard (``app.connections``) before the application sees it."""

    status, slug, title = 431, "headers-too-large", "Request header fields too large"


class UnsupportedMediaType(ServiceError):
    status, slug, title = 415, "unsupported-media-type", "Unsupported media type"


class InvalidInput(ServiceError):
    status, slug, title = 422, "invalid-input", "Invalid input"


class NoDigitFound(InvalidInput):
    slug, title = "no-digit-found", "No digit found"


class ClientClosedRequest(ServiceError):
    """The client went away before its answer was ready; nothing can be sent to it (the status is
    nginx's 499, for the access log and the metrics)."""

    status, slug, title = 499, "client-closed-request", "Client closed request"


class InferenceFailed(ServiceError):
    status, slug, title = 500, "inference-failed", "Model failed"


class QueueFull(ServiceError):
    status, slug, title = 429, "queue-full", "Too many requests queued"


class NotReady(ServiceError):
    status, slug, title = 503, "not-ready", "Service not ready"


class ModelUnavailable(NotReady):
    slug, title = "model-unavailable", "Model unavailable"


class Overloaded(NotReady):
    """No place for the request within the intake's wait (``app.connections``)."""

    slug, title = "overloaded", "Server overloaded"


class DeadlineExceeded(ServiceError):
    status, slug, title = 504, "timeout", "Request timed out"
