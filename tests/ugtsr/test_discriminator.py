"""U-Net SN discriminator: FeMaSR/Real-ESRGAN parameter count, key layout, shapes, spectral norm."""

from __future__ import annotations

import pytest
import torch

from ugtsr.discriminator import UNetDiscriminatorSN
from ugtsr.errors import UnsupportedInputError


@pytest.fixture(scope="module")
def disc() -> UNetDiscriminatorSN:
    torch.manual_seed(0)
    return UNetDiscriminatorSN()


def test_parameter_count_matches_femasr(disc):
    assert sum(p.numel() for p in disc.parameters()) == 4_376_897


def test_state_dict_keys_loadable_from_femasr(disc):
    sn = [f"conv{i}.{k}" for i in range(1, 9) for k in ("weight_orig", "weight_u", "weight_v")]
    expected = ["conv0.weight", "conv0.bias", *sn, "conv9.weight", "conv9.bias"]
    sd = disc.state_dict()
    assert sorted(sd) == sorted(expected) and len(sd) == 28
    assert sd["conv1.weight_orig"].shape == (128, 64, 4, 4)
    assert sd["conv3.weight_u"].shape == (512,) and sd["conv3.weight_v"].shape == (256 * 16,)
    assert sd["conv9.weight"].shape == (1, 64, 3, 3)
    # a state dict round-trips strictly into a fresh instance
    other = UNetDiscriminatorSN()
    other.load_state_dict(sd, strict=True)
    x = torch.rand(1, 3, 16, 16)
    disc.eval(), other.eval()
    torch.testing.assert_close(other(x), disc(x))


@pytest.mark.parametrize("size", [(8, 8), (32, 48), (64, 24)])
def test_output_is_per_pixel_logits(disc, size):
    x = torch.rand(2, 3, *size, requires_grad=True)
    out = disc(x)
    assert out.shape == (2, 1, *size)
    out.mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_rejects_sizes_not_multiple_of_8(disc):
    with pytest.raises(UnsupportedInputError, match="multiples of 8"):
        disc(torch.rand(1, 3, 30, 32))


def test_without_skip_connections_same_weights():
    d = UNetDiscriminatorSN(num_feat=16, skip_connection=False)
    assert d(torch.rand(1, 3, 16, 16)).shape == (1, 1, 16, 16)
    assert sum(p.numel() for p in d.parameters()) < 4_376_897


def test_spectral_norm_bounds_largest_singular_value():
    d = UNetDiscriminatorSN(num_feat=8).train()
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        for name in ("conv1", "conv4", "conv8"):
            getattr(d, name).weight_orig.mul_(10.0)  # raw weights far from unit norm
        for _ in range(100):  # each training forward runs one power iteration
            d(x)
    for name in ("conv1", "conv4", "conv8"):
        conv = getattr(d, name)
        raw = conv.weight_orig.reshape(conv.weight_orig.shape[0], -1)
        assert torch.linalg.matrix_norm(raw, ord=2).item() > 3.0
        w = conv.weight.reshape(conv.weight.shape[0], -1)  # effective W / sigma
        assert torch.linalg.matrix_norm(w, ord=2).item() == pytest.approx(1.0, abs=1e-2)
