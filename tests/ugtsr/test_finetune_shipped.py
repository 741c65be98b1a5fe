"""Fine-tuning the shipped checkpoint as runtime/models/README.md says (issue 11 item 10).

Before, ``--stage sr --init runtime/models/ugtsr_tiny_x4.pt`` asked for the stage-I model and
``--uncertainty-ckpt`` with the same file gave the same message. A stage-II checkpoint is now its
own frozen uncertainty model (its head is frozen in stage II), ``--no-prior`` trains without the HQ
prior (which is not shipped), and losing the colour fix / fidelity gate of ``--init`` is refused.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ugtsr.checkpoint import load_checkpoint
from ugtsr.train import main

from ..conftest import write_package_photos

cv2 = pytest.importorskip("cv2")
skdata = pytest.importorskip("skimage.data")

SHIPPED = Path(__file__).resolve().parents[2] / "runtime" / "models" / "ugtsr_tiny_x4.pt"
BASE = ["--stage", "sr", "--preset", "tiny_x4", "--batch-size", "1", "--patch-size", "64", "--threads", "1",
        "--device", "cpu", "--perceptual-weight", "0", "--gan-weight", "0", "--no-tensorboard", "--quiet",
        "--iters", "2", "--log-every", "1"]


def _keep_flags() -> list[str]:
    """The flags that keep the shipped model's colour fix and gate (read from its config)."""
    if not SHIPPED.is_file():
        return []
    cfg = load_checkpoint(SHIPPED).config
    flags = ["--color-fix", f"{cfg.color_fix_sigma:g}", "--fidelity-gate"]
    flags += ["--fidelity-gate-context"] if cfg.fidelity_gate_context else []
    return flags + (["--fidelity-gate-global"] if cfg.fidelity_gate_global else [])


KEEP = _keep_flags()

pytestmark = pytest.mark.skipif(not SHIPPED.is_file(), reason="the shipped checkpoint is not in this checkout")


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    return write_package_photos(tmp_path_factory.mktemp("hr"), 96)


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_fine_tune_the_shipped_checkpoint_without_its_prior(photos, tmp_path, capsys):
    out = tmp_path / "ft"
    before = SHIPPED.read_bytes()
    assert main([*BASE, *KEEP, "--init", str(SHIPPED), "--no-prior", "--data", str(photos), "--out", str(out)]) == 0
    assert SHIPPED.read_bytes() == before
    shipped, tuned = load_checkpoint(SHIPPED), load_checkpoint(out / "final.pt")
    assert tuned.config == shipped.config  # colour fix and gate kept
    assert tuned.metadata["prior_checkpoint"] is None
    assert tuned.metadata["uncertainty_checkpoint"] == str(SHIPPED.resolve())
    for k, v in shipped.state_dict.items():
        if k.startswith(("codebook.", "quant_out.", "decoder.", "uncertainty_head.")):  # frozen in stage II
            assert torch.equal(tuned.state_dict[k], v), k
    changed = [k for k, v in shipped.state_dict.items() if not torch.equal(tuned.state_dict[k], v)]
    assert changed and all(not k.startswith(("codebook.", "decoder.", "uncertainty_head.")) for k in changed)
    import csv

    with open(out / "log.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["loss"]]
    assert len(rows) == 2 and all(r["udl"] and not r["codebook"] for r in rows)  # no GT codes, no codebook loss


def test_shipped_checkpoint_as_uncertainty_model_of_another_init(photos, tmp_path):
    first = tmp_path / "a"
    assert main([*BASE, *KEEP, "--init", str(SHIPPED), "--no-prior", "--data", str(photos), "--out", str(first)]) == 0
    second = tmp_path / "b"
    assert main([*BASE, *KEEP, "--init", str(first / "final.pt"), "--uncertainty-ckpt", str(SHIPPED), "--no-prior",
                 "--data", str(photos), "--out", str(second)]) == 0
    assert load_checkpoint(second / "final.pt").metadata["uncertainty_checkpoint"] == str(SHIPPED.resolve())


def test_what_the_documented_command_needs_is_said_in_one_line(photos, tmp_path, capsys):
    common = ["--init", str(SHIPPED), "--data", str(photos), "--out", str(tmp_path / "r")]
    assert main([*BASE, *common, "--no-prior"]) == 2  # would drop the colour fix and the gate
    line = _error_line(capsys)
    assert "--color-fix 4 --fidelity-gate" in line and str(SHIPPED) in line
    recorded = load_checkpoint(SHIPPED).metadata.get("prior_checkpoint")
    if recorded and not Path(recorded).exists():
        assert main([*BASE, *KEEP, *common]) == 2
        line = _error_line(capsys)
        assert "--no-prior" in line and "is not there" in line
    assert main([*BASE[:1], "uncertainty", *BASE[2:], *common, "--no-prior"]) == 2
    assert "--no-prior applies to --stage sr only" in _error_line(capsys)
    assert not (tmp_path / "r" / "final.pt").exists()


def _log_rows(run: Path) -> list[dict]:
    import csv

    with open(run / "log.csv", newline="") as fh:
        return [r for r in csv.DictReader(fh) if r["loss"]]


def test_train_decoder_trains_everything_but_the_codebook(photos, tmp_path):
    out = tmp_path / "td"
    assert main([*BASE, *KEEP, "--init", str(SHIPPED), "--no-prior", "--train-decoder", "--pipeline", "mixed_wide",
                 "--data", str(photos), "--out", str(out)]) == 0
    shipped, tuned = load_checkpoint(SHIPPED), load_checkpoint(out / "final.pt")
    changed = {k.split(".", 1)[0] for k, v in shipped.state_dict.items() if not torch.equal(tuned.state_dict[k], v)}
    assert {"decoder", "quant_out", "uncertainty_head", "encoder"} <= changed
    assert "codebook" not in changed
    rows = _log_rows(out)
    assert len(rows) == 2 and all(r["udl"] and r["esu"] for r in rows)  # the head is refitted with ESU
    assert load_checkpoint(out / "final.pt").metadata["uncertainty_checkpoint"] == str(SHIPPED.resolve())


def test_train_decoder_is_for_stage_sr_only(photos, tmp_path, capsys):
    code = main(["--stage", "uncertainty", "--preset", "tiny_x4", "--train-decoder", "--data", str(photos),
                 "--out", str(tmp_path / "u")])
    assert code != 0
    assert "--train-decoder applies to --stage sr only" in _error_line(capsys)


def test_rescale_to_x2_then_fine_tune(photos, tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("rescale", SHIPPED.parents[2] / "scripts" / "rescale_checkpoint.py")
    rescale = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rescale)
    init = tmp_path / "x2_init.pt"
    assert rescale.main([str(SHIPPED), "--scale", "2", "-o", str(init)]) == 0
    src, x2 = load_checkpoint(SHIPPED), load_checkpoint(init)
    assert x2.config.scale == 2 and x2.config.name == "tiny_x2"
    assert x2.config.color_fix_sigma == src.config.color_fix_sigma / 2 and x2.config.fidelity_gate
    fresh = set(x2.metadata["rescaled_fresh"])
    assert fresh and all(k.startswith("encoder.") for k in fresh)
    for k, v in x2.state_dict.items():
        if k not in fresh:
            assert torch.equal(v, src.state_dict[k]), k
    out = tmp_path / "x2"
    assert main([*BASE[:3], "tiny_x2", *BASE[4:], "--color-fix", "2", *KEEP[2:], "--init", str(init),
                 "--no-prior", "--train-decoder", "--pixel-loss", "l1", "--data", str(photos), "--out", str(out)]) == 0
    model = load_checkpoint(out / "final.pt").build_model().eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 24, 20)).sr.shape == (1, 3, 48, 40)
    rows = _log_rows(out)
    assert all(r["l1"] and r["esu"] and not r["udl"] for r in rows)


def test_train_gate_only_changes_nothing_but_the_gate(photos, tmp_path, capsys):
    out = tmp_path / "gate"
    assert main([*BASE, *KEEP, "--init", str(SHIPPED), "--no-prior", "--train-gate-only",
                 "--lr", "1e-3", "--data", str(photos), "--out", str(out)]) == 0
    shipped, tuned = load_checkpoint(SHIPPED), load_checkpoint(out / "final.pt")
    assert tuned.config.fidelity_gate_context
    changed = {k for k, v in shipped.state_dict.items() if not torch.equal(tuned.state_dict[k], v)}
    assert changed and all(k.startswith("fidelity_gate.") for k in changed)
    code = main([*BASE, "--init", str(SHIPPED), "--no-prior", "--train-gate-only", "--data", str(photos),
                 "--out", str(tmp_path / "nogate")])
    assert code != 0 and "--train-gate-only needs the gate" in _error_line(capsys)
