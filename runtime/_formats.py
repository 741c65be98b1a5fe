"""Image file sniffing without decoding: format, header dimensions, completeness, EXIF orientation.

Small byte-level parsers (no Pillow needed) so that :func:`runtime.imageio.read_image` can
- name the format from the file signature (never trust the extension),
- refuse a decompression bomb from the header's width x height *before* allocating the pixels,
- refuse a truncated or corrupt PNG/JPEG/WebP/GIF/BMP up front (libpng/libjpeg would otherwise print
  their own messages and return ``None`` or a half-grey image),
- apply the EXIF orientation that ``cv2.IMREAD_UNCHANGED`` ignores for JPEG, PNG (``eXIf``) and WebP.
  (For TIFF, OpenCV's decoder applies the orientation tag itself, so it is not applied twice.)

Every function takes the whole file as ``bytes`` and never raises on malformed data: it returns
``None``/a problem string/orientation 1, and the decoder gets the final word.
"""
from __future__ import annotations

import re
import struct
import zlib

import numpy as np

__all__ = ["sniff_format", "unsupported_format", "header_size", "completeness_problem",
           "exif_orientation", "apply_orientation", "SUPPORTED_FORMATS"]

#: formats the runtime reads (all through OpenCV)
SUPPORTED_FORMATS = ("PNG", "JPEG", "WebP", "TIFF", "BMP", "GIF", "PNM")

_PNG_SIG = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers carry the image size (not DHT C4, JPG C8, DAC CC)
_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_ORIENTATION_TAG = 274


def sniff_format(data: bytes) -> str | None:
    """The format name (one of :data:`SUPPORTED_FORMATS`) from the file signature, or ``None``."""
    if data.startswith(_PNG_SIG):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if data[:2] == b"BM" and len(data) >= 26:
        return "BMP"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if re.match(rb"P[1-6]\s", data[:3]):
        return "PNM"
    return None


def unsupported_format(data: bytes) -> str | None:
    """A name for a recognised image format the runtime does not read (float or exotic), or ``None``."""
    if data[:4] == b"\x76\x2f\x31\x01":
        return "OpenEXR (floating-point)"
    if data.startswith((b"#?RADIANCE", b"#?RGBE")):
        return "Radiance HDR (floating-point)"
    if data[:4] == b"8BPS":
        return "Photoshop PSD"
    if len(data) >= 12 and data[4:8] == b"ftyp":
        brand = data[8:12].decode("ascii", "replace")
        if brand in ("heic", "heix", "hevc", "mif1", "msf1", "avif", "avis"):
            return f"HEIF/AVIF ('{brand}')"
    if data[:12] == b"\x00\x00\x00\x0cjP  \r\n\x87\n" or data[:4] == b"\xff\x4f\xff\x51":
        return "JPEG 2000"
    if data[:2] == b"\xff\x0a":
        return "JPEG XL"
    return None


# ---- PNG ------------------------------------------------------------------------------------------
def _png_chunks(data: bytes):
    """Yield ``(type, payload, crc_ok)``; stops at the end of the data (a last partial chunk yields None)."""
    pos = len(_PNG_SIG)
    while pos + 8 <= len(data):
        length, ctype = struct.unpack(">I4s", data[pos:pos + 8])
        end = pos + 8 + length + 4
        if end > len(data):
            yield ctype, None, False
            return
        payload = data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[end - 4:end])
        yield ctype, payload, zlib.crc32(ctype + payload) & 0xFFFFFFFF == crc
        if ctype == b"IEND":
            return
        pos = end


def _png_problem(data: bytes) -> str | None:
    seen_iend = False
    for ctype, payload, crc_ok in _png_chunks(data):
        name = ctype.decode("latin-1", "replace")
        if payload is None:
            return f"truncated (the {name} chunk is cut off)"
        if not crc_ok:
            return f"corrupt (CRC error in the {name} chunk)"
        if ctype == b"IEND":
            seen_iend = True
    return None if seen_iend else "truncated (no IEND chunk)"


# ---- JPEG -----------------------------------------------------------------------------------------
def _jpeg_segments(data: bytes):
    """Yield ``(marker, payload_start, payload_end)`` up to and including the first SOS."""
    pos = 2
    n = len(data)
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # standalone markers
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2:pos + 4])
        if length < 2:
            return
        yield marker, pos + 4, min(pos + 2 + length, n)
        if marker == 0xDA:
            return
        pos += 2 + length


def _jpeg_problem(data: bytes) -> str | None:
    sos_end = None
    for marker, _start, end in _jpeg_segments(data):
        if marker == 0xDA:
            sos_end = end
    if sos_end is None:
        return "truncated or corrupt (no image data found)"
    # entropy-coded data stuffs 0xFF as FF00, so FFD9 after the first SOS is the end-of-image marker
    # (an EXIF thumbnail's own FFD9 sits in APP1, before the SOS)
    if data.find(b"\xff\xd9", sos_end) < 0:
        return "truncated (no end-of-image marker)"
    return None


# ---- WebP -----------------------------------------------------------------------------------------
def _riff_chunks(data: bytes):
    pos = 12
    while pos + 8 <= len(data):
        fourcc = data[pos:pos + 4]
        (size,) = struct.unpack("<I", data[pos + 4:pos + 8])
        yield fourcc, data[pos + 8:pos + 8 + size]
        pos += 8 + size + (size & 1)


def _webp_size(data: bytes) -> tuple[int, int] | None:
    for fourcc, payload in _riff_chunks(data):
        if fourcc == b"VP8X" and len(payload) >= 10:
            w = int.from_bytes(payload[4:7], "little") + 1
            h = int.from_bytes(payload[7:10], "little") + 1
            return w, h
        if fourcc == b"VP8L" and len(payload) >= 5 and payload[0] == 0x2F:
            bits = int.from_bytes(payload[1:5], "little")
            return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        if fourcc == b"VP8 " and len(payload) >= 10 and payload[3:6] == b"\x9d\x01\x2a":
            w, h = struct.unpack("<HH", payload[6:10])
            return w & 0x3FFF, h & 0x3FFF
        return None
    return None


# ---- TIFF / EXIF ------------------------------------------------------------------------------------
def _tiff_ifd0(buf: bytes, wanted: set[int]) -> dict[int, int]:
    """Integer values of the ``wanted`` tags in IFD0 of a TIFF structure (also EXIF's payload)."""
    if len(buf) < 8 or buf[:2] not in (b"II", b"MM"):
        return {}
    order = "<" if buf[:2] == b"II" else ">"
    try:
        (magic, offset) = struct.unpack(order + "HI", buf[2:8])
        if magic != 42:
            return {}
        (count,) = struct.unpack(order + "H", buf[offset:offset + 2])
        found: dict[int, int] = {}
        for i in range(count):
            entry = buf[offset + 2 + 12 * i: offset + 14 + 12 * i]
            if len(entry) < 12:
                break
            tag, typ, _n = struct.unpack(order + "HHI", entry[:8])
            if tag in wanted:
                if typ == 3:  # SHORT, left-justified in the 4-byte value field
                    (found[tag],) = struct.unpack(order + "H", entry[8:10])
                elif typ == 4:  # LONG
                    (found[tag],) = struct.unpack(order + "I", entry[8:12])
        return found
    except struct.error:
        return {}


def _exif_payload(fmt: str, data: bytes) -> bytes | None:
    if fmt == "JPEG":
        for marker, start, end in _jpeg_segments(data):
            if marker == 0xE1 and data[start:start + 6] == b"Exif\x00\x00":
                return data[start + 6:end]
        return None
    if fmt == "PNG":
        for ctype, payload, _ok in _png_chunks(data):
            if ctype == b"eXIf" and payload is not None:
                return payload[6:] if payload.startswith(b"Exif\x00\x00") else payload
            if ctype == b"IDAT":  # eXIf must precede IDAT to count (PNG 1.5 extension)
                return None
        return None
    if fmt == "WebP":
        for fourcc, payload in _riff_chunks(data):
            if fourcc == b"EXIF":
                return payload[6:] if payload.startswith(b"Exif\x00\x00") else payload
        return None
    return None


def exif_orientation(fmt: str, data: bytes) -> int:
    """The EXIF orientation (1-8) to apply after decoding with ``IMREAD_UNCHANGED``; 1 when none.

    TIFF returns 1 because OpenCV's TIFF decoder already applies the tag.
    """
    payload = _exif_payload(fmt, data)
    if not payload:
        return 1
    value = _tiff_ifd0(payload, {_ORIENTATION_TAG}).get(_ORIENTATION_TAG, 1)
    return value if 1 <= value <= 8 else 1


def apply_orientation(img: np.ndarray, orientation: int) -> np.ndarray:
    """Transform a decoded ``(H, W[, C])`` image so it displays upright (EXIF orientation 1-8)."""
    ops = {
        1: lambda a: a,
        2: lambda a: a[:, ::-1],  # mirror horizontally
        3: lambda a: a[::-1, ::-1],  # rotate 180
        4: lambda a: a[::-1],  # mirror vertically
        5: lambda a: a.swapaxes(0, 1),  # transpose
        6: lambda a: a.swapaxes(0, 1)[:, ::-1],  # rotate 90 clockwise
        7: lambda a: a.swapaxes(0, 1)[::-1, ::-1],  # transverse
        8: lambda a: a.swapaxes(0, 1)[::-1],  # rotate 90 counter-clockwise
    }
    return np.ascontiguousarray(ops.get(orientation, ops[1])(img))


# ---- dimensions and completeness ------------------------------------------------------------------
def header_size(fmt: str, data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` read from the header, without decoding; ``None`` when not found."""
    try:
        if fmt == "PNG":
            if data[12:16] == b"IHDR":
                return struct.unpack(">II", data[16:24])
            return None
        if fmt == "JPEG":
            for marker, start, _end in _jpeg_segments(data):
                if marker in _SOF_MARKERS:
                    h, w = struct.unpack(">HH", data[start + 1:start + 5])
                    return (w, h) if h else None  # height 0: defined later by a DNL marker
            return None
        if fmt == "WebP":
            return _webp_size(data)
        if fmt == "TIFF":
            tags = _tiff_ifd0(data, {256, 257})
            return (tags[256], tags[257]) if len(tags) == 2 else None
        if fmt == "BMP":
            (dib,) = struct.unpack("<I", data[14:18])
            if dib == 12:
                return struct.unpack("<HH", data[18:22])
            w, h = struct.unpack("<ii", data[18:26])
            return abs(w), abs(h)
        if fmt == "GIF":
            return struct.unpack("<HH", data[6:10])
        if fmt == "PNM":
            text = re.sub(rb"#[^\n]*", b" ", data[:4096])
            m = re.match(rb"P[1-6]\s+(\d+)\s+(\d+)", text)
            return (int(m.group(1)), int(m.group(2))) if m else None
    except (struct.error, IndexError, ValueError):
        return None
    return None


def completeness_problem(fmt: str, data: bytes) -> str | None:
    """Why the file is truncated or corrupt, as detectable without decoding; ``None`` when it looks whole."""
    if fmt == "PNG":
        return _png_problem(data)
    if fmt == "JPEG":
        return _jpeg_problem(data)
    if fmt == "WebP":
        (size,) = struct.unpack("<I", data[4:8])
        return "truncated (shorter than its RIFF header says)" if len(data) < 8 + size else None
    if fmt == "BMP":
        (size,) = struct.unpack("<I", data[2:6])
        return "truncated (shorter than its header says)" if size > len(data) else None
    if fmt == "GIF":
        return None if data.rstrip(b"\x00").endswith(b";") else "truncated (no GIF trailer)"
    return None
