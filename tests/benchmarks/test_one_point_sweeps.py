"""Every benchmark CLI accepts one-point sweeps (issue 11 item 11).

``python -m benchmarks.matching --grids 8`` crashed with IndexError in the slope fit. Each CLI is
run here with one value per sweep and tiny sizes; a one-point fit has no slope (null), never a crash.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import ugtsr
from benchmarks import accuracy, matching, quality, tiling, train_throughput


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    cv2 = pytest.importorskip("cv2")
    data = pytest.importorskip("skimage.data")
    folder = tmp_path_factory.mktemp("hr")
    img = data.astronaut()[:128, 128:256]
    assert cv2.imwrite(str(folder / "astronaut.png"), np.ascontiguousarray(img[..., ::-1]))
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    prior = ugtsr.build_model(ugtsr.PRESETS["tiny_x4"].prior_config())
    sr = ugtsr.build_model("tiny_x4")
    with torch.no_grad():
        sr.codebook.embedding.copy_(prior.codebook.embedding)
    return {"prior": ugtsr.save_checkpoint(folder / "prior.pt", prior),
            "sr": ugtsr.save_checkpoint(folder / "sr.pt", sr)}


def _no_traceback(capsys) -> str:
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return captured.out


def test_matching_one_grid_and_one_codebook_size(tmp_path, capsys):
    rc = matching.main(["--grids", "8", "--codebook-sizes", "64", "--codebook-size", "64", "--dim", "32",
                        "--k-sweep-grid", "4", "--fusion-heads", "4", "--cf-dim", "32", "--cf-heads", "4",
                        "--cf-layers", "1", "--cf-ffn", "32", "--repeats", "1", "--warmup", "0", "--threads", "1",
                        "--out-dir", str(tmp_path), "--no-plot"])
    assert rc == 0
    assert "slope" in _no_traceback(capsys)
    rec = json.loads((tmp_path / "matching_cpu.json").read_text())
    assert {r["tokens"] for r in rec["size_sweep"]["rows"]} == {64}
    for slopes in (rec["size_sweep_slopes_vs_tokens"], rec["codebook_sweep_slopes_vs_K"]):
        assert set(slopes) == set(matching.METHODS)
        assert all(v["all"] is None and v["upper_half"] is None for v in slopes.values())


def test_matching_two_grids_still_fit_a_slope(tmp_path, capsys):
    rc = matching.main(["--grids", "4", "8", "--codebook-sizes", "--codebook-size", "64", "--dim", "32",
                        "--methods", "nearest", "--repeats", "1", "--warmup", "0", "--threads", "1",
                        "--out-dir", str(tmp_path), "--no-plot"])
    assert rc == 0
    _no_traceback(capsys)
    s = json.loads((tmp_path / "matching_cpu.json").read_text())["size_sweep_slopes_vs_tokens"]["nearest"]
    assert isinstance(s["all"], float) and s["upper_half"] == s["all"] and s["upper_half_from"] == 16


def test_tiling_one_tile_one_pad(tmp_path, photos, models, capsys):
    rc = tiling.main(["--model", str(models["sr"]), "--data", str(photos), "--tiles", "16", "--pads", "8",
                      "--out-dir", str(tmp_path)])
    assert rc == 0
    _no_traceback(capsys)
    rec = json.loads((tmp_path / "tiling_default.json").read_text())
    assert [r["setting"] for r in rec["summary"]] == ["auto", "16/8"]


def test_tiling_bad_sweep_is_one_line(tmp_path, photos, capsys):
    assert tiling.main(["--data", str(photos), "--tiles", "0", "--out-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--tiles" in err[0]


def test_accuracy_one_model_one_k(tmp_path, photos, models, capsys):
    rc = accuracy.main(["--prior", str(models["prior"]), "--model", str(models["sr"]), "--data", str(photos),
                        "--ks", "1", "--threads", "1", "--out-dir", str(tmp_path), "--no-plot"])
    assert rc == 0
    _no_traceback(capsys)
    rec = json.loads(next(tmp_path.glob("accuracy_*.json")).read_text())
    assert len(rec["models"]) == 1 and 0.0 <= rec["models"][0]["hit@1"] <= 1.0


def test_quality_one_model_one_draw_one_image(tmp_path, photos, models, capsys):
    rc = quality.main(["--model", str(models["sr"]), "--data", str(photos), "--draws", "1", "--limit", "1",
                       "--no-niqe", "--threads", "1", "--out-dir", str(tmp_path)])
    assert rc == 0
    _no_traceback(capsys)
    rec = json.loads(next(tmp_path.glob("quality_*.json")).read_text())
    assert [m["images"] for m in rec["mean"]] == [1, 1, 1]


def test_train_throughput_one_case_one_step(tmp_path, capsys):
    out = tmp_path / "tt.json"
    rc = train_throughput.main(["--cases", "tiny_x4:64", "--steps", "1", "--warmup", "0", "--batch-size", "1",
                                "--threads", "1", "-o", str(out)])
    assert rc == 0
    _no_traceback(capsys)
    (row,) = json.loads(out.read_text())["results"]
    assert row["timed_steps"] == 1 and row["median_step_s"] > 0
    assert train_throughput.main(["--cases", "tiny_x4:big", "-o", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--cases tiny_x4:big" in err[0]
