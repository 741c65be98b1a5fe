"""Model configuration: one frozen, validated dataclass and a plain dict of named presets.

No torch import here: the runtime reads configs out of ONNX metadata without torch installed.

Geometry (FeMaSR, ``basicsr/archs/femasr_arch.py`` of chaofengc/FeMaSR @ 1ca4295): the code map ("latent") sits at
1/8 of the output resolution. ``channels[l]`` is the width at ``latent x 2**l``. The LQ encoder
starts at ``latent x 8/scale`` (``log2(8/scale)`` stride-2 stages), runs Swin layers at the latent
scale and two x2 up-stages that provide the skip features at ``latent x 2`` and ``latent x 4``.
The decoder has three x2 stages. ``scale == 1`` is the HQ prior autoencoder (no Swin, no skips).
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any, Literal

from .errors import ConfigError

__all__ = ["UGTSRConfig", "PRESETS", "get_config", "MATCHING_MODES", "SKIP_FUSION_MODES"]

MATCHING_MODES = ("nearest", "topk", "codeformer")
_INT_FIELDS = ("scale", "latent_scale", "plain_stages", "subpixel_stages", "subpixel_skips", "in_channels", "norm_groups", "codebook_size", "codebook_dim", "swin_heads", "swin_window",
               "top_k", "fusion_heads", "codeformer_dim", "codeformer_layers", "codeformer_heads", "codeformer_ffn",
               "align_window", "align_heads", "uncertainty_hidden")
_POSITIVE_FIELDS = ("norm_groups", "codebook_dim", "swin_heads", "fusion_heads", "codeformer_dim",
                    "codeformer_layers", "codeformer_heads", "codeformer_ffn", "align_heads", "uncertainty_hidden")
_FLOAT_FIELDS = ("norm_eps", "swin_mlp_ratio", "fusion_ffn_factor", "color_fix_sigma")
SKIP_FUSION_MODES = ("add", "align_attention")


@dataclass(frozen=True)
class UGTSRConfig:
    """Everything needed to rebuild a model; travels inside every checkpoint and ONNX file.

    Defaults are FeMaSR's x4 generator (34,059,971 parameters).
    """

    name: str = "custom"
    scale: int = 4
    in_channels: int = 3
    #: output pixels per code-map position: 8 (FeMaSR's geometry) or 4 (a finer code map: a higher
    #: reconstruction ceiling for small codebooks; the decoder then has two x2 stages, not three)
    latent_scale: int = 8
    #: widths at latent x1, x2, x4[, x8]: log2(latent_scale) + 1 of them (FeMaSR's
    #: ``channel_query_dict`` for a 256 frame)
    channels: tuple[int, ...] = (256, 256, 128, 64)
    #: the last ``plain_stages`` decoder stages use norm-free LeakyReLU residual blocks
    #: (``ugtsr.blocks.PlainResBlock``; not FeMaSR's) and so does the uncertainty head: cheaper on CPUs
    plain_stages: int = 0
    #: the last ``subpixel_stages`` (0 or 1) decoder x2 stages compute at their input resolution and
    #: end in a sub-pixel convolution (Conv to 4x the channels + DepthToSpace, Shi et al., CVPR 2016,
    #: arXiv 1609.05158), and so does the uncertainty head: no feature map at the output resolution
    #: (not FeMaSR's; issue 13: a quarter of the memory and FLOPs of that stage)
    subpixel_stages: int = 0
    #: the last ``subpixel_skips`` (0 or 1) skips of the LQ encoder come from a sub-pixel convolution
    #: of the skip before it (Conv3x3 to 4x the channels + DepthToSpace: no up stage and no residual
    #: blocks at that resolution) and are added to the decoder's feature, not fused by Align-Attention
    #: (not FeMaSR's or the paper's; issue 13: nothing of the LQ branch is computed at twice the LR)
    subpixel_skips: int = 0
    norm_groups: int = 32
    norm_eps: float = 1e-6  # FeMaSR's GroupNorm eps (not PyTorch's 1e-5)
    codebook_size: int = 1024
    codebook_dim: int = 512
    # Swin layers at the latent scale (LQ encoder only)
    swin_depths: tuple[int, ...] = (6, 6, 6, 6)
    swin_heads: int = 8
    swin_window: int = 8
    swin_mlp_ratio: float = 4.0
    # codebook matching (paper eqs. 4, 6-8)
    matching: Literal["nearest", "topk", "codeformer"] = "nearest"
    top_k: int = 3
    fusion_heads: int = 8
    fusion_ffn_factor: float = 2.66  # Restormer GDFN expansion
    # CodeFormer-style transformer baseline (Fig. 8)
    codeformer_dim: int = 512
    codeformer_layers: int = 9
    codeformer_heads: int = 8
    codeformer_ffn: int = 1024
    codeformer_grid: tuple[int, int] = (32, 32)
    # fusion of LQ skip features into the decoder (FeMaSR "add" or Align-Attention, eq. 9)
    skip_fusion: Literal["add", "align_attention"] = "add"
    align_window: int = 8
    align_heads: int = 4
    # per-pixel uncertainty head s = ln(theta) (eq. 2)
    uncertainty_head: bool = False
    uncertainty_hidden: int = 64
    # output low band from the input (ugtsr.postfilters.ColorFix): Gaussian sigma in output pixels, 0 = off.
    # Not in the paper; parameter-free; the shipped default model uses it.
    color_fix_sigma: float = 0.0
    # per-pixel blend of the output with bicubic(lq) (ugtsr.postfilters.FidelityGate); not in the paper
    fidelity_gate: bool = False
    #: the gate also reads the LR input over 17x17 LR pixels (FidelityGate's ``context``); needs fidelity_gate
    fidelity_gate_context: bool = False
    #: the gate also reads an image-level estimate of the degradation (FidelityGate's ``global_context``:
    #: LR features averaged over the whole input, a logit offset for the image and a bias for the
    #: context's features); needs fidelity_gate
    fidelity_gate_global: bool = False
    #: the decoder's output is a residual on bicubic(LR) (``sr = bicubic(lq) + decoder(...)``) and its
    #: last stage also reads the LR through a convolution (``UGTSRNet.lr_tail``); not in the paper or
    #: FeMaSR: the global residual of VDSR (Kim et al., CVPR 2016, arXiv 1511.04587), so that what the
    #: LR already holds need not pass through the codebook (issue 14: on a clean LR the network alone
    #: was 1.5-12.6 dB below bicubic)
    bicubic_residual: bool = False

    def __post_init__(self) -> None:
        def bad(msg: str) -> None:
            raise ConfigError(f"invalid UGTSRConfig '{self.name}': {msg}")

        # tuples may arrive as lists from JSON; normalise without breaking frozenness
        for name in ("channels", "swin_depths", "codeformer_grid"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
        # Types and ranges first: a bad value must be a ConfigError here, not a ZeroDivisionError,
        # a TypeError or a reshape error deep in the model (issue 11 item 8).
        if not isinstance(self.name, str):
            bad(f"name must be a string, got {type(self.name).__name__}")
        for name in _INT_FIELDS:
            v = getattr(self, name)
            if not _is_int(v):
                bad(f"{name} must be an integer, got {v!r}")
            if name in _POSITIVE_FIELDS and v < 1:
                bad(f"{name} must be >= 1, got {v}")
        for name in _FLOAT_FIELDS:
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)):
                bad(f"{name} must be a finite number, got {v!r}")
        for name in ("uncertainty_head", "fidelity_gate", "fidelity_gate_context", "fidelity_gate_global",
                     "bicubic_residual"):
            if not isinstance(getattr(self, name), bool):
                bad(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.latent_scale not in (4, 8):
            bad(f"latent_scale must be 8 (FeMaSR's geometry) or 4, got {self.latent_scale}")
        n_channels = self.decoder_stages + 1
        if not 0 <= self.plain_stages <= self.decoder_stages:
            bad(f"plain_stages must be in [0, {self.decoder_stages}], got {self.plain_stages}")
        if self.subpixel_stages not in (0, 1):
            bad(f"subpixel_stages must be 0 or 1, got {self.subpixel_stages}")
        if self.subpixel_skips not in (0, 1):
            bad(f"subpixel_skips must be 0 or 1, got {self.subpixel_skips}")
        if self.subpixel_skips and (self.scale == 1 or self.decoder_stages < 3):
            bad("subpixel_skips needs an SR model with two skips (latent_scale 8)")
        for name, length in (("channels", n_channels), ("codeformer_grid", 2), ("swin_depths", None)):
            v = getattr(self, name)
            if (not isinstance(v, tuple) or (length is not None and len(v) != length)
                    or not all(_is_int(x) and x >= 1 for x in v)):
                n = f"{length} " if length else ""
                bad(f"{name} must be a list of {n}positive integers, got {v!r}")
        if not self.norm_eps > 0:
            bad(f"norm_eps must be > 0, got {self.norm_eps}")
        if self.align_window < 2 or self.align_window % 2:
            # the decoder features at latent x2 / x4 are padded to whole windows of align_window // 2
            # latent pixels; an odd window does not tile them (reshape error at run time)
            bad(f"align_window must be an even number >= 2, got {self.align_window}")
        if int(self.channels[0] * self.swin_mlp_ratio) < 1:
            bad(f"swin_mlp_ratio {self.swin_mlp_ratio} gives an empty Swin MLP (channels[0] * ratio < 1)")
        if int(self.codebook_dim * self.fusion_ffn_factor) < 1:
            bad(f"fusion_ffn_factor {self.fusion_ffn_factor} gives an empty fusion FFN (codebook_dim * factor < 1)")
        if self.scale not in (1, 2, 4):
            bad(f"scale must be 1 (HQ prior), 2 or 4, got {self.scale}")
        if self.latent_scale < self.scale:
            bad(f"latent_scale {self.latent_scale} must be >= scale {self.scale}")
        if self.in_channels != 3:
            bad("only RGB input (in_channels=3) is supported")
        for c in self.channels:
            if c % self.norm_groups:
                bad(f"every width must be divisible by norm_groups={self.norm_groups}, got {c}")
        if self.codebook_size < 2 or self.codebook_dim < 1:
            bad("codebook_size must be >= 2 and codebook_dim >= 1")
        if self.matching not in MATCHING_MODES:
            bad(f"matching must be one of {MATCHING_MODES}, got {self.matching!r}")
        if self.skip_fusion not in SKIP_FUSION_MODES:
            bad(f"skip_fusion must be one of {SKIP_FUSION_MODES}, got {self.skip_fusion!r}")
        if not 1 <= self.top_k <= min(self.codebook_size, 3840):
            bad(f"top_k must be in [1, min(codebook_size, 3840)], got {self.top_k}")
        if self.codebook_dim % self.fusion_heads:
            bad(f"codebook_dim {self.codebook_dim} not divisible by fusion_heads {self.fusion_heads}")
        if self.scale > 1:
            if not self.swin_depths or any(d < 1 for d in self.swin_depths):
                bad("an SR model needs at least one Swin group of depth >= 1")
            if self.channels[0] % self.swin_heads:
                bad(f"channels[0]={self.channels[0]} not divisible by swin_heads={self.swin_heads}")
            if self.swin_window < 2 or self.swin_window % 2:
                bad("swin_window must be an even number >= 2")
        else:
            if self.matching != "nearest" or self.skip_fusion != "add" or self.uncertainty_head:
                bad("the HQ prior (scale 1) uses nearest matching, no skips and no uncertainty head")
        if not (isinstance(self.color_fix_sigma, (int, float)) and 0.0 <= self.color_fix_sigma <= 64.0):
            bad(f"color_fix_sigma must be a number in [0, 64] (0 = off), got {self.color_fix_sigma!r}")
        if self.scale == 1 and self.fidelity_gate:
            bad("the HQ prior (scale 1) has no fidelity gate")
        if self.fidelity_gate_context and not self.fidelity_gate:
            bad("fidelity_gate_context needs fidelity_gate")
        if self.fidelity_gate_global and not self.fidelity_gate:
            bad("fidelity_gate_global needs fidelity_gate")
        if self.scale == 1 and self.bicubic_residual:
            bad("the HQ prior (scale 1) has no bicubic residual")
        if self.scale == 1 and self.color_fix_sigma:
            bad("the HQ prior (scale 1) has no colour fix (color_fix_sigma must be 0)")
        if self.skip_fusion == "align_attention":
            for c in self.channels[1:self.align_skips + 1]:
                if c % self.align_heads:
                    bad(f"skip width {c} not divisible by align_heads={self.align_heads}")
        if self.matching == "codeformer":
            if self.codeformer_dim % self.codeformer_heads:
                bad("codeformer_dim must be divisible by codeformer_heads")

    # --- derived geometry --------------------------------------------------------------------
    @property
    def decoder_stages(self) -> int:
        """x2 stages of the decoder: log2(latent_scale) (3 for FeMaSR's geometry)."""
        return int(math.log2(self.latent_scale))

    @property
    def align_skips(self) -> int:
        """Skips fused by Align-Attention (``skip_fusion == "align_attention"``), from the lowest
        resolution on; the others are added. 0 for the prior and for additive skips."""
        if self.scale == 1 or self.skip_fusion != "align_attention":
            return 0
        return self.decoder_stages - 1 - self.subpixel_skips

    @property
    def encoder_downsamples(self) -> int:
        """Stride-2 stages of the encoder: log2(latent_scale / scale) (latent_scale 8: x4 1, x2 2,
        prior 3; latent_scale 4: x4 0, x2 1, prior 2)."""
        return int(math.log2(self.latent_scale // self.scale))

    @property
    def latent_stride(self) -> int:
        """Input pixels per code-map position (latent_scale 8: x4 2, x2 4, prior 8)."""
        return self.latent_scale // self.scale

    @property
    def multiple_of(self) -> int:
        """Input H and W must be multiples of this for the network itself (the model pads)."""
        if self.scale == 1:
            return self.latent_stride
        window = self.swin_window
        if self.skip_fusion == "align_attention":
            # decoder features at latent x2 / x4 must hold whole attention windows
            window = math.lcm(window, max(1, self.align_window // 2))
        return self.latent_stride * window

    @property
    def is_prior(self) -> bool:
        return self.scale == 1

    def prior_config(self) -> UGTSRConfig:
        """The HQ prior autoencoder (scale 1) with this model's widths and codebook."""
        return dataclasses.replace(
            self, name=f"{self.name}_prior", scale=1, matching="nearest", skip_fusion="add",
            uncertainty_head=False, color_fix_sigma=0.0, fidelity_gate=False, fidelity_gate_context=False,
            fidelity_gate_global=False, bicubic_residual=False,
        )

    def replace(self, **changes: Any) -> UGTSRConfig:
        return dataclasses.replace(self, **changes)

    # --- plain-data round trip (checkpoints, ONNX metadata) -----------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UGTSRConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"a config must be a dict, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown config field(s): {', '.join(unknown)}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ConfigError(f"invalid config: {exc}") from exc

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> UGTSRConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"config is not valid JSON: {exc}") from exc
        return cls.from_dict(data)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _femasr(scale: int) -> UGTSRConfig:
    return UGTSRConfig(name=f"femasr_x{scale}" if scale > 1 else "femasr_prior", scale=scale)


def _ugtsr(scale: int) -> UGTSRConfig:
    return UGTSRConfig(
        name=f"ugtsr_x{scale}", scale=scale, matching="topk", top_k=3,
        skip_fusion="align_attention", uncertainty_head=True,
    )


def _tiny(scale: int) -> UGTSRConfig:
    # Same topology as ugtsr_x*, narrow and shallow: CPU tests and the shipped demo model.
    return UGTSRConfig(
        name=f"tiny_x{scale}", scale=scale, channels=(64, 64, 32, 32), norm_groups=16,
        codebook_size=256, codebook_dim=64, swin_depths=(2, 2), swin_heads=4, swin_window=8,
        matching="topk", top_k=3, fusion_heads=4, skip_fusion="align_attention", align_heads=2,
        uncertainty_head=True, uncertainty_hidden=16,
        codeformer_dim=64, codeformer_layers=2, codeformer_heads=4, codeformer_ffn=128,
    )


def _tiny4(scale: int) -> UGTSRConfig:
    # tiny_x* with a 1/4 code map (latent_scale 4: two decoder stages) and a 1024-code book: a prior
    # with a higher reconstruction ceiling (issue 14); the Swin and matching run at 4x the positions.
    return _tiny(scale).replace(name=f"tiny4_x{scale}", latent_scale=4, channels=(64, 32, 32), codebook_size=1024)


#: Named presets. ``femasr_*`` are exactly FeMaSR's generators; ``ugtsr_*`` the paper's model
#: (top-3 matching, Align-Attention, uncertainty head); ``tiny_*`` the same topology, small.
PRESETS: dict[str, UGTSRConfig] = {
    "femasr_prior": _femasr(1),
    "femasr_x2": _femasr(2),
    "femasr_x4": _femasr(4),
    "ugtsr_x2": _ugtsr(2),
    "ugtsr_x4": _ugtsr(4),
    "tiny_x2": _tiny(2),
    "tiny_x4": _tiny(4),
    "tiny4_x2": _tiny4(2),
    "tiny4_x4": _tiny4(4),
}


def get_config(config_or_name: UGTSRConfig | str | dict) -> UGTSRConfig:
    """A preset by name, a config dict, or a config passed through."""
    if isinstance(config_or_name, UGTSRConfig):
        return config_or_name
    if isinstance(config_or_name, dict):
        return UGTSRConfig.from_dict(config_or_name)
    if isinstance(config_or_name, str):
        try:
            return PRESETS[config_or_name]
        except KeyError:
            raise ConfigError(
                f"unknown preset '{config_or_name}'; choose one of: {', '.join(PRESETS)}"
            ) from None
    raise ConfigError(f"expected a UGTSRConfig, a preset name or a dict, got {type(config_or_name).__name__}")
