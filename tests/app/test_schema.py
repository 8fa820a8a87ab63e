"""Schema-driven testing: schemathesis generates requests from the service's own OpenAPI document
and checks that none gets a server error and every response matches what is documented."""

import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.main import create_app
from app.settings import Settings
from tests.app.conftest import write_tiny_weights

EXAMPLES = 25  # per operation, so make test stays fast


@schemathesis.serializer("image/bmp", "image/tiff")
def _image_body(ctx: schemathesis.SerializationContext, value: object) -> bytes:
    """A generated image body as its bytes, for the image types schemathesis has no sample of
    (the service tells the format from the bytes and refuses what is not an image)."""
    return value if isinstance(value, bytes) else str(value).encode()


_weights = write_tiny_weights(Path(tempfile.mkdtemp(prefix="tinyzoo-schema-")))
schema = schemathesis.openapi.from_asgi(
    "/openapi.json", create_app(Settings(weights_dir=_weights, max_wait_ms=0.5))
)


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_documented_behaviour(case: schemathesis.Case) -> None:
    """No 5xx; status, content type, headers and body as documented; invalid data refused.

    Schema-valid input may still be refused with a documented 4xx: a name with no letters,
    an empty upload or text outside a model's vocabulary are rejected on their meaning.
    """
    case.call_and_validate(
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_headers_conformance,
            response_schema_conformance,
            negative_data_rejection,
        ],
    )
