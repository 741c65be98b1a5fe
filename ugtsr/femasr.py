"""Load FeMaSR's weights (its released ``.pth`` files or any state dict laid out like its generator).

FeMaSR (Chen et al., "Real-World Blind Super-Resolution via Feature Matching with Implicit
High-Resolution Priors", ACM MM 2022; github.com/chaofengc/FeMaSR). Its released weights
(``FeMaSR_HRP_model_g.pth``, ``FeMaSR_SRX2_model_g.pth``, ``FeMaSR_SRX4_model_g.pth``) are licensed
for NON-COMMERCIAL use only (CC BY-NC-SA 4.0, as stated by the FeMaSR repository); a model built
from them inherits that restriction. This module ships no weights and downloads nothing.

Key layout facts: FeMaSR's ``femasr_arch.py`` / ``fema_utils.py`` / ``network_swinir.py`` @ 1ca4295 and spandrel's FeMaSR loader. FeMaSR's names are
mapped onto this package's own module names by :func:`femasr_key_to_ugtsr`; every key must map and
every parameter of the target model must be filled (strict), with shapes checked.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path

import torch

from .checkpoint import FORMAT, key_problems, read_torch_file
from .config import PRESETS, UGTSRConfig
from .errors import CheckpointError
from .model import UGTSRNet, build_model
from .swin import relative_position_index

__all__ = ["femasr_key_to_ugtsr", "convert_femasr_state_dict", "from_femasr_state_dict", "load_femasr",
           "load_femasr_prior", "read_femasr_file", "STALE_PREFIXES", "femasr_symmetric_pad", "femasr_test_forward"]

log = logging.getLogger(__name__)

#: Keys of released files that the current FeMaSR forward never uses (spandrel drops the same).
STALE_PREFIXES = ("sft_fusion_group.", "multiscale_encoder.upsampler.", "conv_semantic.", "vgg_feat_extractor.")
_SWIN_BUFFERS = ("relative_position_index", "attn_mask")

_RES = {"conv.0.norm": "norm1", "conv.2": "conv1", "conv.3.norm": "norm2", "conv.5": "conv2"}
_SWIN_LEAF = {
    "norm1": "norm1", "norm2": "norm2", "attn.qkv": "attn.qkv", "attn.proj": "attn.proj",
    "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2",
}


def _resblock(rest: str) -> str | None:
    for src, dst in _RES.items():
        if rest.startswith(src + "."):
            return dst + rest[len(src):]
    return None


def femasr_key_to_ugtsr(key: str, *, scale: int) -> str | None:
    """Map one FeMaSR generator key to this package's name, or None if the key is unknown.

    ``scale`` 1 (HQ prior), 2 or 4 fixes where the Swin and up stages sit in FeMaSR's
    ``multiscale_encoder.blocks`` list.
    """
    n_down = {1: 3, 2: 2, 4: 1}[scale]
    if key.startswith("multiscale_encoder.in_conv."):
        return "encoder.stem." + key.rsplit(".", 1)[1]
    m = re.fullmatch(r"multiscale_encoder\.blocks\.(\d+)\.(.+)", key)
    if m:
        i, rest = int(m.group(1)), m.group(2)
        if i < n_down:  # down stage: .0 conv, .1/.2 ResBlocks
            if rest.startswith("0."):
                return f"encoder.down.{i}.conv.{rest[2:]}"
            r = re.fullmatch(r"([12])\.(.+)", rest)
            mapped = _resblock(r.group(2)) if r else None
            return f"encoder.down.{i}.res.{int(r.group(1)) - 1}.{mapped}" if mapped else None
        if scale > 1 and i == n_down:  # Swin layers
            s = re.fullmatch(r"swin_blks\.(\d+)\.(.+)", rest)
            if not s:
                return None
            g, tail = s.group(1), s.group(2)
            if tail.startswith("conv."):
                return f"encoder.swin.groups.{g}.{tail}"
            b = re.fullmatch(r"residual_group\.blocks\.(\d+)\.(.+)", tail)
            if not b:
                return None
            blk, leaf = b.group(1), b.group(2)
            if leaf == "attn.relative_position_bias_table":
                return f"encoder.swin.groups.{g}.blocks.{blk}.attn.relative_position_bias_table"
            for src, dst in _SWIN_LEAF.items():
                if leaf.startswith(src + "."):
                    return f"encoder.swin.groups.{g}.blocks.{blk}.{dst}{leaf[len(src):]}"
            return None
        if scale > 1 and i in (n_down + 1, n_down + 2):  # up stages: .1 conv, .2/.3 ResBlocks
            j = i - n_down - 1
            if rest.startswith("1."):
                return f"encoder.up.{j}.conv.{rest[2:]}"
            r = re.fullmatch(r"([23])\.(.+)", rest)
            mapped = _resblock(r.group(2)) if r else None
            return f"encoder.up.{j}.res.{int(r.group(1)) - 2}.{mapped}" if mapped else None
        return None
    if key.startswith("before_quant_group.0."):
        return "quant_in." + key.rsplit(".", 1)[1]
    if key == "quantize_group.0.embedding.weight":
        return "codebook.embedding"
    if key.startswith("after_quant_group.0.conv."):
        return "quant_out." + key.rsplit(".", 1)[1]
    m = re.fullmatch(r"decoder_group\.(\d)\.block\.(\d)\.(.+)", key)
    if m:
        i, j, rest = m.group(1), int(m.group(2)), m.group(3)
        if j == 1:
            return f"decoder.stages.{i}.conv.{rest}"
        mapped = _resblock(rest) if j in (2, 3) else None
        return f"decoder.stages.{i}.res.{j - 2}.{mapped}" if mapped else None
    if key.startswith("out_conv."):
        return "decoder.out_conv." + key.rsplit(".", 1)[1]
    return None


def _is_swin_buffer(key: str) -> bool:
    return key.rsplit(".", 1)[-1] in _SWIN_BUFFERS


def _check_swin_buffer(key: str, value: torch.Tensor, window: int) -> str | None:
    """Released files carry Swin buffers; accept them if they are what the module computes."""
    leaf = key.rsplit(".", 1)[-1]
    if leaf == "relative_position_index":
        expected = relative_position_index(window)
        if tuple(value.shape) != tuple(expected.shape) or not torch.equal(value.to(torch.int64), expected):
            return f"{key}: relative_position_index differs from the one for window {window}"
    elif leaf == "attn_mask" and value.dim() != 3:
        return f"{key}: attn_mask should be (nW, N, N), got {tuple(value.shape)}"
    return None


def convert_femasr_state_dict(state_dict: Mapping[str, torch.Tensor], *, scale: int,
                              model: UGTSRNet) -> dict[str, torch.Tensor]:
    """FeMaSR key names -> this package's, validated against ``model`` (strict, shapes checked).

    Raises :class:`CheckpointError` listing every unexpected, missing or mis-shaped key.
    """
    target = model.state_dict()
    window = model.config.swin_window
    converted: dict[str, torch.Tensor] = {}
    unexpected, mis_shaped, bad_buffers = [], [], []
    for key, value in state_dict.items():
        if key.startswith(STALE_PREFIXES):
            continue
        if _is_swin_buffer(key):
            problem = _check_swin_buffer(key, value, window)
            if problem:
                bad_buffers.append(problem)
            continue
        new = femasr_key_to_ugtsr(key, scale=scale)
        if new is None or new not in target:
            unexpected.append(key)
            continue
        if tuple(value.shape) != tuple(target[new].shape):
            mis_shaped.append(f"{key} {list(value.shape)} (model expects {list(target[new].shape)})")
            continue
        converted[new] = value
    missing = sorted(set(target) - set(converted))
    problems = key_problems(missing, unexpected, mis_shaped, limit=20)
    if bad_buffers:
        problems.append("; ".join(bad_buffers[:5]))
    if problems:
        raise CheckpointError(f"state dict does not fit femasr_x{scale}: " + " | ".join(problems))
    return converted


def _femasr_config(scale: int) -> UGTSRConfig:
    if scale not in (1, 2, 4):
        raise CheckpointError(f"FeMaSR models exist for scale 1 (HQ prior), 2 and 4, not {scale}")
    return PRESETS["femasr_prior" if scale == 1 else f"femasr_x{scale}"]


def from_femasr_state_dict(state_dict: Mapping[str, torch.Tensor], *, scale: int) -> UGTSRNet:
    """Build ``femasr_x{scale}`` (scale 1 = the HQ prior autoencoder) carrying these FeMaSR weights."""
    model = build_model(_femasr_config(scale))
    converted = convert_femasr_state_dict(state_dict, scale=scale, model=model)
    model.load_state_dict(converted, strict=True)
    return model


def read_femasr_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a FeMaSR ``.pth`` safely (``weights_only=True``): ``params_ema`` > ``params`` > raw dict."""
    path = Path(path)
    obj = read_torch_file(path)  # never executes pickled code; says what a foreign file is
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        raise CheckpointError(f"{path}: is a UGTSR checkpoint, not FeMaSR weights: load it with ugtsr.load_model")
    if isinstance(obj, dict):
        for k in ("params_ema", "params"):
            if isinstance(obj.get(k), dict):
                obj = obj[k]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: does not hold a state dict of tensors")
    return {(k[7:] if k.startswith("module.") else k): v for k, v in obj.items()}


def _guess_scale(state: Mapping[str, torch.Tensor]) -> int:
    w = state.get("multiscale_encoder.in_conv.weight")
    if w is None:
        raise CheckpointError("not a FeMaSR generator: no 'multiscale_encoder.in_conv.weight'")
    # in_conv width encodes the input resolution: 64 -> HRP (256 px), 128 -> x2, 256 -> x4
    return {64: 1, 128: 2, 256: 4}.get(int(w.shape[0]), 0) or 4


def load_femasr(path: str | Path, *, scale: int | None = None) -> UGTSRNet:
    """Build the FeMaSR model stored in a released ``.pth`` (scale guessed from the weights if None).

    FeMaSR's weights are non-commercial (CC BY-NC-SA 4.0).
    """
    state = read_femasr_file(path)
    scale = scale if scale is not None else _guess_scale(state)
    try:
        return from_femasr_state_dict(state, scale=scale)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None


_PRIOR_PREFIXES = ("quantize_group.", "after_quant_group.", "decoder_group.", "out_conv.")


def load_femasr_prior(model: UGTSRNet, source: str | Path | Mapping[str, torch.Tensor]) -> UGTSRNet:
    """Copy FeMaSR's HQ prior (codebook, after_quant, decoder, out_conv) into ``model`` in place.

    ``source`` is any FeMaSR generator file or state dict (HRP, x2 or x4: their decoder halves are
    the frozen prior). The model must have FeMaSR's widths (``channels``, codebook 1024 x 512).
    """
    state = read_femasr_file(source) if isinstance(source, (str, Path)) else dict(source)
    target = model.state_dict()
    loaded, problems = {}, []
    for key, value in state.items():
        if not key.startswith(_PRIOR_PREFIXES):
            continue
        new = femasr_key_to_ugtsr(key, scale=1)
        if new is None or new not in target:
            problems.append(f"unexpected {key}")
        elif tuple(value.shape) != tuple(target[new].shape):
            problems.append(f"{key} {list(value.shape)} vs {list(target[new].shape)}")
        else:
            loaded[new] = value
    wanted = {k for k in target if k.startswith(("codebook.", "quant_out.", "decoder."))}
    missing = sorted(wanted - set(loaded))
    if missing:
        problems.append(f"missing {', '.join(missing[:10])}")
    if problems:
        raise CheckpointError(f"FeMaSR prior does not fit '{model.config.name}': {'; '.join(problems[:10])}")
    model.load_state_dict(loaded, strict=False)
    log.info("loaded FeMaSR prior (%d tensors) into %s", len(loaded), model.config.name)
    return model


def femasr_symmetric_pad(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """FeMaSR's ``test()`` padding: to the next multiple *strictly above* the size (1..multiple
    rows/columns always added), by appending the flipped image (a mirror that repeats the edge)."""
    h, w = x.shape[-2:]
    ph, pw = multiple - h % multiple, multiple - w % multiple
    x = torch.cat([x, torch.flip(x, dims=[2])], dim=2)[:, :, : h + ph]
    return torch.cat([x, torch.flip(x, dims=[3])], dim=3)[:, :, :, : w + pw]


@torch.no_grad()
def femasr_test_forward(model: UGTSRNet, lq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """FeMaSR's inference path (``FeMaSRNet.test``): symmetric pad to ``(8 // scale) * 8``, run,
    crop. Returns ``(sr, indices at the padded size)``. For parity checks with FeMaSR's own
    outputs; the toolkit's own forward pads minimally with reflection instead."""
    s = model.config.scale
    x = femasr_symmetric_pad(lq, (8 // s) * 8)
    out = model.forward_unpadded(x)
    h, w = lq.shape[-2:]
    return out.sr[..., : h * s, : w * s], out.indices
