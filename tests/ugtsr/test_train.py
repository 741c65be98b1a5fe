"""Trainer tests: each stage learns, stages chain, resume is bit-identical (also after a crash mid-save),
two-process DDP keeps identical replicas, and user errors give one line and exit status 2.

Runs use tiny_x4, HR patch 64, batch 2, one torch thread (the CI machine has 2 shared cores) and no
perceptual term unless a test builds a random VGG-19 weights file.
"""
from __future__ import annotations

import csv
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ugtsr.checkpoint import load_checkpoint, load_model, save_checkpoint
from ugtsr.config import PRESETS
from ugtsr.model import build_model
from ugtsr.stages import stage_config
from ugtsr.train import TrainOptions, main
from ugtsr.train.sampling import StepSampler
from ugtsr.train.state import rng_state, set_rng_state

from ..conftest import write_package_photos

cv2 = pytest.importorskip("cv2")
skdata = pytest.importorskip("skimage.data")

REPO = Path(__file__).resolve().parents[2]


class _Killed(BaseException):
    """Stands for the process being killed: not an Exception, so nothing on the way catches it."""
BASE = ["--preset", "tiny_x4", "--batch-size", "2", "--patch-size", "64", "--threads", "1", "--device", "cpu",
        "--perceptual-weight", "0", "--no-tensorboard", "--quiet"]


def _write_photos(folder: Path, size: int = 128) -> Path:
    return write_package_photos(folder, size, names=("astronaut", "chelsea", "coffee", "rocket"))


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    return _write_photos(tmp_path_factory.mktemp("hr"))


def _run(*args: str) -> int:
    return main([*BASE, *map(str, args)])


def _log(run: Path) -> list[dict[str, str]]:
    with open(run / "log.csv", newline="") as fh:
        return [r for r in csv.DictReader(fh) if r["loss"]]


def _first_last(run: Path, column: str, n: int = 5) -> tuple[float, float]:
    values = [float(r[column]) for r in _log(run)]
    return statistics.mean(values[:n]), statistics.mean(values[-n:])


@pytest.fixture(scope="module")
def chain(photos, tmp_path_factory) -> dict[str, Path]:
    """prior -> uncertainty -> sr, 40 iterations each on one fixed batch (--overfit-batch), no GAN."""
    root = tmp_path_factory.mktemp("chain")
    torch_threads = torch.get_num_threads()
    common = ["--data", photos, "--iters", "40", "--log-every", "1", "--save-every", "40", "--gan-weight", "0",
              "--overfit-batch"]
    runs = {s: root / s for s in ("prior", "uncertainty", "sr")}
    assert _run("--stage", "prior", "--out", runs["prior"], *common) == 0
    assert _run("--stage", "uncertainty", "--out", runs["uncertainty"], "--init", runs["prior"] / "final.pt", *common) == 0
    assert _run("--stage", "sr", "--out", runs["sr"], "--init", runs["uncertainty"] / "final.pt", *common) == 0
    torch.set_num_threads(torch_threads)
    return runs


# --- learning ------------------------------------------------------------------------------------
def test_prior_reconstruction_loss_falls(chain):
    # The total of the prior is not monotone this early: the VQ term grows while the codebook (lr 1e-4,
    # init +-1/K) catches up with the encoder, as in any VQGAN; the reconstruction must improve.
    first, last = _first_last(chain["prior"], "l1")
    assert last < 0.7 * first, (first, last)


def test_uncertainty_stage_loss_falls(chain):
    first, last = _first_last(chain["uncertainty"], "loss")
    assert last < first - 0.2, (first, last)
    l1_first, l1_last = _first_last(chain["uncertainty"], "l1")
    assert l1_last < l1_first, (l1_first, l1_last)  # the SR branch learns, not only the uncertainty head


def test_sr_stage_loss_falls(chain):
    first, last = _first_last(chain["sr"], "loss")
    assert last < 0.7 * first, (first, last)
    cb_first, cb_last = _first_last(chain["sr"], "codebook")
    assert cb_last < cb_first


def test_chain_freezes_the_prior_half_and_records_sources(chain):
    prior = load_checkpoint(chain["prior"] / "final.pt")
    s1 = load_checkpoint(chain["uncertainty"] / "final.pt")
    s2 = load_checkpoint(chain["sr"] / "final.pt")
    assert prior.config.is_prior and prior.metadata["stage"] == "prior"
    assert s1.config == stage_config(PRESETS["tiny_x4"], "uncertainty")
    assert s2.config == PRESETS["tiny_x4"]
    frozen1 = [k for k in s1.state_dict if k.startswith(("codebook.", "quant_out.", "decoder."))]
    assert frozen1 and all(torch.equal(s1.state_dict[k], prior.state_dict[k]) for k in frozen1)
    frozen2 = [k for k in s2.state_dict if k.startswith(("codebook.", "quant_out.", "decoder.", "uncertainty_head."))]
    assert all(torch.equal(s2.state_dict[k], s1.state_dict[k]) for k in frozen2)
    # trainable parts did move
    assert not torch.equal(s1.state_dict["encoder.stem.weight"], s2.state_dict["encoder.stem.weight"])
    assert s1.metadata["prior_checkpoint"] == str((chain["prior"] / "final.pt").resolve())
    assert s2.metadata["prior_checkpoint"] == s1.metadata["prior_checkpoint"]
    assert s2.metadata["uncertainty_checkpoint"] == str((chain["uncertainty"] / "final.pt").resolve())
    settings = json.loads((chain["sr"] / "settings.json").read_text())
    assert settings["options"]["stage"] == "sr" and settings["config"]["name"] == "tiny_x4"
    assert any("matcher.fusion" in n and "skip_fusion" in n for n in settings["init"])  # newly initialised, reported
    assert settings["data"]["items"] == 4


def test_discriminator_travels_to_the_next_stage(photos, tmp_path):
    common = ["--data", photos, "--iters", "1", "--gan-weight", "0.1", "--d-features", "16"]
    assert _run("--stage", "prior", "--out", tmp_path / "p", *common) == 0
    d_prior = load_checkpoint(tmp_path / "p" / "final.pt").training_state["discriminator"]
    assert _run("--stage", "uncertainty", "--out", tmp_path / "u", "--init", tmp_path / "p" / "final.pt",
                "--save-every", "1", *common, "--lr-d", "1e-12") == 0
    d_s1 = load_checkpoint(tmp_path / "u" / "final.pt").training_state["discriminator"]
    assert torch.allclose(d_s1["conv0.weight"], d_prior["conv0.weight"], atol=1e-6)
    assert "discriminator from" in " ".join(json.loads((tmp_path / "u" / "settings.json").read_text())["init"])


def test_perceptual_loss_with_a_weights_file(photos, tmp_path):
    from ugtsr.vgg import VGG19Features

    weights = tmp_path / "vgg19-random.pth"
    torch.save(VGG19Features().state_dict(), weights)
    assert _run("--stage", "prior", "--data", photos, "--out", tmp_path / "r", "--iters", "2", "--log-every", "1",
                "--gan-weight", "0", "--perceptual-weight", "1", "--vgg-weights", weights) == 0
    assert all(float(r["perceptual"]) > 0 for r in _log(tmp_path / "r"))


# --- data stream and RNG state -------------------------------------------------------------------
def test_step_sampler_is_pure_and_shards_ranks():
    a = StepSampler(10, batch_size=3, seed=5, rank=0, world_size=2)
    b = StepSampler(10, batch_size=3, seed=5, rank=1, world_size=2)
    fresh = StepSampler(10, batch_size=3, seed=5, rank=0, world_size=2)
    assert [a.keys(s) for s in (7, 0, 3)] == [fresh.keys(s) for s in (7, 0, 3)]  # any order, any instance
    seen = [k for s in range(5) for k in a.keys(s) + b.keys(s)]  # 30 items = 3 epochs of 10
    for epoch in range(3):
        assert sorted(i for e, i in seen if e == epoch) == list(range(10))
    assert set(a.keys(0)).isdisjoint(b.keys(0))
    assert StepSampler(10, batch_size=3, seed=6).keys(0) != StepSampler(10, batch_size=3, seed=5).keys(0)
    fixed = StepSampler(10, batch_size=3, seed=5, fixed=True)
    assert fixed.keys(0) == fixed.keys(9)


def test_rng_state_round_trip():
    import random

    state = rng_state()
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    set_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first


# --- resume ---------------------------------------------------------------------------------------
def _sr_args(photos, chain, out: Path, iters: int, *extra) -> list:
    return ["--stage", "sr", "--data", photos, "--out", out, "--iters", iters, "--init", chain["uncertainty"] / "final.pt",
            "--gan-weight", "0.1", "--d-features", "16", "--ema-decay", "0.9", "--save-every", "2", "--log-every", "1",
            *extra]


def _assert_same_final(a: Path, b: Path) -> None:
    ca, cb = load_checkpoint(a / "final.pt"), load_checkpoint(b / "final.pt")
    for name in ("state_dict", "ema_state_dict"):
        sa, sb = getattr(ca, name), getattr(cb, name)
        assert sa.keys() == sb.keys()
        diff = [k for k in sa if not torch.equal(sa[k], sb[k])]
        assert not diff, f"{name} differs: {diff[:5]}"
    da, db = ca.training_state["discriminator"], cb.training_state["discriminator"]
    assert all(torch.equal(da[k], db[k]) for k in da)
    assert ca.metadata["step"] == cb.metadata["step"]


@pytest.fixture(scope="module")
def straight(photos, chain, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("straight")
    assert _run(*_sr_args(photos, chain, out, 6)) == 0
    return out


def test_resume_is_bit_identical(photos, chain, straight, tmp_path):
    out = tmp_path / "split"
    assert _run(*_sr_args(photos, chain, out, 3)) == 0
    # the second half loads its batches through DataLoader workers: same data, same weights
    assert _run(*_sr_args(photos, chain, out, 6, "--resume", "auto", "--num-workers", "2")) == 0
    _assert_same_final(straight, out)
    steps = [int(r["step"]) for r in _log(out)]
    assert steps == list(range(1, 7))  # one row per step, none duplicated by the restart


@pytest.mark.parametrize("where", ["checkpoint", "latest"])
def test_crash_during_save_then_resume_is_bit_identical(photos, chain, straight, tmp_path, monkeypatch, where):
    out = tmp_path / "crashed"
    real_save, real_replace = torch.save, os.replace

    def dying_save(obj, f, *args, **kwargs):
        if isinstance(obj, dict) and (obj.get("training_state") or {}).get("step") == 4:
            f.write(b"half a checkpoint")  # the process dies mid-write
            raise _Killed("during torch.save")
        return real_save(obj, f, *args, **kwargs)

    def dying_replace(src, dst, *args, **kwargs):
        if Path(dst).name == "latest.pt" and (out / "ckpt_0000004.pt").exists():
            raise _Killed("before latest.pt moved on")
        return real_replace(src, dst, *args, **kwargs)

    if where == "checkpoint":
        monkeypatch.setattr(torch, "save", dying_save)
    else:
        monkeypatch.setattr(os, "replace", dying_replace)
    with pytest.raises(_Killed):
        _run(*_sr_args(photos, chain, out, 6))
    monkeypatch.undo()
    assert load_checkpoint(out / "latest.pt").training_state["step"] == 2  # the previous state is whole
    assert (out / "ckpt_0000004.pt").exists() == (where == "latest")
    assert _run(*_sr_args(photos, chain, out, 6, "--resume", "auto")) == 0
    _assert_same_final(straight, out)


# --- DDP --------------------------------------------------------------------------------------------
def test_torchrun_two_processes_keep_identical_weights(photos, chain, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "ugtsr.train",
           *BASE, *map(str, _sr_args(photos, chain, out, 3))]
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    final = load_checkpoint(out / "final.pt")
    digests = final.metadata["replica_digests"]
    assert final.metadata["world_size"] == 2 and len(digests) == 2 and digests[0] == digests[1]
    assert final.training_state is not None
    assert load_checkpoint(out / "latest.pt").training_state["samples_seen"] == 3 * 2 * 2


# --- user errors --------------------------------------------------------------------------------------
def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_missing_and_empty_data_folder(tmp_path, capsys):
    assert _run("--stage", "prior", "--data", tmp_path / "nope", "--out", tmp_path / "r", "--iters", "1") == 2
    assert "does not exist" in _error_line(capsys)
    (tmp_path / "empty").mkdir()
    assert _run("--stage", "prior", "--data", tmp_path / "empty", "--out", tmp_path / "r", "--iters", "1") == 2
    assert "no image files" in _error_line(capsys)
    assert not (tmp_path / "r").exists()


def test_small_and_unreadable_images_are_skipped_and_counted(photos, tmp_path, capsys):
    data = tmp_path / "mixed"
    data.mkdir()
    for p in list(photos.iterdir())[:2]:
        (data / p.name).write_bytes(p.read_bytes())
    cv2.imwrite(str(data / "small.png"), np.zeros((40, 40, 3), np.uint8))
    (data / "broken.png").write_bytes(b"not a png")
    assert _run("--stage", "prior", "--data", data, "--out", tmp_path / "r", "--iters", "1", "--gan-weight", "0") == 0
    summary = json.loads((tmp_path / "r" / "settings.json").read_text())["data"]
    assert summary["items"] == 2 and summary["skipped_too_small"] == 1 and summary["skipped_unreadable"] == 1
    only_small = tmp_path / "small"
    only_small.mkdir()
    cv2.imwrite(str(only_small / "small.png"), np.zeros((40, 40, 3), np.uint8))
    assert _run("--stage", "prior", "--data", only_small, "--out", tmp_path / "r2", "--iters", "1") == 2
    assert "smaller than the 64x64 patch" in _error_line(capsys)


def test_wrong_checkpoints_for_init_are_named(photos, chain, tmp_path, capsys):
    common = ["--data", photos, "--out", tmp_path / "r", "--iters", "1"]
    s1 = chain["uncertainty"] / "final.pt"
    # stage I given a stage-I checkpoint of another scale (a same-preset one continues stage I)
    x2s1 = tmp_path / "x2_s1.pt"
    save_checkpoint(x2s1, build_model(stage_config(PRESETS["tiny_x2"], "uncertainty")), stage="uncertainty",
                    prior_checkpoint=str(chain["prior"] / "final.pt"))
    assert _run("--stage", "uncertainty", "--init", x2s1, *common) == 2
    line = _error_line(capsys)
    assert str(x2s1) in line and "scale 2 (expected 4)" in line
    # stage I continued from a same-preset stage-I checkpoint: accepted, GT prior from its metadata
    ok = ["--data", photos, "--out", tmp_path / "continued", "--iters", "1"]
    assert _run("--stage", "uncertainty", "--init", s1, *ok) == 0
    # a prior of other widths
    narrow = stage_config(PRESETS["tiny_x4"], "prior").replace(channels=(32, 32, 32, 32))
    other = tmp_path / "narrow_prior.pt"
    save_checkpoint(other, build_model(narrow), stage="prior")
    assert _run("--stage", "uncertainty", "--init", other, *common) == 2
    line = _error_line(capsys)
    assert str(other) in line and "channels" in line
    # stage II given the prior, and a stage-I model of another scale
    assert _run("--stage", "sr", "--init", chain["prior"] / "final.pt", *common) == 2
    assert "stage uncertainty" in _error_line(capsys)
    x2 = tmp_path / "x2_stage1.pt"
    save_checkpoint(x2, build_model(stage_config(PRESETS["tiny_x2"], "uncertainty")), stage="uncertainty")
    assert _run("--stage", "sr", "--init", x2, *common) == 2
    line = _error_line(capsys)
    assert str(x2) in line and "scale 2 (expected 4)" in line


def test_missing_vgg_weights_stop_with_a_how_to(photos, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    assert _run("--stage", "prior", "--data", photos, "--out", tmp_path / "r", "--iters", "1",
                "--perceptual-weight", "1") == 2
    assert "--perceptual-weight 0" in _error_line(capsys)


def test_bad_options_and_foreign_resume_state(photos, chain, tmp_path, capsys):
    assert _run("--stage", "sr", "--data", photos, "--out", tmp_path / "r", "--patch-size", "72", "--iters", "1") == 2
    assert "--patch-size" in _error_line(capsys)
    with pytest.raises(Exception):  # noqa: B017 - TrainOptions validates on construction
        TrainOptions(stage="prior", preset="tiny_x4", data=".", out=".", init="x.pt")
    state = chain["prior"] / "latest.pt"
    assert _run("--stage", "uncertainty", "--data", photos, "--out", tmp_path / "r", "--iters", "1",
                "--init", chain["prior"] / "final.pt", "--resume", state) == 2
    assert "--stage prior" in _error_line(capsys)
    # a fresh start must not overwrite a run folder that holds a run
    assert _run("--stage", "prior", "--data", photos, "--out", chain["prior"], "--iters", "1") == 2
    assert "--resume auto" in _error_line(capsys)


def test_init_from_femasr_released_prior_layout(tmp_path, capsys):
    """--init-femasr with files laid out like FeMaSR's releases (synthetic weights, real key names)."""
    from tests.ugtsr.golden_weights import make_state_dict
    from ugtsr.train.models import build_stage_models

    hrp_state = make_state_dict("hrp")
    hrp, x4 = tmp_path / "FeMaSR_HRP_model_g.pth", tmp_path / "FeMaSR_SRX4_model_g.pth"
    torch.save({"params": hrp_state}, hrp)
    torch.save({"params": make_state_dict("x4")}, x4)
    options = TrainOptions(stage="uncertainty", preset="femasr_x4", data=".", out=str(tmp_path / "r"), init_femasr=str(hrp))
    models = build_stage_models(options, PRESETS["femasr_x4"])
    codebook = hrp_state["quantize_group.0.embedding.weight"]
    assert torch.equal(models.model.codebook.embedding, codebook)
    assert torch.equal(models.prior.codebook.embedding, codebook) and models.prior.config.is_prior
    assert torch.equal(models.model.quant_in.weight, models.prior.quant_in.weight)  # FeMaSR keeps before_quant
    assert not models.model.codebook.embedding.requires_grad and models.model.quant_in.weight.requires_grad
    assert models.prior_source == str(hrp.resolve())
    # an SR generator has no HQ encoder for the GT codes: refused unless --prior names the HRP file
    assert _run("--stage", "uncertainty", "--preset", "femasr_x4", "--data", tmp_path, "--out", tmp_path / "r",
                "--init-femasr", x4, "--iters", "1") == 2
    line = _error_line(capsys)
    assert str(x4) in line and "FeMaSR_HRP_model_g.pth" in line
    with_prior = build_stage_models(options.replace(init_femasr=str(x4), prior=str(hrp)), PRESETS["femasr_x4"])
    assert torch.equal(with_prior.model.codebook.embedding, make_state_dict("x4")["quantize_group.0.embedding.weight"])


def test_color_fix_option_trains_and_is_recorded(photos, chain, tmp_path, capsys):
    out = tmp_path / "cf"
    assert _run(*_sr_args(photos, chain, out, 2, "--color-fix", "4")) == 0
    ckpt = load_checkpoint(out / "final.pt")
    assert ckpt.config.color_fix_sigma == 4.0 and ckpt.config.name == "tiny_x4"
    assert load_model(out / "final.pt").color_fix is not None
    # the prior has no LR input to take a low band from
    assert _run("--stage", "prior", "--data", photos, "--out", tmp_path / "p", "--iters", "1",
                "--color-fix", "4") == 2
    assert "--color-fix" in _error_line(capsys)


def test_fidelity_gate_option_trains_the_gate_at_ten_times_the_rate(photos, chain, tmp_path):
    from ugtsr.train.trainer import GATE_LR_FACTOR, Trainer

    out = tmp_path / "gate"
    assert _run(*_sr_args(photos, chain, out, 2, "--fidelity-gate", "--color-fix", "4")) == 0
    ckpt = load_checkpoint(out / "final.pt")
    assert ckpt.config.fidelity_gate and ckpt.config.color_fix_sigma == 4.0
    init = load_checkpoint(chain["uncertainty"] / "final.pt").state_dict
    assert not any(k.startswith("fidelity_gate.") for k in init)
    bias = ckpt.state_dict["fidelity_gate.body.4.bias"]
    assert float(bias) != -4.0  # trained away from its initial value
    opts = TrainOptions(stage="sr", preset="tiny_x4", data=str(photos), out=str(tmp_path / "g2"), iters=1,
                        init=str(chain["uncertainty"] / "final.pt"), fidelity_gate=True, gan_weight=0.0,
                        perceptual_weight=0.0, lr=2e-4, patch_size=64, batch_size=2)
    trainer = Trainer(opts)
    lrs = [g["lr"] for g in trainer.opt_g.param_groups]
    assert lrs == [2e-4, 2e-4 * GATE_LR_FACTOR]
    gate_ids = {id(p) for p in trainer.model.fidelity_gate.parameters()}
    assert {id(p) for p in trainer.opt_g.param_groups[1]["params"]} == gate_ids


def test_ablation_options_change_the_model_and_the_loss(photos, chain, tmp_path, capsys):
    """Table V variants (issue 14): --matching / --skip-fusion override the preset, --pixel-loss l1
    replaces UDL; the logged terms and the saved config say which ran."""
    out = tmp_path / "baseline"
    assert _run(*_sr_args(photos, chain, out, 2, "--matching", "nearest", "--skip-fusion", "add",
                          "--pixel-loss", "l1")) == 0
    cfg = load_checkpoint(out / "final.pt").config
    assert (cfg.matching, cfg.skip_fusion) == ("nearest", "add")
    model = load_model(out / "final.pt")
    assert model.skip_fusion is None and not hasattr(model.matcher, "fusion")
    row = _log(out)[-1]
    assert row["l1"] and not row["udl"]
    out = tmp_path / "udl"
    assert _run(*_sr_args(photos, chain, out, 2, "--matching", "nearest")) == 0
    row = _log(out)[-1]
    assert row["udl"] and not row["l1"] and load_checkpoint(out / "final.pt").config.skip_fusion == "align_attention"
    assert _run("--stage", "uncertainty", "--data", photos, "--out", tmp_path / "u", "--iters", "1",
                "--init", chain["prior"] / "final.pt", "--pixel-loss", "l1") == 2
    assert "--pixel-loss" in _error_line(capsys)
