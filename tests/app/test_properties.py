"""Property-based tests: name folding and image preprocessing never fail but as documented."""

import io

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from app.errors import InvalidInput, NoDigitFound, ServiceError
from app.preprocessing.digits import to_mnist
from app.preprocessing.uploads import grey_pixels, open_upload
from app.services.names import fold_name
from models.text import normalize_name

LIMITS = {"max_pixels": 50_000_000, "max_decoded_bytes": 200 * 1024 * 1024}
FAST = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))


@FAST
@given(st.text(max_size=200))
def test_name_folding_is_total_clean_and_idempotent(text: str) -> None:
    folded = normalize_name(text)
    assert set(folded) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz' ")
    assert folded == folded.strip(" '")
    assert "  " not in folded
    assert normalize_name(folded) == folded


@FAST
@given(st.text(max_size=300))
def test_fold_name_raises_only_invalid_input(text: str) -> None:
    try:
        result = fold_name(text)
    except InvalidInput as exc:
        assert exc.detail
    else:
        assert 0 < len(result.normalized) <= 64


@FAST
@given(st.binary(max_size=2048))
def test_decoding_arbitrary_bytes_raises_only_service_errors(data: bytes) -> None:
    try:
        grey_pixels(open_upload(data, **LIMITS))
    except ServiceError as exc:
        assert 400 <= exc.status < 500


@FAST
@given(
    arrays(np.uint8, st.tuples(st.integers(1, 64), st.integers(1, 64))),
    st.sampled_from(["L", "RGB", "RGBA", "P", "1"]),
)
def test_preprocessing_any_image_gives_mnist_form_or_no_digit(
    pixels: np.ndarray, mode: str
) -> None:
    buf = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buf, format="PNG")
    try:
        out = to_mnist(grey_pixels(open_upload(buf.getvalue(), **LIMITS)))
    except NoDigitFound:
        return
    assert out.shape == (28, 28)
    assert out.dtype == np.float32
    assert float(out.min()) >= 0.0
    assert float(out.max()) <= 1.0
