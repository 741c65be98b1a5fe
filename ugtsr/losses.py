"""Training losses of UGTSR (paper Eqs. 2, 3, 10-15) as pure tensor functions.

Conventions: images are ``(B, 3, H, W)`` float RGB in [0, 1]; every loss returns a 0-dim tensor and
uses the *mean* reduction over all elements (UDL and FeMaSR both average over B*C*H*W). Loss
*weights* of the total objective (Eqs. 14/15: ``L_codebook + L_1 + L_per + λ_adv L_adv + L_ESU|UDL``)
are the trainer's (:class:`ugtsr.train.TrainOptions`: ``gan_weight`` λ_adv = 0.1, ``codebook_weight``,
``pixel_weight``, ``perceptual_weight``); Eq. 13's own α and β are :func:`codebook_loss`'s defaults.

Sources of the conventions the paper leaves open (UDL's released code, github.com/QianNing0/UDL;
FeMaSR's code, github.com/chaofengc/FeMaSR @ 1ca4295: ``VectorQuantizer`` in
``basicsr/archs/femasr_arch.py``, ``gan_type: hinge`` in ``options/train_FeMaSR_LQ_stage.yml``):

* ESU / UDL follow the released UDL code (QianNing0/UDL): ``s = ln θ`` per pixel *and* channel;
  UDL weights ``ŝ = s - min s`` with the minimum taken per image and per channel, ``s`` detached,
  and ``+1`` added by default (the paper's Eq. 3 writes ``s - min s``; the code adds 1 so the
  most certain pixels keep weight 1 instead of 0).
* The codebook loss is FeMaSR's LQ-stage loss: ``β·MSE(ẑ, sg z_gt) + α·Gram`` with α=1, β=0.25.
* The adversarial term is FeMaSR's hinge GAN (the paper's Eq. 12 writes the log form; FeMaSR,
  whose settings the paper says it follows, trains with hinge).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from ugtsr.errors import ConfigError, UnsupportedInputError
from ugtsr.vgg import VGG19_LAYER_NAMES, vgg19_features

__all__ = [
    "DEFAULT_PERCEPTUAL_LAYERS",
    "l1_loss",
    "esu_loss",
    "udl_weights",
    "udl_loss",
    "gram_matrix",
    "gram_loss",
    "codebook_loss",
    "vq_prior_loss",
    "hinge_d_loss",
    "hinge_g_loss",
    "codeformer_ce_loss",
    "PerceptualLoss",
]

#: VGG-19 layers and weights of the perceptual loss: Real-ESRGAN's ``perceptual_opt`` (pre-ReLU conv
#: features, L1). FeMaSR itself trains with LPIPS-VGG, whose learned linear heads need a download.
DEFAULT_PERCEPTUAL_LAYERS: Mapping[str, float] = {
    "conv1_2": 0.1,
    "conv2_2": 0.1,
    "conv3_4": 1.0,
    "conv4_4": 1.0,
    "conv5_4": 1.0,
}


def _check_same_shape(name: str, a: torch.Tensor, b: torch.Tensor) -> None:
    if a.shape != b.shape:
        raise UnsupportedInputError(f"{name}: shapes differ, {tuple(a.shape)} vs {tuple(b.shape)}")


def l1_loss(sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    """Eq. 10: ``mean |I_hr - I_sr|`` over all elements. ``sr``, ``hr``: same shape, e.g. ``(B, 3, H, W)``."""
    _check_same_shape("l1_loss", sr, hr)
    return F.l1_loss(sr, hr)


def esu_loss(sr: torch.Tensor, hr: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Eq. 2 (stage I, estimating sparse uncertainty): ``mean(exp(-s)·|hr - sr| + 2·s)``.

    ``s = ln θ`` (log of the Laplace scale) has the shape of ``sr``: one value per pixel and RGB
    channel, ``(B, 3, H, W)``. Gradients reach both ``sr`` and ``s``; per element the optimum is
    ``s = ln(|hr - sr| / 2)``. Images in [0, 1] shift that optimum by ``-ln 255`` compared with UDL's
    0..255 images; the UDL weights of stage II are invariant to the shift. No clamp (training is
    float32; UDL's head ends in an ELU, ``s > -1``).
    """
    _check_same_shape("esu_loss", sr, hr)
    _check_same_shape("esu_loss (uncertainty)", sr, s)
    return (torch.exp(-s) * (sr - hr).abs()).mean() + 2.0 * s.mean()


def udl_weights(s: torch.Tensor, *, plus_one: bool = True) -> torch.Tensor:
    """Eq. 3's ``ŝ = s - min(s)`` (``+ 1`` when ``plus_one``), from a detached ``s``.

    ``s``: ``(B, C, H, W)`` log-uncertainty from the frozen stage-I branch. The minimum is taken per
    image and per channel over all spatial positions (UDL code: ``s.view(b, c, -1).min(-1)``), not
    over the batch. ``plus_one=True`` (default) matches UDL's released code; ``False`` is the
    paper's formula, which gives the most certain pixel of each channel weight 0. Returns a tensor
    of ``s``'s shape, ``>= 1`` (or ``>= 0``), without gradient.
    """
    if s.dim() < 3:
        raise UnsupportedInputError(
            f"udl_weights: expected (B, C, ...) uncertainty, got shape {tuple(s.shape)}"
        )
    s = s.detach()
    b, c = s.shape[:2]
    minimum = s.reshape(b, c, -1).amin(dim=-1).reshape(b, c, *([1] * (s.dim() - 2)))
    weights = s - minimum
    return weights + 1.0 if plus_one else weights


def udl_loss(sr: torch.Tensor, hr: torch.Tensor, s: torch.Tensor, *, plus_one: bool = True) -> torch.Tensor:
    """Eq. 3 (stage II, uncertainty-driven loss): ``mean(ŝ·|hr - sr|)`` with ``ŝ = udl_weights(s)``.

    ``sr``, ``hr``, ``s``: ``(B, 3, H, W)``; ``s`` is detached (the θ-branch is frozen in stage II),
    so only ``sr`` receives gradient. No ``2s`` term in this stage.
    """
    _check_same_shape("udl_loss", sr, hr)
    _check_same_shape("udl_loss (uncertainty)", sr, s)
    return (udl_weights(s, plus_one=plus_one) * (sr - hr).abs()).mean()


def gram_matrix(x: torch.Tensor) -> torch.Tensor:
    """ψ of Eq. 13: per-sample channel Gram matrix ``Xᵀ X / (h·w)``.

    ``x``: ``(B, C, h, w)``, viewed as ``X`` of shape ``(B, h·w, C)`` (FeMaSR's ``gram_loss``).
    Returns ``(B, C, C)``.
    """
    if x.dim() != 4:
        raise UnsupportedInputError(f"gram_matrix: expected (B, C, h, w), got shape {tuple(x.shape)}")
    b, c, h, w = x.shape
    flat = x.reshape(b, c, h * w)  # = Xᵀ
    return flat @ flat.transpose(1, 2) / (h * w)


def gram_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``mean((ψ(x) - ψ(y))²)`` over ``B·C·C`` (second term of Eq. 13). ``x``, ``y``: ``(B, C, h, w)``."""
    _check_same_shape("gram_loss", x, y)
    return (gram_matrix(x) - gram_matrix(y)).square().mean()


def codebook_loss(
    z: torch.Tensor, z_gt: torch.Tensor, *, beta: float = 0.25, alpha: float = 1.0
) -> torch.Tensor:
    """Eq. 13: ``β·mean((ẑ - sg z_gt)²) + α·gram_loss(ẑ, sg z_gt)`` (FeMaSR's LQ-stage codebook loss).

    ``z``: ``(B, C, h, w)`` LR feature before quantisation (``ẑ^l``); ``z_gt``: same shape, the
    codebook entries selected by the frozen HR branch (``q[E(I_hr), Z]``), detached here. Defaults
    are the paper's β=0.25, α=1.
    """
    _check_same_shape("codebook_loss", z, z_gt)
    target = z_gt.detach()
    return beta * F.mse_loss(z, target) + alpha * gram_loss(z, target)


def vq_prior_loss(z: torch.Tensor, z_q: torch.Tensor, *, beta: float = 0.25) -> torch.Tensor:
    """VQGAN codebook + commitment loss of the HR-prior (HRP) stage (FeMaSR / Esser et al. Eq. 4).

    ``mean((z_q - sg z)²) + β·mean((sg z_q - z)²)``: the first term moves the codebook entries
    ``z_q`` (``(B, C, h, w)``, gathered *before* the straight-through trick) toward the encoder output
    ``z``, the second commits the encoder to its codes.
    """
    _check_same_shape("vq_prior_loss", z, z_q)
    return F.mse_loss(z_q, z.detach()) + beta * F.mse_loss(z, z_q.detach())


def hinge_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator side of the adversarial game (Eq. 12 as trained by FeMaSR, hinge form).

    ``mean(relu(1 - D(I_hr))) + mean(relu(1 + D(I_sr)))``; logits of any shape, e.g. the
    ``(B, 1, H, W)`` maps of :class:`ugtsr.discriminator.UNetDiscriminatorSN`. Pass detached fakes.
    """
    return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()


def hinge_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Generator side of the hinge GAN: ``-mean(D(I_sr))``. The trainer multiplies by ``--gan-weight`` (λ_adv)."""
    return -fake_logits.mean()


def codeformer_ce_loss(logits: torch.Tensor, target_indices: torch.Tensor) -> torch.Tensor:
    """Code-prediction cross-entropy of the CodeFormer-style baseline (CodeFormer stage 2).

    ``logits``: ``(B, N, K)`` token-major, as CodeFormer's head emits them (``N = h·w`` tokens in
    row-major order, ``K`` codebook entries). ``target_indices``: ``(B, h, w)`` int64 in ``[0, K)``,
    the HR codes. Mean over all ``B·N`` tokens.
    """
    if logits.dim() != 3 or target_indices.dim() != 3:
        raise UnsupportedInputError(
            f"codeformer_ce_loss: expected logits (B, N, K) and targets (B, h, w), "
            f"got {tuple(logits.shape)} and {tuple(target_indices.shape)}"
        )
    b, n, k = logits.shape
    if target_indices.shape[0] != b or target_indices.shape[1] * target_indices.shape[2] != n:
        raise UnsupportedInputError(
            f"codeformer_ce_loss: targets {tuple(target_indices.shape)} do not match logits {tuple(logits.shape)}"
        )
    return F.cross_entropy(logits.reshape(b * n, k), target_indices.reshape(b * n).long())


class PerceptualLoss(nn.Module):
    """Eq. 11: distance between frozen VGG-19 features Φ of ``sr`` and ``hr``.

    ``Σ_l w_l · D(Φ_l(sr), Φ_l(hr))`` with ``D`` the mean absolute (``criterion="l1"``, default) or
    mean squared (``"l2"``, the paper's ``‖·‖²₂`` written as a mean) difference. Layers/weights default
    to :data:`DEFAULT_PERCEPTUAL_LAYERS` (Real-ESRGAN/BasicSR: pre-ReLU conv1_2, conv2_2 at 0.1;
    conv3_4, conv4_4, conv5_4 at 1). Inputs ``(B, 3, H, W)`` RGB in [0, 1]; ImageNet normalisation
    is applied inside. ``hr`` features are computed without gradient; the VGG is frozen and stays in
    eval mode.

    ``pretrained=True`` loads ImageNet weights from ``weights_path`` or torch.hub's checkpoint folder
    (no download) and raises :class:`~ugtsr.errors.ConfigError` if they are absent;
    ``pretrained=False`` keeps random weights (tests).
    """

    def __init__(
        self,
        *,
        layer_weights: Mapping[str, float] | None = None,
        criterion: Literal["l1", "l2"] = "l1",
        pretrained: bool = True,
        weights_path: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__()
        weights = dict(DEFAULT_PERCEPTUAL_LAYERS if layer_weights is None else layer_weights)
        bad = [name for name in weights if name not in VGG19_LAYER_NAMES]
        if bad or not weights:
            raise ConfigError(f"PerceptualLoss: unknown or empty VGG-19 layer list {bad or weights}")
        if criterion not in ("l1", "l2"):
            raise ConfigError(f"PerceptualLoss: criterion must be 'l1' or 'l2', got {criterion!r}")
        self.layer_weights = weights
        self.criterion = criterion
        self.vgg = vgg19_features(pretrained=pretrained, weights_path=weights_path)

    def train(self, mode: bool = True) -> PerceptualLoss:
        super().train(mode)
        self.vgg.eval()  # frozen feature extractor: never in training mode
        return self

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        _check_same_shape("PerceptualLoss", sr, hr)
        layers = tuple(self.layer_weights)
        sr_feats = self.vgg(sr, layers)
        with torch.no_grad():
            hr_feats = self.vgg(hr.detach(), layers)
        distance = F.l1_loss if self.criterion == "l1" else F.mse_loss
        total = sr.new_zeros(())
        for name, weight in self.layer_weights.items():
            total = total + weight * distance(sr_feats[name], hr_feats[name])
        return total
