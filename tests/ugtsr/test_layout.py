"""Module layout of ``ugtsr``: one concern per module (issue 11, code health)."""
from __future__ import annotations

import importlib

import pytest
import torch

import ugtsr.blocks as blocks
import ugtsr.ops as ops
import ugtsr.postfilters as postfilters


@pytest.mark.parametrize("module, names", [
    (blocks, {"ResBlock", "DownStage", "UpStage", "upsample2x"}),
    (postfilters, {"ColorFix", "FidelityGate", "gaussian_kernel1d", "gaussian_lowpass", "bicubic_phase_taps",
                   "bicubic_upsample"}),
    (ops, {"softmax_fp32"}),
])
def test_each_module_exports_its_own_concern(module, names):
    assert set(module.__all__) == names
    for name in names:
        assert getattr(module, name).__module__ == module.__name__


def test_attention_swin_and_matching_take_softmax_from_ops_not_blocks():
    for name in ("ugtsr.attention", "ugtsr.swin", "ugtsr.matching"):
        mod = importlib.import_module(name)
        assert mod.softmax_fp32 is ops.softmax_fp32
    assert not hasattr(blocks, "softmax_fp32") and not hasattr(blocks, "ColorFix")
    assert importlib.import_module("ugtsr.attention").ChannelLayerNorm.__module__ == "ugtsr.attention"


def test_softmax_fp32_is_computed_in_float32_and_keeps_the_dtype():
    x = torch.tensor([[0.0, 12.0, 12.5]], dtype=torch.float16)
    y = ops.softmax_fp32(x)
    assert y.dtype == torch.float16
    torch.testing.assert_close(y.float(), x.float().softmax(-1).half().float())
    x64 = torch.randn(3, 5, dtype=torch.float64)
    assert torch.equal(ops.softmax_fp32(x64), x64.softmax(-1))
