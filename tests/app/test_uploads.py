"""Digit uploads -> MNIST-style arrays: what a user of the service would notice."""

import io
import resource
import struct
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw

from app.errors import (
    InvalidInput,
    NoDigitFound,
    PayloadTooLarge,
    UndecodableImage,
    UnsupportedMediaType,
)
from app.preprocessing.digits import to_mnist
from app.preprocessing.uploads import grey_pixels, open_upload, to_grey
from app.services.digits import to_png
from training.data import load_mnist


def seven(size: int = 200, width: int = 14) -> np.ndarray:
    """A crossed "7" drawn ``width`` px wide, bright (255) on dark (0), uint8 size x size."""
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    s = size / 200
    draw.line(
        [(55 * s, 50 * s), (145 * s, 45 * s), (90 * s, 165 * s)],
        fill=255,
        width=width,
        joint="curve",
    )
    draw.line([(85 * s, 105 * s), (135 * s, 105 * s)], fill=255, width=width)
    return np.asarray(canvas)


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    """The image saved in ``fmt``, as bytes."""
    buf = io.BytesIO()
    image.save(buf, format=fmt, **params)
    return buf.getvalue()


def decode_image(data: bytes, *, max_pixels: int = 50_000_000) -> np.ndarray:
    """Upload bytes -> 8-bit greyscale pixels, as the service decodes them."""
    return grey_pixels(open_upload(data, max_pixels=max_pixels, max_decoded_bytes=1 << 30))


def prepare(data: bytes) -> np.ndarray:
    """Upload bytes -> the 28 x 28 array the model sees."""
    return to_mnist(decode_image(data))


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two arrays' pixels."""
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def centre_of_mass(a: np.ndarray) -> tuple[float, float]:
    """(row, column) of the ink's centre of mass."""
    ys, xs = np.mgrid[0:28, 0:28]
    return float((a * ys).sum() / a.sum()), float((a * xs).sum() / a.sum())


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    """The "7" as a plain light-on-dark greyscale PNG, preprocessed."""
    return prepare(encode(Image.fromarray(seven()), "PNG"))


@pytest.fixture(scope="module")
def mnist_digits(data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """The first six MNIST test digits and their labels."""
    test = load_mnist(data_dir, "test")
    return test.images[:6].numpy(), test.labels[:6].numpy()


def test_output_is_an_mnist_field(reference: np.ndarray) -> None:
    assert reference.shape == (28, 28) and reference.dtype == np.float32
    assert reference.min() >= 0 and reference.max() == pytest.approx(1.0, abs=0.02)
    cy, cx = centre_of_mass(reference)
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5
    rows, cols = np.nonzero(reference > 0.05)
    assert max(rows.max() - rows.min(), cols.max() - cols.min()) + 1 in (20, 21)


def test_mnist_digit_passes_through_unchanged(
    mnist_digits: tuple[np.ndarray, np.ndarray],
) -> None:
    for digit in mnist_digits[0]:
        out = prepare(encode(Image.fromarray(digit), "PNG"))
        np.testing.assert_allclose(out, digit.astype(np.float32) / 255, atol=1 / 255 + 1e-6)


def test_mnist_sized_digit_out_of_form_is_reframed(
    mnist_digits: tuple[np.ndarray, np.ndarray],
) -> None:
    digit = mnist_digits[0][0]
    raw = digit.astype(np.float32) / 255
    shifted = np.zeros_like(digit)  # off-centre (two px up and left): moved back
    shifted[:-2, :-2] = digit[2:, 2:]
    out = prepare(encode(Image.fromarray(shifted), "PNG"))
    cy, cx = centre_of_mass(out)
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5
    assert correlation(out, raw) > 0.99
    faint = (digit // 3).astype(np.uint8)  # grey strokes: stretched to full strength
    assert prepare(encode(Image.fromarray(faint), "PNG")).max() == pytest.approx(1.0)
    small = np.asarray(Image.fromarray(digit).resize((14, 14)))  # a 10 px digit: scaled up
    padded = np.zeros((28, 28), np.uint8)
    padded[7:21, 7:21] = small
    out = prepare(encode(Image.fromarray(padded), "PNG"))
    rows, cols = np.nonzero(out > 0.05)
    assert max(rows.max() - rows.min(), cols.max() - cols.min()) + 1 in (19, 20, 21)


def test_polarity_and_transparency_do_not_matter(reference: np.ndarray) -> None:
    ink = seven()
    dark_on_white = Image.fromarray(255 - ink).convert("RGB")
    light_on_dark = Image.fromarray(ink)
    rgba = np.zeros((*ink.shape, 4), dtype=np.uint8)
    rgba[..., 3] = ink
    light_on_clear = rgba.copy()
    light_on_clear[..., :3] = 255
    versions = {
        "dark on white JPEG": encode(dark_on_white, "JPEG", quality=90),
        "light on dark PNG": encode(light_on_dark, "PNG"),
        "dark on transparent PNG": encode(Image.fromarray(rgba), "PNG"),
        "light on transparent PNG": encode(Image.fromarray(light_on_clear), "PNG"),
    }
    for name, data in versions.items():
        assert correlation(prepare(data), reference) > 0.95, name


def test_photo_of_paper_with_shadow_speck_and_edge(reference: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    ink = np.zeros((600, 800), dtype=np.float32)
    ink[150:450, 380:680] = seven(300, 15) / 255
    ink[520:524, 100:104] = 1
    yy, xx = np.mgrid[0:600, 0:800]
    light = 1 - 0.3 * xx / 800 - 0.15 * np.exp(-((yy - 100) ** 2 + (xx - 200) ** 2) / 40000)
    paper = (240 - 200 * ink) * light + rng.normal(0, 4, ink.shape)
    paper[:, :5] = 60
    rgb = np.stack([paper, paper * 0.98, paper * 0.9], axis=-1)
    photo = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))
    out = prepare(encode(photo, "JPEG", quality=70))
    assert correlation(out, reference) > 0.9


def test_thin_pen_on_a_big_photo_keeps_mnist_strokes() -> None:
    page = Image.new("L", (3000, 2400), 235)
    ImageDraw.Draw(page).line([(1200, 800), (1800, 800), (1400, 1700)], fill=30, width=6)
    out = prepare(encode(page.convert("RGB"), "JPEG", quality=85))
    assert out.max() > 0.95
    assert (out > 0.5).sum() > 40


def test_exif_orientation_is_honoured(reference: np.ndarray) -> None:
    upright = Image.fromarray(255 - seven()).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    data = encode(stored, "JPEG", quality=95, exif=exif.tobytes())
    decoded = decode_image(data)
    assert decoded.shape[0] == decoded.shape[1]  # square, as the upright image
    assert correlation(to_mnist(decoded), reference) > 0.95
    assert correlation(to_mnist(np.asarray(stored.convert("L"))), reference) < 0.7


def _sixteen_bit() -> bytes:
    return encode(Image.fromarray(seven().astype(np.uint16) * 257), "PNG")


def _palette_with_transparency() -> bytes:
    image = Image.fromarray((seven() > 127).astype(np.uint8), "P")
    image.putpalette([255, 255, 255, 0, 0, 0])
    return encode(image, "PNG", transparency=0)


def _la() -> bytes:
    la = np.stack([np.zeros_like(seven()), seven()], axis=-1)
    return encode(Image.fromarray(la, "LA"), "PNG")


def _animated_gif() -> bytes:
    first = Image.fromarray(seven()).convert("P")
    second = Image.fromarray(np.ascontiguousarray(seven()[::-1].T)).convert("P")
    return encode(first, "GIF", save_all=True, append_images=[second], duration=100, loop=0)


def _cmyk_jpeg() -> bytes:
    return encode(Image.fromarray(255 - seven()).convert("RGB").convert("CMYK"), "JPEG")


FORMATS = {
    "16-bit PNG": _sixteen_bit,
    "CMYK JPEG": _cmyk_jpeg,
    "palette PNG with transparency": _palette_with_transparency,
    "LA PNG": _la,
    "animated GIF": _animated_gif,
    "BMP": lambda: encode(Image.fromarray(255 - seven()).convert("RGB"), "BMP"),
    "WebP": lambda: encode(Image.fromarray(255 - seven()).convert("RGB"), "WEBP", quality=90),
    "TIFF": lambda: encode(Image.fromarray(seven()), "TIFF"),
    "1-bit PNG": lambda: encode(Image.fromarray(seven() < 128).convert("1"), "PNG"),
}


@pytest.mark.parametrize("name", list(FORMATS))
def test_formats_and_modes(name: str, reference: np.ndarray) -> None:
    out = prepare(FORMATS[name]())
    assert out.shape == (28, 28) and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 1
    assert correlation(out, reference) > 0.9, name


@pytest.mark.parametrize(
    "pixels",
    [
        seven().astype(np.uint16) * 257,  # 16-bit
        seven() / np.float32(255),  # float in 0..1
        seven() * np.float32(40) - 100,  # float in any range
        np.dstack([seven()] * 3 + [np.full((200, 200), 255, np.uint8)]),  # opaque BGRA
        np.dstack([np.zeros((200, 200, 3), np.uint8), seven()]),  # strokes only in alpha
    ],
    ids=["uint16", "float01", "float-range", "bgra", "alpha-strokes"],
)
def test_decoded_depths_and_channels(pixels: np.ndarray, reference: np.ndarray) -> None:
    assert correlation(to_mnist(to_grey(pixels)), reference) > 0.9


def test_nan_pixels_are_refused() -> None:
    pixels = seven() / np.float32(255)
    pixels[0, 0] = np.nan
    with pytest.raises(InvalidInput, match="NaN"):
        to_grey(pixels)


@pytest.mark.parametrize("size", [(1, 1), (10000, 1), (1, 10000), (3, 3)])
@pytest.mark.parametrize("marked", [False, True])
def test_degenerate_sizes(size: tuple[int, int], marked: bool) -> None:
    pixels = np.full((size[1], size[0]), 255, dtype=np.uint8)
    if marked:
        pixels.reshape(-1)[pixels.size // 3 : pixels.size // 2 + 1] = 0
    try:
        out = prepare(encode(Image.fromarray(pixels), "PNG"))
    except NoDigitFound:
        return
    assert out.shape == (28, 28) and np.isfinite(out).all() and out.max() <= 1


@pytest.mark.parametrize("colour", ["white", "black", (128, 90, 40)])
def test_blank_images_have_no_digit(colour: str | tuple[int, int, int]) -> None:
    with pytest.raises(NoDigitFound, match="no digit found"):
        prepare(encode(Image.new("RGB", (300, 200), colour), "JPEG"))


@pytest.mark.parametrize("sigma", [3, 12, 40])
def test_noise_alone_is_no_digit(sigma: float) -> None:
    rng = np.random.default_rng(3)
    noise = np.clip(rng.normal(180, sigma, (240, 320)), 0, 255).astype(np.uint8)
    with pytest.raises(NoDigitFound):
        prepare(encode(Image.fromarray(noise), "JPEG"))


def test_shading_alone_is_no_digit() -> None:
    rng = np.random.default_rng(4)
    yy, xx = np.mgrid[0:300, 0:400]
    ramp = 1 - 0.4 * xx / 400 - 0.3 * np.exp(-((yy - 150) ** 2 + (xx - 100) ** 2) / 8000)
    page = np.clip(230 * ramp + rng.normal(0, 3, ramp.shape), 0, 255).astype(np.uint8)
    with pytest.raises(NoDigitFound):
        prepare(encode(Image.fromarray(page), "JPEG"))


def test_tight_crop_without_margin(reference: np.ndarray) -> None:
    ink = seven()
    rows, cols = np.nonzero(ink)
    tight = ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    for pixels in (tight, 255 - tight):
        assert correlation(prepare(encode(Image.fromarray(pixels), "PNG")), reference) > 0.9


def test_fully_transparent_is_no_digit() -> None:
    with pytest.raises(NoDigitFound):
        prepare(encode(Image.new("RGBA", (64, 64), (0, 0, 0, 0)), "PNG"))


def test_empty_and_truncated_uploads_are_undecodable() -> None:
    png = encode(Image.fromarray(seven()), "PNG")
    jpeg = encode(Image.fromarray(seven()), "JPEG")
    with pytest.raises(UndecodableImage, match="empty"):
        decode_image(b"")
    for broken in (png[:40], png[: len(png) // 2], jpeg[:200], b"\x89PNG\r\n\x1a\n"):
        with pytest.raises(UndecodableImage):
            decode_image(broken)
    with pytest.raises(UndecodableImage):
        decode_image(bytes(range(256)) * 4)


@pytest.mark.parametrize(
    "data",
    [
        b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"></svg>',
        b"<svg></svg>",
        b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj",
        b"just some text, not a picture\n",
        b"<!DOCTYPE html><html></html>",
    ],
)
def test_non_images_are_unsupported(data: bytes) -> None:
    with pytest.raises(UnsupportedMediaType, match="PNG, JPEG"):
        decode_image(data)


def test_unsupported_image_format_is_named() -> None:
    with pytest.raises(UnsupportedMediaType, match="ICO"):
        decode_image(encode(Image.fromarray(seven()).resize((32, 32)), "ICO"))


def _declared_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height``."""
    png = bytearray(encode(Image.new("L", (1, 1)), "PNG"))
    ihdr = struct.pack(">II", width, height) + bytes(png[24:29])
    png[16:29] = ihdr
    png[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(png)


def test_huge_declared_size_is_refused_before_decoding() -> None:
    data = _declared_png(30000, 30000)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with pytest.raises(PayloadTooLarge, match="over the limit of"):
        decode_image(data)
    assert time.perf_counter() - start < 0.5
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000


def test_pixel_limit_is_configurable() -> None:
    data = encode(Image.fromarray(seven()), "PNG")
    with pytest.raises(PayloadTooLarge, match="limit of 10,000"):
        decode_image(data, max_pixels=10_000)
    assert decode_image(data, max_pixels=40_000).ndim == 2


def test_to_png(reference: np.ndarray) -> None:
    png = to_png(reference)
    back = Image.open(io.BytesIO(png))
    assert back.format == "PNG" and back.mode == "L" and back.size == (28, 28)
    assert np.abs(np.asarray(back) / 255 - reference).max() <= 0.5 / 255 + 1e-6


@pytest.mark.parametrize(
    ("pixels", "fmt", "bytes_per_pixel"),
    [
        (np.zeros((50, 40, 4), np.uint16), ".png", 2 * 4 * 2),  # Pillow calls it 8-bit RGBA
        (np.zeros((50, 40), np.uint16), ".png", 2 * 2),
        (np.zeros((50, 40), np.float32), ".tiff", 2 * 4),
        (np.zeros((50, 40, 3), np.uint8), ".png", 2 * 1),  # decoded as grey
        (np.zeros((50, 40, 3), np.uint8), ".webp", 4 + 2),  # full colour first
    ],
)
def test_the_decoded_size_is_known_at_its_true_depth_before_decoding(
    pixels: np.ndarray, fmt: str, bytes_per_pixel: int
) -> None:
    data = cv2.imencode(fmt, pixels)[1].tobytes()
    upload = open_upload(data, max_pixels=10_000, max_decoded_bytes=1 << 20)
    assert upload.decoded_bytes == 50 * 40 * bytes_per_pixel
    with pytest.raises(PayloadTooLarge, match="over the limit of 1,000"):
        open_upload(data, max_pixels=10_000, max_decoded_bytes=1000)
