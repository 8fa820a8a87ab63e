"""One error model: a hierarchy of service errors, each mapped to one HTTP status, and the one
table (``ERRORS``) from a status to its problem type, title and example.

Routes and services raise these; ``app.problems`` turns them into RFC 9457
``application/problem+json`` responses, ``app.api.protocol`` into the Open Inference Protocol's
``{"error": ...}``, and both document their responses in OpenAPI from ``ERRORS``. Nothing else
builds error responses or names a status's title.
"""

from typing import Any, ClassVar, Final


class ServiceError(Exception):
    """Base of every error a client can be told about."""

    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal-error"
    title: ClassVar[str] = "Internal server error"
    example: ClassVar[str] = "the server failed to handle this request; it has been logged"
    """A typical ``detail``, shown in the OpenAPI document."""

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
    example = "the request body could not be parsed"


class UndecodableImage(BadRequest):
    slug, title = "undecodable-image", "Image could not be decoded"


class Unauthorized(ServiceError):
    status, slug, title = 401, "unauthorized", "Missing or invalid API key"
    example = "this server needs an API key: send 'Authorization: Bearer <key>'"


class Forbidden(ServiceError):
    status, slug, title = 403, "forbidden", "Forbidden"
    example = "the model repository routes are off: this server has no admin key set"


class NotFound(ServiceError):
    status, slug, title = 404, "not-found", "Not found"
    example = "no model named 'x'"


class MethodNotAllowed(ServiceError):
    status, slug, title = 405, "method-not-allowed", "Method not allowed"
    example = "no route GET /digit"


class Conflict(ServiceError):
    status, slug, title = 409, "conflict", "Conflict"
    example = "this server runs 2 worker processes, each with its own models"


class VersionRefused(BadRequest):
    """A model version that failed its checks on load; the served version keeps serving."""

    slug, title = "version-refused", "Model version refused"


class PayloadTooLarge(ServiceError):
    status, slug, title = 413, "payload-too-large", "Request body too large"
    example = "request body over the limit of 5242880 bytes"


class HeadersTooLarge(ServiceError):
    """Refused by the connection guard (``app.connections``) before the application sees it."""

    status, slug, title = 431, "headers-too-large", "Request header fields too large"
    example = "the request head is over 65,536 bytes"


class UnsupportedMediaType(ServiceError):
    status, slug, title = 415, "unsupported-media-type", "Unsupported media type"
    example = "expected multipart/form-data or an image/* body"


class InvalidInput(ServiceError):
    status, slug, title = 422, "invalid-input", "Invalid input"
    example = "name: String should have at least 1 character"


class ValidationFailed(InvalidInput):
    """A request that does not fit its schema (FastAPI's validation), with ``errors``."""

    slug, title = "validation-error", "Invalid request"


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
    example = "digit-resnet: 1024 requests already queued; retry in 1 s"


class NotReady(ServiceError):
    status, slug, title = 503, "not-ready", "Service not ready"
    example = "models are still loading; retry shortly"


class ModelUnavailable(NotReady):
    slug, title = "model-unavailable", "Model unavailable"


class Overloaded(NotReady):
    """No place for the request within the intake's wait (``app.connections``)."""

    slug, title = "overloaded", "Server overloaded"


class DeadlineExceeded(ServiceError):
    status, slug, title = 504, "timeout", "Request timed out"
    example = "digit-resnet: no answer within 30 s; the server is overloaded"


class NotAcceptable(ServiceError):
    status, slug, title = 406, "not-acceptable", "Not acceptable"
    example = "the server cannot answer in the media type asked for"


ERRORS: Final[dict[int, type[ServiceError]]] = {
    cls.status: cls
    for cls in (
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        MethodNotAllowed,
        NotAcceptable,
        Conflict,
        PayloadTooLarge,
        UnsupportedMediaType,
        InvalidInput,
        QueueFull,
        HeadersTooLarge,
        ClientClosedRequest,
        ServiceError,
        NotReady,
        DeadlineExceeded,
    )
}
"""Each status's canonical error: its problem type, title and example. A status that an error
raised here does not have (a framework's own 4xx) takes the title of the nearest class: 4xx of
``BadRequest``, 5xx of ``ServiceError``."""


def error_for(status: int) -> type[ServiceError]:
    """The canonical error class of an HTTP status."""
    return ERRORS.get(status, BadRequest if status < 500 else ServiceError)
