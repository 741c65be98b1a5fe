"""Losses (paper Eqs. 2, 3, 10-13), the perceptual loss and its VGG-19 extractor, against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from ugtsr import losses
from ugtsr.errors import CheckpointError, ConfigError, UnsupportedInputError
from ugtsr.vgg import VGG19_LAYER_NAMES, VGG19Features, load_vgg19_weights, vgg19_features


def _t(values, shape=(1, 1, 2, 2), *, requires_grad: bool = False) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64).reshape(shape).requires_grad_(requires_grad)


SR = (1.0, 2.0, 3.0, 4.0)
HR = (0.0, 2.0, 5.0, 4.0)  # |sr - hr| = 1, 0, 2, 0


# --------------------------------------------------------------------------------------------- L1 / ESU
def test_l1_loss_hand_value():
    assert losses.l1_loss(_t(SR), _t(HR)).item() == pytest.approx(0.75)


def test_esu_loss_hand_value():
    s = _t((0.0, 1.0, math.log(2.0), 0.0))
    # exp(-s)|d| = 1, 0, 1, 0 -> mean 0.5 ; 2 * mean(s) = (1 + ln 2) / 2
    expected = 0.5 + (1.0 + math.log(2.0)) / 2
    assert losses.esu_loss(_t(SR), _t(HR), s).item() == pytest.approx(expected)


def test_esu_gradient_signs_and_optimum():
    sr = _t(SR, requires_grad=True)
    s = _t((0.0, 0.0, math.log(1.0), math.log(4.0)), requires_grad=True)
    hr = _t((4.0, 2.0, 5.0, 4.0))  # |d| = 3, 0, 2, 0
    losses.esu_loss(sr, hr, s).backward()
    g = s.grad.flatten()
    n = 4
    assert g[0] < 0  # error 3 > 2·exp(0): raise the uncertainty
    assert g[1] == pytest.approx(2.0 / n)  # no error: lower it (only the 2s prior acts)
    assert g[2] == pytest.approx(0.0, abs=1e-12)  # s = ln(|d| / 2) = 0 is the optimum
    assert g[3] == pytest.approx(2.0 / n)
    # the SR branch is pulled toward HR with weight exp(-s)/N
    assert sr.grad.flatten()[0].item() == pytest.approx(-1.0 / n)


def test_esu_has_no_unused_bound_knob():
    """Issue 11 code health: ``s_bound`` was never passed by the trainer; the loss has no clamp."""
    import inspect

    assert list(inspect.signature(losses.esu_loss).parameters) == ["sr", "hr", "s"]
    assert not hasattr(losses, "ADV_WEIGHT") and not hasattr(losses, "CODEBOOK_BETA")
    from ugtsr.train import TrainOptions

    assert TrainOptions.__dataclass_fields__["gan_weight"].default == 0.1  # λ_adv lives in one place
    s = _t((20.0, -20.0, 0.0, 0.0), requires_grad=True)
    loss = losses.esu_loss(_t(SR), _t(HR), s)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(s.grad).all()


def test_esu_rejects_wrong_uncertainty_shape():
    with pytest.raises(UnsupportedInputError):
        losses.esu_loss(_t(SR), _t(HR), torch.zeros(1, 1, 1, 1))


# --------------------------------------------------------------------------------------------------- UDL
def test_udl_weights_per_image_and_channel_min():
    s = torch.tensor(
        [
            [[[1.0, 3.0], [2.0, 5.0]], [[-4.0, 0.0], [-1.0, -4.0]]],
            [[[10.0, 10.0], [11.0, 12.0]], [[0.5, 0.25], [0.75, 1.0]]],
        ]
    )
    expected = torch.tensor(
        [
            [[[0.0, 2.0], [1.0, 4.0]], [[0.0, 4.0], [3.0, 0.0]]],
            [[[0.0, 0.0], [1.0, 2.0]], [[0.25, 0.0], [0.5, 0.75]]],
        ]
    )
    torch.testing.assert_close(losses.udl_weights(s, plus_one=False), expected)
    torch.testing.assert_close(losses.udl_weights(s), expected + 1)  # UDL code default
    # per image: changing image 1 leaves image 0's weights untouched
    s2 = s.clone()
    s2[1] -= 100.0
    torch.testing.assert_close(losses.udl_weights(s2)[0], losses.udl_weights(s)[0])


def test_udl_loss_hand_value_and_detached_uncertainty():
    s = _t((0.0, 1.0, 2.0, 3.0), requires_grad=True)
    sr = _t(SR, requires_grad=True)
    # w = 1, 2, 3, 4 (plus one) -> w|d| = 1, 0, 6, 0 -> 1.75 ; w = 0, 1, 2, 3 -> 0, 0, 4, 0 -> 1.0
    loss = losses.udl_loss(sr, _t(HR), s)
    assert loss.item() == pytest.approx(1.75)
    assert losses.udl_loss(sr, _t(HR), s, plus_one=False).item() == pytest.approx(1.0)
    loss.backward()
    assert s.grad is None  # the θ branch is frozen in stage II
    assert sr.grad.flatten()[2].item() == pytest.approx(-3.0 / 4)


# ---------------------------------------------------------------------------------------- codebook / VQ
Z = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64).reshape(1, 2, 1, 2)  # c0 = [1, 2], c1 = [3, 4]


def test_gram_matrix_hand_value():
    # X (hw=2, C=2) rows (1, 3), (2, 4): XᵀX = [[5, 11], [11, 25]], / hw
    expected = torch.tensor([[[2.5, 5.5], [5.5, 12.5]]], dtype=torch.float64)
    torch.testing.assert_close(losses.gram_matrix(Z), expected)


def test_gram_loss_values():
    assert losses.gram_loss(Z, Z.clone()).item() == 0.0
    assert losses.gram_loss(Z, torch.zeros_like(Z)).item() == pytest.approx(
        (6.25 + 30.25 + 30.25 + 156.25) / 4
    )
    # Gram is invariant to permuting positions: same statistics, zero loss
    assert losses.gram_loss(Z, Z.flip(-1)).item() == pytest.approx(0.0)


def test_codebook_loss_hand_value_and_stop_gradient():
    z = Z.clone().requires_grad_(True)
    z_gt = torch.zeros_like(Z, requires_grad=True)
    loss = losses.codebook_loss(z, z_gt)
    assert loss.item() == pytest.approx(0.25 * 7.5 + 55.75)
    loss.backward()
    assert z_gt.grad is None and z.grad is not None
    assert losses.codebook_loss(Z, Z.clone()).item() == 0.0
    assert losses.codebook_loss(Z, torch.zeros_like(Z), beta=1.0, alpha=0.0).item() == pytest.approx(7.5)


def test_vq_prior_loss_hand_value_and_gradients():
    z = torch.tensor([1.0, 2.0], dtype=torch.float64).reshape(1, 1, 1, 2).requires_grad_(True)
    z_q = torch.zeros_like(z, requires_grad=True)
    loss = losses.vq_prior_loss(z, z_q)
    assert loss.item() == pytest.approx(2.5 + 0.25 * 2.5)
    loss.backward()
    torch.testing.assert_close(z.grad.flatten(), torch.tensor([0.25, 0.5], dtype=torch.float64))  # commitment
    torch.testing.assert_close(
        z_q.grad.flatten(), torch.tensor([-1.0, -2.0], dtype=torch.float64)
    )  # codebook


# ----------------------------------------------------------------------------------------- GAN / CE
def test_hinge_losses_hand_values():
    real = torch.tensor([2.0, 0.5])
    fake = torch.tensor([-2.0, 0.5])
    assert losses.hinge_d_loss(real, fake).item() == pytest.approx(0.25 + 0.75)
    assert losses.hinge_g_loss(fake).item() == pytest.approx(0.75)
    assert losses.hinge_d_loss(torch.full((4,), 1.5), torch.full((4,), -1.5)).item() == 0.0  # margins met


def test_codeformer_ce_hand_value():
    logits = torch.tensor([[[0.0, 0.0, 0.0], [0.0, math.log(2.0), 0.0]]])  # (B=1, N=2, K=3)
    target = torch.tensor([[[0, 1]]])  # (B=1, h=1, w=2)
    # token 0: uniform -> ln 3 ; token 1: p = 2/4 -> ln 2
    assert losses.codeformer_ce_loss(logits, target).item() == pytest.approx(math.log(6.0) / 2)
    with pytest.raises(UnsupportedInputError):
        losses.codeformer_ce_loss(logits, torch.zeros(1, 2, 2, dtype=torch.long))


# --------------------------------------------------------------------------------------------- VGG-19
@pytest.fixture(scope="module")
def vgg() -> VGG19Features:
    return vgg19_features(pretrained=False)


def test_vgg_key_layout_matches_torchvision(vgg):
    sd = vgg.state_dict()
    conv_idx = [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]
    assert list(sd) == [f"features.{i}.{p}" for i in conv_idx for p in ("weight", "bias")]
    assert sd["features.0.weight"].shape == (64, 3, 3, 3)
    assert sd["features.34.weight"].shape == (512, 512, 3, 3)
    assert len(vgg.features) == 37 and len(VGG19_LAYER_NAMES) == 37
    assert (VGG19_LAYER_NAMES[34], VGG19_LAYER_NAMES[26], VGG19_LAYER_NAMES[36]) == (
        "conv5_4",
        "relu4_4",
        "pool5",
    )
    assert not any(p.requires_grad for p in vgg.parameters()) and not vgg.training


def test_vgg_forward_layers_and_normalisation(vgg):
    x = torch.rand(1, 3, 32, 32)
    feats = vgg(x, ("conv4_4", "relu4_4", "conv1_2"))
    assert feats["relu4_4"].shape == (1, 512, 4, 4) and feats["conv1_2"].shape == (1, 64, 32, 32)
    assert (feats["conv4_4"] < 0).any()  # pre-activation kept (ReLUs are not in-place)
    torch.testing.assert_close(feats["relu4_4"], feats["conv4_4"].clamp_min(0))
    raw = VGG19Features(normalize_input=False)
    raw.load_state_dict(vgg.state_dict())
    normed = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor(
        [0.229, 0.224, 0.225]
    ).view(1, 3, 1, 1)
    torch.testing.assert_close(raw(normed, ("relu2_2",))["relu2_2"], vgg(x, ("relu2_2",))["relu2_2"])
    with pytest.raises(ConfigError):
        vgg(x, ("conv6_1",))


def test_vgg_weights_load_from_torchvision_style_file(vgg, tmp_path, monkeypatch):
    sd = {k: v.clone() for k, v in vgg.state_dict().items()}
    sd["classifier.0.weight"] = torch.zeros(2, 2)  # torchvision files also hold the classifier
    (tmp_path / "checkpoints").mkdir()
    torch.save(sd, tmp_path / "checkpoints" / "vgg19-dcbb9e9d.pth")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    loaded = vgg19_features(pretrained=True)  # found in the hub cache, no path given
    for key, value in vgg.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
    assert set(load_vgg19_weights(tmp_path / "checkpoints" / "vgg19-dcbb9e9d.pth")) == set(vgg.state_dict())


def test_vgg_missing_weights_message(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(ConfigError) as info:
        losses.PerceptualLoss()  # pretrained by default
    msg = str(info.value)
    assert "\n" not in msg and "--perceptual-weight 0" in msg and "--vgg-weights PATH" in msg
    assert str(tmp_path / "checkpoints") in msg
    with pytest.raises(ConfigError):
        load_vgg19_weights(tmp_path / "nope.pth")


def test_vgg_bad_weight_files(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        load_vgg19_weights(bad)
    wrong = tmp_path / "wrong.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, wrong)
    with pytest.raises(CheckpointError, match="features.0.weight"):
        load_vgg19_weights(wrong)


# ------------------------------------------------------------------------------------------ perceptual
@pytest.fixture(scope="module")
def perceptual() -> losses.PerceptualLoss:
    return losses.PerceptualLoss(pretrained=False)


def test_perceptual_zero_for_identical_positive_otherwise(perceptual):
    hr = torch.rand(2, 3, 32, 32)
    assert perceptual(hr.clone(), hr).item() == 0.0
    sr = (hr + 0.1 * torch.randn_like(hr)).clamp(0, 1).requires_grad_(True)
    loss = perceptual(sr, hr)
    assert loss.item() > 0
    loss.backward()
    assert sr.grad is not None and sr.grad.abs().sum() > 0
    assert all(p.grad is None for p in perceptual.vgg.parameters())
    perceptual.train()
    assert not perceptual.vgg.training


def test_perceptual_is_weighted_sum_of_layers(perceptual):
    hr, sr = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    single = losses.PerceptualLoss(layer_weights={"conv3_4": 2.0}, criterion="l2", pretrained=False)
    single.vgg.load_state_dict(perceptual.vgg.state_dict())
    f_sr, f_hr = perceptual.vgg(sr, ("conv3_4",))["conv3_4"], perceptual.vgg(hr, ("conv3_4",))["conv3_4"]
    torch.testing.assert_close(single(sr, hr), 2.0 * ((f_sr - f_hr) ** 2).mean())
    with pytest.raises(ConfigError):
        losses.PerceptualLoss(layer_weights={"conv9_9": 1.0}, pretrained=False)
