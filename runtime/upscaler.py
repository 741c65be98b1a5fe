"""``Upscaler``: the production entry point -- OpenCV image in, OpenCV image out.

Pipeline (docs/ARCHITECTURE.md): image -> RGB float [0, 1] (+ alpha) -> pad / tile (:func:`runtime.tile_process`)
-> backend (ONNX Runtime, TensorRT or torch) -> stitch -> clamp -> optional ``outscale`` resize ->
same layout and dtype as the input.

Choices, following Real-ESRGAN's ``RealESRGANer`` where it has one:
- gray inputs are replicated to RGB and the output is converted back with the luma weights;
- 16-bit inputs are divided by 65535 and written back as 16-bit (no 8-bit detour);
- alpha is upscaled separately with ``cv2.resize(INTER_LINEAR)`` by default (cheap, no model artefacts
  in a mask); ``alpha_upsampler="model"`` runs it through the model as a gray image instead;
- ``outscale`` resizes the model output with ``INTER_LANCZOS4`` when enlarging and ``INTER_AREA`` when
  shrinking (Real-ESRGAN uses LANCZOS4 for both); sizes are ``round(H * outscale)``;
- ``tile=None`` picks the tile with :func:`runtime.tiling.choose_tile`: no tiling when the whole image
  fits the memory budget, because UGTSR's GroupNorm / channel attention use whole-image statistics.
"""
from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ugtsr.errors import UGTSRError, UnsupportedInputError, require

from .backends import Backend, ModelInfo, load_backend
from .backends.base import check_outputs
from .imageio import float_to_image, image_to_float
from .tiling import BLEND_MODES, available_memory_bytes, choose_tile, tile_process

__all__ = ["Upscaler", "default_model_path", "DEFAULT_MODEL_NAME", "estimate_bytes_per_pixel"]

logger = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "ugtsr_tiny_x4.onnx"
ALPHA_UPSAMPLERS = ("linear", "model")


def default_model_path() -> Path:
    """Where the shipped default model lives: ``runtime/models/ugtsr_tiny_x4.onnx`` (may not exist)."""
    return Path(str(resources.files("runtime").joinpath("models", DEFAULT_MODEL_NAME)))


#: largest accepted ``outscale``: an x64 enlargement of even a small image is already gigapixels
MAX_OUTSCALE = 64.0


def _int_option(name: str, value: Any, minimum: int, note: str = "") -> int:
    """``value`` as an int >= ``minimum``, or the toolkit's error (never TypeError/OverflowError)."""
    note = f" {note}" if note else ""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise UnsupportedInputError(f"{name} must be an integer >= {minimum}{note}, got {value!r} "
                                    f"({type(value).__name__})")
    if value < minimum:
        raise UnsupportedInputError(f"{name} must be >= {minimum}{note}, got {value}")
    return int(value)


def _outscale_option(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise UnsupportedInputError(f"outscale must be a number, got {value!r} ({type(value).__name__})")
    if not math.isfinite(value) or not 0 < value <= MAX_OUTSCALE:
        raise UnsupportedInputError(f"outscale must be a finite number in (0, {MAX_OUTSCALE:g}], got {value}")
    return float(value)


def estimate_bytes_per_pixel(info: ModelInfo, *, fused_attention: bool = False) -> float:
    """Heuristic peak memory per *input* pixel, for automatic tiling.

    About seven live float tensors of the output-resolution width (``config["channels"][-1]``) per
    output pixel, i.e. ``scale**2 * width * 4 B * 7`` (28 KiB for FeMaSR x4, 14 KiB for tiny_x4),
    halved for fp16; 32 KiB when the model carries no config. Calibration (issue 13): ``runtime.infer``
    on a 512x512 LR image with ONNX Runtime CPU peaks 13.0 KiB per input pixel above the loaded
    tiny_x4, for the shipped graph and for the re-exported ``sr``-only graph alike
    (``benchmarks/results/latency_peakmem_512_*.json``; 6.5 tensors, 7 keeps a margin). Since the
    runtime's sessions run without ONNX Runtime's memory pattern, later calls in one process peak
    as the first (the session alone at 256x256: 12.6 KiB/px on the first and the fourth call; with
    the pattern 24.7 from the second on). Models with a sub-pixel last stage (config
    ``subpixel_stages``) are estimated from their half-resolution features and the decoder's last
    Align-Attention (below). ``fused_attention``: the backend runs Align-Attention on ONNX Runtime's
    fused CPU kernel (``runtime.backends.ort_graph``; no window scores). Pass ``bytes_per_pixel`` to
    :class:`Upscaler` to override.
    """
    width = 64
    if info.config and isinstance(info.config.get("channels"), list | tuple) and info.config["channels"]:
        width = int(info.config["channels"][-1])
    elif not info.config:
        return 32 * 1024.0
    bytes_per_value = 2 if info.precision == "fp16" else 4
    if not info.config.get("subpixel_stages"):
        return float(info.scale**2 * width * bytes_per_value * 7)
    # sub-pixel last stage: its features are at half the output resolution (a quarter of the pixels),
    # and the peak moves to the decoder's last Align-Attention, whose window scores and their softmax
    # (float32) are alive at once: 2 * heads * window**2 * 4 B per position at that resolution.
    # Calibration: runtime.infer on a 512x512 LR image, a tiny_x4-shaped graph with
    # subpixel_stages 1: 8.9 KiB per input pixel above the loaded model; this gives 9.0.
    positions = (info.scale / 2) ** 2
    if fused_attention and info.config.get("skip_fusion") == "align_attention" and info.config.get("subpixel_skips"):
        # sub-pixel last skip too (the fifth default x4 model): nothing of the LQ branch runs at half the
        # output resolution; the peak is the decoder's stage into it. Calibration, runtime.infer on a
        # 512x512 LR: 2.5 KiB per input pixel above the loaded model; 6 maps of the width give 3.0.
        return float(positions * width * bytes_per_value * 6)
    if fused_attention and info.config.get("skip_fusion") == "align_attention":
        # fused attention: the peak is the encoder's last up stage at half the output resolution while
        # the decoder's feature and the last attention's keys and values are alive (docs/EFFICIENCY.md).
        # Calibration, runtime.infer on a 512x512 LR: 5.4 (x4) and 1.3 (x2) KiB per input pixel above
        # the loaded model (graphs without symbolic intermediate shapes, export.value_info; 6.9 and 1.8
        # with them); 12 maps of the stage's width give 6.0 and 1.5.
        return float(positions * width * bytes_per_value * 12)
    attention = 0.0
    if info.config.get("skip_fusion") == "align_attention":
        try:
            heads, window = int(info.config.get("align_heads", 4)), int(info.config.get("align_window", 8))
        except (TypeError, ValueError):  # not a config this package wrote: plan conservatively
            return 32 * 1024.0
        attention = positions * 2 * heads * window**2 * 4
    return float(positions * width * bytes_per_value * 10 + attention)


class Upscaler:
    """Super-resolve OpenCV images with a UGTSR model.

    Args:
        model: ``.onnx``, ``.pt``/``.pth`` or ``.plan``/``.engine``; ``None`` = the shipped default model;
            or an already opened :class:`runtime.backends.Backend`.
        backend: ``"auto"`` (by extension), ``"onnxruntime"``, ``"torch"`` or ``"tensorrt"``.
        tile: core tile size in input pixels; ``None`` = automatic (no tiling when it fits), ``0`` = off.
        tile_pad: context around each tile in input pixels (tiles overlap by at least twice this).
        batch_size: tiles per backend call.
        outscale: final scale relative to the input (e.g. ``2`` from an x4 model); ``None`` = the model's.
        device, providers, fp16, threads, trt_options: see :func:`runtime.backends.load_backend`.
        blend: tile blending, ``"feather"`` / ``"linear"`` / ``"none"``.
        alpha_upsampler: ``"linear"`` (cv2.resize) or ``"model"``.
        memory_fraction: share of the free memory automatic tiling may plan for.
        bytes_per_pixel: override :func:`estimate_bytes_per_pixel`.
        server, protocol: ``Upscaler(server="HOST:PORT", protocol="grpc"|"http")`` returns a
            :class:`runtime.remote.RemoteUpscaler` (same methods) that upscales on a Triton server
            (``python -m runtime.serve``); the model and the tile options are then the server's.
    """

    def __new__(cls, *args: Any, server: str | None = None, protocol: str = "grpc", **kwargs: Any) -> Any:
        if server is None:
            return super().__new__(cls)
        if args or kwargs:
            raise UnsupportedInputError(
                f"Upscaler(server=...) takes no model or options ({', '.join([*map(repr, args), *kwargs])}): "
                "the server's model and tile settings apply (python -m runtime.serve MODEL --tile ...)")
        from .remote import RemoteUpscaler

        return RemoteUpscaler(server, protocol=protocol)

    def __init__(
        self,
        model: str | os.PathLike | Backend | None = None,
        *,
        backend: str = "auto",
        tile: int | None = None,
        tile_pad: int = 32,
        batch_size: int = 1,
        outscale: float | None = None,
        device: str | None = None,
        providers: str | Sequence[Any] | None = None,
        fp16: bool = False,
        threads: int | None = None,
        trt_options: Mapping[str, Any] | None = None,
        blend: str = "feather",
        alpha_upsampler: str = "linear",
        memory_fraction: float = 0.5,
        bytes_per_pixel: float | None = None,
        server: None = None,
        protocol: str = "grpc",
    ) -> None:
        if tile is not None:
            tile = _int_option("tile", tile, 0, "(0 = no tiling)")
        tile_pad = _int_option("tile_pad", tile_pad, 0)
        batch_size = _int_option("batch_size", batch_size, 1)
        if threads is not None:
            threads = _int_option("threads", threads, 1)
        if outscale is not None:
            outscale = _outscale_option(outscale)
        if blend not in BLEND_MODES:
            raise UnsupportedInputError(f"blend must be one of {', '.join(BLEND_MODES)}, got {blend!r}")
        if alpha_upsampler not in ALPHA_UPSAMPLERS:
            raise UnsupportedInputError(f"alpha_upsampler must be one of {', '.join(ALPHA_UPSAMPLERS)}")
        self._cv2 = require("cv2", extra="runtime", purpose="image resizing")
        if isinstance(model, Backend):
            self.backend = model
        else:
            path = Path(model) if model is not None else default_model_path()
            if model is None and not path.is_file():
                raise UGTSRError(
                    f"no default model is shipped yet ({path} does not exist); pass a model file "
                    "(Python: Upscaler(model=...), CLI: --model PATH)")
            self.backend = load_backend(path, backend=backend, device=device, providers=providers, fp16=fp16,
                                        threads=threads, trt_options=trt_options)
        self.tile = tile
        self.tile_pad = int(tile_pad)
        self.batch_size = int(batch_size)
        self.outscale = outscale
        self.blend = blend
        self.alpha_upsampler = alpha_upsampler
        self.memory_fraction = float(memory_fraction)
        self.bytes_per_pixel = bytes_per_pixel or estimate_bytes_per_pixel(
            self.info, fused_attention=bool(getattr(self.backend, "fused_attention", False)))

    # ---- properties and lifetime ----------------------------------------------------------------------
    @property
    def info(self) -> ModelInfo:
        return self.backend.info

    @property
    def scale(self) -> int:
        return self.info.scale

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> Upscaler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Upscaler({self.info.source!r}, backend={self.backend.name!r}, scale={self.scale})"

    # ---- public API ---------------------------------------------------------------------------------------
    def tile_for(self, height: int, width: int) -> int:
        """The tile size used for an ``height x width`` input (0 = whole image)."""
        if self.tile is not None:
            return int(self.tile)
        available = self.backend.memory_available()
        if available is None:
            available = available_memory_bytes()
        if available is not None:
            available //= self.batch_size
        max_shape = getattr(self.backend, "max_shape", None)
        return choose_tile(height, width, bytes_per_pixel_estimate=self.bytes_per_pixel, available_bytes=available,
                           multiple_of=self.info.multiple_of, tile_pad=self.tile_pad,
                           memory_fraction=self.memory_fraction,
                           max_hw=tuple(max_shape[2:]) if max_shape else None)

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """``(H', W')`` of the output for an ``height x width`` input."""
        if self.outscale is None:
            return height * self.scale, width * self.scale
        return max(1, round(height * self.outscale)), max(1, round(width * self.outscale))

    def upscale(self, image: np.ndarray, *, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """Super-resolve an OpenCV image.

        Args:
            image: gray ``(H, W)`` / ``(H, W, 1)``, BGR ``(H, W, 3)`` or BGRA ``(H, W, 4)``; uint8 or uint16.
            progress: called as ``progress(done_tiles, total_tiles)``.

        Returns:
            The same layout and dtype at :meth:`output_size`.
        """
        out, _ = self._process(image, uncertainty=False, progress=progress)
        return out

    def upscale_with_uncertainty(
        self, image: np.ndarray, *, progress: Callable[[int, int], None] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Like :meth:`upscale`, plus the uncertainty map ``(H', W')`` float32.

        The map is the model's ``s = ln theta`` averaged over the three colour channels (larger = less
        certain), resized like the image when ``outscale`` is set.
        """
        if not self.info.has_uncertainty:
            raise UnsupportedInputError(
                f"{self.info.source}: this model has no uncertainty output (outputs: {', '.join(self.info.outputs)})")
        out, unc = self._process(image, uncertainty=True, progress=progress)
        if unc is None:
            raise UGTSRError(f"{self.info.source}: the backend returned no uncertainty output")
        return out, unc

    def run_tensor(
        self, lq: np.ndarray, *, outputs: Sequence[str] = ("sr",), tile: int | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> dict[str, np.ndarray]:
        """Model-space inference: ``(1, 3, H, W)`` float32 RGB in [0, 1] -> ``{"sr": (1, 3, H*s, W*s)}``
        (not clamped; plus ``"uncertainty"`` when asked for). Pads and tiles like :meth:`upscale`."""
        wanted = tuple(outputs)

        def run(batch: np.ndarray) -> dict[str, np.ndarray]:
            result = (self.backend.run(batch, outputs=wanted) if getattr(self.backend, "selects_outputs", False)
                      else self.backend.run(batch))
            check_outputs(result, batch.shape, self.info)  # shape and NaN/inf, per call
            return {k: result[k] for k in wanted if k in result}

        h, w = lq.shape[-2:]
        return tile_process(
            np.ascontiguousarray(lq, dtype=np.float32), run, scale=self.scale,
            tile=self.tile_for(h, w) if tile is None else tile, tile_pad=self.tile_pad,
            multiple_of=self.info.multiple_of, min_size=self.info.min_size, batch_size=self.batch_size,
            blend=self.blend, progress=progress)  # type: ignore[return-value]

    # ---- internals ----------------------------------------------------------------------------------------
    def _process(
        self, image: np.ndarray, *, uncertainty: bool, progress: Callable[[int, int], None] | None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        cv2 = self._cv2
        rgb, alpha, layout = image_to_float(image)
        h, w = rgb.shape[:2]
        tile = self.tile_for(h, w)
        lq = np.ascontiguousarray(rgb.transpose(2, 0, 1)[None])
        del rgb
        wanted = ("sr", "uncertainty") if uncertainty else ("sr",)
        result = self.run_tensor(lq, outputs=wanted, tile=tile, progress=progress)
        sr = result["sr"][0].transpose(1, 2, 0)  # a view: float_to_image converts it band by band
        unc = result["uncertainty"][0].mean(axis=0) if uncertainty and "uncertainty" in result else None
        del result, lq

        hs, ws = h * self.scale, w * self.scale
        if alpha is not None:
            if self.alpha_upsampler == "model":
                gray = np.repeat(alpha[None, None], 3, axis=1)
                alpha = self.run_tensor(gray, tile=tile)["sr"][0].mean(axis=0)
            else:
                alpha = cv2.resize(alpha, (ws, hs), interpolation=cv2.INTER_LINEAR)

        oh, ow = self.output_size(h, w)
        if (oh, ow) != (hs, ws):
            shrinking = oh * ow < hs * ws
            interp = cv2.INTER_AREA if shrinking else cv2.INTER_LANCZOS4
            sr = cv2.resize(np.ascontiguousarray(sr), (ow, oh), interpolation=interp)
            if alpha is not None:
                alpha = cv2.resize(alpha, (ow, oh), interpolation=interp)
            if unc is not None:
                unc = cv2.resize(unc, (ow, oh), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
        out = float_to_image(sr, alpha, layout)
        return out, (np.ascontiguousarray(unc, dtype=np.float32) if unc is not None else None)
