"""Image file sniffing without decoding: format, header dimensions, completeness, EXIF orientation.

Small byte-level parsers (no Pillow needed) so that :func:`runtime.imageio.read_image` can
- name the format from the file signature (never trust the extension),
- refuse a decompression bomb from the header's width x height *before* allocating the pixels,
- refuse a truncated or corrupt PNG/JPEG/WebP/GIF/BMP up front (libpng/libjpeg would otherwise print
  their own messages and return ``None`` or a half-grey image),
- apply the EXIF orientation that ``cv2.IMREAD_UNCHANGED`` ignores for JPEG, PNG (``eXIf``) and WebP.
  (For TIFF, OpenCV's decoder applies the orientation tag itself, so it is not applied twice.)
- :func:`inspect` validates the container structure per file (PNG chunk CRCs, IEND and the inflated
  IDAT size; TIFF directories, strips and channels; GIF blocks and frames; BMP/PNM/WebP sizes) and
  names what a decoder would drop (GIF frames, TIFF pages, APNG frames, extra channels), so the
  decoders get only data they decode without printing anything -- no process-wide stderr capture,
  which is not thread-safe (issue 10 section 5).

Every function takes the whole file as ``bytes`` and never raises on malformed data: it returns
``None``/a problem string/orientation 1, and the decoder gets the final word.
"""
from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass, field

import numpy as np

__all__ = ["sniff_format", "unsupported_format", "header_size", "completeness_problem", "inspect", "Inspection",
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


# ---- structural inspection (thread-safe: pure functions of the bytes) ------------------------------
@dataclass
class Inspection:
    """What :func:`inspect` found: a fatal ``problem`` (or ``None``), ``warnings`` about data the decoder
    will drop, and the bytes to decode (PNG: without ancillary chunks libpng would warn about)."""

    problem: str | None
    data: bytes
    warnings: list[str] = field(default_factory=list)


# PNG chunks the decoder needs (OpenCV ignores colour management, text and time chunks; libpng warns
# about malformed ones on stderr, e.g. "iCCP: known incorrect sRGB profile")
_PNG_KEEP = {b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"IEND"}
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def _png_raw_size(width: int, height: int, bits: int, color: int, interlace: int) -> int | None:
    channels = _PNG_CHANNELS.get(color)
    if channels is None or bits not in (1, 2, 4, 8, 16):
        return None

    def rows(w: int, h: int) -> int:
        return 0 if w == 0 or h == 0 else h * (1 + (w * channels * bits + 7) // 8)

    if interlace == 0:
        return rows(width, height)
    return sum(rows(max(0, (width - x0 + dx - 1) // dx), max(0, (height - y0 + dy - 1) // dy))
               for x0, y0, dx, dy in _ADAM7)


def _inspect_png(data: bytes) -> Inspection:
    problem = _png_problem(data)
    if problem:
        return Inspection(problem, data)
    kept: list[tuple[int, int]] = []
    pos = len(_PNG_SIG)
    inflater = zlib.decompressobj()
    inflated = 0
    dropped = False
    expected: int | None = None
    frames = None
    try:
        for ctype, payload, _ok in _png_chunks(data):
            if ctype == b"IHDR" and len(payload) >= 13:
                w, h, bits, color, _c, _f, interlace = struct.unpack(">IIBBBBB", payload[:13])
                expected = _png_raw_size(w, h, bits, color, interlace)
            elif ctype == b"acTL" and len(payload) >= 8:
                frames = struct.unpack(">I", payload[:4])[0]
            elif ctype == b"IDAT":
                if expected is None:
                    return Inspection("corrupt (no valid IHDR chunk before the image data)", data)
                buf = payload
                while buf and not inflater.eof:  # in 1 MiB steps: a zlib bomb stops at the header's size
                    inflated += len(inflater.decompress(buf, 1 << 20))
                    if inflated > expected + (1 << 20):
                        return Inspection("corrupt (the image data inflates to more than its header's size)", data)
                    buf = inflater.unconsumed_tail
            end = pos + 12 + len(payload)  # length, type, payload, CRC (checked by _png_problem)
            if ctype in _PNG_KEEP:
                kept.append((pos, end))
            else:
                dropped = True
            pos = end
    except zlib.error as exc:
        return Inspection(f"corrupt (the compressed image data is invalid: {exc})", data)
    if expected is None:
        return Inspection("corrupt (no valid IHDR chunk)", data)
    if inflated < expected:
        return Inspection(f"truncated or corrupt (the image data holds {inflated:,} of {expected:,} bytes)", data)
    if not inflater.eof:
        return Inspection("truncated or corrupt (the compressed image data does not end)", data)
    result = Inspection(None, data[:len(_PNG_SIG)] + b"".join(data[a:b] for a, b in kept) if dropped else data)
    if inflated > expected:
        result.warnings.append(f"{inflated - expected:,} bytes of extra image data ignored")
    if frames and frames > 1:
        result.warnings.append(f"animated PNG: the default image is used, {frames} animation frames dropped")
    return result


def _inspect_gif(data: bytes) -> Inspection:
    """Walk the GIF blocks (GIF89a specification): complete sub-block chains up to the trailer."""
    n = len(data)
    if n < 13:
        return Inspection("truncated (no logical screen descriptor)", data)
    flags = data[10]
    pos = 13 + (3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0)
    frames = 0

    def skip_sub_blocks(p: int) -> int:
        while p < n:
            size = data[p]
            p += 1 + size
            if size == 0:
                return p
        return -1

    while pos < n:
        block = data[pos]
        if block == 0x3B:  # trailer
            break
        if block == 0x21:  # extension: label, sub-blocks
            pos = skip_sub_blocks(pos + 2)
        elif block == 0x2C:  # image descriptor, local colour table, LZW code size, sub-blocks
            if pos + 10 > n:
                pos = -1
            else:
                lflags = data[pos + 9]
                pos += 10 + (3 * 2 ** ((lflags & 7) + 1) if lflags & 0x80 else 0) + 1
                pos = skip_sub_blocks(pos) if pos <= n else -1
                frames += 1
        else:
            return Inspection(f"corrupt (unknown block 0x{block:02x} at byte {pos})", data)
        if pos < 0:
            return Inspection("truncated (a data block is cut off)", data)
    else:
        return Inspection("truncated (no GIF trailer)", data)
    if frames == 0:
        return Inspection("corrupt (no image in the file)", data)
    result = Inspection(None, data)
    if frames > 1:
        result.warnings.append(f"animated GIF: the first of {frames} frames is used, {frames - 1} dropped")
    return result


_TIFF_TYPES = {1: ("B", 1), 3: ("H", 2), 4: ("I", 4), 16: ("Q", 8)}  # BYTE, SHORT, LONG, LONG8 (BigTIFF)


def _tiff_ifds(data: bytes) -> tuple[list[dict[int, list[int]]], str | None]:
    """The integer tags of every directory (classic and BigTIFF) and a structural problem, if any."""
    order = "<" if data[:2] == b"II" else ">"
    big = data[2:4] in (b"+\x00", b"\x00+")
    try:
        offset = struct.unpack(order + ("Q" if big else "I"), data[8:16] if big else data[4:8])[0]
    except struct.error:
        return [], "truncated (no image directory)"
    ifds: list[dict[int, list[int]]] = []
    seen: set[int] = set()
    entry_size, count_fmt, value_len = (20, "Q", 8) if big else (12, "H", 4)
    while offset and len(ifds) < 10000:
        if offset in seen:
            return ifds, "corrupt (the image directories form a loop)"
        seen.add(offset)
        head = struct.calcsize(count_fmt)
        if offset + head > len(data):
            return ifds, "truncated (an image directory lies beyond the end of the file)"
        (count,) = struct.unpack(order + count_fmt, data[offset:offset + head])
        end = offset + head + entry_size * count
        if end + value_len > len(data):
            return ifds, "truncated (an image directory is cut off)"
        tags: dict[int, list[int]] = {}
        for i in range(count):
            e = data[offset + head + entry_size * i: offset + head + entry_size * (i + 1)]
            tag, typ = struct.unpack(order + "HH", e[:4])
            (num,) = struct.unpack(order + ("Q" if big else "I"), e[4:12] if big else e[4:8])
            if typ not in _TIFF_TYPES or num > 1 << 20:
                continue
            code, size = _TIFF_TYPES[typ]
            field_bytes = e[12:] if big else e[8:]
            if num * size <= value_len:
                raw = field_bytes[:num * size]
            else:
                (ptr,) = struct.unpack(order + ("Q" if big else "I"), field_bytes)
                if ptr + num * size > len(data):
                    return ifds, "truncated (a directory entry points beyond the end of the file)"
                raw = data[ptr:ptr + num * size]
            tags[tag] = list(struct.unpack(order + code * num, raw))
        ifds.append(tags)
        (offset,) = struct.unpack(order + ("Q" if big else "I"), data[end:end + value_len])
    return ifds, None


def _inspect_tiff(data: bytes) -> Inspection:
    ifds, problem = _tiff_ifds(data)
    if not ifds:
        return Inspection(problem or "corrupt (no image directory)", data)
    if problem and len(ifds) == 1:
        return Inspection(problem, data)
    tags = ifds[0]
    samples = tags.get(277, [1])[0]
    bits = tags.get(258, [1])
    sample_format = tags.get(339, [1])[0]
    photometric = tags.get(262, [None])[0]
    if sample_format == 3:
        return Inspection(f"unsupported pixel type float{bits[0]} (a floating-point TIFF; only 8-bit and 16-bit "
                          "unsigned integer images are supported)", data)
    if samples > 4:
        return Inspection(f"TIFF with {samples} channels per pixel; supported: 1 to 4 (gray, gray+alpha, RGB, RGBA)",
                          data)
    if photometric == 5 and max(bits) > 8:
        return Inspection(f"{max(bits)}-bit CMYK TIFF is not supported (convert it to RGB)", data)
    offsets = tags.get(273) or tags.get(324)  # strips or tiles
    counts = tags.get(279) or tags.get(325)
    if not offsets or 256 not in tags or 257 not in tags:
        return Inspection("corrupt (the first image directory has no size or no image data)", data)
    if offsets and counts and len(offsets) == len(counts):
        if any(o + c > len(data) for o, c in zip(offsets, counts)):
            return Inspection("truncated (image data lies beyond the end of the file)", data)
        if tags.get(259, [1])[0] in (8, 32946):  # Deflate: libtiff reports a bad strip only in OpenCV's log
            for i, (o, c) in enumerate(zip(offsets, counts)):
                inflater = zlib.decompressobj()
                try:
                    inflater.decompress(data[o:o + c])
                except zlib.error as exc:
                    return Inspection(f"corrupt (the compressed data of strip/tile {i} is invalid: {exc})", data)
                if not inflater.eof:
                    return Inspection(f"truncated or corrupt (the compressed data of strip/tile {i} does not end)",
                                      data)
    result = Inspection(None, data)
    if problem:
        result.warnings.append(f"only the first page is read; the file is {problem.split(' (')[0]} after it")
    elif len(ifds) > 1:
        result.warnings.append(f"multi-page TIFF: the first of {len(ifds)} pages is used, {len(ifds) - 1} dropped")
    if photometric in (0, 1) and samples > 1:
        result.warnings.append(f"gray TIFF with {samples - 1} extra channel(s): only the gray channel is used")
    return result


def _inspect_pnm(data: bytes) -> Inspection:
    text = re.sub(rb"#[^\n]*", b" ", data[:4096])
    m = re.match(rb"P([1-6])\s+(\d+)\s+(\d+)\s+(?:(\d+)\s)?", text)
    if m is None:
        return Inspection("corrupt (bad PNM header)", data)
    kind = int(m.group(1))
    # offsets in ``text`` equal those in ``data`` only without comments in the header
    if kind in (5, 6) and m.group(4) is not None and b"#" not in data[:m.end()]:
        w, h, maxval = int(m.group(2)), int(m.group(3)), int(m.group(4))
        need = w * h * (3 if kind == 6 else 1) * (2 if maxval > 255 else 1)
        if len(data) - m.end() < need:
            return Inspection(f"truncated (the pixel data holds {len(data) - m.end():,} of {need:,} bytes)", data)
    return Inspection(None, data)


def inspect(fmt: str, data: bytes) -> Inspection:
    """Validate the container of a ``fmt`` file (see :class:`Inspection`); never raises on bad data."""
    try:
        if fmt == "PNG":
            return _inspect_png(data)
        if fmt == "GIF":
            return _inspect_gif(data)
        if fmt == "TIFF":
            return _inspect_tiff(data)
        if fmt == "PNM":
            return _inspect_pnm(data)
        return Inspection(completeness_problem(fmt, data), data)
    except (struct.error, IndexError, ValueError, OverflowError) as exc:
        return Inspection(f"corrupt (malformed {fmt} structure: {type(exc).__name__})", data)
