"""The TensorRT engine sidecar ``ENGINE.plan.json``: what an engine was built from and for.

A serialized TensorRT engine only runs on the TensorRT version and GPU model it was built with, and it
carries none of the model facts the runtime needs (scale, ``multiple_of``, outputs). The sidecar,
written atomically next to the engine by ``python -m runtime.build``, records them:

- the model (the :class:`ModelInfo` fields read from the ONNX ``metadata_props``): ``scale``,
  ``multiple_of``, ``min_size``, ``outputs``, ``precision``, ``config``, ``source`` (the ONNX path);
- the build: ``onnx_path``, ``onnx_sha256``, ``engine_sha256``, ``profiles`` (min/opt/max ``lq``
  shapes), ``build`` (workspace, optimization level, typing mode, TF32, plugins), ``built_at``,
  ``ugtsr_version``;
- the target: ``tensorrt_version``, ``gpu_name``, ``compute_capability``.

:func:`check_engine_fresh` compares a sidecar with the running TensorRT and GPU (and, if given, the
ONNX file's hash) and returns the reasons the engine is stale, an empty list when it is fresh.
:func:`read_onnx_metadata` reads an ONNX file's ``metadata_props`` (where the model facts come from)
without the onnx package.
This module imports neither TensorRT nor a CUDA binding at module level.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import mmap
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ugtsr.errors import EngineBuildError, MissingDependencyError, UGTSRError
from ugtsr.fileio import atomic_write_bytes

__all__ = [
    "SIDECAR_FORMAT",
    "ShapeProfile",
    "EngineMeta",
    "sidecar_path",
    "sha256_file",
    "onnx_fingerprint",
    "write_sidecar",
    "read_sidecar",
    "current_tensorrt_version",
    "current_gpu",
    "check_engine_fresh",
    "atomic_write_bytes",
    "read_onnx_metadata",
]

_log = logging.getLogger(__name__)

SIDECAR_FORMAT = 1
Shape = tuple[int, int, int, int]


@dataclass(frozen=True)
class ShapeProfile:
    """One TensorRT optimization profile for an ``(N, 3, H, W)`` input (default ``lq``)."""

    min: Shape
    opt: Shape
    max: Shape
    input: str = "lq"

    def __post_init__(self) -> None:
        for label in ("min", "opt", "max"):
            object.__setattr__(self, label, tuple(int(v) for v in getattr(self, label)))

    def contains(self, shape: tuple[int, ...]) -> bool:
        """True when every dimension of ``shape`` lies within ``[min, max]``."""
        return len(shape) == 4 and all(lo <= s <= hi for s, lo, hi in zip(shape, self.min, self.max))

    @property
    def max_hw(self) -> tuple[int, int]:
        return self.max[2], self.max[3]

    @property
    def min_hw(self) -> tuple[int, int]:
        return self.min[2], self.min[3]

    def to_dict(self) -> dict[str, Any]:
        return {"input": self.input, "min": list(self.min), "opt": list(self.opt), "max": list(self.max)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ShapeProfile:
        return cls(min=tuple(d["min"]), opt=tuple(d["opt"]), max=tuple(d["max"]), input=d.get("input", "lq"))


@dataclass(frozen=True)
class EngineMeta:
    """The content of ``ENGINE.plan.json`` (see the module docstring for the meaning of each field)."""

    # model (ModelInfo fields)
    scale: int
    multiple_of: int
    min_size: int
    outputs: tuple[str, ...]
    precision: str
    config: dict | None
    source: str
    # build
    onnx_path: str
    onnx_sha256: str
    engine_sha256: str
    profiles: tuple[ShapeProfile, ...]
    build: dict = field(default_factory=dict)
    built_at: str = ""
    ugtsr_version: str = ""
    # target
    tensorrt_version: str = ""
    gpu_name: str = ""
    compute_capability: str = ""
    format: int = SIDECAR_FORMAT

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["outputs"] = list(self.outputs)
        d["profiles"] = [p.to_dict() for p in self.profiles]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EngineMeta:
        known = {f for f in cls.__dataclass_fields__}
        kwargs = {k: v for k, v in d.items() if k in known}  # unknown keys: written by a newer version
        kwargs["outputs"] = tuple(d["outputs"])
        kwargs["profiles"] = tuple(ShapeProfile.from_dict(p) for p in d["profiles"])
        return cls(**kwargs)


def sidecar_path(engine_path: str | os.PathLike) -> Path:
    """``ENGINE.plan`` -> ``ENGINE.plan.json``."""
    p = Path(engine_path)
    return p.with_name(p.name + ".json")


def sha256_file(path: str | os.PathLike, *, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def onnx_fingerprint(onnx_path: str | os.PathLike) -> str:
    """sha256 of an ONNX model, including torch's default external-data file ``MODEL.onnx.data``.

    ``export.onnx`` writes self-contained files; the sibling ``.data`` file is hashed too so an
    externally-stored model whose weights change is still seen as changed.
    """
    p = Path(onnx_path)
    digest = sha256_file(p)
    data = p.with_name(p.name + ".data")
    if data.is_file():
        digest = hashlib.sha256((digest + sha256_file(data)).encode()).hexdigest()
    return digest


def write_sidecar(engine_path: str | os.PathLike, meta: EngineMeta) -> Path:
    """Atomically write ``meta`` to ``ENGINE.plan.json``; returns that path."""
    path = sidecar_path(engine_path)
    text = json.dumps(meta.to_dict(), indent=2, sort_keys=True) + "\n"
    atomic_write_bytes(path, text.encode())
    return path


def read_sidecar(engine_path: str | os.PathLike) -> EngineMeta | None:
    """The sidecar of ``engine_path``, or ``None`` when there is none.

    Raises :class:`EngineBuildError` (one line) when it exists but cannot be read.
    """
    path = sidecar_path(engine_path)
    if not path.is_file():
        return None
    try:
        d = json.loads(path.read_text())
        if not isinstance(d, dict):
            raise ValueError("not a JSON object")
        return EngineMeta.from_dict(d)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EngineBuildError(
            f"{path}: unreadable engine sidecar ({type(exc).__name__}: {exc}); "
            "rebuild the engine with python -m runtime.build --force"
        ) from exc


# --------------------------------------------------------------------------------------------------
# ONNX metadata (read without the onnx package: a scan of the top-level protobuf fields)
# --------------------------------------------------------------------------------------------------
def _varint(buf: Any, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _fields(buf: Any, start: int, end: int):
    """Yield ``(field_number, wire_type, value_or_(start, end))`` of a protobuf message."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos)
        num, wt = key >> 3, key & 7
        if wt == 0:
            val, pos = _varint(buf, pos)
            yield num, wt, val
        elif wt == 1:
            pos += 8
        elif wt == 2:
            ln, pos = _varint(buf, pos)
            if pos + ln > end:
                raise ValueError("length-delimited field runs past the end")
            yield num, wt, (pos, pos + ln)
            pos += ln
        elif wt == 5:
            pos += 4
        else:
            raise ValueError(f"unsupported wire type {wt}")


_MODEL_METADATA_PROPS = 14   # ModelProto.metadata_props (repeated StringStringEntryProto)
_MODEL_GRAPH = 7


def read_onnx_metadata(onnx_path: str | os.PathLike) -> dict[str, str]:
    """``metadata_props`` of an ONNX file as a dict, reading only the protobuf framing (no weights
    are decoded, the onnx package is not needed, and plugin-variant graphs are fine).

    Raises :class:`EngineBuildError` (one line) for a missing or unparsable file.
    """
    path = Path(onnx_path)
    if not path.is_file():
        raise EngineBuildError(f"{path}: no such ONNX file")
    meta: dict[str, str] = {}
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            saw_graph = False
            for num, wt, val in _fields(buf, 0, len(buf)):
                if num == _MODEL_GRAPH and wt == 2:
                    saw_graph = True
                if num == _MODEL_METADATA_PROPS and wt == 2:
                    key = value = ""
                    for fnum, fwt, fval in _fields(buf, *val):
                        if fwt == 2 and fnum in (1, 2):
                            text = bytes(buf[fval[0]:fval[1]]).decode("utf-8")
                            key, value = (text, value) if fnum == 1 else (key, text)
                    meta[key] = value
            if not saw_graph:
                raise ValueError("no graph")
    except (ValueError, UnicodeDecodeError, OSError) as exc:
        raise EngineBuildError(f"{path}: not a readable ONNX model ({exc})") from exc
    return meta


def default_built_at() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# --------------------------------------------------------------------------------------------------
# The running environment (tests monkeypatch these two functions)
# --------------------------------------------------------------------------------------------------
def current_tensorrt_version() -> str | None:
    """``tensorrt.__version__``, or ``None`` when TensorRT is not importable."""
    try:
        import tensorrt  # noqa: PLC0415 - optional dependency, imported on demand
    except ImportError:
        return None
    return str(tensorrt.__version__)


def current_gpu(device_id: int = 0) -> tuple[str, str] | None:
    """``(gpu_name, compute_capability)`` of CUDA device ``device_id``, or ``None`` if unknown.

    Asks cuda-python / pycuda first (``runtime.cuda_mem``), then ``nvidia-smi``.
    """
    from runtime.cuda_mem import get_cuda_api  # noqa: PLC0415 - keeps this module binding-free

    try:
        props = get_cuda_api().device_properties(device_id)
        return props.name, props.compute_capability
    except (MissingDependencyError, UGTSRError) as exc:
        _log.debug("CUDA binding could not describe device %d: %s", device_id, exc)
    return _gpu_from_nvidia_smi(device_id)


def _gpu_from_nvidia_smi(device_id: int) -> tuple[str, str] | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, f"--id={device_id}", "--query-gpu=name,compute_cap", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    name, _, cc = out.rpartition(",")
    return (name.strip(), cc.strip()) if name else None


# --------------------------------------------------------------------------------------------------
def check_engine_fresh(
    engine_path: str | os.PathLike,
    onnx_path: str | os.PathLike | None = None,
    *,
    device_id: int = 0,
) -> list[str]:
    """Reasons why ``engine_path`` should be rebuilt; an empty list means fresh.

    Compares the sidecar with the running TensorRT version, the GPU (name and compute capability of
    ``device_id``), the engine file itself, and -- when ``onnx_path`` is given and exists -- the ONNX
    file's sha256. What cannot be determined here (TensorRT or the GPU not visible) is not compared.
    A missing engine or sidecar is itself a reason (nothing can be checked without the sidecar).
    """
    engine_path = Path(engine_path)
    if not engine_path.is_file():
        return [f"engine file {engine_path} does not exist"]
    meta = read_sidecar(engine_path)
    if meta is None:
        return [f"no sidecar {sidecar_path(engine_path).name}: cannot tell what the engine was built from"]

    reasons: list[str] = []
    if meta.format != SIDECAR_FORMAT:
        reasons.append(f"sidecar format {meta.format} is not the supported {SIDECAR_FORMAT}")
    if meta.engine_sha256 and sha256_file(engine_path) != meta.engine_sha256:
        reasons.append("the engine file does not match its sidecar (replaced or corrupted)")

    trt_version = current_tensorrt_version()
    if trt_version is not None and trt_version != meta.tensorrt_version:
        reasons.append(f"built with TensorRT {meta.tensorrt_version}, running {trt_version}")

    gpu = current_gpu(device_id) if meta.compute_capability else None  # unknown at build: skip
    if gpu is not None:
        name, cc = gpu
        if cc != meta.compute_capability:
            reasons.append(
                f"built for compute capability {meta.compute_capability} ({meta.gpu_name}), "
                f"this GPU is {cc} ({name})"
            )
        elif name != meta.gpu_name:
            reasons.append(f"built on GPU '{meta.gpu_name}', this GPU is '{name}'")

    if onnx_path is not None:
        onnx_path = Path(onnx_path)
        if not onnx_path.is_file():
            _log.warning("ONNX file %s does not exist; cannot check that %s was built from it",
                         onnx_path, engine_path)
        elif onnx_fingerprint(onnx_path) != meta.onnx_sha256:
            reasons.append(f"{onnx_path.name} changed since the engine was built (sha256 differs)")
    return reasons
