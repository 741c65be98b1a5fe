"""Checkpoints: config + weights + metadata as plain data, written atomically, read safely.

Layout (a dict saved with ``torch.save``)::

    {"format": "ugtsr-checkpoint", "format_version": 1, "ugtsr_version": "0.1.0",
     "config": {...UGTSRConfig.to_dict()...}, "state_dict": {...}, "ema_state_dict": {...} | None,
     "metadata": {...plain data...}, "training_state": {...} | None}

Reading uses ``torch.load(weights_only=True)``: a file with pickled code is refused, never executed.
Every problem (missing, truncated, corrupt, foreign, unsafe, mismatched) raises
:class:`~ugtsr.errors.CheckpointError` whose message starts with the file name and says what the
file is (an ONNX model, a TensorRT engine, an image, a truncated zip, FeMaSR weights...:
:mod:`ugtsr.filekind`).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import __version__, filekind
from .config import UGTSRConfig
from .errors import CheckpointError, ConfigError, first_line
from .fileio import atomic_open
from .model import UGTSRNet

__all__ = ["Checkpoint", "save_checkpoint", "load_checkpoint", "load_model", "load_matching", "atomic_torch_save",
           "read_torch_file", "FORMAT", "FORMAT_VERSION"]

FORMAT = "ugtsr-checkpoint"
FORMAT_VERSION = 1
_PLAIN = (str, int, float, bool, type(None))
#: state-dict key prefixes of FeMaSR generators (github.com/chaofengc/FeMaSR, basicsr/archs/femasr_arch.py)
_FEMASR_KEYS = ("multiscale_encoder.", "quantize_group.", "after_quant_group.", "decoder_group.")


@dataclass
class Checkpoint:
    """A loaded checkpoint (``load_checkpoint``)."""

    config: UGTSRConfig
    state_dict: dict[str, torch.Tensor]
    metadata: dict[str, Any] = field(default_factory=dict)
    ema_state_dict: dict[str, torch.Tensor] | None = None
    training_state: dict[str, Any] | None = None
    ugtsr_version: str = ""
    path: str = ""

    def build_model(self, *, ema: bool = False) -> UGTSRNet:
        """The model with these weights (``ema=True``: the EMA weights, if present), strict."""
        model = UGTSRNet(self.config)
        weights = self.ema_state_dict if ema and self.ema_state_dict is not None else self.state_dict
        _load_strict(model, weights, self.path)
        return model


def _check_plain(value: Any, where: str) -> None:
    if isinstance(value, _PLAIN) or isinstance(value, torch.Tensor):
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]")
        return
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, (str, int)):
                raise ConfigError(f"checkpoint {where}: keys must be str/int, got {type(k).__name__}")
            _check_plain(v, f"{where}.{k}")
        return
    raise ConfigError(f"checkpoint {where}: {type(value).__name__} is not plain data (str/int/float/bool/None/list/dict/tensor)")


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temp file in the target folder, fsync, then ``os.replace``.

    A crash at any point leaves either the old file or the new one, never a partial file.
    """
    path = Path(path)
    with atomic_open(path) as fh:
        torch.save(obj, fh)
    return path


def _cpu_state(module_or_state: nn.Module | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    state = module_or_state.state_dict() if isinstance(module_or_state, nn.Module) else module_or_state
    return {k: v.detach().to("cpu").clone() for k, v in state.items()}


def save_checkpoint(path: str | Path, model: UGTSRNet, *, ema: nn.Module | Mapping | None = None,
                    training_state: Mapping[str, Any] | None = None, **metadata: Any) -> Path:
    """Write ``model`` (its config travels with it) and plain-data ``metadata`` atomically."""
    if not isinstance(model, UGTSRNet):
        raise ConfigError(f"save_checkpoint expects a UGTSRNet, got {type(model).__name__}")
    _check_plain(metadata, "metadata")
    if training_state is not None:
        _check_plain(training_state, "training_state")
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "ugtsr_version": __version__,
        "config": model.config.to_dict(),
        "state_dict": _cpu_state(model),
        "ema_state_dict": _cpu_state(ema) if ema is not None else None,
        "metadata": dict(metadata),
        "training_state": dict(training_state) if training_state is not None else None,
    }
    return atomic_torch_save(payload, path)


def read_torch_file(path: str | Path) -> Any:
    """``torch.load(path, weights_only=True)`` on CPU, with one :class:`CheckpointError` line saying
    what the file is when it is not a readable PyTorch file (an ONNX model, a TensorRT engine, an
    image, an empty file, a truncated zip, a pickle with code...; see :mod:`ugtsr.filekind`)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file")
    if not path.is_file():
        raise CheckpointError(f"{path}: not a file")
    try:
        with open(path, "rb") as fh:
            head = fh.read(filekind.HEAD_BYTES)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not head:
        raise CheckpointError(f"{path}: empty file (0 bytes)")
    foreign = filekind.foreign_format(head, path.suffix.lower())
    if foreign:
        raise CheckpointError(f"{path}: {foreign}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for foreign bytes; explain, never execute
        raise CheckpointError(f"{path}: {filekind.diagnose_load_failure(path, exc)}") from None


def _looks_like_femasr(obj: Any) -> bool:
    if not isinstance(obj, dict):
        return False
    for key in ("params_ema", "params"):
        if isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    return any(isinstance(k, str) and k.removeprefix("module.").startswith(_FEMASR_KEYS) for k in obj)


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a UGTSR checkpoint safely; see the module docstring for what is rejected."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file")
    if not path.is_file():
        raise CheckpointError(f"{path}: not a file")
    obj = read_torch_file(path)
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        hint = ""
        if _looks_like_femasr(obj):
            hint = " (it holds FeMaSR weights: load them with ugtsr.femasr.load_femasr)"
        raise CheckpointError(f"{path}: not a UGTSR checkpoint{hint}")
    version = obj.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {version!r} is newer than this toolkit "
                              f"supports ({FORMAT_VERSION}); upgrade ugtsr")
    try:
        config = UGTSRConfig.from_dict(obj["config"])
    except (KeyError, ConfigError) as exc:
        raise CheckpointError(f"{path}: invalid model config ({first_line(exc)})") from None
    state = obj.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: 'state_dict' is missing or not a dict of tensors")
    return Checkpoint(
        config=config, state_dict=state, metadata=obj.get("metadata") or {},
        ema_state_dict=obj.get("ema_state_dict"), training_state=obj.get("training_state"),
        ugtsr_version=str(obj.get("ugtsr_version", "")), path=str(path),
    )


def key_problems(missing: list[str], unexpected: list[str], mis_shaped: list[str], *, limit: int = 10) -> list[str]:
    """One phrase per kind of state-dict mismatch (the first ``limit`` names each), for error lines."""
    def names(items: list[str], sep: str) -> str:
        return sep.join(items[:limit]) + (" ..." if len(items) > limit else "")

    parts = []
    if missing:
        parts.append(f"missing {len(missing)}: {names(missing, ', ')}")
    if unexpected:
        parts.append(f"unexpected {len(unexpected)}: {names(unexpected, ', ')}")
    if mis_shaped:
        parts.append(f"mis-shaped {len(mis_shaped)}: {names(mis_shaped, '; ')}")
    return parts


def _load_strict(model: nn.Module, state: Mapping[str, torch.Tensor], path: str) -> None:
    target = model.state_dict()
    missing = sorted(set(target) - set(state))
    unexpected = sorted(set(state) - set(target))
    shapes = [f"{k} {list(state[k].shape)} vs {list(target[k].shape)}" for k in sorted(set(state) & set(target))
              if tuple(state[k].shape) != tuple(target[k].shape)]
    parts = key_problems(missing, unexpected, shapes)
    if parts:
        raise CheckpointError(f"{path}: weights do not fit the config: {' | '.join(parts)}")
    model.load_state_dict(state, strict=True)


def load_matching(model: nn.Module, state: Mapping[str, torch.Tensor]) -> list[str]:
    """Load every tensor of ``state`` whose name and shape the model has; return the model keys left
    at their initialisation (sorted). For starting one model from a related one (another stage,
    scale or preset); :func:`load_model` is the strict loader."""
    target = model.state_dict()
    fitting = {k: v for k, v in state.items() if k in target and tuple(v.shape) == tuple(target[k].shape)}
    model.load_state_dict(fitting, strict=False)
    return sorted(set(target) - set(fitting))


def load_model(path: str | Path, *, ema: bool = False, device: str | torch.device = "cpu") -> UGTSRNet:
    """The model stored in a UGTSR checkpoint, in eval mode, on ``device``."""
    model = load_checkpoint(path).build_model(ema=ema)
    return model.to(device).eval()
