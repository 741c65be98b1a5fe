"""Reading, writing and converting images as OpenCV arrays.

An *image* here is what ``cv2.imread(path, cv2.IMREAD_UNCHANGED)`` returns: gray ``(H, W)`` (or
``(H, W, 1)``), BGR ``(H, W, 3)`` or BGRA ``(H, W, 4)``, ``uint8`` or ``uint16``.

:func:`read_image` adds what ``cv2.imread`` lacks for a production pipeline: one clear
:class:`~ugtsr.errors.UnsupportedInputError` naming the file for every bad input (missing, a folder,
unreadable, empty, not an image, an unsupported format, truncated, corrupt, over the pixel limit,
float or other pixel types), the pixel limit checked from the header *before* decoding
(decompression bombs), and EXIF orientation applied (``IMREAD_UNCHANGED`` ignores it for JPEG, PNG
and WebP; OpenCV applies it itself for TIFF). Thread-safe, with no process-wide stderr redirect
(issue 10 section 5): each file's container is validated first (:func:`runtime._formats.inspect`), so
libpng/libtiff/OpenCV get only data they decode without complaint, and JPEG is decoded with
libjpeg-turbo through simplejpeg, which raises on a truncated scan instead of printing a warning.
Data a decoder drops (GIF frames, TIFF pages, extra channels) gets one logged warning.

:func:`write_image` is atomic: it encodes in memory, writes a temporary file in the target folder and
``os.replace``-s it, so a failure never leaves a partial file.

No Pillow: the header and structure parsers live in :mod:`runtime._formats`.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ugtsr.errors import UGTSRError, UnsupportedInputError, require

from . import _formats
from . import files as _files
from .files import IMAGE_EXTENSIONS, WRITE_FORMATS, display

__all__ = [
    "read_image",
    "decode_image",
    "write_image",
    "write_bytes_atomic",
    "ImageLayout",
    "image_to_float",
    "float_to_image",
    "DEFAULT_MAX_PIXELS",
    "MIN_IMAGE_SIDE",
    "WRITE_FORMATS",
    "IMAGE_EXTENSIONS",
]

logger = logging.getLogger(__name__)

#: default pixel limit of :func:`read_image`: 4096 x 4096. An x4 model turns it into 268 M output
#: pixels (about 3.2 GB as float32 RGB while stitching), so larger inputs need an explicit opt-in.
DEFAULT_MAX_PIXELS = 4096 * 4096
#: images with a side below this are refused: a 1-pixel row or column has no spatial context to
#: super-resolve (and cannot be reflect-padded). Sides from 2 up to the model's ``min_size`` are padded.
MIN_IMAGE_SIDE = 2


def _cv2():
    return require("cv2", extra="runtime", purpose="image I/O")


def _fail(path: Path, problem: str) -> UnsupportedInputError:
    return UnsupportedInputError(f"{display(path)}: {problem}")


def _load_bytes(path: Path) -> bytes:
    if not path.exists():
        raise _fail(path, "no such file")
    if path.is_dir():
        raise _fail(path, "is a folder, not an image file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _fail(path, f"cannot read ({exc.strerror or exc})") from None
    if not data:
        raise _fail(path, "empty file (0 bytes)")
    return data


def read_image(path: str | os.PathLike, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image file as ``cv2.imread(path, cv2.IMREAD_UNCHANGED)`` would, upright and validated.

    Returns gray ``(H, W)``, BGR ``(H, W, 3)`` or BGRA ``(H, W, 4)``, ``uint8`` or ``uint16``, with the
    EXIF orientation applied. Reads PNG, JPEG, WebP, TIFF, BMP, GIF (first frame) and PNM, judged by
    content, not extension. ``max_pixels`` (``None`` = no limit) bounds ``width * height``.

    Raises:
        UnsupportedInputError: one line naming the file and the problem.
    """
    path = Path(path)
    return decode_image(_load_bytes(path), source=path, max_pixels=max_pixels)


def decode_image(data: bytes, *, source: str | os.PathLike = "<bytes>",
                 max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """:func:`read_image` for an encoded image already in memory (e.g. the body of a request).

    ``source`` names the data in messages (a file name, a request id). Same checks, same result.

    Raises:
        UnsupportedInputError: one line naming ``source`` and the problem.
    """
    path = Path(source)
    if not isinstance(data, bytes):
        data = bytes(data)  # bytearray, memoryview, a numpy buffer
    if not data:
        raise _fail(path, "empty file (0 bytes)")
    fmt = _formats.sniff_format(data)
    if fmt is None:
        other = _formats.unsupported_format(data)
        if other:
            raise _fail(path, f"unsupported image format {other}; supported: {', '.join(_formats.SUPPORTED_FORMATS)}")
        raise _fail(path, "not an image file (unrecognised content)")
    size = _formats.header_size(fmt, data)
    if size is not None:
        _check_pixels(path, size[0], size[1], max_pixels)
    if fmt == "JPEG":
        problem = _formats.completeness_problem(fmt, data)
        if problem:
            raise _fail(path, f"JPEG file is {problem}")
        img = _decode_jpeg(path, data)
    else:
        found = _formats.inspect(fmt, data)
        if found.problem:
            raise _fail(path, f"{fmt} file is {found.problem}" if found.problem.startswith(("truncated", "corrupt"))
                        else found.problem)
        for warning in found.warnings:
            logger.warning("%s: %s", display(path), warning)
        img = _decode_cv2(path, fmt, found.data)
    _check_pixels(path, img.shape[1], img.shape[0], max_pixels)
    _check_array(img, where=display(path))
    orientation = _formats.exif_orientation(fmt, data)
    if orientation != 1:
        img = _formats.apply_orientation(img, orientation)
    return img


def _cv_error_text(exc: BaseException) -> str:
    """The reason in an OpenCV exception, without its source path and function: ``error: (-2:...) WHY``."""
    text = " ".join(str(exc).split())
    if ") " in text and "error: (" in text:
        text = text.split("error: (", 1)[1].split(") ", 1)[-1]
    return text.split(" in function ")[0].strip()[:200]


def _decode_cv2(path: Path, fmt: str, data: bytes) -> np.ndarray:
    cv2 = _cv2()
    try:
        img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:  # e.g. OpenCV's own pixel limit
        raise _fail(path, f"cannot decode the {fmt} data ({_cv_error_text(exc)})") from None
    if img is None:
        raise _fail(path, f"cannot decode the {fmt} data: corrupt or unsupported variant")
    return img


def _decode_jpeg(path: Path, data: bytes) -> np.ndarray:
    """JPEG through libjpeg-turbo (simplejpeg): per call, strict about truncation, silent on stderr.

    libjpeg reports a truncated scan only as a warning printed to stderr, and OpenCV returns the image
    with the missing part in grey; simplejpeg raises it instead (``strict=True``), so each thread gets its
    own file's message. Other recoverable damage decodes with a logged warning. Pixels equal
    ``cv2.imdecode(..., IMREAD_UNCHANGED)`` (the same libjpeg-turbo defaults; CMYK converted as OpenCV does).
    """
    sj = require("simplejpeg", extra="runtime", purpose="JPEG decoding")
    try:
        _h, _w, colorspace, _sub = sj.decode_jpeg_header(data)
    except ValueError as exc:
        raise _fail(path, f"JPEG file is corrupt ({display(exc)})") from None
    target = {"Gray": "GRAY", "CMYK": "CMYK", "YCCK": "CMYK"}.get(colorspace, "BGR")
    try:
        img = sj.decode_jpeg(data, colorspace=target, strict=True)
    except ValueError as exc:
        reason = display(str(exc).strip())
        if "premature end" in reason.lower():
            raise _fail(path, f"JPEG file is truncated ({reason})") from None
        try:
            img = sj.decode_jpeg(data, colorspace=target, strict=False)
        except ValueError:
            raise _fail(path, f"cannot decode the JPEG data: corrupt or unsupported variant ({reason})") from None
        logger.warning("%s: decoder warning: %s", display(path), reason)
    if target == "GRAY":
        return img.reshape(img.shape[:2])
    if target == "CMYK":  # OpenCV's icvCvt_CMYK2BGR_8u_C4C3 (Adobe's inverted CMYK)
        raw = img.astype(np.int32)
        k = raw[:, :, 3:4]
        return (k - (((255 - raw[:, :, [2, 1, 0]]) * k) >> 8)).astype(np.uint8)
    return img


def _check_pixels(path: Path, width: int, height: int, max_pixels: int | None) -> None:
    if width < 1 or height < 1:
        raise _fail(path, f"invalid image size {width}x{height}")
    if max_pixels is not None and width * height > max_pixels:
        raise _fail(path, f"image is {width}x{height} = {width * height:,} pixels, over the limit of "
                          f"{max_pixels:,} (max_pixels)")


def _check_array(img: np.ndarray, *, where: str) -> None:
    """Raise unless ``img`` is an image array this runtime handles."""
    if not isinstance(img, np.ndarray):
        raise UnsupportedInputError(f"{where}: expected a numpy array, got {type(img).__name__}")
    if img.dtype not in (np.uint8, np.uint16):
        raise UnsupportedInputError(
            f"{where}: unsupported pixel type {img.dtype} (only 8-bit and 16-bit unsigned integer images "
            f"are supported)")
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (1, 3, 4)):
        raise UnsupportedInputError(
            f"{where}: unsupported image shape {img.shape} (expected (H, W), (H, W, 1), (H, W, 3) or (H, W, 4))")
    h, w = img.shape[:2]
    if min(h, w) < MIN_IMAGE_SIDE:
        raise UnsupportedInputError(
            f"{where}: image is {w}x{h} pixels; both sides must be at least {MIN_IMAGE_SIDE} to upscale")


# ---- conversion to and from model space ------------------------------------------------------------
@dataclass(frozen=True)
class ImageLayout:
    """How an input image was laid out, so the output can be given the same layout and dtype."""

    channels: int  # 1 (gray), 3 (BGR) or 4 (BGRA)
    keepdim: bool  # gray given as (H, W, 1) rather than (H, W)
    dtype: np.dtype

    @property
    def max_value(self) -> float:
        return 65535.0 if self.dtype == np.uint16 else 255.0

    @property
    def has_alpha(self) -> bool:
        return self.channels == 4


def image_to_float(img: np.ndarray, *, where: str = "image") -> tuple[np.ndarray, np.ndarray | None, ImageLayout]:
    """Split an OpenCV image into model-space RGB and alpha.

    Returns ``(rgb, alpha, layout)``: ``rgb`` ``(H, W, 3)`` float32 RGB in [0, 1] (gray replicated to
    three channels, ``uint16`` divided by 65535), ``alpha`` ``(H, W)`` float32 in [0, 1] or ``None``.
    """
    _check_array(img, where=where)
    channels = 1 if img.ndim == 2 else img.shape[2]
    layout = ImageLayout(channels=channels, keepdim=img.ndim == 3, dtype=img.dtype)
    scale = np.float32(1.0 / layout.max_value)
    alpha = None
    if channels == 1:
        gray = img.reshape(img.shape[:2]).astype(np.float32) * scale
        rgb = np.repeat(gray[:, :, None], 3, axis=2)
    else:
        rgb = img[:, :, 2::-1].astype(np.float32) * scale  # BGR(A) -> RGB
        if channels == 4:
            alpha = img[:, :, 3].astype(np.float32) * scale
    return np.ascontiguousarray(rgb), alpha, layout


#: rows per band in :func:`float_to_image`: the float temporaries of the conversion stay a few MiB
#: instead of several copies of the whole output (issue 13: 0.6 KiB per input pixel of an x4 model)
_BAND_ROWS = 64


def float_to_image(rgb: np.ndarray, alpha: np.ndarray | None, layout: ImageLayout) -> np.ndarray:
    """Inverse of :func:`image_to_float`: clamp to [0, 1], round and lay out like the input.

    ``rgb`` is ``(H, W, 3)`` float RGB (any strides: a transposed view of the model's ``(3, H, W)``
    output is fine); gray outputs take the luma ``0.299 R + 0.587 G + 0.114 B``
    (``cv2.COLOR_RGB2GRAY``); ``alpha`` ``(H, W)`` is required when the layout has alpha. Converts
    in bands of rows into the result, so the float temporaries stay small.
    """
    if layout.channels == 4 and alpha is None:
        raise UGTSRError("internal error: the alpha channel is missing for a BGRA output")
    h, w = rgb.shape[:2]
    shape = (h, w) if layout.channels == 1 and not layout.keepdim else (h, w, layout.channels)
    out = np.empty(shape, dtype=layout.dtype)

    def quantize(x: np.ndarray) -> np.ndarray:
        x = np.clip(x, 0.0, 1.0)
        np.multiply(x, layout.max_value, out=x)
        return np.rint(x, out=x)

    for r0 in range(0, h, _BAND_ROWS):
        rows = slice(r0, min(h, r0 + _BAND_ROWS))
        band = rgb[rows]
        if layout.channels == 1:
            gray = quantize(band[:, :, 0] * 0.299 + band[:, :, 1] * 0.587 + band[:, :, 2] * 0.114)
            out[rows] = gray[:, :, None] if layout.keepdim else gray
        elif layout.channels == 4:
            out[rows, :, :3] = quantize(band[:, :, ::-1])
            out[rows, :, 3] = quantize(alpha[rows])
        else:
            out[rows] = quantize(band[:, :, ::-1])
    return out


# ---- writing ----------------------------------------------------------------------------------------
def write_image(path: str | os.PathLike, img: np.ndarray, *, quality: int = 95, png_compression: int = 3) -> Path:
    """Write ``img`` (an OpenCV image array) atomically; the format follows the extension.

    PNG and TIFF take ``uint8``/``uint16`` with or without alpha; JPEG takes ``uint8`` gray/BGR only;
    WebP takes ``uint8`` with or without alpha. ``quality`` (1-100) applies to JPEG and WebP.
    The parent folder is created. Returns the path written.

    Raises:
        UnsupportedInputError: unknown extension, or an image the format cannot hold.
        UGTSRError: the folder cannot be created or the file cannot be written (names the path).
    """
    cv2 = _cv2()
    path = Path(path)
    ext = path.suffix.lower()
    fmt = WRITE_FORMATS.get(ext)
    if fmt is None:
        raise UnsupportedInputError(f"{path}: cannot write '{ext or path.name}' files; use one of "
                                    f"{', '.join(sorted(WRITE_FORMATS))}")
    _check_array(img, where=str(path))
    channels = 1 if img.ndim == 2 else img.shape[2]
    if fmt in ("JPEG", "WebP") and img.dtype != np.uint8:
        raise UnsupportedInputError(f"{path}: {fmt} cannot store {img.dtype} images; use .png or .tif")
    if fmt == "JPEG" and channels == 4:
        raise UnsupportedInputError(f"{path}: JPEG cannot store an alpha channel; use .png, .webp or .tif")
    if not 1 <= quality <= 100:
        raise UnsupportedInputError(f"quality must be in [1, 100], got {quality}")
    params: list[int] = []
    if fmt == "JPEG":
        params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    elif fmt == "WebP":
        params = [cv2.IMWRITE_WEBP_QUALITY, int(quality)]
    elif fmt == "PNG":
        params = [cv2.IMWRITE_PNG_COMPRESSION, int(png_compression)]
    ok, encoded = cv2.imencode(ext, img, params)
    if not ok:
        raise UGTSRError(f"{path}: OpenCV could not encode the image as {fmt}")
    write_bytes_atomic(path, encoded.tobytes())
    return path


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`runtime.files.write_bytes_atomic`)."""
    _files.write_bytes_atomic(path, data)
