"""ugtsr.train.distill_tail: the sub-pixel student shares the teacher's network up to its last
decoder stage, starts as a nearest-neighbour x2 of that stage, and training moves it towards the
teacher (issue 13)."""
from __future__ import annotations

import json

import pytest
import torch

import ugtsr
from ugtsr.config import UGTSRConfig
from ugtsr.errors import ConfigError
from ugtsr.train import distill_tail as dt

from ..conftest import write_package_photos

_SMALL = dict(channels=(32, 32, 16, 16), norm_groups=8, codebook_size=32, codebook_dim=16, swin_depths=(1,),
              swin_heads=2, fusion_heads=2, align_heads=2, matching="topk", skip_fusion="align_attention",
              uncertainty_head=True, uncertainty_hidden=8, color_fix_sigma=4.0, fidelity_gate=True,
              fidelity_gate_context=True, fidelity_gate_global=True)


def _teacher(scale=4):
    torch.manual_seed(0)
    model = ugtsr.build_model(UGTSRConfig(name="t", scale=scale, **_SMALL)).eval()
    with torch.no_grad():
        model.codebook.embedding.normal_(0, 0.5)
    return model


@pytest.mark.parametrize("scale", [4, 2])
def test_student_shares_the_teacher_up_to_the_last_stage(scale):
    teacher = _teacher(scale)
    student = dt.build_student(teacher).eval()
    assert student.config.subpixel_stages == 1 and student.config.plain_stages == 1
    x = torch.rand(2, 3, 64, 96)  # a multiple of multiple_of: the tail path takes unpadded inputs
    with torch.no_grad():
        feat = dt._last_stage_input(teacher, x)
        assert torch.equal(feat, dt._last_stage_input(student, x))
        # the cached-tail path reproduces each model's own forward
        _, out_t, unc_t = dt.student_tail(teacher, feat, x)
        ref = teacher(x)
        assert torch.allclose(out_t, ref.sr, atol=1e-6) and torch.allclose(unc_t, ref.uncertainty, atol=1e-6)
        pre_s, out_s, _ = dt.student_tail(student, feat, x)
        assert torch.allclose(out_s, student(x).sr, atol=1e-6)
        # at initialisation the residual blocks are identities and the 4 phases equal: a nearest x2
        assert torch.equal(pre_s[..., 0::2, 0::2], pre_s[..., 1::2, 1::2])
    with pytest.raises(ConfigError, match="sub-pixel"):
        dt.build_student(student)


def test_main_trains_towards_the_teacher_and_writes_a_loadable_checkpoint(tmp_path):
    data = tmp_path / "photos"
    write_package_photos(data, 96, ("astronaut", "coffee"))
    teacher = _teacher(4)
    init = tmp_path / "teacher.pt"
    ugtsr.save_checkpoint(init, teacher)
    out = tmp_path / "out"
    rc = dt.main(["--init", str(init), "--data", str(data), "--out", str(out), "--samples", "20", "--patch-size", "64",
                  "--crop", "48", "--iters", "40", "--eval-every", "20", "--batch-size", "4", "--lr", "3e-3",
                  "--mixture", "bsrgan=1,clean=1", "--hr-weight", "0.2"])
    assert rc == 0
    settings = json.loads((out / "settings.json").read_text())
    assert settings["steps"] == 40 and settings["val_samples"] == 2 and settings["hr_weight"] == 0.2
    assert settings["val_final"]["all"]["to_teacher"] > settings["val_start"]["all"]["to_teacher"]
    rows = (out / "log.csv").read_text().splitlines()
    assert rows[0].startswith("step,loss,seconds,") and [r.split(",")[0] for r in rows[1:]] == ["20", "40"]
    model = ugtsr.load_model(out / "final.pt")
    assert model.config.subpixel_stages == 1
    with torch.no_grad():
        assert model(torch.rand(1, 3, 16, 16)).sr.shape == (1, 3, 64, 64)


def test_bad_arguments_are_one_line(tmp_path, capsys):
    init = tmp_path / "teacher.pt"
    ugtsr.save_checkpoint(init, _teacher(4))
    assert dt.main(["--init", str(init), "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--iters", "0"]) == 2
    assert capsys.readouterr().err.startswith("error: --iters")
    assert dt.main(["--init", str(tmp_path / "none.pt"), "--data", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "no such file" in capsys.readouterr().err


@pytest.mark.parametrize("scale", [4, 2])
def test_skip_student_starts_from_the_teachers_upsampling_conv_and_reproduces_its_forward(scale):
    """issue 13, ``--student skip``: the student shares the teacher but the last up stage of the
    encoder and the last Align-Attention; its sub-pixel convolution is the exact low-resolution form
    of that stage's nearest-x2 + conv; the cached path equals the student's forward."""
    from ugtsr.blocks import upsample2x
    teacher = dt.build_student(_teacher(scale)).eval()  # the skip student needs a sub-pixel last stage
    student = dt.build_student(teacher, "skip").eval()
    assert student.config.subpixel_skips == 1 and len(student.skip_fusion) == len(teacher.skip_fusion) - 1
    x = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        _, skips = teacher.encoder(x)
        up = teacher.encoder.up[-1].conv(upsample2x(skips[-2]))
        assert torch.allclose(student.encoder.up[-1](skips[-2]), up, atol=1e-5)
        feat, skip = dt._last_skip_inputs(student, x)
        t_feat, t_skip = dt._last_skip_inputs(teacher, x)
        assert torch.equal(feat, t_feat) and torch.equal(skip, t_skip)
        _, out, unc = dt.student_tail(student, feat, x, skip)
        ref = student(x)
        assert torch.allclose(out, ref.sr, atol=1e-6) and torch.allclose(unc, ref.uncertainty, atol=1e-6)
    with pytest.raises(ConfigError, match="sub-pixel last skip"):
        dt.build_student(student, "skip")
    with pytest.raises(ConfigError, match="--student tail"):
        dt.build_student(_teacher(scale), "skip")


@pytest.mark.parametrize("scale", [4, 2])
def test_main_skip_student_trains_towards_the_teacher(tmp_path, scale):
    data = tmp_path / "photos"
    write_package_photos(data, 96, ("astronaut", "coffee"))
    init = tmp_path / "teacher.pt"
    ugtsr.save_checkpoint(init, dt.build_student(_teacher(scale)))
    out = tmp_path / "out"
    rc = dt.main(["--student", "skip", "--init", str(init), "--data", str(data), "--out", str(out), "--samples", "20",
                  "--patch-size", "64", "--crop", "48", "--iters", "40", "--eval-every", "20", "--batch-size", "4",
                  "--lr", "3e-3", "--mixture", "bsrgan=1,clean=1", "--hr-weight", "0.2"])
    assert rc == 0
    settings = json.loads((out / "settings.json").read_text())
    assert settings["student"] == "skip" and settings["steps"] == 40
    assert settings["val_final"]["all"]["to_teacher"] > settings["val_start"]["all"]["to_teacher"]
    model = ugtsr.load_model(out / "final.pt")
    assert model.config.subpixel_skips == 1
    with torch.no_grad():
        assert model(torch.rand(1, 3, 16, 16)).sr.shape == (1, 3, 16 * scale, 16 * scale)


@pytest.mark.parametrize("scale", [4, 2])
def test_residual_student_starts_as_the_teachers_post_filters_on_bicubic(scale):
    """issue 14, ``--student residual``: the student adds bicubic(LR) to the decoder's output and reads
    the LR in its last stage; it starts with both new paths at zero, so its output before the
    post-filters is bicubic exactly, and the cached path equals its forward."""
    from ugtsr.postfilters import FidelityGate, bicubic_upsample
    teacher = dt.build_student(dt.build_student(_teacher(scale)).eval(), "skip").eval()
    student = dt.build_student(teacher, "residual").eval()
    assert student.config.bicubic_residual and student.lr_tail is not None
    x = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        feat, skip = dt._last_skip_inputs(student, x)
        pre, out, unc = dt.student_tail(student, feat, x, skip)
        bic = bicubic_upsample(x, FidelityGate.bicubic_weight(scale), scale)
        assert torch.allclose(pre, bic, atol=1e-6)
        ref = student(x)
        assert torch.allclose(out, ref.sr, atol=1e-6) and torch.allclose(unc, ref.uncertainty, atol=1e-6)
        # the teacher's uncertainty head reads the same feature: unchanged at initialisation
        assert torch.allclose(unc, teacher(x).uncertainty, atol=1e-6)
        # with weights in the new paths the LR reaches the last stage
        student.lr_tail.conv.weight.normal_(0, 0.1)
        student.decoder.out_conv.weight.normal_(0, 0.1)
        x2 = x.clone()
        x2[..., 10:20, 10:20] += 0.3
        assert not torch.allclose(student(x).sr, student(x2).sr)
    with pytest.raises(ConfigError, match="bicubic residual"):
        dt.build_student(student, "residual")


def test_main_residual_student_trains_towards_the_hr(tmp_path):
    data = tmp_path / "photos"
    write_package_photos(data, 96, ("astronaut", "coffee"))
    init = tmp_path / "teacher.pt"
    ugtsr.save_checkpoint(init, dt.build_student(_teacher(4)))  # no sub-pixel skip: the tail cache
    out = tmp_path / "out"
    common = ["--student", "residual", "--init", str(init), "--data", str(data), "--samples", "20",
              "--patch-size", "64", "--crop", "48", "--eval-every", "20", "--batch-size", "4",
              "--lr", "3e-3", "--mixture", "bsrgan=1,clean=1", "--hr-weight", "1", "--teacher-weight", "0",
              "--cache", str(tmp_path / "cache.pt")]
    rc = dt.main([*common, "--out", str(out), "--iters", "40"])
    assert rc == 0 and (tmp_path / "cache.pt").is_file()
    settings = json.loads((out / "settings.json").read_text())
    assert settings["student"] == "residual" and settings["steps"] == 40
    # trained: lr_tail (3 -> 4 x 16 channels), the last stage, out_conv, the uncertainty head
    assert settings["trained_parameters"] > 3 * 64 * 9
    model = ugtsr.load_model(out / "final.pt")
    assert model.config.bicubic_residual and model.lr_tail is not None
    assert float(model.lr_tail.conv.weight.detach().abs().sum()) > 0  # it trained (it started at zero)
    with torch.no_grad():
        assert model(torch.rand(1, 3, 17, 23)).sr.shape == (1, 3, 68, 92)
    # a second run reads the cache and continues from the first run's student
    again = tmp_path / "again"
    assert dt.main([*common, "--out", str(again), "--iters", "20", "--student-init", str(out / "final.pt")]) == 0
    s2 = json.loads((again / "settings.json").read_text())
    assert s2["cache_seconds"] < settings["cache_seconds"]
    assert abs(s2["val_start"]["all"]["student"] - settings["val_final"]["all"]["student"]) < 1e-4
    # a cache of other settings, or a student of another teacher, is a one-line error
    assert dt.main([*common[:-1], str(tmp_path / "cache.pt"), "--out", str(again), "--iters", "1", "--seed", "5"]) == 2
    assert dt.main([*common, "--out", str(again), "--iters", "1", "--student-init", str(init)]) == 2


@pytest.mark.parametrize("scale", [4, 2])
def test_plain_student_is_norm_free_and_its_cached_path_is_its_forward(scale):
    """issue 13, ``--student plain``: every decoder stage norm-free; the blocks that lose their
    GroupNorm start as identities; the cached path (decoder input and skips) equals the forward."""
    from ugtsr.blocks import PlainResBlock
    teacher = dt.build_student(dt.build_student(_teacher(scale)).eval(), "skip").eval()
    student = dt.build_student(teacher, "plain").eval()
    assert student.config.plain_stages == student.config.decoder_stages
    assert all(isinstance(b, PlainResBlock) for st in student.decoder.stages for b in st.res)
    assert not any("norm" in k for k in student.state_dict() if k.startswith("decoder."))
    x = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        z, skips = student.encode(x)
        feat = student.quant_out(student.match(z).z_q)
        _, out, unc = dt.student_tail(student, feat, x, None, skips)
        ref = student(x)
        assert torch.allclose(out, ref.sr, atol=1e-6) and torch.allclose(unc, ref.uncertainty, atol=1e-6)
        # the stages before the last start without their residual blocks: x -> conv(up(x))
        st = student.decoder.stages[0]
        y = torch.rand(1, st.conv.in_channels, 8, 8)
        assert torch.allclose(st(y), st.conv(torch.nn.functional.interpolate(y, scale_factor=2.0, mode="nearest")),
                              atol=1e-6)
    with pytest.raises(ConfigError, match="no decoder stage with GroupNorm"):
        dt.build_student(student, "plain")


def test_main_plain_student_trains_towards_the_teacher(tmp_path):
    data = tmp_path / "photos"
    write_package_photos(data, 128, ("astronaut", "coffee"))
    init = tmp_path / "teacher.pt"
    ugtsr.save_checkpoint(init, dt.build_student(dt.build_student(_teacher(4)).eval(), "skip"))
    out = tmp_path / "out"
    rc = dt.main(["--student", "plain", "--init", str(init), "--data", str(data), "--out", str(out), "--samples", "20",
                  "--patch-size", "128", "--crop", "64", "--iters", "40", "--eval-every", "20", "--batch-size", "4",
                  "--lr", "3e-3", "--mixture", "bsrgan=1,clean=1", "--hr-weight", "0.2", "--cache", str(tmp_path / "c.pt")])
    assert rc == 0
    settings = json.loads((out / "settings.json").read_text())
    assert settings["student"] == "plain" and settings["steps"] == 40
    assert settings["val_final"]["all"]["to_teacher"] > settings["val_start"]["all"]["to_teacher"]
    model = ugtsr.load_model(out / "final.pt")
    assert model.config.plain_stages == model.config.decoder_stages
    # the cache holds the decoder's input and both skips, and a second run reads it
    assert dt.main(["--student", "plain", "--init", str(init), "--data", str(data), "--out", str(tmp_path / "o2"),
                    "--samples", "20", "--patch-size", "128", "--crop", "64", "--iters", "2", "--batch-size", "4",
                    "--mixture", "bsrgan=1,clean=1", "--cache", str(tmp_path / "c.pt")]) == 0
    # a window that cuts the decoder's attention windows is a one-line error
    assert dt.main(["--student", "plain", "--init", str(init), "--data", str(data), "--out", str(tmp_path / "o3"),
                    "--samples", "20", "--patch-size", "128", "--crop", "48", "--iters", "2", "--batch-size", "4",
                    "--mixture", "bsrgan=1,clean=1", "--cache", str(tmp_path / "c.pt")]) == 2
