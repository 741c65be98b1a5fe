"""ugtsr.train.gate_cache: the fidelity gate trained on cached outputs of the frozen network."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import ugtsr
from ugtsr.checkpoint import load_checkpoint
from ugtsr.config import get_config
from ugtsr.degrade.simple import MIXTURE_WIDE, mixed_choice
from ugtsr.errors import ConfigError
from ugtsr.train import gate_cache

from ..conftest import write_package_photos

cv2 = pytest.importorskip("cv2")
skdata = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    return write_package_photos(tmp_path_factory.mktemp("hr"), 128)


@pytest.fixture(scope="module")
def network(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = ugtsr.build_model(get_config("tiny_x4").replace(color_fix_sigma=4.0, fidelity_gate=True,
                                                            fidelity_gate_context=True)).eval()
    path = tmp_path_factory.mktemp("ck") / "net.pt"
    ugtsr.save_checkpoint(path, model)
    return path


def test_parse_mixture():
    assert gate_cache.parse_mixture("bsrgan=3,clean=1") == (("bsrgan", 0.75), ("clean", 0.25))
    # the default is mixed_wide's own mixture, so that the draw is the trainer's
    default = gate_cache.parse_mixture(",".join(f"{n}={p}" for n, p in MIXTURE_WIDE))
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    assert [mixed_choice(rng_a, default) for _ in range(50)] == [mixed_choice(rng_b, MIXTURE_WIDE) for _ in range(50)]
    for bad, what in (("bsrgan", "NAME=P"), ("nope=1", "NAME=P"), ("clean=x", "not a number"), ("clean=0", "> 0")):
        with pytest.raises(ConfigError, match=what):
            gate_cache.parse_mixture(bad)


def test_cache_holds_the_network_output_without_the_gate(network, photos):
    model = load_checkpoint(network).build_model().eval()
    with torch.no_grad():
        model.fidelity_gate.body[-1].bias.fill_(2.0)  # an open gate: with it, the output would differ
    cache = gate_cache.build_cache(model, photos, samples=3, patch_size=64, seed=3,
                                   mixture=(("clean", 0.5), ("bsrgan", 0.5)))
    assert model.fidelity_gate is not None  # put back
    assert cache.lq.shape == (3, 3, 16, 16) and cache.sr.shape == (3, 3, 64, 64) and cache.hr.dtype == torch.uint8
    assert set(cache.component) <= {"clean", "bsrgan"}
    gate, model.fidelity_gate = model.fidelity_gate, None
    with torch.no_grad():
        ref = model(cache.lq).sr.clamp(0, 1)
    model.fidelity_gate = gate
    assert float((cache.sr.float() - ref).abs().max()) < 1e-3  # float16 storage
    with torch.no_grad():
        gated = model(cache.lq).sr
    assert float((gated - ref).abs().max()) > 1e-2


def test_main_trains_only_the_gate_and_writes_loadable_checkpoints(network, photos, tmp_path, capsys):
    out = tmp_path / "gate"
    before = network.read_bytes()
    rc = gate_cache.main(["--init", str(network), "--data", str(photos), "--out", str(out), "--global-context",
                          "--mixture", "clean=1,bsrgan=1", "--samples", "6", "--patch-size", "64", "--crop", "32",
                          "--iters", "6", "--eval-every", "3", "--batch-size", "2", "--seed", "4"])
    assert rc == 0, capsys.readouterr().err
    assert network.read_bytes() == before
    init, final, swa = (load_checkpoint(p) for p in (network, out / "final.pt", out / "swa.pt"))
    assert final.config.fidelity_gate_global and final.config.fidelity_gate_context
    assert final.config.replace(fidelity_gate_global=False) == init.config
    changed = {k for k in init.state_dict if not torch.equal(init.state_dict[k], final.state_dict[k])}
    assert changed and all(k.startswith("fidelity_gate.") for k in changed)
    assert any(not torch.equal(final.state_dict[k], swa.state_dict[k]) for k in final.state_dict)  # an average of 2
    assert any(k.startswith("fidelity_gate.global_head") and float(final.state_dict[k].abs().sum()) > 0
               for k in final.state_dict)
    settings = json.loads((out / "settings.json").read_text())
    assert settings["steps"] == 6 and settings["samples"] == 6 and settings["val_samples"] == 1
    assert "--global-context" in settings["command"]
    assert (out / "log.csv").read_text().count("\n") == 3  # header + 2 evaluations
    model = swa.build_model().eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 24, 40)).sr.shape == (1, 3, 96, 160)


def test_main_errors_in_one_line(network, photos, tmp_path, capsys):
    args = ["--init", str(network), "--data", str(photos), "--out", str(tmp_path / "o"), "--samples", "2",
            "--patch-size", "64", "--iters", "1"]
    assert gate_cache.main([*args, "--mixture", "fog=1"]) == 2
    assert gate_cache.main([*args, "--crop", "30"]) == 2
    assert gate_cache.main([*args[:1], str(tmp_path / "missing.pt"), *args[2:]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("error: ") for line in err), err
    assert "fog" in err[0] and "--crop 30" in err[1] and "missing.pt" in err[2]


def test_optimal_global_weights_recover_a_planted_blend():
    from ugtsr.postfilters import FidelityGate, bicubic_upsample

    g = torch.Generator().manual_seed(0)
    lq = torch.rand(4, 3, 8, 8, generator=g)
    sr = torch.rand(4, 3, 32, 32, generator=g)
    bic = bicubic_upsample(lq, FidelityGate.bicubic_weight(4), 4)
    w = torch.tensor([0.1, 0.5, 0.9, 0.3])
    hr = (sr + w[:, None, None, None] * (bic - sr)).clamp(0, 1)
    exact = (hr - (sr + w[:, None, None, None] * (bic - sr))).abs().max() == 0  # no clipping happened
    cache = gate_cache.GateCache(lq, sr.half(), (hr * 255).round().to(torch.uint8), ["clean"] * 4)
    got = gate_cache.optimal_global_weights(cache, 4, chunk=3)
    assert got.shape == (4,)
    assert float((got - w).abs().max()) < (0.02 if exact else 0.05)
    assert gate_cache.optimal_global_weights(cache, 4, lo=0.4, hi=0.6).tolist()[0] == pytest.approx(0.4)


def test_pretrain_global_then_joint_training(network, photos, tmp_path, capsys):
    out = tmp_path / "pre"
    rc = gate_cache.main(["--init", str(network), "--data", str(photos), "--out", str(out), "--global-context",
                          "--samples", "6", "--patch-size", "64", "--iters", "2", "--eval-every", "1", "--batch-size", "2",
                          "--pretrain-global", "3", "--loss", "mse", "--seed", "5", "--cache", str(tmp_path / "c.pt")])
    assert rc == 0, capsys.readouterr().err
    settings = json.loads((out / "settings.json").read_text())
    assert settings["pretrain_global"]["steps"] == 3 and settings["loss"] == "mse"
    assert (tmp_path / "c.pt").is_file()
    # the cache is reused by a run with the same settings and refused by one with others
    assert gate_cache.main(["--init", str(network), "--data", str(photos), "--out", str(tmp_path / "again"),
                            "--samples", "6", "--patch-size", "64", "--iters", "1", "--seed", "5",
                            "--global-context", "--cache", str(tmp_path / "c.pt")]) == 0
    assert gate_cache.main(["--init", str(network), "--data", str(photos), "--out", str(tmp_path / "other"),
                            "--samples", "7", "--patch-size", "64", "--iters", "1", "--seed", "5",
                            "--cache", str(tmp_path / "c.pt")]) == 2
    assert "other settings" in capsys.readouterr().err
    # --pretrain-global needs the image-level estimate
    assert gate_cache.main(["--init", str(network), "--data", str(photos), "--out", str(tmp_path / "x"),
                            "--samples", "2", "--patch-size", "64", "--iters", "1", "--pretrain-global", "2"]) == 2
    assert "--global-context" in capsys.readouterr().err
