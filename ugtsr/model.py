"""UGTSR network: FeMaSR's VQGAN backbone with Top-k matching, Align-Attention and an uncertainty head.

Paper: Wen et al., "Incorporating Uncertainty-Guided and Top-k Codebook Matching for Real-World Blind
Image Super-Resolution", arXiv 2506.07809. Backbone: FeMaSR (Chen et al., ACM MM 2022).

Data flow (``scale`` 2 or 4; the HQ prior, ``scale`` 1, has no Swin, no up stages and no skips)::

    lq (B,3,h,w) --pad--> stem (k4 s1 p1) -> down stages -> Swin -> latent feature
                                                            \\-> 2 up stages -> skips at latent x2, x4
    latent --quant_in (1x1)--> z --matcher (nearest | topk | codeformer)--> z_q
    z_q --quant_out (3x3)--> decoder stage 0 -> [skip fusion] stage 1 -> [skip fusion] stage 2
        -> out_conv -> sr (B,3,h*s,w*s)        (and -> uncertainty head -> s = ln(theta))

The output is not clamped (FeMaSR clamps only when writing images).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .attention import AlignAttention
from .blocks import DownStage, PlainResBlock, SubpixelConv, UpStage
from .config import UGTSRConfig, get_config
from .errors import UnsupportedInputError
from .matching import Codebook, MatchResult, build_matcher
from .postfilters import ColorFix, FidelityGate, bicubic_upsample
from .swin import SwinStack

__all__ = ["UGTSROutput", "UGTSRNet", "Encoder", "Decoder", "UncertaintyHead", "build_model",
           "count_parameters", "pad_to_multiple"]


@dataclass
class UGTSROutput:
    """Result of ``UGTSRNet.forward``; everything training needs comes out of one pass.

    ``sr`` ``(B, 3, h*s, w*s)`` float (not clamped); ``uncertainty`` ``(B, 3, h*s, w*s)`` s = ln(theta)
    or None; ``z`` the pre-quantization feature; ``match`` the full :class:`MatchResult`, whose fields
    are also readable here: ``indices`` ``(B, h', w')`` int64 final codes on the code map
    (``h' = ceil(h / multiple_of) * multiple_of / latent_stride``, i.e. of the padded input), ``z_q``
    the feature fed to the decoder, ``codes``, ``candidates``, ``fused``, ``logits``.
    """

    sr: torch.Tensor
    uncertainty: torch.Tensor | None
    z: torch.Tensor
    match: MatchResult

    @property
    def indices(self) -> torch.Tensor:
        return self.match.indices

    @property
    def z_q(self) -> torch.Tensor:
        return self.match.z_q

    @property
    def candidates(self) -> torch.Tensor | None:
        return self.match.candidates

    @property
    def fused(self) -> torch.Tensor | None:
        return self.match.fused

    @property
    def logits(self) -> torch.Tensor | None:
        return self.match.logits

    @property
    def codes(self) -> torch.Tensor:
        return self.match.codes


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, int, int]:
    """Pad ``(B, C, H, W)`` at the bottom/right to multiples of ``multiple``.

    Reflect padding where possible (pad < size), replicate otherwise. Returns the padded tensor and
    the pad amounts ``(pad_h, pad_w)``.
    """
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x, 0, 0
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode), ph, pw


class Encoder(nn.Module):
    """LQ encoder (or the HQ prior's encoder when ``scale == 1``)."""

    def __init__(self, config: UGTSRConfig) -> None:
        super().__init__()
        ch, g, eps = config.channels, config.norm_groups, config.norm_eps
        n_down = config.encoder_downsamples
        if n_down:
            self.stem = nn.Conv2d(config.in_channels, ch[n_down], 4, padding=1)  # H -> H-1 (FeMaSR's in_conv)
        else:  # latent_scale == scale (x4 with a 1/4 code map): no stride-2 stage to undo the H-1
            self.stem = nn.Conv2d(config.in_channels, ch[0], 3, padding=1)
        self.down = nn.ModuleList(DownStage(ch[lvl], ch[lvl - 1], groups=g, eps=eps) for lvl in range(n_down, 0, -1))
        self.swin: SwinStack | None = None
        self.up = nn.ModuleList()
        if not config.is_prior:
            self.swin = SwinStack(ch[0], depths=config.swin_depths, heads=config.swin_heads,
                                  window=config.swin_window, mlp_ratio=config.swin_mlp_ratio)
            # skips for every decoder stage but the first: latent x2, x4 (latent_scale 8) or x2 (4);
            # the last ``subpixel_skips`` of them a sub-pixel convolution of the skip before
            n_up = config.decoder_stages - 1
            self.up = nn.ModuleList(
                SubpixelConv(ch[i], ch[i + 1]) if i >= n_up - config.subpixel_skips
                else UpStage(ch[i], ch[i + 1], groups=g, eps=eps)
                for i in range(n_up))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Returns the latent feature ``(B, ch0, h, w)`` and the skips at ``x2``[, ``x4``] (SR only)."""
        x = self.stem(x)
        for stage in self.down:
            x = stage(x)
        if self.swin is None:
            return x, []
        latent = self.swin(x)
        skips = []
        x = latent
        for stage in self.up:
            x = stage(x)
            skips.append(x)
        return latent, skips


class Decoder(nn.Module):
    """Three (latent_scale 8) or two (4) x2 stages with optional skip fusion, then out_conv."""

    def __init__(self, config: UGTSRConfig) -> None:
        super().__init__()
        ch, g, eps = config.channels, config.norm_groups, config.norm_eps
        n = config.decoder_stages
        self.stages = nn.ModuleList(UpStage(ch[i], ch[i + 1], groups=g, eps=eps, plain=i >= n - config.plain_stages,
                                            upsample=i < n - config.subpixel_stages)
                                    for i in range(n))
        #: sub-pixel output (``subpixel_stages``): Conv to 3 * 4 channels, then DepthToSpace x2
        self.shuffle = 2 if config.subpixel_stages else 1
        self.out_conv = nn.Conv2d(ch[-1], 3 * self.shuffle ** 2, 3, padding=1)

    @staticmethod
    def fuse_skip(i: int, x: torch.Tensor, skips: list[torch.Tensor], fusion: nn.ModuleList | None) -> torch.Tensor:
        """Stage ``i``'s input (``i >= 1``): ``x`` with the encoder's skip ``i - 1`` fused by
        Align-Attention, or added (additive skips, and those past the Align-Attention ones:
        ``UGTSRConfig.subpixel_skips``)."""
        skip = skips[i - 1]
        return fusion[i - 1](x, skip) if fusion is not None and i <= len(fusion) else x + skip

    def last_stage_input(self, x: torch.Tensor, skips: list[torch.Tensor], fusion: nn.ModuleList | None, *,
                         fuse_last: bool = True) -> torch.Tensor:
        """The feature that enters the last stage: every stage before it, and each stage's skip
        fusion (``ugtsr.train.distill_tail`` trains a new last stage on it); with ``fuse_last=False``
        without the last stage's own skip (what ``distill_tail --student skip`` caches)."""
        last = len(self.stages) - 1
        for i, stage in enumerate(self.stages):
            if i > 0 and skips and (i < last or fuse_last):
                x = self.fuse_skip(i, x, skips, fusion)
            if i == last:
                return x
            x = stage(x)
        raise AssertionError("unreachable: a decoder has at least one stage")

    def forward(self, x: torch.Tensor, skips: list[torch.Tensor], fusion: nn.ModuleList | None,
                extra: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``x``: after quant_out ``(B, ch0, h, w)``. Returns ``(sr, last feature (B, ch[-1], Lh, Lw))``
        with ``L = latent_scale`` (``L / 2`` with ``subpixel_stages``). ``extra`` (``UGTSRNet.lr_tail``'s
        output) is added to the last stage's input."""
        x = self.last_stage_input(x, skips, fusion)
        return self.finish(x if extra is None else x + extra.to(x.dtype))

    def finish(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The last stage and the output convolution on :meth:`last_stage_input`'s feature:
        ``(sr, last feature)`` as :meth:`forward` returns them."""
        x = self.stages[-1](x)
        out = self.out_conv(x)
        return (F.pixel_shuffle(out, self.shuffle) if self.shuffle > 1 else out), x


class UncertaintyHead(nn.Module):
    """Predicts s = ln(theta) per pixel and channel from the last decoder feature (eq. 2).

    Conv3x3-SiLU-Conv3x3-SiLU-Conv3x3(->3), then ``s = B tanh(x / B)`` with ``B = 10``: a smooth
    bound that keeps ``exp(-s)`` finite in the ESU loss without a dead gradient. UDL's released code
    ends in an ELU instead (s > -1), but it works on a 0..255 scale; on our [0, 1] images the ESU
    optimum ``s = ln(|error| / 2)`` lies around -3 to -6, below that floor, and an ELU head
    saturates at -1 everywhere (a flat map).
    """

    bound = 10.0


    def __init__(self, channels: int, hidden: int, *, plain: bool = False, shuffle: int = 1) -> None:
        super().__init__()
        # plain (UGTSRConfig.plain_stages > 0): LeakyReLU(0.2), which ONNX Runtime fuses into the convs
        self.plain = plain
        # shuffle 2 (UGTSRConfig.subpixel_stages): the feature is at half the output resolution and the
        # last convolution is a sub-pixel one, like the decoder's out_conv
        self.shuffle = shuffle
        self.conv1 = nn.Conv2d(channels, hidden, 3, padding=1)
        self.conv2 = nn.Conv2d(hidden, hidden, 3, padding=1)
        self.conv3 = nn.Conv2d(hidden, 3 * shuffle ** 2, 3, padding=1)

    def _act(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x, PlainResBlock.slope) if self.plain else F.silu(x)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        x = self._act(self.conv1(feat))
        x = self._act(self.conv2(x))
        x = self.conv3(x)
        if self.shuffle > 1:
            x = F.pixel_shuffle(x, self.shuffle)
        return self.bound * torch.tanh(x / self.bound)


class UGTSRNet(nn.Module):
    """The whole network; ``forward(lq)`` takes ``(B, 3, h, w)`` float in [0, 1], any h, w >= 16."""

    def __init__(self, config: UGTSRConfig) -> None:
        super().__init__()
        self.config = config
        ch = config.channels
        self.encoder = Encoder(config)
        self.quant_in = nn.Conv2d(ch[0], config.codebook_dim, 1)
        self.codebook = Codebook(config.codebook_size, config.codebook_dim)
        self.matcher = build_matcher(config)
        self.quant_out = nn.Conv2d(config.codebook_dim, ch[0], 3, padding=1)
        self.decoder = Decoder(config)
        self.skip_fusion: nn.ModuleList | None = None
        if config.skip_fusion == "align_attention":
            self.skip_fusion = nn.ModuleList(
                AlignAttention(c, heads=config.align_heads, window=config.align_window)
                for c in ch[1:config.align_skips + 1]
            )
        self.uncertainty_head = (UncertaintyHead(ch[-1], config.uncertainty_hidden,
                                                plain=config.plain_stages > 0, shuffle=self.decoder.shuffle)
                                 if config.uncertainty_head else None)
        self.color_fix = ColorFix(config.scale, config.color_fix_sigma) if config.color_fix_sigma > 0 else None
        self.fidelity_gate = (FidelityGate(config.scale, context=config.fidelity_gate_context,
                                           global_context=config.fidelity_gate_global)
                              if config.fidelity_gate else None)
        #: bicubic_residual: the LR into the decoder's last stage (Conv3x3 3 -> c * f^2, DepthToSpace f,
        #: f = the last stage's input pixels per LR pixel) and the bicubic weights of the residual
        self.lr_tail: nn.Module | None = None
        if config.bicubic_residual:
            f = config.scale // 2
            c = ch[config.decoder_stages - 1]
            self.lr_tail = SubpixelConv(config.in_channels, c, factor=f)
            self.register_buffer("bicubic", FidelityGate.bicubic_weight(config.scale), persistent=False)
        #: training only (``ugtsr.train --train-decoder``): the uncertainty head reads a detached
        #: feature, so that its ESU loss trains the head and not the decoder
        self.detach_uncertainty_input = False

    # --- descriptor (spandrel-style) -------------------------------------------------------
    @property
    def scale(self) -> int:
        return self.config.scale

    @property
    def multiple_of(self) -> int:
        return self.config.multiple_of

    min_size = 16

    # --- pieces -----------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Unpadded input -> ``(z, skips)``; ``z`` is the pre-quantization feature ``(B, d, h, w)``."""
        latent, skips = self.encoder(x)
        return self.quant_in(latent), skips

    def match(self, z: torch.Tensor) -> MatchResult:
        return self.matcher(z, self.codebook.embedding)

    def decode(self, z_q: torch.Tensor, skips: list[torch.Tensor],
               lq: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Quantized feature (+ skips) -> ``(sr, uncertainty or None)``; with ``bicubic_residual`` the
        (unpadded-to-multiple) LR ``lq`` is required."""
        if self.lr_tail is not None and lq is None:
            raise ValueError("a model with bicubic_residual decodes with the LR input")
        extra = self.lr_tail(lq.to(self.lr_tail.conv.weight.dtype)) if self.lr_tail is not None else None
        sr, feat = self.decoder(self.quant_out(z_q), skips, self.skip_fusion, extra)
        sr = self.add_residual(sr, lq)
        if self.uncertainty_head is None:
            return sr, None
        unc = self.uncertainty_head(feat.detach() if self.detach_uncertainty_input else feat)
        return sr, unc

    def add_residual(self, sr: torch.Tensor, lq: torch.Tensor | None) -> torch.Tensor:
        """``sr + bicubic(lq)`` with ``bicubic_residual`` (``sr`` unchanged otherwise)."""
        if self.lr_tail is None:
            return sr
        return sr + bicubic_upsample(lq.to(sr.dtype), self.bicubic, self.config.scale)

    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """Index map ``(B, h, w)`` -> image ``(B, 3, Lh, Lw)`` (``L = latent_scale``) through the prior
        decoder (no skips)."""
        sr, _ = self.decoder(self.quant_out(self.codebook.codes(indices)), [], None)
        return sr

    def forward_unpadded(self, x: torch.Tensor) -> UGTSROutput:
        """The network on an input whose H, W are multiples of ``multiple_of`` (no padding)."""
        z, skips = self.encode(x)
        m = self.match(z)
        sr, unc = self.decode(m.z_q, skips, x)
        return UGTSROutput(sr=self.post_filter(sr, x), uncertainty=unc, z=z, match=m)

    def post_filter(self, sr: torch.Tensor, lq: torch.Tensor) -> torch.Tensor:
        """The colour fix and the fidelity gate (those the config has) on the decoder's output."""
        if self.color_fix is not None:
            sr = self.color_fix(sr, lq)
        if self.fidelity_gate is not None:
            sr = self.fidelity_gate(sr, lq)
        return sr

    def forward(self, lq: torch.Tensor) -> UGTSROutput:
        if lq.dim() != 4 or lq.shape[1] != self.config.in_channels:
            raise UnsupportedInputError(f"expected input (B, 3, H, W), got {tuple(lq.shape)}")
        h, w = lq.shape[-2:]
        if h < self.min_size or w < self.min_size:
            raise UnsupportedInputError(f"input {h}x{w} is smaller than the minimum {self.min_size}x{self.min_size}")
        x, ph, pw = pad_to_multiple(lq, self.multiple_of)
        out = self.forward_unpadded(x)
        if ph or pw:
            s = self.scale
            out.sr = out.sr[..., : h * s, : w * s]
            if out.uncertainty is not None:
                out.uncertainty = out.uncertainty[..., : h * s, : w * s]
        return out


def build_model(config_or_name: UGTSRConfig | str | dict) -> UGTSRNet:
    """A fresh model from a preset name (``"ugtsr_x4"``), a config dict or a :class:`UGTSRConfig`."""
    return UGTSRNet(get_config(config_or_name))


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)

