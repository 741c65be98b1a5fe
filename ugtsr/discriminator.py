"""U-Net discriminator with spectral normalisation (Real-ESRGAN, Wang et al., ICCVW 2021, arXiv 2107.10833).

This is the D that FeMaSR trains with (``UNetDiscriminatorSN(num_in_ch=3, num_feat=64,
skip_connection=True)``) and that UGTSR inherits (Eq. 12, weighted by ``λ_adv = 0.1``). It outputs
one realness logit per pixel. Parameter and buffer names (``conv0`` .. ``conv9``; ``weight_orig``,
``weight_u``, ``weight_v`` on the spectral-normed ``conv1`` .. ``conv8``) match the released
``FeMaSR_HRP_model_d.pth`` so it can be resumed from it. At ``num_in_ch=3, num_feat=64`` the module
has 4,376,897 parameters and 28 state-dict entries.

Layout (F = ``num_feat``; LReLU slope 0.2 after every conv except the last):
``conv0`` 3x3 in->F (bias) | ``conv1..3`` 4x4 stride-2 down F->2F->4F->8F | three times: bilinear x2 up,
``conv4..6`` 3x3 8F->4F->2F->F, plus the encoder feature of the same size (skip) | ``conv7``, ``conv8``
3x3 F->F | ``conv9`` 3x3 F->1 (bias). conv1..conv8 have no bias (spectral norm, legacy
``torch.nn.utils.spectral_norm`` hooks, which give the ``weight_orig/_u/_v`` key names).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import spectral_norm

from ugtsr.errors import UnsupportedInputError

__all__ = ["UNetDiscriminatorSN"]

_SLOPE = 0.2


class UNetDiscriminatorSN(nn.Module):
    """Per-pixel GAN discriminator.

    ``forward(x)``: ``x`` is ``(B, num_in_ch, H, W)`` float (images in [0, 1]); H and W must be
    multiples of 8 (three stride-2 stages and their mirrored upsampling). Returns ``(B, 1, H, W)``
    raw logits (no sigmoid; use with :func:`ugtsr.losses.hinge_d_loss` / ``hinge_g_loss``).
    """

    def __init__(self, *, num_in_ch: int = 3, num_feat: int = 64, skip_connection: bool = True) -> None:
        super().__init__()
        f = num_feat
        self.skip_connection = skip_connection
        self.conv0 = nn.Conv2d(num_in_ch, f, 3, 1, 1)
        # encoder: 4x4 stride-2 convs halve the size each time
        self.conv1 = spectral_norm(nn.Conv2d(f, f * 2, 4, 2, 1, bias=False))
        self.conv2 = spectral_norm(nn.Conv2d(f * 2, f * 4, 4, 2, 1, bias=False))
        self.conv3 = spectral_norm(nn.Conv2d(f * 4, f * 8, 4, 2, 1, bias=False))
        # decoder: applied after each bilinear x2 upsampling
        self.conv4 = spectral_norm(nn.Conv2d(f * 8, f * 4, 3, 1, 1, bias=False))
        self.conv5 = spectral_norm(nn.Conv2d(f * 4, f * 2, 3, 1, 1, bias=False))
        self.conv6 = spectral_norm(nn.Conv2d(f * 2, f, 3, 1, 1, bias=False))
        # head
        self.conv7 = spectral_norm(nn.Conv2d(f, f, 3, 1, 1, bias=False))
        self.conv8 = spectral_norm(nn.Conv2d(f, f, 3, 1, 1, bias=False))
        self.conv9 = nn.Conv2d(f, 1, 3, 1, 1)

    def _up(self, x: torch.Tensor, conv: nn.Module, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        x = F.leaky_relu(conv(x), _SLOPE)
        return x + skip if self.skip_connection else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[-2] % 8 or x.shape[-1] % 8:
            raise UnsupportedInputError(
                f"UNetDiscriminatorSN needs a (B, C, H, W) tensor with H and W multiples of 8, got {tuple(x.shape)}"
            )
        x0 = F.leaky_relu(self.conv0(x), _SLOPE)
        x1 = F.leaky_relu(self.conv1(x0), _SLOPE)
        x2 = F.leaky_relu(self.conv2(x1), _SLOPE)
        x3 = F.leaky_relu(self.conv3(x2), _SLOPE)
        y = self._up(x3, self.conv4, x2)
        y = self._up(y, self.conv5, x1)
        y = self._up(y, self.conv6, x0)
        y = F.leaky_relu(self.conv7(y), _SLOPE)
        y = F.leaky_relu(self.conv8(y), _SLOPE)
        return self.conv9(y)
