"""What a file that is not a loadable checkpoint actually is: one phrase for the checkpoint loaders.

``torch.load(weights_only=True)`` answers every foreign file with an unpickling error, so
without a look at the bytes an ONNX model renamed ``.pt``, a truncated download and a malicious
pickle all read alike. :func:`foreign_format` recognises other formats from their first bytes
(before ``torch.load``); :func:`diagnose_load_failure` explains a failed ``torch.load``: a zip
archive that is cut short or is not a PyTorch archive, a damaged pickle, a pickle that imports
code (the one case that is *refused* as unsafe), a plain pickle not written by ``torch.save``, a
text file. Nothing is ever unpickled here: pickles are only scanned with :mod:`pickletools`.
"""
from __future__ import annotations

import pickletools
import struct
import zipfile
from pathlib import Path

__all__ = ["foreign_format", "diagnose_load_failure", "pickle_globals", "HEAD_BYTES"]

#: how many leading bytes :func:`foreign_format` looks at
HEAD_BYTES = 64

_IMAGES = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"BM", "a BMP image"),
)
_ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
#: modules whose globals a ``torch.save`` pickle may name (``weights_only`` allows these kinds)
_TORCH_GLOBALS = ("torch", "collections", "builtins", "_codecs", "numpy")


def _looks_like_onnx(head: bytes) -> bool:
    # An ONNX ModelProto (protobuf) starts with field 1, ir_version (tag 0x08, a small varint), then
    # opset_import / producer_name / graph / ... (fields 2-8, length-delimited or varint tags).
    return (len(head) >= 3 and head[0] == 0x08 and 1 <= head[1] <= 0x7F
            and head[2] in (0x12, 0x1A, 0x22, 0x28, 0x2A, 0x32, 0x3A, 0x42))


def _looks_like_safetensors(head: bytes) -> bool:
    # 8-byte little-endian header length, then the JSON header
    if len(head) < 10:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return 2 <= n < (1 << 30) and head[8:9] == b"{"


def foreign_format(head: bytes, suffix: str = "") -> str | None:
    """The phrase for a file whose first bytes show another format (``"is an ONNX model, ..."``), else None.

    ``head``: the first :data:`HEAD_BYTES` bytes; ``suffix``: the file's lower-case suffix (TensorRT
    engines carry no documented magic number, so ``.engine``/``.plan``/``.trt`` files that are neither a
    zip archive nor a pickle are taken for engines).
    """
    if _looks_like_onnx(head):
        return "is an ONNX model, not a checkpoint: use it with runtime.infer (python -m runtime.infer)"
    if head.startswith(b"ftrt") or (suffix in _ENGINE_SUFFIXES and not head.startswith((b"PK", b"\x80"))):
        return ("is a TensorRT engine, not a checkpoint: use it with runtime.infer (TensorRT backend); "
                "a checkpoint is the .pt that python -m export.onnx exported it from")
    for magic, kind in _IMAGES:
        if head.startswith(magic):
            return f"is {kind}, not a checkpoint"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "is a WebP image, not a checkpoint"
    if head.startswith(b"\x93NUMPY"):
        return "is a NumPy .npy array, not a checkpoint"
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "is an HDF5 file (e.g. Keras weights), not a PyTorch checkpoint"
    if _looks_like_safetensors(head):
        return "is a safetensors file, not a UGTSR checkpoint (a checkpoint holds the model config too)"
    return None


#: the first pickle of a legacy (pre-1.6, non-zip) ``torch.save`` file holds this number
_LEGACY_TORCH_MAGIC = 0x1950A86A20F9469CFC6C


def pickle_globals(data: bytes, *, limit: int = 64) -> tuple[list[str], bool, bool]:
    """Scan the pickle(s) at the start of ``data`` (a legacy ``torch.save`` file holds several in a row).

    Returns the ``module.name`` globals they import (the first ``limit``), whether every pickle parsed
    to its end, and whether the first one is the legacy ``torch.save`` magic number. Opcodes are read
    with :func:`pickletools.genops` only; nothing is executed or constructed.
    """
    names: list[str] = []
    legacy_torch = False
    pos = 0
    for n in range(8):  # legacy torch.save: magic, protocol, sys info, object, storage keys
        if data[pos:pos + 1] != b"\x80":
            break
        strings: list[str] = []  # recent string pushes: STACK_GLOBAL takes module and name from the stack
        try:
            for op, arg, at in pickletools.genops(data[pos:]):
                if n == 0 and op.name in ("LONG1", "LONG4", "INT") and arg == _LEGACY_TORCH_MAGIC:
                    legacy_torch = True
                if op.name in ("GLOBAL", "INST"):
                    names.append(str(arg).replace(" ", "."))
                elif op.name == "STACK_GLOBAL":
                    names.append(".".join(strings[-2:]) if len(strings) >= 2 else "?")
                elif isinstance(arg, str):
                    strings = [*strings[-1:], arg]
                if op.name == "STOP":
                    pos += at + 1
                if len(names) >= limit:
                    return names, True, legacy_torch
        except Exception:  # noqa: BLE001 - any parse failure means a damaged or non-pickle file
            return names, False, legacy_torch
    return names, True, legacy_torch


def _is_code(name: str) -> bool:
    return name.split(".", 1)[0] not in _TORCH_GLOBALS


def _is_text(data: bytes) -> bool:
    try:
        text = data[:4096].decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(c.isprintable() or c in "\t\r\n" for c in text)


def diagnose_load_failure(path: Path, exc: BaseException) -> str:
    """One phrase for why ``torch.load(path, weights_only=True)`` raised ``exc`` (without the path).

    Only a pickle that imports code outside torch's plain types gets the "refused ... code" phrase.
    """
    msg = str(exc)
    first = (msg.strip().splitlines() or [type(exc).__name__])[0][:200]
    with open(path, "rb") as fh:
        head = fh.read(HEAD_BYTES)
    if "GLOBAL " in msg:  # torch's own refusal names the blocked global, whatever the container
        return _refused(msg)
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except (zipfile.BadZipFile, OSError, ValueError):
            return ("is a truncated or corrupt zip archive (a PyTorch checkpoint is a zip file; its end, "
                    "the zip directory, is missing or damaged: was the download or copy cut short?)")
        if not any(n.endswith("/data.pkl") or n == "data.pkl" for n in names):
            if names and all(n.endswith(".npy") for n in names):
                return "is a NumPy .npz archive, not a checkpoint"
            return f"is a zip archive but not a PyTorch checkpoint (no data.pkl among its {len(names)} entries)"
        return f"is a corrupt PyTorch archive (damaged data: {_short(msg, first)})"
    with open(path, "rb") as fh:
        data = fh.read()
    if data[:1] == b"\x80":  # pickle protocol 2+
        found, complete, legacy_torch = pickle_globals(data)
        code = [n for n in found if _is_code(n)]
        if code:
            return _refused(msg, code[0])
        if legacy_torch:
            return f"is a legacy (non-zip) torch.save file that cannot be read: damaged? ({_short(msg, first)})"
        if not complete:
            return f"is a damaged pickle (corrupt or truncated; {_short(msg, first)})"
        return ("is a legacy pickle not written by torch.save (a plain pickle of Python data), not a "
                "checkpoint; torch.save checkpoints are zip archives")
    if _is_text(data):
        return "is a text file, not a checkpoint"
    return f"is corrupt or not a PyTorch file (unrecognised content; {type(exc).__name__}: {_short(msg, first)})"


def _short(msg: str, first: str) -> str:
    """The informative line of a weights_only error (its first line is generic advice)."""
    for key in ("Unsupported operand", "PytorchStreamReader", "Invalid magic number"):
        i = msg.find(key)
        if i >= 0:
            return msg[i:].splitlines()[0][:160]
    return first


def _refused(msg: str, name: str | None = None) -> str:
    if name is None:
        i = msg.find("GLOBAL ")
        name = msg[i + 7:].split()[0] if i >= 0 else None
    what = f": {name}" if name else ""
    return (f"refused: the file contains pickled Python objects (code{what}), not plain weights; "
            "it was not executed")
