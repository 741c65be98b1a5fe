"""Checkpoints for export tests: weights with well-separated codes, non-trivial fusion layers."""
from __future__ import annotations

import pytest
import torch

import ugtsr
from ugtsr.femasr import convert_femasr_state_dict

from ..ugtsr import golden_weights as gw


def perturb_new_layers(model, std: float) -> None:
    """Zero-initialised residual outputs (Top-k fusion, Align-Attention) get random weights so the
    export exercises those paths."""
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        if hasattr(model.matcher, "fusion"):
            w = model.matcher.fusion.out.weight
            w.copy_(torch.randn(w.shape, generator=g) * std)
        if model.skip_fusion is not None:
            for aa in model.skip_fusion:
                aa.proj.weight.copy_(torch.randn(aa.proj.weight.shape, generator=g) * std)


def tiny_model():
    torch.manual_seed(3)
    model = ugtsr.build_model("tiny_x4")
    with torch.no_grad():  # codes spread like a trained codebook (FeMaSR golden recipe: std 0.5)
        model.codebook.embedding.normal_(0.0, 0.5)
    perturb_new_layers(model, 0.05)
    return model.eval()


def ugtsr_x4_model():
    """ugtsr_x4 carrying FeMaSR's synthetic golden weights where names match (codes far from ties)."""
    model = ugtsr.build_model("ugtsr_x4")
    femasr = ugtsr.build_model("femasr_x4")
    sd = convert_femasr_state_dict(gw.make_state_dict("x4"), scale=4, model=femasr)
    missing = model.load_state_dict(sd, strict=False)
    assert not missing.unexpected_keys
    perturb_new_layers(model, 0.01)
    return model.eval()


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    ugtsr.save_checkpoint(path, tiny_model())
    return path
