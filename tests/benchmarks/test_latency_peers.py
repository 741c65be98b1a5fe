"""benchmarks.latency --peers and the ONNX Runtime formulation of the norms (issue 13)."""
from __future__ import annotations

import importlib.util

import pytest
import torch

from ugtsr.attention import ChannelLayerNorm
from ugtsr.blocks import _group_norm


def test_compact_peer_gflop_is_the_conv_formula():
    if importlib.util.find_spec("spandrel") is None:  # not importorskip: `import spandrel` needs torchvision
        pytest.skip("spandrel is not installed (pip install --no-deps 'spandrel==0.4.2')")
    from benchmarks.latency_peers import COMPACT, build_peer, count_gflop

    model = build_peer(COMPACT)
    # 3x3 convs 3->64, 32 x 64->64, 64->48 (3 * 4**2 before the pixel shuffle), with biases; 33 PReLU of 64
    weights = 9 * (3 * 64 + 32 * 64 * 64 + 64 * 48) + 64 + 32 * 64 + 48 + 33 * 64
    assert sum(p.numel() for p in model.parameters()) == weights
    h = w = 32
    convs = 3 * 64 + 32 * 64 * 64 + 64 * 48  # in, body, to 3 * 4**2 channels before the pixel shuffle
    total, part = count_gflop(model, h, w)
    assert total == pytest.approx(2 * 9 * h * w * convs / 1e9, rel=1e-9)
    assert part == 0.0


def test_session_options_turn_the_memory_pattern_off():
    ort = pytest.importorskip("onnxruntime")
    from runtime.backends.onnxruntime import session_options

    opts = session_options(ort, threads=2)
    assert opts.enable_mem_pattern is False
    assert opts.intra_op_num_threads == 2
    assert opts.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_export_formulation_of_the_norms_equals_eager(monkeypatch, dtype):
    torch.manual_seed(0)
    gn = torch.nn.GroupNorm(4, 16, eps=1e-6).to(dtype)
    ln = ChannelLayerNorm(16).to(dtype)
    with torch.no_grad():
        for p in (gn.weight, gn.bias, ln.weight, ln.bias):
            p.normal_()
    x = (torch.randn(2, 16, 9, 7, dtype=dtype) * 3 + 1)
    eager_gn, eager_ln = gn(x), ln(x)
    assert torch.equal(_group_norm(gn, x), eager_gn)  # outside an export: the module itself
    monkeypatch.setattr(torch.onnx, "is_in_onnx_export", lambda: True)
    got_gn, got_ln = _group_norm(gn, x), ln(x)
    assert got_gn.dtype == dtype and got_ln.dtype == dtype
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(got_gn, eager_gn, atol=tol, rtol=0)
    torch.testing.assert_close(got_ln, eager_ln, atol=tol, rtol=0)


def test_paired_ratio_cancels_load_that_changes_mid_run():
    from benchmarks.latency_peers import paired_ratio

    # ours takes 1.25x the reference's time in each round but the third (where the host slowed 2x
    # between the two calls) and the two medians come from different halves of the run: the paired
    # median stays at the true ratio, the ratio of medians does not
    ref = [100.0, 100.0, 100.0, 200.0, 200.0]
    ours = [125.0, 125.0, 250.0, 250.0, 250.0]
    got = paired_ratio(40.0, ours, 40.0, ref)
    assert got["median"] == 0.8 and got["q25"] <= got["median"] <= got["q75"]
    medians = (40.0 / 250.0) / (40.0 / 100.0)  # what the ratio of medians says: 0.4
    assert abs(medians - 0.4) < 1e-12 and got["median"] != round(medians, 3)
    # FLOP counts scale the ratio
    assert paired_ratio(20.0, [100.0], 40.0, [100.0])["median"] == 0.5
    with pytest.raises(ValueError):
        paired_ratio(1.0, [1.0, 2.0], 1.0, [1.0])
