"""Invariants of the UGTSR network: shapes over a size sweep, matching identities, attention,
checkpoints and which parameters each training stage trains."""
from __future__ import annotations

import pickle

import pytest
import torch

import ugtsr
from ugtsr import PRESETS, UGTSRConfig, build_model, load_checkpoint, load_model, save_checkpoint
from ugtsr import codebook as cb
from ugtsr.attention import AlignAttention, windowed_cross_attention
from ugtsr.errors import CheckpointError, ConfigError, UGTSRError, UnsupportedInputError
from ugtsr.stages import set_trainable, stage_config

SIZES = [(16, 16), (17, 23), (32, 48), (41, 16)]


@pytest.mark.parametrize("preset", ["tiny_x2", "tiny_x4"])
@pytest.mark.parametrize("h,w", SIZES)
def test_tiny_output_shapes_sweep(preset, h, w):
    model = build_model(preset).eval()
    s = model.scale
    with torch.no_grad():
        out = model(torch.rand(2, 3, h, w))
    assert out.sr.shape == (2, 3, h * s, w * s)
    assert out.uncertainty.shape == (2, 3, h * s, w * s)
    m, ls = model.multiple_of, model.config.latent_stride
    assert out.indices.shape == (2, -(-h // m) * m // ls, -(-w // m) * m // ls)
    assert out.indices.dtype == torch.int64
    assert torch.isfinite(out.sr).all() and torch.isfinite(out.uncertainty).all()
    assert (out.uncertainty.abs() < 10).all()  # smooth tanh bound


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["femasr_x2", "femasr_x4", "ugtsr_x2", "ugtsr_x4"])
def test_full_preset_shapes(preset):
    model = build_model(preset).eval()
    s = model.scale
    with torch.no_grad():
        out = model(torch.rand(1, 3, 19, 33))
    assert out.sr.shape == (1, 3, 19 * s, 33 * s)
    assert torch.isfinite(out.sr).all()
    assert (out.uncertainty is not None) == PRESETS[preset].uncertainty_head


def test_prior_autoencoder_shape():
    model = build_model(PRESETS["tiny_x4"].prior_config()).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 40, 24))
    assert out.sr.shape == (1, 3, 40, 24)


def test_small_or_bad_input_rejected():
    model = build_model("tiny_x4")
    with pytest.raises(UnsupportedInputError):
        model(torch.rand(1, 3, 8, 32))
    with pytest.raises(UnsupportedInputError):
        model(torch.rand(1, 1, 32, 32))


def test_squared_distances_match_brute_force():
    z = torch.randn(50, 8, dtype=torch.float64)
    e = torch.randn(20, 8, dtype=torch.float64)
    ref = ((z[:, None] - e[None]) ** 2).sum(-1)
    torch.testing.assert_close(cb.squared_distances(z, e), ref)
    top = cb.topk_indices(cb.squared_distances(z, e), 3)
    assert torch.equal(top[:, 0], cb.nearest_indices(ref))
    assert torch.equal(top, ref.argsort(dim=1)[:, :3])


def test_codes_from_indices_reproduces_quantized_features():
    model = build_model("tiny_x4").eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 32, 32))
        again = model.codebook.codes(out.indices)
    assert torch.equal(again, out.z_q)  # quantized == decode(indices)
    assert torch.equal(again, out.codes)


def test_rows_round_trip():
    z = torch.randn(2, 5, 3, 4)
    assert torch.equal(cb.from_rows(cb.to_rows(z), 2, 3, 4), z)


@pytest.mark.parametrize("k", [1, 3])
def test_topk_with_identity_fusion_equals_nearest(k):
    cfg = PRESETS["tiny_x4"].replace(top_k=k, skip_fusion="add")
    topk = build_model(cfg).eval()
    nearest = build_model(cfg.replace(matching="nearest")).eval()
    nearest.load_state_dict({n: v for n, v in topk.state_dict().items() if not n.startswith("matcher.")})
    x = torch.rand(2, 3, 32, 48)
    with torch.no_grad():
        a, b = topk(x), nearest(x)
    assert torch.equal(a.indices, b.indices)
    assert torch.equal(a.candidates[:, 0], b.indices)
    torch.testing.assert_close(a.sr, b.sr, rtol=0, atol=1e-6)
    assert a.candidates.shape == (2, k, 16, 24)


def test_topk_fusion_changes_result_when_trained():
    model = build_model("tiny_x4").eval()
    torch.nn.init.normal_(model.matcher.fusion.out.weight, std=1.0)
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        out = model(x)
    assert out.fused is not None
    assert not torch.equal(out.fused, model.codebook.codes(out.candidates[:, 0]))
    # eq. 8: the final code is the nearest code to the fused feature
    d = cb.squared_distances(cb.to_rows(out.fused), model.codebook.embedding)
    assert torch.equal(cb.nearest_indices(d).reshape(out.indices.shape), out.indices)


def test_windowed_attention_equals_naive_on_one_window():
    torch.manual_seed(1)
    b, c, h, w, heads = 2, 8, 4, 4, 2
    q, k, v = (torch.randn(b, c, h, w, dtype=torch.float64) for _ in range(3))
    out = windowed_cross_attention(q, k, v, heads=heads, window=4)

    def naive(q, k, v):  # textbook softmax(QK^T/sqrt(d))V over all pixels, per head
        res = torch.zeros_like(q)
        hd = c // heads
        for bi in range(b):
            for hi in range(heads):
                qm = q[bi, hi * hd:(hi + 1) * hd].reshape(hd, -1).T
                km = k[bi, hi * hd:(hi + 1) * hd].reshape(hd, -1).T
                vm = v[bi, hi * hd:(hi + 1) * hd].reshape(hd, -1).T
                a = torch.softmax(qm @ km.T / hd**0.5, dim=-1) @ vm
                res[bi, hi * hd:(hi + 1) * hd] = a.T.reshape(hd, h, w)
        return res

    torch.testing.assert_close(out, naive(q, k, v))
    # with several windows, each window only sees itself
    q2, k2, v2 = (torch.randn(1, c, 8, 8, dtype=torch.float64) for _ in range(3))
    out2 = windowed_cross_attention(q2, k2, v2, heads=heads, window=4)
    torch.testing.assert_close(out2[..., :4, 4:], windowed_cross_attention(
        q2[..., :4, 4:], k2[..., :4, 4:], v2[..., :4, 4:], heads=heads, window=4))


def test_align_attention_module_matches_eq9_reference():
    torch.manual_seed(2)
    aa = AlignAttention(8, heads=2, window=4).double()
    torch.nn.init.normal_(aa.proj.weight)
    hq, lq = torch.randn(1, 8, 4, 4, dtype=torch.float64), torch.randn(1, 8, 4, 4, dtype=torch.float64)
    q = aa.to_q(aa.norm_lq(lq))
    k, v = aa.to_kv(aa.norm_hq(hq)).chunk(2, 1)
    qm, km, vm = (t.reshape(2, 4, 16).transpose(1, 2) for t in (q, k, v))  # (heads, N, hd)
    ref = torch.softmax(qm @ km.transpose(1, 2) / 2.0, -1) @ vm
    ref = ref.transpose(1, 2).reshape(1, 8, 4, 4)
    torch.testing.assert_close(aa(hq, lq), hq + lq + aa.proj(ref))


def test_align_attention_starts_as_additive_skip():
    aa = AlignAttention(8, heads=2, window=4)
    hq, lq = torch.randn(1, 8, 8, 8), torch.randn(1, 8, 8, 8)
    assert torch.equal(aa(hq, lq), hq + lq)


def test_save_load_bit_identical(tmp_path):
    model = build_model("tiny_x4").eval()
    torch.nn.init.normal_(model.matcher.fusion.out.weight, std=0.1)
    path = save_checkpoint(tmp_path / "m.pt", model, stage="sr", note="test", iters=3)
    assert not list(tmp_path.glob("*.tmp"))
    loaded = load_model(path)
    x = torch.rand(1, 3, 20, 36)
    with torch.no_grad():
        a, b = model(x), loaded(x)
    assert torch.equal(a.sr, b.sr) and torch.equal(a.indices, b.indices)
    ck = load_checkpoint(path)
    assert ck.metadata == {"stage": "sr", "note": "test", "iters": 3}
    assert ck.config == model.config


class _Evil:
    def __reduce__(self):
        import os
        return (os.system, ("touch PWNED_BY_CHECKPOINT",))


def test_malicious_checkpoint_is_refused_not_executed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    torch.save({"format": "ugtsr-checkpoint", "payload": _Evil()}, path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert str(path) in str(err.value) and "refused" in str(err.value)
    assert not (tmp_path / "PWNED_BY_CHECKPOINT").exists()
    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(CheckpointError):
        load_checkpoint(raw)
    assert not (tmp_path / "PWNED_BY_CHECKPOINT").exists()


def test_corrupt_truncated_foreign_checkpoints(tmp_path):
    model = build_model("tiny_x4")
    good = save_checkpoint(tmp_path / "good.pt", model)
    data = good.read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "text.pt").write_text("hello")
    torch.save({"params": {"multiscale_encoder.in_conv.weight": torch.zeros(1)}}, tmp_path / "femasr.pth")
    torch.save({"format": "ugtsr-checkpoint", "format_version": 1, "config": {"scale": 3},
                "state_dict": {}}, tmp_path / "badcfg.pt")
    ck = load_checkpoint(good)
    sd = dict(ck.state_dict)
    sd.pop("decoder.out_conv.bias")
    torch.save({"format": "ugtsr-checkpoint", "format_version": 1, "config": ck.config.to_dict(),
                "state_dict": sd}, tmp_path / "missing.pt")
    for name, needle in [("trunc.pt", "corrupt"), ("empty.pt", "empty"), ("text.pt", "text file"),
                         ("femasr.pth", "load_femasr"), ("badcfg.pt", "config"), ("nope.pt", "no such file"),
                         ("missing.pt", "decoder.out_conv.bias")]:
        with pytest.raises(CheckpointError) as err:
            load_model(tmp_path / name)
        msg = str(err.value)
        assert name in msg and needle in msg and "\n" not in msg


def test_metadata_must_be_plain(tmp_path):
    with pytest.raises(ConfigError):
        save_checkpoint(tmp_path / "x.pt", build_model("tiny_x4"), bad=object())


def _grad_names(model, loss):
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}


def test_stage_gradients_reach_exactly_the_trained_parameters():
    base = PRESETS["tiny_x4"]
    x = torch.rand(2, 3, 32, 32)
    hr = torch.rand(2, 3, 128, 128)

    # prior: everything
    prior = build_model(stage_config(base, "prior"))
    trainable = set(set_trainable(prior, "prior"))
    out = prior(hr)
    loss = (out.sr - hr).abs().mean() + ((out.codes - out.z.detach()) ** 2).mean() + ((out.z - out.codes.detach()) ** 2).mean()
    assert _grad_names(prior, loss) == trainable == {n for n, _ in prior.named_parameters()}

    # stage I: codebook and decoder half frozen
    s1 = build_model(stage_config(base, "uncertainty"))
    trainable = set(set_trainable(s1, "uncertainty"))
    out = s1(x)
    loss = (torch.exp(-out.uncertainty) * (out.sr - hr).abs()).mean() + 2 * out.uncertainty.mean()
    loss = loss + ((out.z - out.codes.detach()) ** 2).mean()
    got = _grad_names(s1, loss)
    assert got == trainable
    assert not any(n.startswith(("codebook.", "decoder.", "quant_out.")) for n in got)
    assert any(n.startswith("uncertainty_head.") for n in got) and any(n.startswith("encoder.") for n in got)

    # stage II: + uncertainty head frozen; Top-k fusion and Align-Attention train
    s2 = build_model(stage_config(base, "sr"))
    for m in (s2.matcher.fusion.out, s2.skip_fusion[0].proj, s2.skip_fusion[1].proj):
        torch.nn.init.normal_(m.weight, std=0.01)  # leave the zero init so gradients reach the inner layers
    trainable = set(set_trainable(s2, "sr"))
    out = s2(x)
    loss = (out.sr - hr).abs().mean() + ((out.fused - out.codes.detach()) ** 2).mean()
    got = _grad_names(s2, loss)
    assert got == trainable
    assert not any(n.startswith(("codebook.", "decoder.", "quant_out.", "uncertainty_head.")) for n in got)
    assert any(n.startswith("matcher.fusion.") for n in got) and any(n.startswith("skip_fusion.") for n in got)


def test_config_validation_and_round_trip():
    cfg = PRESETS["ugtsr_x4"]
    assert UGTSRConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ConfigError):
        UGTSRConfig(scale=3)
    with pytest.raises(ConfigError):
        UGTSRConfig(matching="magic")
    with pytest.raises(ConfigError):
        ugtsr.get_config("nope")
    assert issubclass(ConfigError, UGTSRError) and issubclass(CheckpointError, UGTSRError)


def test_codeformer_matcher_runs_at_other_grids():
    model = build_model(PRESETS["tiny_x4"].replace(matching="codeformer")).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 32, 48))
    assert out.logits.shape == (1, 256, 16, 24)
    assert torch.equal(out.indices, out.logits.argmax(1))
