"""scripts/slim_checkpoints.py: model-only copies of run folders and of single checkpoints."""
from __future__ import annotations

import pytest

from .conftest import load_script

torch = pytest.importorskip("torch", reason="checkpoints need torch")


def _checkpoint(path, **meta):
    import ugtsr

    torch.manual_seed(0)
    model = ugtsr.build_model("tiny_x4")
    ugtsr.save_checkpoint(path, model, training_state={"step": 3}, **meta)
    return model


def test_runs_and_files_modes(tmp_path, capsys):
    from ugtsr.checkpoint import load_checkpoint

    slim = load_script("slim_checkpoints")
    (tmp_path / "runs" / "a").mkdir(parents=True)
    (tmp_path / "runs" / "empty").mkdir()
    model = _checkpoint(tmp_path / "runs" / "a" / "final.pt", step=7, note="x", nested={"no": 1})
    assert slim.main([str(tmp_path / "runs"), str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "slim a " in out and "missing empty" in out
    got = load_checkpoint(tmp_path / "out" / "a.pt")
    assert got.training_state is None and got.metadata["step"] == 7 and "nested" not in got.metadata
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in got.state_dict.items())
    assert slim.main(["--files", str(tmp_path / "runs" / "a" / "final.pt"), str(tmp_path / "one.pt"),
                      "--license", "Apache-2.0"]) == 0
    one = load_checkpoint(tmp_path / "one.pt")
    assert one.metadata["license"] == "Apache-2.0" and one.metadata["note"] == "x"
    assert slim.main(["--files", str(tmp_path / "one.pt")]) == 2  # an odd number of paths
    assert slim.main([str(tmp_path / "runs")]) == 2
