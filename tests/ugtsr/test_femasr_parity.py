"""FeMaSR parity: our backbone on FeMaSR-layout weights reproduces FeMaSR's own outputs.

Golden files (tests/data/femasr) were computed by FeMaSR's code; tolerances from their README
section 6: indices exact, sr within 2e-4 (float32) and 2e-6 (float64).
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ugtsr import PRESETS, count_parameters
from ugtsr.errors import CheckpointError
from ugtsr.femasr import femasr_key_to_ugtsr, femasr_test_forward, from_femasr_state_dict, load_femasr

from . import golden_weights as gw

CASES = [("x4", 4, "x4_64.npz"), ("hrp", 1, "hrp_256.npz")]


@pytest.fixture(scope="module", params=CASES, ids=[c[0] for c in CASES])
def case(request):
    name, scale, npz = request.param
    sd = gw.make_state_dict(name)
    return name, scale, sd, np.load(gw.DATA / npz)


def test_recipe_matches_published_sha256():
    for name in ("hrp", "x4", "x2"):
        assert gw.state_dict_sha256(gw.make_state_dict(name)) == gw.PUBLISHED_SHA256[name]


@pytest.mark.parametrize("name,scale", [("hrp", 1), ("x4", 4), ("x2", 2)])
def test_every_manifest_key_is_consumed(name, scale):
    model = from_femasr_state_dict(gw.make_state_dict(name), scale=scale)
    manifest = gw.manifest(name)
    params = [k for k in manifest if not k.endswith(("relative_position_index", "attn_mask"))
              and not k.startswith(("conv_semantic.", "vgg_feat_extractor."))]
    mapped = {femasr_key_to_ugtsr(k, scale=scale) for k in params}
    assert None not in mapped
    assert mapped == set(model.state_dict())  # a bijection onto our parameters
    assert len(mapped) == len(params)


def test_parameter_counts_equal_femasr():
    from ugtsr import build_model
    assert count_parameters(build_model("femasr_x4")) == 34_059_971
    assert count_parameters(build_model("femasr_x2")) == 36_711_235
    assert count_parameters(build_model("femasr_prior")) == 12_176_707


def test_forward_path_float32(case):
    name, scale, sd, d = case
    torch.set_num_threads(1)
    model = from_femasr_state_dict(sd, scale=scale).eval()
    with torch.no_grad():
        out = model(torch.from_numpy(d["input"]))
    np.testing.assert_array_equal(out.indices.numpy(), d["indices"][:, 0])
    assert np.abs(out.sr.numpy() - d["out"]).max() <= 2e-4


def test_forward_path_float64(case):
    name, scale, sd, d = case
    model = from_femasr_state_dict(sd, scale=scale).double().eval()
    with torch.no_grad():
        out = model(torch.from_numpy(d["input"]).double())
    np.testing.assert_array_equal(out.indices.numpy(), d["indices_f64"][:, 0])
    assert np.abs(out.sr.numpy() - d["out_f64"].astype(np.float64)).max() <= 2e-6


def test_femasr_test_path(case):
    name, scale, sd, d = case
    model = from_femasr_state_dict(sd, scale=scale).eval()
    sr, idx = femasr_test_forward(model, torch.from_numpy(d["input"]))
    np.testing.assert_array_equal(idx.numpy(), d["indices_test"][:, 0])
    assert np.abs(sr.numpy() - d["out_test"]).max() <= 2e-4
    assert json.loads(str(d["meta"]))["test_pad_multiple"] == (8 // scale) * 8


def test_released_file_layout_with_buffers_and_stale_keys(tmp_path):
    """Released SR files carry Swin buffers and dead keys; they load, and match the plain dict."""
    from ugtsr.swin import relative_position_index, shifted_window_mask
    sd = gw.make_state_dict("x4")
    full = dict(sd)
    for k in gw.manifest("x4"):
        if k.endswith("relative_position_index"):
            full[k] = relative_position_index(8)
        elif k.endswith("attn_mask"):
            full[k] = shifted_window_mask(32, 32, 8, 4, torch.device("cpu"))
    full["sft_fusion_group.0.weight"] = torch.zeros(3)  # stale prefix from an unreleased version
    path = tmp_path / "FeMaSR_SRX4_model_g.pth"
    torch.save({"params": full}, path)
    model = load_femasr(path)
    assert model.config.name == "femasr_x4"
    ref = from_femasr_state_dict(sd, scale=4)
    for k, v in ref.state_dict().items():
        assert torch.equal(v, model.state_dict()[k])


def test_bad_state_dicts_list_the_keys():
    sd = gw.make_state_dict("x4")
    broken = dict(sd)
    del broken["out_conv.bias"]
    broken["foo.bar"] = torch.zeros(1)
    broken["before_quant_group.0.weight"] = torch.zeros(3, 3, 1, 1)
    with pytest.raises(CheckpointError) as err:
        from_femasr_state_dict(broken, scale=4)
    msg = str(err.value)
    assert "decoder.out_conv.bias" in msg and "foo.bar" in msg and "before_quant_group.0.weight" in msg


def test_prior_loads_into_other_presets():
    from ugtsr import build_model
    from ugtsr.femasr import load_femasr_prior
    sd = gw.make_state_dict("hrp")
    model = load_femasr_prior(build_model("ugtsr_x4"), sd)
    assert torch.equal(model.codebook.embedding, sd["quantize_group.0.embedding.weight"])
    assert torch.equal(model.decoder.out_conv.weight, sd["out_conv.weight"])
    with pytest.raises(CheckpointError):
        load_femasr_prior(build_model("tiny_x4"), sd)  # widths do not match


def test_preset_config_is_femasr():
    cfg = PRESETS["femasr_x4"]
    assert cfg.matching == "nearest" and cfg.skip_fusion == "add" and not cfg.uncertainty_head
