"""UGTSRConfig rejects every value that would crash the model later (issue 11 item 8).

Each case below built a config and then failed inside the model with a reshape error,
ZeroDivisionError, TypeError or non-finite output; now ``__post_init__`` raises ConfigError
naming the field.
"""
from __future__ import annotations

import pytest
import torch

from ugtsr import PRESETS, build_model
from ugtsr.config import UGTSRConfig, get_config
from ugtsr.errors import ConfigError

_SMALL = dict(channels=(32, 32, 16, 16), norm_groups=8, codebook_size=32, codebook_dim=16, swin_depths=(1,),
              swin_heads=2, fusion_heads=2, align_heads=2, codeformer_dim=16, codeformer_heads=2,
              codeformer_ffn=16, codeformer_layers=1)

BAD = [
    ("align_window", 7), ("align_window", 3), ("align_window", 1), ("align_window", 0), ("align_window", -2),
    ("norm_groups", 0), ("norm_groups", -8), ("swin_heads", 0), ("swin_heads", -2), ("fusion_heads", 0),
    ("fusion_heads", -2), ("align_heads", 0), ("align_heads", -1), ("codeformer_heads", 0), ("top_k", True),
    ("swin_mlp_ratio", -1.0), ("fusion_ffn_factor", 0.0), ("fusion_ffn_factor", 0.01),
    ("uncertainty_hidden", 0), ("uncertainty_hidden", -3), ("channels", (32.0, 32, 16, 16)),
    ("channels", (32, 32, 16)), ("scale", 4.0), ("scale", True), ("in_channels", 3.0),
    ("codeformer_grid", (0, 4)), ("codeformer_grid", (4,)), ("codeformer_grid", (4, 4, 4)),
    ("codeformer_layers", 0), ("codeformer_ffn", 0), ("codeformer_dim", 0), ("norm_eps", 0.0),
    ("norm_eps", -1.0), ("norm_eps", float("nan")), ("color_fix_sigma", True), ("swin_depths", (1, 0)),
    ("uncertainty_head", 1), ("fidelity_gate", "yes"), ("name", 3), ("swin_window", 7), ("codebook_dim", 0),
]


@pytest.mark.parametrize("field, value", BAD, ids=[f"{f}={v!r}" for f, v in BAD])
def test_bad_value_is_a_config_error_naming_the_field(field, value):
    base = get_config("tiny_x4").replace(**_SMALL)
    with pytest.raises(ConfigError) as err:
        base.replace(**{field: value})
    assert field in str(err.value) or field == "scale"
    # the same through the checkpoint / ONNX metadata path
    data = base.to_dict() | {field: list(value) if isinstance(value, tuple) else value}
    with pytest.raises(ConfigError):
        UGTSRConfig.from_dict(data)


def test_odd_align_window_says_even():
    with pytest.raises(ConfigError, match="align_window must be an even number >= 2, got 7"):
        get_config("tiny_x4").replace(align_window=7)


@pytest.mark.parametrize("align_window", [2, 6, 12])
def test_even_align_windows_run_at_any_size(align_window):
    cfg = get_config("tiny_x4").replace(**_SMALL, align_window=align_window)
    model = build_model(cfg).eval()
    with torch.no_grad():
        for h, w in [(37, 29), (cfg.multiple_of, 2 * cfg.multiple_of)]:
            out = model(torch.rand(1, 3, h, w))
            assert out.sr.shape == (1, 3, 4 * h, 4 * w) and torch.isfinite(out.sr).all()


def test_presets_are_valid_and_round_trip():
    for name, cfg in PRESETS.items():
        assert UGTSRConfig.from_dict(cfg.to_dict()) == cfg, name


@pytest.mark.parametrize("scale", [1, 2, 4])
def test_latent_scale_4_geometry(scale):
    """A 1/4 code map (issue 14): two decoder stages, codes at output / 4, any input size."""
    cfg = UGTSRConfig(name="t4", scale=scale, latent_scale=4, **{**_SMALL, "channels": (32, 16, 16)},
                      **({} if scale == 1 else dict(matching="topk", skip_fusion="align_attention",
                                                    uncertainty_head=True)))
    assert cfg.decoder_stages == 2 and cfg.latent_stride == 4 // scale
    model = build_model(cfg).eval()
    assert len(model.decoder.stages) == 2
    h, w = 37, 50
    with torch.no_grad():
        out = model(torch.rand(2, 3, h, w))
        assert out.sr.shape == (2, 3, h * scale, w * scale)
        m = cfg.multiple_of
        assert out.indices.shape == (2, -(-h // m) * m // cfg.latent_stride, -(-w // m) * m // cfg.latent_stride)
        if scale > 1:
            assert out.uncertainty.shape == out.sr.shape and len(model.skip_fusion) == 1
        assert model.decode_indices(out.indices[:, :4, :4]).shape == (2, 3, 16, 16)
    assert get_config(cfg.to_dict()) == cfg and cfg.prior_config().latent_scale == 4


@pytest.mark.parametrize("change, field", [
    (dict(latent_scale=6), "latent_scale"),
    (dict(latent_scale=4), "channels"),  # four widths given, three needed
    (dict(latent_scale=2, scale=4), "latent_scale"),
])
def test_bad_latent_scale_is_a_config_error(change, field):
    with pytest.raises(ConfigError, match=field):
        UGTSRConfig(**{**_SMALL, **change})


def test_plain_stages_drop_groupnorm_from_the_last_decoder_stages():
    from ugtsr.blocks import PlainResBlock
    cfg = UGTSRConfig(name="p", scale=4, plain_stages=2, uncertainty_head=True, **_SMALL)
    model = build_model(cfg).eval()
    kinds = [{type(b) for b in stage.res} for stage in model.decoder.stages]
    assert kinds[0] != {PlainResBlock} and kinds[1] == kinds[2] == {PlainResBlock}
    assert not any(isinstance(m, torch.nn.GroupNorm) for s in model.decoder.stages[1:] for m in s.modules())
    with torch.no_grad():
        out = model(torch.rand(1, 3, 20, 24))
    assert out.sr.shape == (1, 3, 80, 96) and torch.isfinite(out.uncertainty).all()
    with pytest.raises(ConfigError, match="plain_stages"):
        UGTSRConfig(**{**_SMALL, "plain_stages": 4})


def test_subpixel_stage_has_no_feature_map_at_the_output_resolution():
    """issue 13: ``subpixel_stages 1`` runs the last decoder stage at its input resolution and ends
    in Conv + DepthToSpace (the uncertainty head too); output sizes and the x2/x4 geometry hold."""
    for scale in (4, 2):
        cfg = UGTSRConfig(name="s", scale=scale, subpixel_stages=1, plain_stages=1, uncertainty_head=True, **_SMALL)
        model = build_model(cfg).eval()
        seen = []
        hook = model.decoder.stages[-1].register_forward_hook(lambda m, i, o, seen=seen: seen.append(o.shape))
        with torch.no_grad():
            out = model(torch.rand(1, 3, 32, 64))  # a multiple of multiple_of: no padding
        hook.remove()
        assert out.sr.shape == (1, 3, 32 * scale, 64 * scale) == out.uncertainty.shape
        assert seen[0][-2:] == (16 * scale, 32 * scale)  # half the output resolution
        assert model.decoder.out_conv.out_channels == 12 and model.uncertainty_head.conv3.out_channels == 12
    for bad in (2, -1, True):
        with pytest.raises(ConfigError, match="subpixel_stages"):
            UGTSRConfig(**{**_SMALL, "subpixel_stages": bad})


def test_subpixel_skip_makes_the_last_skip_at_the_lower_resolution_and_adds_it():
    """issue 13: ``subpixel_skips 1``: the LQ encoder's last skip is a sub-pixel convolution of the
    skip before it (nothing of the LQ branch at the higher resolution), added to the decoder's
    feature; only the lower skip keeps Align-Attention."""
    from ugtsr.attention import AlignAttention
    from ugtsr.blocks import SubpixelConv
    for scale in (4, 2):
        cfg = UGTSRConfig(name="k", scale=scale, subpixel_stages=1, plain_stages=1, subpixel_skips=1, uncertainty_head=True,
                          **{**_SMALL, "skip_fusion": "align_attention", "align_heads": 2})
        assert cfg.align_skips == 1
        model = build_model(cfg).eval()
        assert isinstance(model.encoder.up[-1], SubpixelConv) and not isinstance(model.encoder.up[0], SubpixelConv)
        assert len(model.skip_fusion) == 1 and isinstance(model.skip_fusion[0], AlignAttention)
        x = torch.rand(1, 3, 32, 64)
        with torch.no_grad():
            _, skips = model.encoder(x)
            out = model(x)
        assert skips[1].shape[-2:] == (2 * skips[0].shape[-2], 2 * skips[0].shape[-1])
        assert out.sr.shape == (1, 3, 32 * scale, 64 * scale) == out.uncertainty.shape
        # the last skip reaches the output: zeroing its convolution changes it
        with torch.no_grad():
            model.encoder.up[-1].conv.weight.zero_()
            model.encoder.up[-1].conv.bias.zero_()
            assert not torch.equal(model(x).sr, out.sr)
    for bad in (2, -1, True):
        with pytest.raises(ConfigError, match="subpixel_skips"):
            UGTSRConfig(**{**_SMALL, "subpixel_skips": bad})
    with pytest.raises(ConfigError, match="subpixel_skips needs"):
        UGTSRConfig(**{**_SMALL, "latent_scale": 4, "subpixel_skips": 1})


def test_bicubic_residual_is_a_bool_and_not_for_the_prior():
    """issue 14: ``bicubic_residual`` is validated like the other switches; the prior has none."""
    with pytest.raises(ConfigError, match="bicubic_residual must be true or false"):
        UGTSRConfig(**{**_SMALL, "bicubic_residual": 1})
    with pytest.raises(ConfigError, match="no bicubic residual"):
        UGTSRConfig(**{**_SMALL, "scale": 1, "matching": "nearest", "skip_fusion": "add", "uncertainty_head": False,
                       "bicubic_residual": True})
    cfg = UGTSRConfig(**{**_SMALL, "bicubic_residual": True})
    assert cfg.prior_config().bicubic_residual is False
    assert UGTSRConfig.from_dict(cfg.to_dict()) == cfg
