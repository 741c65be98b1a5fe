"""PyTorch backend: runs a UGTSR checkpoint (``.pt``) directly, for research and parity checks.

torch and ``ugtsr.load_model`` are imported inside the constructor, so ``runtime`` stays importable
(and its ONNX Runtime path usable) without torch. The model pads internally, but the runtime still
feeds it padded input per the backend contract, so all backends see identical tensors.
"""
from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ugtsr.errors import UGTSRError, UnsupportedInputError, require

from .base import Backend, ModelInfo, check_lq

__all__ = ["TorchBackend"]

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def _torch_warnings_logged() -> Iterator[None]:
    """torch's ``UserWarning``s (deprecations, TF32 notes, ...) go to this module's debug log, not to
    stderr: a user of the runtime cannot act on them, and they break the CLI's one-line output."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    seen: set[str] = set()
    for w in caught:
        text = f"{w.category.__name__}: {w.message}"
        if text not in seen:
            seen.add(text)
            logger.debug("torch: %s (%s:%s)", text, w.filename, w.lineno)


class TorchBackend(Backend):
    """A UGTSR checkpoint loaded with ``ugtsr.load_model``.

    Args:
        checkpoint_path: a checkpoint written by ``ugtsr.save_checkpoint``.
        device: a torch device string (``"cpu"``, ``"cuda"``, ``"cuda:1"``).
        half: run in float16 (inputs and outputs stay float32 numpy arrays).
    """

    name = "torch"

    def __init__(self, checkpoint_path: str | os.PathLike, *, device: str = "cpu", half: bool = False) -> None:
        torch = require("torch", extra="torch", purpose="the torch backend")
        from ugtsr import load_model

        path = Path(checkpoint_path)
        if not path.is_file():
            raise UnsupportedInputError(f"{path}: checkpoint file not found")
        try:
            self._device = torch.device(device)
        except (RuntimeError, TypeError) as exc:
            raise UnsupportedInputError(f"invalid torch device {device!r} ({exc})") from None
        if self._device.type == "cuda" and not torch.cuda.is_available():
            raise UGTSRError(f"device {device!r} requested but torch sees no CUDA GPU; use device='cpu'")
        if half and self._device.type == "cpu":
            raise UnsupportedInputError("half precision needs a CUDA device; use half=False on the CPU")
        with _torch_warnings_logged():
            model = load_model(path)
            model = model.eval().to(self._device)
        self._dtype = torch.float16 if half else torch.float32
        if half:
            model = model.half()
        self._torch = torch
        self._model = model
        config = model.config
        outputs = ["sr"]
        if getattr(config, "uncertainty_head", False):
            outputs.append("uncertainty")
        to_dict = getattr(config, "to_dict", None)
        self.info = ModelInfo(
            scale=int(config.scale),
            multiple_of=int(config.multiple_of),
            min_size=int(getattr(config, "min_size", config.multiple_of)),
            outputs=tuple(outputs),
            precision="fp16" if half else "fp32",
            config=to_dict() if callable(to_dict) else None,
            source=str(path),
        )

    def run(self, lq: np.ndarray) -> dict[str, np.ndarray]:
        """See :meth:`Backend.run`."""
        if self._model is None:
            raise UGTSRError(f"{self.info.source}: the backend is closed")
        check_lq(lq, self.info)
        torch = self._torch
        with torch.inference_mode(), _torch_warnings_logged():
            x = torch.from_numpy(np.ascontiguousarray(lq)).to(self._device, self._dtype)
            out = self._model(x)
            result = {"sr": out.sr.float().cpu().numpy()}
            uncertainty = getattr(out, "uncertainty", None)
            if uncertainty is not None:
                result["uncertainty"] = uncertainty.float().cpu().numpy()
            indices = getattr(out, "indices", None)
            if indices is not None:
                result["indices"] = indices.cpu().numpy()
        return result

    def memory_available(self) -> int | None:
        """Free CUDA memory on the model's GPU; ``None`` (system memory) on the CPU."""
        if self._device.type != "cuda":
            return None
        free, _total = self._torch.cuda.mem_get_info(self._device)
        return int(free)

    def close(self) -> None:
        self._model = None
        if getattr(self, "_device", None) is not None and self._device.type == "cuda":
            self._torch.cuda.empty_cache()
