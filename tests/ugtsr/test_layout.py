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
    assert names <= set(module.__all__)
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


def test_model_output_holds_the_match_once():
    """``indices`` and ``z_q`` are read from ``match`` instead of being stored beside it."""
    import dataclasses

    from ugtsr import build_model
    from ugtsr.model import UGTSROutput

    assert [f.name for f in dataclasses.fields(UGTSROutput)] == ["sr", "uncertainty", "z", "match"]
    model = build_model("tiny_x4").eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 20, 28))
    assert out.indices is out.match.indices and out.z_q is out.match.z_q and out.codes is out.match.codes


def test_trainable_summary_reads_requires_grad():
    from ugtsr import build_model
    from ugtsr.config import PRESETS
    from ugtsr.stages import set_trainable, trainable_summary

    model = build_model(PRESETS["tiny_x4"].replace(fidelity_gate=True))
    set_trainable(model, "sr")
    assert trainable_summary(model) == ("trains encoder, quant_in, matcher, skip_fusion, fidelity_gate; "
                                        "frozen codebook, quant_out, decoder, uncertainty_head")
    model.encoder.stem.requires_grad_(False)
    assert "partly encoder" in trainable_summary(model)


def test_no_docstring_points_to_documents_outside_the_repository():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    banned = ("STYLE.md", "method-facts", "femasr-facts", "golden README", "/work/shared", "../shared")
    hits = [f"{p.relative_to(root)}: {b}" for folder in ("ugtsr", "benchmarks", "scripts")
            for p in sorted((root / folder).rglob("*.py")) for b in banned if b in p.read_text()]
    assert not hits, hits
