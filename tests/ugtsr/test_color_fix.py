"""ColorFix: the output's low band from the LR input (ugtsr.postfilters), in config, model and training."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import ugtsr
from ugtsr.config import UGTSRConfig, get_config
from ugtsr.errors import ConfigError
from ugtsr.postfilters import (
    ColorFix,
    FidelityGate,
    bicubic_phase_taps,
    bicubic_upsample,
    gaussian_kernel1d,
    gaussian_lowpass,
)


def test_kernel_is_normalised_gaussian():
    k = gaussian_kernel1d(2.0, dtype=torch.float64)
    assert k.numel() == 2 * math.ceil(6.0) + 1
    assert abs(float(k.sum()) - 1.0) < 1e-12
    assert torch.equal(k, k.flip(0)) and int(k.argmax()) == k.numel() // 2
    assert abs(float(k[7] / k[6]) - math.exp(-0.5 * (1 / 2.0) ** 2)) < 1e-12
    with pytest.raises(ValueError):
        gaussian_kernel1d(0.0)


def test_lowpass_matches_cv2_inside_and_keeps_constants_at_borders():
    cv2 = pytest.importorskip("cv2")
    x = torch.rand(1, 3, 40, 52, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y = gaussian_lowpass(x, gaussian_kernel1d(2.0, dtype=torch.float64))
    ref = cv2.GaussianBlur(x[0].permute(1, 2, 0).numpy(), (13, 13), 2.0, borderType=cv2.BORDER_CONSTANT)
    assert np.abs(y[0].permute(1, 2, 0).numpy()[6:-6, 6:-6] - ref[6:-6, 6:-6]).max() < 1e-12
    # normalised convolution: a constant image stays constant up to the very edge, also when the
    # image is smaller than the kernel
    for h, w in ((40, 52), (5, 3)):
        c = torch.full((2, 3, h, w), 0.37, dtype=torch.float64)
        assert (gaussian_lowpass(c, gaussian_kernel1d(8.0, dtype=torch.float64)) - 0.37).abs().max() < 1e-12


def test_color_fix_takes_low_band_from_input_and_keeps_high_band():
    torch.manual_seed(0)
    lq = torch.rand(1, 3, 16, 16, dtype=torch.float64)
    up = F.interpolate(lq, scale_factor=4.0, mode="bilinear", align_corners=False)
    fix = ColorFix(4, 4.0).double()
    # an output that already is the upsampled input is left alone
    assert (fix(up, lq) - up).abs().max() < 1e-12
    # a colour cast (a constant offset per channel) is removed completely ...
    cast = torch.tensor([0.08, -0.05, 0.03], dtype=torch.float64).view(1, 3, 1, 1)
    assert (fix(up + cast, lq) - up).abs().max() < 1e-12
    # ... while a pixel-level pattern far above the cut-off survives almost untouched
    yy, xx = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    checker = (((yy + xx) % 2) * 2 - 1).to(torch.float64).expand(1, 3, 64, 64) * 0.1
    out = fix(up + checker, lq)
    assert (out - (up + checker)).abs()[..., 12:-12, 12:-12].max() < 1e-6


def test_config_field_validation_and_round_trip():
    cfg = get_config("tiny_x4").replace(color_fix_sigma=4.0)
    assert UGTSRConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.prior_config().color_fix_sigma == 0.0
    assert get_config("tiny_x4").color_fix_sigma == 0.0  # presets follow the paper: off
    with pytest.raises(ConfigError, match="color_fix_sigma"):
        get_config("tiny_x4").replace(color_fix_sigma=-1.0)
    with pytest.raises(ConfigError, match="color_fix_sigma"):
        get_config("tiny_x4").replace(color_fix_sigma="4")
    with pytest.raises(ConfigError, match="prior"):
        get_config("tiny_x4").prior_config().replace(color_fix_sigma=2.0)
    # configs written before the field existed still load (the default is off)
    old = cfg.to_dict()
    del old["color_fix_sigma"]
    assert UGTSRConfig.from_dict(old).color_fix_sigma == 0.0


def test_model_with_color_fix_has_the_same_weights_and_fixes_the_output(tmp_path):
    torch.manual_seed(1)
    plain = ugtsr.build_model("tiny_x4").eval()
    fixed = ugtsr.build_model(plain.config.replace(color_fix_sigma=4.0)).eval()
    assert list(fixed.state_dict()) == list(plain.state_dict())  # parameter-free, no persistent buffer
    fixed.load_state_dict(plain.state_dict())
    lq = torch.rand(1, 3, 20, 28)  # padded to the model's multiple inside
    with torch.no_grad():
        a, b = plain(lq).sr, fixed(lq).sr
    assert a.shape == b.shape == (1, 3, 80, 112)
    up = F.interpolate(lq, scale_factor=4.0, mode="bilinear", align_corners=False)
    kernel = gaussian_kernel1d(4.0)
    low = lambda t: gaussian_lowpass(t, kernel)  # noqa: E731
    # the fixed output's low band is much closer to the input's than the plain output's
    err_plain = (low(a) - low(up)).abs().mean()
    err_fixed = (low(b) - low(up)).abs().mean()
    assert err_fixed < 0.5 * err_plain
    path = tmp_path / "cf.pt"
    ugtsr.save_checkpoint(path, fixed)
    again = ugtsr.load_model(path)
    assert again.config.color_fix_sigma == 4.0
    with torch.no_grad():
        assert torch.equal(again(lq).sr, b)


def test_gradients_reach_the_network_through_the_fix():
    torch.manual_seed(2)
    model = ugtsr.build_model(get_config("tiny_x4").replace(color_fix_sigma=4.0))
    out = model(torch.rand(1, 3, 16, 16)).sr
    out.mean().backward()
    grads = [p.grad for n, p in model.named_parameters() if n.startswith("decoder.") and p.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)


# --- fidelity gate ------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [2, 4])
def test_bicubic_upsample_equals_cv2_inter_cubic_including_borders(scale):
    cv2 = pytest.importorskip("cv2")
    x = np.random.default_rng(scale).random((13, 17, 3)).astype(np.float32)
    ref = cv2.resize(x, (17 * scale, 13 * scale), interpolation=cv2.INTER_CUBIC)
    got = bicubic_upsample(torch.from_numpy(x).permute(2, 0, 1)[None], FidelityGate.bicubic_weight(scale), scale)
    assert np.abs(got[0].permute(1, 2, 0).numpy() - ref).max() < 1e-5
    taps = bicubic_phase_taps(scale)
    assert torch.allclose(taps.sum(dim=1), torch.ones(scale, dtype=torch.float64))  # partition of unity


def test_gate_starts_near_identity_and_spans_model_to_bicubic():
    torch.manual_seed(0)
    gate = FidelityGate(4).double()
    lq = torch.rand(1, 3, 8, 8, dtype=torch.float64)
    sr = torch.rand(1, 3, 32, 32, dtype=torch.float64)
    bic = bicubic_upsample(lq, gate.bicubic, 4)
    w0 = 1 / (1 + math.exp(4.0))
    assert (gate(sr, lq) - (sr + w0 * (bic - sr))).abs().max() < 1e-12  # zero last conv, bias -4
    with torch.no_grad():
        gate.body[-1].bias.fill_(40.0)
        assert (gate(sr, lq) - bic).abs().max() < 1e-12
        gate.body[-1].bias.fill_(-40.0)
        assert (gate(sr, lq) - sr).abs().max() < 1e-12
        gate.body[-1].weight.normal_(0, 1.0)
        gate.body[-1].bias.zero_()
        w = gate.weight_map(sr, bic)
    assert w.shape == (1, 1, 32, 32) and 0 < float(w.min()) and float(w.max()) < 1 and float(w.std()) > 0.01


def test_model_with_gate_saves_loads_and_keeps_old_checkpoints_loading(tmp_path):
    torch.manual_seed(3)
    cfg = get_config("tiny_x4").replace(color_fix_sigma=4.0, fidelity_gate=True)
    model = ugtsr.build_model(cfg).eval()
    keys = set(model.state_dict())
    assert {k for k in keys if k.startswith("fidelity_gate.")} == {
        f"fidelity_gate.body.{i}.{p}" for i in (0, 2, 4) for p in ("weight", "bias")}
    path = tmp_path / "g.pt"
    ugtsr.save_checkpoint(path, model)
    lq = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(ugtsr.load_model(path)(lq).sr, model(lq).sr)
    with pytest.raises(ConfigError, match="prior"):
        cfg.prior_config().replace(fidelity_gate=True)
    assert cfg.prior_config().fidelity_gate is False
    old = cfg.to_dict()
    del old["fidelity_gate"]
    assert UGTSRConfig.from_dict(old).fidelity_gate is False


def test_gate_context_starts_as_the_plain_gate_and_sees_17_lr_pixels():
    torch.manual_seed(0)
    plain, ctx = FidelityGate(4).double(), FidelityGate(4, context=True).double()
    ctx.body.load_state_dict(plain.body.state_dict())
    lq = torch.rand(1, 3, 40, 40, dtype=torch.float64)
    sr = torch.rand(1, 3, 160, 160, dtype=torch.float64)
    assert torch.equal(plain(sr, lq), ctx(sr, lq))  # zero-initialised context: no change
    with torch.no_grad():
        for m in ctx.context:
            if isinstance(m, torch.nn.Conv2d):
                m.weight.normal_(0, 0.5)
    bic = bicubic_upsample(lq, ctx.bicubic, 4)
    w = ctx.weight_map(sr, bic, lq)
    # receptive field of the context: a change at one LR pixel moves w only within 8 LR pixels of it
    lq2 = lq.clone()
    lq2[..., 20, 20] += 0.5
    w2 = ctx.weight_map(sr, bicubic_upsample(lq2, ctx.bicubic, 4), lq2)
    moved = ((w2 - w).abs() > 1e-12).nonzero()[:, 2:] // 4  # in LR pixels
    assert moved.numel() and int(moved.min()) >= 20 - 9 and int(moved.max()) <= 20 + 9
    assert int(moved.max()) - int(moved.min()) >= 12  # wider than the body's ~2 LR pixels
    with pytest.raises(ValueError, match="LR input"):
        ctx.weight_map(sr, bic)


def test_gate_context_config():
    cfg = get_config("tiny_x4")
    with pytest.raises(ConfigError, match="needs fidelity_gate"):
        cfg.replace(fidelity_gate_context=True)
    model = ugtsr.build_model(cfg.replace(fidelity_gate=True, fidelity_gate_context=True))
    assert any(k.startswith("fidelity_gate.context.") for k in model.state_dict())
    old = cfg.to_dict()
    del old["fidelity_gate_context"]
    assert UGTSRConfig.from_dict(old).fidelity_gate_context is False


def test_gate_global_estimate_starts_closed_and_reaches_the_whole_image():
    torch.manual_seed(0)
    ctx, glob = FidelityGate(4, context=True).double(), FidelityGate(4, context=True, global_context=True).double()
    missing = glob.load_state_dict(ctx.state_dict(), strict=False).missing_keys
    assert missing and all(k.startswith(("global_features.", "global_head.")) for k in missing)
    lq = torch.rand(1, 3, 48, 48, dtype=torch.float64)
    sr = torch.rand(1, 3, 192, 192, dtype=torch.float64)
    with torch.no_grad():
        for m in ctx.context:
            if isinstance(m, torch.nn.Conv2d):
                m.weight.normal_(0, 0.05)  # small: the sigmoid must not saturate
        glob.context.load_state_dict(ctx.context.state_dict())
    assert torch.equal(ctx(sr, lq), glob(sr, lq))  # zero-initialised head: no change
    with torch.no_grad():
        glob.global_head[-1].weight.normal_(0, 1.0)
    bic = bicubic_upsample(lq, glob.bicubic, 4)
    w = glob.weight_map(sr, bic, lq)
    g = glob.global_estimate(lq)
    assert g.shape == (1, 1 + 16)
    # one LR pixel in a corner moves the weight at the far corner (the local context cannot)
    lq2 = lq.clone()
    lq2[..., 0, 0] += 0.5
    bic2 = bicubic_upsample(lq2, glob.bicubic, 4)
    w2 = glob.weight_map(sr, bic2, lq2)
    assert float(((w2 - w)[..., -8:, -8:].abs() / (w * (1 - w))[..., -8:, -8:]).min()) > 1e-6
    assert float((ctx.weight_map(sr, bic2, lq2) - ctx.weight_map(sr, bic, lq))[..., -8:, -8:].abs().max()) < 1e-12
    # an image-level estimate: the mean over the image, so a batch of different images gets one each
    two = torch.cat([lq, torch.rand_like(lq)])
    e = glob.global_estimate(two)
    assert torch.allclose(e[:1], g) and not torch.allclose(e[1:], g)


def test_gate_global_config():
    cfg = get_config("tiny_x4")
    with pytest.raises(ConfigError, match="needs fidelity_gate"):
        cfg.replace(fidelity_gate_global=True)
    model = ugtsr.build_model(cfg.replace(fidelity_gate=True, fidelity_gate_global=True))
    keys = model.state_dict()
    assert any(k.startswith("fidelity_gate.global_head.") for k in keys)
    assert model.fidelity_gate.global_head[-1].out_features == 1  # no local context to bias
    old = cfg.to_dict()
    del old["fidelity_gate_global"]
    assert UGTSRConfig.from_dict(old).fidelity_gate_global is False
    assert cfg.replace(fidelity_gate=True, fidelity_gate_global=True).prior_config().fidelity_gate_global is False


def test_detached_uncertainty_input_keeps_the_head_gradient_off_the_decoder():
    torch.manual_seed(0)
    model = ugtsr.build_model(get_config("tiny_x4"))
    lq = torch.rand(1, 3, 16, 16)
    for detach in (False, True):
        model.zero_grad(set_to_none=True)
        model.detach_uncertainty_input = detach
        out = model(lq)
        out.uncertainty.sum().backward()
        head = model.uncertainty_head.conv1.weight.grad
        dec = model.decoder.out_conv.weight.grad  # sr's conv: never on the uncertainty path
        stage = model.decoder.stages[-1].conv.weight.grad
        assert head is not None and float(head.abs().sum()) > 0
        assert dec is None
        assert (stage is None) == detach


def test_constant_gate_branches_fold_to_their_biases_with_the_same_output():
    """issue 13: a gate whose body and context end in zero weights (the shipped models' fit) is
    folded for inference to the last layers' biases: the same blend, no output-resolution
    convolutions; a branch with any non-zero weight is not folded; training never folds."""
    torch.manual_seed(0)
    gate = FidelityGate(4, context=True, global_context=True).eval()
    with torch.no_grad():
        for layer in (gate.global_head[-1], gate.body[-1], gate.context[-1]):
            layer.bias.normal_()
        gate.global_head[-1].weight.normal_(0, 0.3)
    sr, lq = torch.rand(2, 3, 64, 48), torch.rand(2, 3, 16, 12)
    with torch.no_grad():
        ref = gate(sr, lq)
        assert gate.fold_constant_branches() == (True, True)
        calls = []
        hooks = [m.register_forward_hook(lambda *a: calls.append(1)) for m in (*gate.body, *gate.context)]
        got = gate(sr, lq)
        for h in hooks:
            h.remove()
    assert not calls  # neither branch ran
    assert torch.allclose(got, ref, atol=1e-6, rtol=0) and not torch.equal(ref, sr)
    with torch.no_grad():
        gate.context[-1].weight[0, 0, 1, 1] = 0.5  # the context now depends on the input
    assert gate.fold_constant_branches() == (True, False)
    with torch.no_grad():
        assert torch.allclose(gate(sr, lq), FidelityGate.forward(_unfolded(gate), sr, lq), atol=1e-6, rtol=0)


def _unfolded(gate):
    import copy
    g = copy.deepcopy(gate)
    g.constant_body = g.constant_context = False
    return g
