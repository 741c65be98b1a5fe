"""Output post-filters of the SR model: the colour fix and the fidelity gate, and their filters.

Neither is in the UGTSR paper; both are part of the model (trained through, exported in the ONNX
graph) and off in every preset (config ``color_fix_sigma``, ``fidelity_gate``).

* :class:`ColorFix` -- the output's low band from the LR input, with a Gaussian low-pass
  (:func:`gaussian_kernel1d`, :func:`gaussian_lowpass`).
* :class:`FidelityGate` -- a learned per-pixel blend of the output with bicubic(LR), the bicubic
  as one grouped convolution (:func:`bicubic_phase_taps`, :func:`bicubic_upsample`).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ColorFix", "FidelityGate", "gaussian_kernel1d", "gaussian_lowpass", "bicubic_phase_taps",
           "bicubic_upsample"]


def gaussian_kernel1d(sigma: float, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Normalised 1-D Gaussian taps, radius ``ceil(3 sigma)`` (at least 1)."""
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    radius = max(1, int(math.ceil(3.0 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).to(dtype)


def gaussian_lowpass(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur of ``(B, C, H, W)`` with *normalised convolution* at the borders.

    Zero padding, then division by the blurred all-ones image: every output pixel is the
    Gaussian-weighted mean of the pixels that exist (no reflection, no edge replication). The graph
    is two depthwise ``Conv`` per pass -- nothing that TensorRT or ONNX Runtime lacks -- and works on
    any image size, also smaller than the kernel. One pass blurs ``[x, ones]`` together.
    """
    c = x.shape[1]
    r = (kernel.numel() - 1) // 2
    k = kernel.to(x.dtype)
    ones = torch.ones_like(x[:, :1])
    y = torch.cat([x, ones], dim=1)
    y = F.conv2d(y, k.view(1, 1, 1, -1).expand(c + 1, 1, 1, -1), padding=(0, r), groups=c + 1)
    y = F.conv2d(y, k.view(1, 1, -1, 1).expand(c + 1, 1, -1, 1), padding=(r, 0), groups=c + 1)
    return y[:, :c] / y[:, c:]


class ColorFix(nn.Module):
    """Take the output's low-frequency band from the input: ``sr + G(up(lq) - sr)``.

    ``G`` is a Gaussian low-pass of ``sigma`` output pixels (:func:`gaussian_lowpass`) and ``up`` is
    bilinear upsampling by ``scale``. The result keeps the network's band above the cut-off and
    the input's band below it: colours and large-scale brightness then follow the LR image instead
    of the codebook, whose few codes cannot represent them exactly. This is the "colour fix"
    that generative SR methods apply to their outputs (StableSR's ``adain``/``wavelet`` colour fix,
    here with a Gaussian split so that the graph stays two depthwise convolutions); in this
    project it is part of the model -- trained through, exported in the ONNX graph.
    ``sigma = 4`` at x4 is one LR pixel: low enough to leave the LR's noise and JPEG blocks out.
    """

    def __init__(self, scale: int, sigma: float) -> None:
        super().__init__()
        self.scale = int(scale)
        self.sigma = float(sigma)
        self.register_buffer("kernel", gaussian_kernel1d(self.sigma), persistent=False)

    def forward(self, sr: torch.Tensor, lq: torch.Tensor) -> torch.Tensor:
        lq = lq.to(sr.dtype)  # FP16 models: the decoder half (and so sr) is FP16, the input FP32
        up = F.interpolate(lq, scale_factor=float(self.scale), mode="bilinear", align_corners=False)
        return sr + gaussian_lowpass(up - sr, self.kernel)

    def extra_repr(self) -> str:
        return f"scale={self.scale}, sigma={self.sigma}"


def bicubic_phase_taps(scale: int, a: float = -0.75) -> torch.Tensor:
    """``(scale, 5)`` float64: the 5-tap filters (LR offsets -2..2) of bicubic upsampling by ``scale``.

    Output pixel ``scale*i + p`` samples the input at ``i + (p + 0.5)/scale - 0.5`` (half-pixel
    centres) with Keys' cubic of parameter ``a`` -- cv2's ``INTER_CUBIC`` (a = -0.75).
    """
    taps = torch.zeros(scale, 5, dtype=torch.float64)
    for p in range(scale):
        pos = (p + 0.5) / scale - 0.5
        base = math.floor(pos)
        for j in range(base - 1, base + 3):
            d = abs(pos - j)
            w = (a + 2) * d**3 - (a + 3) * d**2 + 1 if d <= 1 else a * d**3 - 5 * a * d**2 + 8 * a * d - 4 * a
            taps[p, j + 2] += w
    return taps


def _replicate_pad2(x: torch.Tensor) -> torch.Tensor:
    """Edge replication by 2 pixels on each side, as Slice + Concat (no Pad mode in the graph)."""
    x = torch.cat([x[..., :1, :], x[..., :1, :], x, x[..., -1:, :], x[..., -1:, :]], dim=-2)
    return torch.cat([x[..., :1], x[..., :1], x, x[..., -1:], x[..., -1:]], dim=-1)


def bicubic_upsample(x: torch.Tensor, weight: torch.Tensor, scale: int) -> torch.Tensor:
    """Bicubic upsampling of ``(B, C, h, w)`` by an integer ``scale`` as one grouped 5x5 ``Conv``
    (one output channel per sub-pixel phase) and ``DepthToSpace``; ``weight`` from
    :meth:`FidelityGate.bicubic_weight`. Equals cv2 ``INTER_CUBIC`` (edge-replicated borders), with
    only operators TensorRT's ONNX parser takes (no ``Resize`` cubic mode)."""
    c = x.shape[1]
    y = F.conv2d(_replicate_pad2(x), weight.to(x.dtype).repeat(c, 1, 1, 1), groups=c)
    return F.pixel_shuffle(y, scale)


class FidelityGate(nn.Module):
    """Per-pixel choice between the network's output and bicubic interpolation of the input.

    ``out = sr + w * (bicubic(lq) - sr)`` with ``w = sigmoid(g([bicubic(lq), sr]))`` in (0, 1) from
    three 3x3 convolutions. Where the LR is clean, its bicubic interpolation is the more faithful
    estimate and the gate can lean on it; where the LR is noisy, blurred or compressed, on the
    restoration. The last convolution starts at zero weight and bias -4 (w = 0.018), so a model
    that gains the gate starts out as it was. Not in the paper (see README, "Fidelity gate").
    """

    def __init__(self, scale: int, hidden: int = 16, *, context: bool = False, global_context: bool = False) -> None:
        super().__init__()
        self.scale = int(scale)
        self.body = nn.Sequential(nn.Conv2d(6, hidden, 3, padding=1), nn.SiLU(),
                                  nn.Conv2d(hidden, hidden, 3, padding=1), nn.SiLU(),
                                  nn.Conv2d(hidden, 1, 3, padding=1))
        nn.init.zeros_(self.body[-1].weight)
        nn.init.constant_(self.body[-1].bias, -4.0)
        # context (config fidelity_gate_context): logits from the LR input over 17x17 LR pixels
        # (3x3 convolutions dilated 1, 2, 4, 1), bilinearly upsampled and added to the body's. The
        # body sees about two LR pixels: too little to tell a clean LR from a noisy or compressed
        # one, which is what the choice depends on. Zero-initialised: a gate that gains it starts
        # out as it was.
        self.context: nn.Sequential | None = None
        if context:
            self.context = nn.Sequential(
                nn.Conv2d(3, hidden, 3, padding=1), nn.LeakyReLU(0.2),
                nn.Conv2d(hidden, hidden, 3, padding=2, dilation=2), nn.LeakyReLU(0.2),
                nn.Conv2d(hidden, hidden, 3, padding=4, dilation=4), nn.LeakyReLU(0.2),
                nn.Conv2d(hidden, 1, 3, padding=1))
            nn.init.zeros_(self.context[-1].weight)
            nn.init.zeros_(self.context[-1].bias)
        # global_context (config fidelity_gate_global): an image-level estimate of the degradation.
        # LR features at 1/4 of the LR resolution, averaged over the whole input (in float32), give
        # one logit offset for the image and one bias per feature of the context's first layer. The
        # local context sees 17x17 LR pixels: too little to tell a clean LR (where bicubic is the
        # more faithful estimate everywhere) from a mildly degraded one; a measured gate with the
        # local context alone blended the same on a clean and a BSRGAN-degraded input of one photo.
        # The estimate is taken over what the network is given: the whole image, or one tile when
        # the runtime tiles. Zero-initialised: a gate that gains it starts out as it was.
        # The features read the LR and its high-pass residual (LR minus its 3x3 mean: noise, JPEG
        # edges and the sharpness that blur removes) and are pooled as their mean and their log mean
        # square (an energy: noise levels and blur differ by orders of magnitude).
        self.global_features: nn.Sequential | None = None
        self.global_head: nn.Sequential | None = None
        if global_context:
            wide = 2 * hidden
            self.global_features = nn.Sequential(
                nn.Conv2d(6, hidden, 3, padding=1), nn.LeakyReLU(0.2),
                nn.Conv2d(hidden, wide, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
                nn.Conv2d(wide, wide, 3, stride=2, padding=1))
            self.global_head = nn.Sequential(nn.Linear(2 * wide, wide), nn.LeakyReLU(0.2),
                                             nn.Linear(wide, 1 + (hidden if context else 0)))
            nn.init.zeros_(self.global_head[-1].weight)
            nn.init.zeros_(self.global_head[-1].bias)
        self.register_buffer("bicubic", self.bicubic_weight(self.scale), persistent=False)
        #: set by :meth:`fold_constant_branches` (inference graphs): the body's / the context's
        #: logits do not depend on the input, so they are their last layer's bias
        self.constant_body = False
        self.constant_context = False

    def fold_constant_branches(self) -> tuple[bool, bool]:
        """For inference: mark the body and the context as constant where their last convolution's
        weights are all zero, so that :meth:`weight_map` uses that layer's bias instead of running
        the branch. Returns ``(constant_body, constant_context)``.

        The shipped third and fourth default models blend one weight per image: their gate was fitted
        with the local parts' last layers at zero (``ugtsr.train.gate_cache --iters 0``), and the body
        then ran three convolutions at the output resolution (16 channels, 3 % of the FLOPs and a
        large share of the memory of tiny_x4) to produce a constant. The values are those of the
        branches (a zero-weight convolution gives its bias; bilinear upsampling of a constant is that
        constant up to rounding, below 1e-6). Training never calls this; call it again after the
        weights change."""
        with torch.no_grad():
            self.constant_body = bool((self.body[-1].weight == 0).all())
            self.constant_context = self.context is not None and bool((self.context[-1].weight == 0).all())
        return self.constant_body, self.constant_context

    def global_estimate(self, lq: torch.Tensor) -> torch.Tensor:
        """``(B, 1 [+ hidden])``: the image-level logit offset (and the context's feature biases)."""
        assert self.global_features is not None and self.global_head is not None
        high = lq - F.avg_pool2d(lq, 3, stride=1, padding=1, count_include_pad=False)
        f = self.global_features(torch.cat([lq, 8.0 * high], dim=1)).float()  # FP16 graphs: statistics in FP32
        # f * f, not f.square(): the same values, and aten.square has no translation in torch.onnx's
        # registry, which made the export run its whole decomposition pass (issue 13: ~6 s of 19)
        pooled = torch.cat([f.mean(dim=(2, 3)), torch.log((f * f).mean(dim=(2, 3)) + 1e-6)], dim=1)
        return self.global_head(pooled.to(lq.dtype))

    @staticmethod
    def bicubic_weight(scale: int) -> torch.Tensor:
        """``(scale**2, 1, 5, 5)`` float32: channel ``py*scale + px`` holds the outer product of the
        phase filters (:func:`bicubic_phase_taps`)."""
        t = bicubic_phase_taps(scale)
        w = torch.einsum("yi,xj->yxij", t, t).reshape(scale * scale, 1, 5, 5)
        return w.float()

    def weight_map(self, sr: torch.Tensor, bic: torch.Tensor, lq: torch.Tensor | None = None) -> torch.Tensor:
        if (self.context is not None or self.global_head is not None) and lq is None:
            raise ValueError("a gate with context needs the LR input")
        if self.constant_body:  # (B|1, 1, 1, 1): broadcast below
            logits = self.body[-1].bias.to(sr.dtype).view(1, 1, 1, 1)
        else:
            logits = self.body(torch.cat([bic, sr], dim=1))
        g = self.global_estimate(lq.to(sr.dtype)) if self.global_head is not None else None
        if self.context is not None and self.constant_context:
            logits = logits + self.context[-1].bias.to(sr.dtype).view(1, 1, 1, 1)
        elif self.context is not None:
            lq = lq.to(sr.dtype)
            if g is None:
                c = self.context(lq)
            else:  # the image-level estimate biases the context's first features
                c = self.context[0](lq) + g[:, 1:, None, None]
                for layer in self.context[1:]:
                    c = layer(c)
            ctx = F.interpolate(c, scale_factor=float(self.scale), mode="bilinear", align_corners=False)
            logits = logits + ctx
        if g is not None:
            logits = logits + g[:, :1, None, None]
        return torch.sigmoid(logits)

    def forward(self, sr: torch.Tensor, lq: torch.Tensor) -> torch.Tensor:
        bic = bicubic_upsample(lq.to(sr.dtype), self.bicubic, self.scale)
        return sr + self.weight_map(sr, bic, lq) * (bic - sr)
