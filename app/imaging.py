"""Uploaded digit images -> 28 x 28 MNIST-style arrays, made the way MNIST itself was made.

``decode_image`` identifies the format from the bytes and refuses oversized images before any
pixel is decoded; ``to_mnist`` finds the ink, removes the paper, crops, scales the digit into a
20 x 20 box and centres its mass in a 28 x 28 field, or passes a digit already in that form
through as it is.
"""

import contextlib
import io
import math
import warnings
from collections.abc import Iterator

import numpy as np
import torch
from PIL import Image, ImageOps

from app import ink
from app.errors import NoDigitFound, PayloadTooLarge, UndecodableImage, UnsupportedMediaType

SUPPORTED_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF")

_ACCEPTED = "PNG, JPEG, GIF, BMP, WebP or TIFF"
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"II+\x00", "TIFF"),
    (b"MM\x00+", "TIFF"),
)
_NON_IMAGES: tuple[tuple[bytes, str], ...] = (
    (b"%PDF", "a PDF document"),
    (b"<svg", "an SVG drawing"),
    (b"<?xml", "an XML document"),
    (b"<!doctype html", "an HTML page"),
    (b"<html", "an HTML page"),
    (b"PK\x03\x04", "a ZIP archive"),
)
_DRAFT_SIDE = 800
_LOCATE_SIDE = 256
_REFINE_SIDE = 80
_HIGH_DEPTH = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


def _sniff(data: bytes) -> str | None:
    """The supported Pillow format whose signature the data starts with, if any."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    for magic, name in _SIGNATURES:
        if data.startswith(magic):
            return name
    return None


def _pillow_name(prefix: bytes) -> str | None:
    """The name of another Pillow format that claims these first bytes, if any."""
    Image.init()
    for name, (_, accept) in Image.OPEN.items():
        try:
            if accept is not None and accept(prefix) is True:
                return name
        except Exception:  # a plugin's check that cannot handle this prefix
            continue
    return None


def _unsupported_kind(data: bytes) -> str | None:
    """Say what a non-image or unsupported image is, when its bytes make that clear."""
    head = data[:512].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    for magic, kind in _NON_IMAGES:
        if head.startswith(magic.lower()):
            return kind
    if data[4:8] == b"ftyp":
        return "a HEIF/AVIF/MP4 file"
    if name := _pillow_name(data[:16]):
        return f"an image in {name} format"
    try:
        text = data[:1024].decode("utf-8")
    except UnicodeDecodeError:
        return None
    return "text" if all(c.isprintable() or c.isspace() for c in text) else None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    """Canvas size from a WebP header (its decoder allocates the canvas while opening)."""
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:
        w, h = (int.from_bytes(data[i : i + 3], "little") + 1 for i in (24, 27))
        return w, h
    if chunk == b"VP8L" and len(data) >= 25:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 " and len(data) >= 30:
        w, h = (int.from_bytes(data[i : i + 2], "little") & 0x3FFF for i in (26, 28))
        return w, h
    return None


def _too_large(w: int, h: int, max_pixels: int) -> PayloadTooLarge:
    """The 413 for an image of w x h pixels."""
    return PayloadTooLarge(
        f"image is {w} x {h} = {w * h:,} pixels, over the limit of {max_pixels:,} pixels"
    )


def silence_decoder_warnings() -> None:
    """Ignore Pillow's warnings about odd but decodable files (truncated data, bad EXIF, palette
    transparency) for the rest of the process: an upload that decodes is used as it is and one
    that does not is a 400. Set once at startup; ``warnings.catch_warnings`` around each decode
    would cost time on every request and is not safe while several threads decode at once."""
    warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")


@contextlib.contextmanager
def _decoding(fmt: str) -> Iterator[None]:
    """Any failure of Pillow's decoders as a 400."""
    try:
        yield
    except Exception as exc:  # decoders fail in many ways on malformed data
        raise UndecodableImage(f"the data looks like {fmt} but cannot be decoded: {exc}") from exc


def open_image(data: bytes, *, max_pixels: int = 50_000_000) -> Image.Image:
    """Identify an upload by its bytes alone and read its header, decoding no pixel yet.

    The declared size is checked against ``max_pixels`` here; Pillow's own decompression-bomb
    limit is switched off in favour of this check. Raises 400, 413 or 415.
    """
    if not data:
        raise UndecodableImage("the upload is empty: no image bytes were received")
    fmt = _sniff(data)
    if fmt is None:
        kind = _unsupported_kind(data)
        if kind is None:
            raise UndecodableImage(f"the data is not a recognisable image; send {_ACCEPTED}")
        raise UnsupportedMediaType(f"the upload is {kind}; send a {_ACCEPTED} image")
    if fmt == "WEBP" and (size := _webp_size(data)) and size[0] * size[1] > max_pixels:
        raise _too_large(*size, max_pixels)
    Image.MAX_IMAGE_PIXELS = None
    with _decoding(fmt):
        image = Image.open(io.BytesIO(data), formats=[fmt])
    if image.width * image.height > max_pixels:
        raise _too_large(image.width, image.height, max_pixels)
    return image


def load_image(image: Image.Image) -> Image.Image:
    """Decode an opened image's first frame (JPEGs at a reduced scale when large), upright."""
    with _decoding(str(image.format)):
        scale = _DRAFT_SIDE / max(image.size)
        if image.format in ("JPEG", "MPO") and scale < 1:
            size = (math.ceil(image.width * scale), math.ceil(image.height * scale))
            image.draft(image.mode, size)
        image.load()
        ImageOps.exif_transpose(image, in_place=True)  # no copy when it is already upright
        return image


def decode_image(data: bytes, *, max_pixels: int = 50_000_000) -> Image.Image:
    """Decode an upload to its first frame, upright, its format told by its bytes alone; the
    declared size is checked before any pixel is decoded (``open_image`` + ``load_image``)."""
    return load_image(open_image(data, max_pixels=max_pixels))


def _high_depth(image: Image.Image) -> Image.Image:
    """16-bit, 32-bit integer and float pixels as a float image on a 0..255 scale.

    Non-negative values are read against the smallest nominal range that holds them (1 for
    floats, 255, 65535); anything else is stretched from its minimum to its maximum.
    """
    a = np.asarray(image, dtype=np.float64)
    lo, hi = float(a.min()), float(a.max())
    ranges = (1.0, 255.0, 65535.0) if image.mode == "F" else (255.0, 65535.0)
    top = next((r for r in ranges if lo >= 0 and hi <= r), None)
    if top is None:
        a, top = a - lo, max(hi - lo, 1e-12)
    return Image.fromarray((a * (255 / top)).astype(np.float32))


def _flatten_alpha(la: Image.Image) -> Image.Image:
    """Composite a greyscale+alpha image onto a backdrop that contrasts with its strokes."""
    k = max(1, max(la.size) // _LOCATE_SIDE)
    stats = np.asarray(la.reduce(k) if k > 1 else la)  # h x w x 2
    alpha = stats[..., 1]
    lum, mask = la.split()
    if alpha.min() == 255:
        return lum
    opaque = alpha >= 128
    level = float(np.median(stats[..., 0][opaque])) if opaque.any() else 255.0
    backdrop = round(level) if opaque.mean() > 0.5 else (255 if level < 128 else 0)
    canvas = Image.new("L", la.size, backdrop)
    canvas.paste(lum, mask=mask)
    return canvas


def _greyscale(image: Image.Image) -> Image.Image:
    """Any Pillow mode as greyscale on a 0..255 scale ("L", or "F" for deep pixels), with
    transparency flattened. A greyscale image comes back as it is (nothing writes to it)."""
    if image.mode == "L":
        return image
    if image.mode in _HIGH_DEPTH:
        return _high_depth(image)
    if image.mode in ("LA", "La"):
        return _flatten_alpha(image.convert("LA"))
    alpha = "A" in image.getbands() or "a" in image.getbands()
    if alpha or (image.mode == "P" and "transparency" in image.info):
        return _flatten_alpha(image.convert("RGBA").convert("LA"))
    if image.mode == "LAB":
        return image.getchannel("L")
    if image.mode in ("L", "1", "P", "RGB", "CMYK"):
        return image.convert("L")
    return image.convert("RGB").convert("L")


def _ink_bright(grey: Image.Image, dark: bool) -> np.ndarray:
    """Pixels of a greyscale image (0..255) as floats in [0, 1], ink bright."""
    g = np.asarray(grey, dtype=np.float32) / 255
    return 1 - g if dark else g


def _refine(
    grey: Image.Image,
    small: Image.Image,
    bg: ink.Plane,
    box: ink.Box,
    dark: bool,
) -> np.ndarray:
    """The digit's ink, cropped, at a resolution fit for scaling it, from the full-size image."""
    sy, sx = grey.height / small.height, grey.width / small.width
    top, bottom, left, right = box
    y0, y1 = max(0, top - 2), min(small.height, bottom + 2)
    x0, x1 = max(0, left - 2), min(small.width, right + 2)
    crop = grey.crop((round(x0 * sx), round(y0 * sy), round(x1 * sx), round(y1 * sy)))
    k = max(1, max(crop.size) // _REFINE_SIDE)
    if k > 1:
        crop = crop.reduce(k)
    ys = y0 + (np.arange(crop.height) + 0.5) * (y1 - y0) / crop.height - 0.5
    xs = x0 + (np.arange(crop.width) + 0.5) * (x1 - x0) / crop.width - 0.5
    backdrop = bg[0] + bg[1] * ys[:, None] + bg[2] * xs[None, :]  # h x w
    a = ink.stretch(_ink_bright(crop, dark) - backdrop.astype(np.float32), whole=False)
    top, bottom, left, right = ink.ink_box(a)
    return a[top:bottom, left:right]


def _digit(
    grey: Image.Image, small: Image.Image, x: np.ndarray, bg: np.ndarray, flat: bool, dark: bool
) -> np.ndarray:
    """Locate the digit on the small image over background ``bg``, then refine it at full size."""
    box = ink.ink_box(ink.stretch(x - bg, whole=True))
    plane = (float(bg[0, 0]), 0.0, 0.0) if flat else ink.plane(x, box)
    return ink.centre(ink.fit(_refine(grey, small, plane, box, dark)))


def to_mnist(image: Image.Image) -> np.ndarray:
    """A float32 28 x 28 array in [0, 1], ink bright on dark, digit boxed and centred as MNIST.

    A 28 x 28 greyscale image already in MNIST's form (``ink.mnist_form``) is returned as it is.
    Raises NoDigitFound when the image holds no strokes (blank, flat colour or only noise).
    """
    if image.width == 0 or image.height == 0:
        raise NoDigitFound("no digit found: the image has no pixels")
    grey = _greyscale(image)
    if grey.size == (ink.FIELD, ink.FIELD) and grey.mode == "L":
        pixels = np.asarray(grey)
        if ink.mnist_form(pixels):  # already what the steps below would make of it
            return pixels.astype(np.float32) / 255
    k = max(1, math.ceil(max(grey.size) / _LOCATE_SIDE))
    small = grey.reduce(k) if k > 1 else grey
    g = np.asarray(small, dtype=np.float32) / 255
    dark = ink.dark_ink(g)
    x = 1 - g if dark else g
    level, flat = ink.flat_background(x)

    def attempt(flat: bool) -> np.ndarray:
        bg = np.full_like(x, level) if flat else ink.local_background(x)
        return _digit(grey, small, x, bg, flat, dark)

    try:
        return attempt(flat)  # the likelier reading of the background first
    except NoDigitFound as exc:
        try:
            return attempt(not flat)
        except NoDigitFound:
            raise exc from None


def to_png(array: np.ndarray) -> bytes:
    """An array in [0, 1] as an 8-bit greyscale PNG."""
    pixels = np.clip(np.asarray(array, dtype=np.float32) * 255 + 0.5, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels, "L").save(buf, format="PNG")
    return buf.getvalue()


def normalize(array: np.ndarray, mean: float, std: float) -> torch.Tensor:
    """A 28 x 28 array, or a stack of them, in [0, 1] as an N x 1 x 28 x 28 float tensor,
    standardised."""
    x = torch.as_tensor(np.asarray(array, dtype=np.float32))
    if x.shape[-2:] != (ink.FIELD, ink.FIELD) or x.ndim not in (2, 3):
        raise ValueError(f"expected {ink.FIELD} x {ink.FIELD} arrays, got {tuple(x.shape)}")
    return ((x - mean) / std).reshape(-1, 1, ink.FIELD, ink.FIELD)
