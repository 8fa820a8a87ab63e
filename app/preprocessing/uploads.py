"""Uploaded image bytes -> a greyscale uint8 array, decoded by OpenCV, checked before decoding.

``open_upload`` tells the format from the bytes alone and reads the header with Pillow (no pixel
is decoded), so oversized images are refused with their size in the message; ``decode`` has
OpenCV decode the pixels (large JPEGs at a reduced scale, EXIF rotation applied); ``to_grey``
turns any depth, colour or transparency into 8-bit grey.
"""

import io
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, TiffImagePlugin

from app.errors import InvalidInput, PayloadTooLarge, UndecodableImage, UnsupportedMediaType

ACCEPTED = "PNG, JPEG, GIF, BMP, WebP or TIFF"
SIGNATURES: tuple[tuple[bytes, str], ...] = (
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
NON_IMAGES: tuple[tuple[bytes, str], ...] = (
    (b"%PDF", "a PDF document"),
    (b"<svg", "an SVG drawing"),
    (b"<?xml", "an XML document"),
    (b"<!doctype html", "an HTML page"),
    (b"<html", "an HTML page"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"\x1f\x8b", "a gzip archive"),
)
WORK_SIDE = 128
"""Longest side the steps after decoding work at, for scans and drawings, where the digit fills
most of the frame: larger images are reduced by a whole factor (``working_size``) to between 65
and 128 px, three to six times the 20 px the digit ends at, enough for the strokes' widths and
the anti-aliasing (a 175 px scan is halved, a 280 px canvas divided by three)."""
PHOTO_SIDE = 320
"""The same for photos (over PHOTO_OVER px), where the digit may fill only a tenth of the frame:
it still spans 32 px here. Large JPEGs are reduced while decoding (libjpeg's DCT scaling)."""
PHOTO_OVER = 1024
BYTES_PER_SAMPLE = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I": 4, "F": 4}
"""Decoded bytes per channel value by Pillow mode; modes not listed hold 8-bit samples (Pillow
shows 16-bit colour as 8-bit modes: ``sample_bytes`` reads the file's own depth instead)."""
DECODE_COPIES = 2
"""OpenCV decodes into a buffer of its own and hands Python a copy: decoding holds two frames
(measured for PNG, TIFF, BMP and JPEG). A WebP is decoded to full colour first."""
WEBP_BYTES_PER_PIXEL = 4


@dataclass(frozen=True)
class Upload:
    """An identified upload whose header has been read: format, size, Pillow mode, alpha."""

    data: bytes
    format: str
    width: int
    height: int
    mode: str
    bands: int
    transparent: bool
    sample_bytes: int = 1
    """Bytes per channel value as decoded (2 for 16-bit samples, 4 for 32-bit or float)."""

    @property
    def kept(self) -> bool:
        """Whether its samples are decoded as they are (alpha or deep samples), not as grey."""
        return self.transparent or self.mode not in ("1", "L", "P", "RGB", "YCbCr", "CMYK")

    @property
    def decoded_bytes(self) -> int:
        """The most memory decoding and converting it takes, known from the header alone.

        That is twice the frame OpenCV decodes (``DECODE_COPIES``): a JPEG as grey at its
        reduced scale; alpha or deep samples as they are (every channel at its own depth);
        anything else as 8-bit grey, a WebP after a full-colour frame. What follows works on the
        frame reduced to ``PHOTO_SIDE`` at most before any conversion, so it adds no full-size
        copy (and no float64 one at any size).
        """
        if self.format == "JPEG":
            factor = _jpeg_factor(self)
            frame = -(-self.width // factor) * -(-self.height // factor)
            return DECODE_COPIES * frame
        pixels = self.width * self.height
        if self.kept:
            return DECODE_COPIES * pixels * max(self.bands, 1) * self.sample_bytes
        if self.format == "WEBP":
            return pixels * (WEBP_BYTES_PER_PIXEL + DECODE_COPIES)
        return DECODE_COPIES * pixels


def sniff(data: bytes) -> str | None:
    """The supported format whose signature the data starts with, if any."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    for magic, name in SIGNATURES:
        if data.startswith(magic):
            return name
    return None


def describe_unsupported(data: bytes) -> str | None:
    """What a non-image upload is, when its first bytes make that clear."""
    head = data[:512].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    for magic, kind in NON_IMAGES:
        if head.startswith(magic.lower()):
            return kind
    if data[4:8] == b"ftyp":
        return "a HEIF/AVIF/MP4 file"
    if name := _pillow_format(data[:16]):
        return f"an image in {name} format"
    try:
        text = data[:1024].decode("utf-8")
    except UnicodeDecodeError:
        return None
    return "text" if all(c.isprintable() or c.isspace() for c in text) else None


def _pillow_format(prefix: bytes) -> str | None:
    """The name of another image format Pillow knows by these first bytes, if any."""
    Image.init()
    for name, (_, accept) in Image.OPEN.items():
        try:
            if accept is not None and accept(prefix) is True:
                return name
        except Exception:  # a plugin's check that cannot handle this prefix
            continue
    return None


def sample_bytes(image: Image.Image, fmt: str, data: bytes) -> int:
    """Bytes per decoded channel value, from the file's header where Pillow's mode hides it."""
    depth = BYTES_PER_SAMPLE.get(image.mode, 1)
    if fmt == "PNG" and len(data) > 24:
        depth = max(depth, data[24] // 8)  # IHDR bit depth: 1, 2, 4, 8 or 16
    elif fmt == "TIFF" and isinstance(image, TiffImagePlugin.TiffImageFile):
        bits = image.tag_v2.get(258, (8,))  # BitsPerSample, per channel
        depth = max(depth, max(bits if isinstance(bits, tuple) else (bits,)) // 8)
    return max(depth, 1)


def guard_decompression(max_pixels: int) -> None:
    """Set Pillow's decompression-bomb guard, once for the process, to the service's pixel
    limit: Pillow warns above it and refuses twice it. ``open_upload`` checks the same limit
    itself, with a clearer message, before any pixel is decoded."""
    Image.MAX_IMAGE_PIXELS = max_pixels


def open_upload(data: bytes, *, max_pixels: int, max_decoded_bytes: int) -> Upload:
    """Identify an upload and read its header (400, 413, 415); no pixel is decoded."""
    if not data:
        raise UndecodableImage("the upload is empty: no image bytes were received")
    fmt = sniff(data)
    if fmt is None:
        kind = describe_unsupported(data)
        if kind is None:
            raise UndecodableImage(f"the data is not a recognisable image; send {ACCEPTED}")
        raise UnsupportedMediaType(f"the upload is {kind}; send a {ACCEPTED} image")
    try:
        with Image.open(io.BytesIO(data), formats=[fmt]) as image:
            info = image.info
            upload = Upload(
                data=data,
                format=fmt,
                width=image.width,
                height=image.height,
                mode=image.mode,
                bands=len(image.getbands()),
                transparent="transparency" in info or "A" in image.getbands(),
                sample_bytes=sample_bytes(image, fmt, data),
            )
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # Pillow's own guard (``guard_decompression``), met before the check below
        raise PayloadTooLarge(
            f"image is over the limit of {max_pixels:,} pixels (Pillow's decompression-bomb "
            "guard refused it from its header)"
        ) from None
    except Exception as exc:  # Pillow's header parsers fail in many ways on malformed data
        raise UndecodableImage(f"the data looks like {fmt} but cannot be read: {exc}") from None
    pixels = upload.width * upload.height
    if pixels == 0:
        raise UndecodableImage("the image has no pixels")
    if pixels > max_pixels:
        raise PayloadTooLarge(
            f"image is {upload.width} x {upload.height} = {pixels:,} pixels, over the limit "
            f"of {max_pixels:,} pixels"
        )
    if upload.decoded_bytes > max_decoded_bytes:
        raise PayloadTooLarge(
            f"image is {upload.width} x {upload.height} in mode {upload.mode} "
            f"({upload.sample_bytes * 8}-bit samples): decoding it takes "
            f"{upload.decoded_bytes:,} bytes, over the limit of {max_decoded_bytes:,}"
        )
    return upload


_REDUCED = {
    8: cv2.IMREAD_REDUCED_GRAYSCALE_8,
    4: cv2.IMREAD_REDUCED_GRAYSCALE_4,
    2: cv2.IMREAD_REDUCED_GRAYSCALE_2,
}


def _jpeg_factor(upload: Upload) -> int:
    """Decode a large JPEG at 1/2, 1/4 or 1/8 scale (libjpeg scales in its DCT, far cheaper
    than decoding in full), the largest reduction that keeps the longer side >= PHOTO_SIDE."""
    side = max(upload.width, upload.height)
    return next((factor for factor in _REDUCED if side // factor >= PHOTO_SIDE), 1)


def _jpeg_flag(upload: Upload) -> int:
    return _REDUCED.get(_jpeg_factor(upload), cv2.IMREAD_GRAYSCALE)


_ORIENT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: a.swapaxes(0, 1)[:, ::-1],
    7: lambda a: a.swapaxes(0, 1)[::-1, ::-1],
    8: lambda a: a.swapaxes(0, 1)[::-1],
}
"""EXIF orientation -> the view that turns the stored pixels upright (EXIF 2.32, tag 0x0112)."""


def decode(upload: Upload) -> np.ndarray:
    """The first frame's pixels, upright: H x W (grey) or H x W x C (BGR[A]), at the image's
    own depth (uint8, uint16 or float32). 400 when the decoder fails."""
    buffer = np.frombuffer(upload.data, dtype=np.uint8)
    if upload.format == "JPEG":
        flag = _jpeg_flag(upload)
    elif upload.kept:
        flag = cv2.IMREAD_UNCHANGED  # alpha and deep samples as they are; no EXIF applied
    else:
        flag = cv2.IMREAD_GRAYSCALE
    try:
        pixels = cv2.imdecode(buffer, flag)
    except cv2.error as exc:
        raise UndecodableImage(f"the {upload.format} data cannot be decoded: {exc}") from None
    if pixels is None or pixels.size == 0:
        raise UndecodableImage(f"the {upload.format} data cannot be decoded (truncated?)")
    if flag == cv2.IMREAD_UNCHANGED and (turn := _ORIENT.get(_orientation(upload))):
        pixels = np.ascontiguousarray(turn(pixels))
    return pixels


EXIF_MARKERS = {"PNG": b"eXIf", "WEBP": b"EXIF", "TIFF": b""}
"""How EXIF shows in each format that can carry it beside transparency or deep samples (a PNG's
eXIf chunk may follow its pixels, so Pillow reads the whole file to find it)."""


def _orientation(upload: Upload) -> int:
    """The EXIF orientation tag, 1 (upright) when there is none or it cannot be read."""
    marker = EXIF_MARKERS.get(upload.format)
    if marker is None or marker not in upload.data:
        return 1
    try:
        with Image.open(io.BytesIO(upload.data), formats=[upload.format]) as image:
            return int(image.getexif().get(0x0112, 1))
    except Exception:  # EXIF is optional; a file whose EXIF is broken is read as stored
        return 1


def _flatten_alpha(grey: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Composite grey+alpha onto a backdrop that contrasts with the strokes: where most of the
    image is opaque, transparent holes take the paper's level; a drawing on a transparent
    canvas goes onto white if its strokes are dark, black if they are light."""
    opaque = cv2.threshold(alpha, 127, 255, cv2.THRESH_BINARY)[1]
    share = cv2.countNonZero(opaque) / opaque.size
    if share == 1.0:
        return grey
    if share > 0:
        hist = cv2.calcHist([grey], [0], opaque, [256], [0, 256]).ravel()
        level = float(np.searchsorted(np.cumsum(hist), hist.sum() / 2))
    else:
        level = 255.0
    backdrop = round(level) if share > 0.5 else (255 if level < 128 else 0)
    # backdrop + (grey - backdrop) x alpha / 255, in integers
    diff = grey.astype(np.int16) - backdrop
    blended = backdrop + diff * alpha.astype(np.int16) // 255
    return blended.astype(np.uint8)


def to_grey(pixels: np.ndarray) -> np.ndarray:
    """Any decoded frame as an 8-bit greyscale H x W array, transparency flattened.

    16-bit samples are scaled down (by their own maximum if they use less than 8 bits' worth);
    float samples in 0..1 are read as such, others stretched from their minimum to their
    maximum; NaN or infinite samples are a 422.
    """
    if pixels.dtype != np.uint8:
        pixels = _to_uint8(pixels)
    if pixels.ndim == 2:
        return pixels
    channels = pixels.shape[2]
    if channels == 1:
        return pixels[:, :, 0]
    if channels == 2:
        return _flatten_alpha(pixels[:, :, 0], pixels[:, :, 1])
    if channels == 3:
        return cv2.cvtColor(pixels, cv2.COLOR_BGR2GRAY)
    grey = cv2.cvtColor(pixels[:, :, :4], cv2.COLOR_BGRA2GRAY)
    return _flatten_alpha(grey, pixels[:, :, 3])


def _to_uint8(pixels: np.ndarray) -> np.ndarray:
    """Deep samples as 8-bit, one channel at a time and without float64 copies."""
    if pixels.dtype == np.uint16:
        top = 65535 if int(pixels.max()) > 255 else 255
        return cv2.convertScaleAbs(pixels, alpha=255 / top)
    values = pixels.astype(np.float32, copy=False)
    if not np.isfinite(values).all():
        raise InvalidInput("the image has NaN or infinite pixel values")
    lo, hi = float(values.min()), float(values.max())
    if lo >= 0 and hi <= 1:
        lo, hi = 0.0, 1.0
    scale = 255 / (hi - lo) if hi > lo else 0.0
    return cv2.convertScaleAbs(values, alpha=scale, beta=-lo * scale)


def working_size(grey: np.ndarray, limit: int = WORK_SIDE, *, whole: bool = True) -> np.ndarray:
    """The image reduced (area-averaged) so that its longer side is at most ``limit``; any
    depth or number of channels (a NaN or infinite sample stays in the average).

    ``whole``: by a whole factor k (each pixel the mean of a k x k block, the last rows and
    columns that make no whole block left out), so the side ends between ``limit / 2`` and
    ``limit``. OpenCV averages whole blocks 20-30 times quicker than fractional ones (175 ->
    87 px: 3 us; 175 -> 128 px: 78 us). Otherwise to ``limit`` exactly."""
    h, w = grey.shape[:2]
    side = max(h, w)
    if side <= limit:
        return grey
    if whole:
        k = -(-side // limit)
        h, w = max(1, h // k), max(1, w // k)
        grey = grey[: h * k, : w * k]
        size = (w, h)
    else:
        scale = limit / side
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(grey, size, interpolation=cv2.INTER_AREA)


REDUCIBLE = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))
"""Depths OpenCV area-averages (it refuses 32-bit integers, which go through as they are)."""


def grey_pixels(upload: Upload) -> np.ndarray:
    """An opened upload decoded to 8-bit grey at working size: ``decode``, ``to_grey``,
    ``working_size``. A frame of several channels or deep samples over ``PHOTO_OVER`` px is
    first reduced to ``PHOTO_SIDE`` as it is, so that no conversion copies it at full size."""
    side = max(upload.width, upload.height)
    limit = PHOTO_SIDE if side > PHOTO_OVER else WORK_SIDE
    pixels = decode(upload)
    if (
        side > PHOTO_OVER
        and pixels.dtype in REDUCIBLE
        and (pixels.ndim == 3 or pixels.dtype != np.uint8)
    ):
        pixels = working_size(pixels, PHOTO_SIDE, whole=False)
    return working_size(to_grey(pixels), limit, whole=limit == WORK_SIDE)
