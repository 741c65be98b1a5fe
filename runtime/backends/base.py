"""What every inference backend provides (``docs/INTERFACES.md``): :class:`ModelInfo` and :class:`Backend`.

A backend runs one model file on one device: it takes the model input ``lq`` exactly as the exported
graph does (``(N, 3, H, W)`` float32 RGB in [0, 1], ``H`` and ``W`` multiples of
``info.multiple_of`` and ``>= info.min_size``) and returns the raw outputs by name. Padding, tiling,
clamping and colour conversion live in :mod:`runtime.upscaler`, so backends stay small and
interchangeable. Backends are context managers (Polygraphy's runner style).
"""
from __future__ import annotations

import abc
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ugtsr.errors import UGTSRError, UnsupportedInputError

__all__ = ["ModelInfo", "Backend", "model_info_from_metadata", "check_lq", "check_outputs", "METADATA_RANGES"]


@dataclass(frozen=True)
class ModelInfo:
    """What the runtime must know about a model to feed it (spandrel's model descriptor, trimmed)."""

    scale: int
    multiple_of: int
    min_size: int
    outputs: tuple[str, ...]  # e.g. ("sr",) or ("sr", "uncertainty")
    precision: str = "fp32"
    config: dict | None = None
    source: str = ""  # path of the model file
    #: the graph pads H, W to ``multiple_of`` itself (ONNX metadata ``pads_input="1"``, export.padding):
    #: it accepts any ``H, W >= min_size``. False for older exports: the caller pads.
    pads_input: bool = False

    @property
    def has_uncertainty(self) -> bool:
        return "uncertainty" in self.outputs


class Backend(abc.ABC):
    """One loaded model on one device. Subclasses set ``name`` and ``info`` in ``__init__``."""

    name: str  # "onnxruntime" | "tensorrt" | "torch"
    info: ModelInfo
    #: largest ``(N, 3, H, W)`` the backend accepts (e.g. a TensorRT profile's max shape); ``None`` means
    #: unlimited. Optional: :class:`runtime.Upscaler` reads it with ``getattr`` to cap automatic tiles.
    max_shape: tuple[int, int, int, int] | None = None
    #: ``run`` takes ``outputs=`` (the names wanted; ``sr`` always comes back) and computes or returns no
    #: more than those: :class:`runtime.Upscaler` passes what it needs when this is true
    selects_outputs: bool = False

    @abc.abstractmethod
    def run(self, lq: np.ndarray) -> dict[str, np.ndarray]:
        """Run the model.

        Args:
            lq: ``(N, 3, H, W)`` float32 C-contiguous RGB in [0, 1]; ``H``, ``W`` multiples of
                ``info.multiple_of`` and ``>= info.min_size``.

        Returns:
            ``{"sr": (N, 3, H*s, W*s) float32 (not clamped), "uncertainty": (N, 3, H*s, W*s) float32}``
            -- ``uncertainty`` (s = ln theta per pixel) only when the model has it; other outputs
            (``indices``) may be present.
        """

    def memory_available(self) -> int | None:
        """Bytes free on the backend's device for automatic tiling; ``None`` = use system memory."""
        return None

    @abc.abstractmethod
    def close(self) -> None:
        """Release the session / engine / device memory. Safe to call twice."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        info = getattr(self, "info", None)
        where = f" {info.source!r}" if info is not None and info.source else ""
        return f"<{type(self).__name__}{where}>"


#: accepted ranges of the integer metadata (issue 11 item 4: a forged value must not reach the tiler)
METADATA_RANGES = {"scale": (1, 16), "multiple_of": (1, 1024), "min_size": (1, 4096)}


def _int_field(meta: Mapping[str, str], key: str, default: int | None, source: str) -> int:
    raw = meta.get(key)
    if raw is None:
        if default is None:
            raise UnsupportedInputError(f"{source}: metadata '{key}' is missing")
        return default
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise UnsupportedInputError(f"{source}: metadata '{key}' must be an integer, got {raw!r}") from None
    low, high = METADATA_RANGES.get(key, (1, None))
    if value < low or (high is not None and value > high):
        raise UnsupportedInputError(
            f"{source}: metadata '{key}' is {value}, outside the valid range [{low}, {high}]; "
            "the file is damaged or not a UGTSR export (re-export it with python -m export.onnx)")
    return value


def model_info_from_metadata(
    meta: Mapping[str, Any], *, source: str, available_outputs: tuple[str, ...] | None = None
) -> ModelInfo:
    """Build :class:`ModelInfo` from the string metadata of an exported model (ONNX ``metadata_props``
    or a TensorRT sidecar; values may already be parsed there).

    ``available_outputs`` (the graph's actual output names) wins over the ``outputs`` entry.

    Raises:
        UnsupportedInputError: not a UGTSR model (no ``scale``), or malformed values.
    """
    if "scale" not in meta:
        raise UnsupportedInputError(
            f"{source} is not a UGTSR model (no 'scale' metadata); export it with python -m export.onnx")
    strings = {k: v if isinstance(v, str) else json.dumps(v) if isinstance(v, dict | list) else str(v)
               for k, v in meta.items()}
    scale = _int_field(strings, "scale", None, source)
    multiple_of = _int_field(strings, "multiple_of", 1, source)
    min_size = _int_field(strings, "min_size", multiple_of, source)
    raw_outputs = meta.get("outputs", "sr")
    if available_outputs is not None:
        outputs = tuple(available_outputs)
    elif isinstance(raw_outputs, list | tuple):  # a parsed sidecar
        outputs = tuple(str(o) for o in raw_outputs)
    else:
        outputs = tuple(o.strip() for o in str(raw_outputs).split(",") if o.strip())
    if "sr" not in outputs:
        raise UnsupportedInputError(f"{source}: the model has no 'sr' output (outputs: {', '.join(outputs)})")
    config = meta.get("config")
    if isinstance(config, str):
        try:
            config = json.loads(config)
        except json.JSONDecodeError:
            raise UnsupportedInputError(f"{source}: metadata 'config' is not valid JSON") from None
    if config is not None and not isinstance(config, dict):
        raise UnsupportedInputError(f"{source}: metadata 'config' must be a JSON object")
    pads_raw = strings.get("pads_input", "0").strip().lower()
    if pads_raw not in ("0", "1", "true", "false"):
        raise UnsupportedInputError(f"{source}: metadata 'pads_input' must be 0 or 1, got {pads_raw!r}")
    return ModelInfo(scale=scale, multiple_of=multiple_of, min_size=min_size, outputs=outputs,
                     precision=strings.get("precision", "fp32"), config=config, source=source,
                     pads_input=pads_raw in ("1", "true"))


def check_lq(lq: np.ndarray, info: ModelInfo) -> None:
    """Enforce the ``lq`` contract of :meth:`Backend.run` (cheap; catches padding bugs early).

    Raises:
        UnsupportedInputError: wrong rank, channels, dtype or spatial size.
    """
    if not isinstance(lq, np.ndarray) or lq.ndim != 4 or lq.shape[1] != 3:
        raise UnsupportedInputError(f"expected lq of shape (N, 3, H, W), got {getattr(lq, 'shape', type(lq))}")
    if lq.dtype != np.float32:
        raise UnsupportedInputError(f"expected lq as float32, got {lq.dtype}")
    h, w = lq.shape[2:]
    if info.pads_input and h >= info.min_size and w >= info.min_size:
        return  # the graph pads to multiple_of itself
    if h % info.multiple_of or w % info.multiple_of or h < info.min_size or w < info.min_size:
        raise UnsupportedInputError(
            f"lq is {h}x{w}; the model needs multiples of {info.multiple_of} and at least {info.min_size} "
            "(pad with runtime.padding.pad_to_multiple)")


def check_outputs(result: Mapping[str, np.ndarray], lq_shape: tuple[int, ...], info: ModelInfo) -> None:
    """Check what a backend returned for ``lq`` of ``lq_shape`` against :class:`ModelInfo`.

    Raises:
        UGTSRError: ``sr`` missing, not ``(N, 3, H*scale, W*scale)`` (e.g. a 1-channel output that would turn
            RGB into gray), or not finite (NaN / inf: a diverged checkpoint, FP16 overflow, a broken export).
    """
    name = info.source or "the model"
    sr = result.get("sr")
    n, _c, h, w = lq_shape
    expected = (n, 3, h * info.scale, w * info.scale)
    if sr is None:
        raise UGTSRError(f"{name}: the model returned no 'sr' output")
    if tuple(sr.shape) != expected:
        raise UGTSRError(f"{name}: the model's 'sr' output has shape {tuple(sr.shape)} for an input of "
                         f"{tuple(lq_shape)}; expected {expected} (3 channels, x{info.scale})")
    if not np.isfinite(sr).all():
        bad = int(np.count_nonzero(~np.isfinite(sr)))
        raise UGTSRError(f"{name}: the model's output contains {bad:,} NaN or infinite values "
                         "(a diverged checkpoint, FP16 overflow or a broken export); nothing written")
