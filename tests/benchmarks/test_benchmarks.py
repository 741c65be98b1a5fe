"""Smoke tests of the benchmark CLIs: tiny sizes, one repeat, outputs' structure and invariants.

Timings are never asserted (they depend on the machine and its load); what is checked is that every
CLI runs end to end, writes the files it promises with the keys, finite numbers and orderings that
must hold (hit@1 <= hit@3 <= hit@5, ...), and that a number can be recomputed independently.
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import ugtsr
from benchmarks import _common as C
from benchmarks import accuracy, latency, matching, quality

from ..conftest import write_package_photos


def _only(folder: Path, pattern: str) -> Path:
    found = sorted(folder.glob(pattern))
    assert len(found) == 1, found
    return found[0]


def _check_header(rec: dict, module: str) -> None:
    assert module in rec["command"]
    assert rec["utc_time"].endswith("Z")
    assert rec["machine"]["cpu_model"] and rec["machine"]["cpu_logical_cores"] >= 1
    assert isinstance(rec["machine"]["gpus"], list)
    for key in ("python", "torch", "onnxruntime", "ugtsr", "numpy"):
        assert key in rec["versions"]
    assert rec["versions"]["ugtsr"] == ugtsr.__version__


def _finite_positive(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


# ------------------------------------------------------------------------------------------- common
def test_measure_calls_warmup_plus_repeats_rotating_inputs():
    seen = []
    t = C.measure(seen.append, ["a", "b", "c"], repeats=4, warmup=2)
    assert seen == ["a", "b", "a", "b", "c", "a"]
    assert t.repeats == 4 and t.warmup == 2 and len(t.times_ms) == 4
    assert t.min_ms <= t.median_ms <= t.max_ms


def test_measure_interleaved_alternates_the_functions():
    seen = []
    fns = {"a": lambda x: seen.append(("a", x)), "b": lambda x: seen.append(("b", x))}
    out = C.measure_interleaved(fns, [0, 1], repeats=3, warmup=1)
    assert seen == [("a", 0), ("b", 0), ("a", 0), ("b", 0), ("a", 1), ("b", 1), ("a", 0), ("b", 0)]
    assert set(out) == {"a", "b"} and all(len(t.times_ms) == 3 for t in out.values())


def test_loglog_slope_recovers_the_exponent():
    xs = [64, 256, 1024, 4096]
    assert C.loglog_slope(xs, [3e-3 * x for x in xs]) == pytest.approx(1.0)
    assert C.loglog_slope(xs, [2e-7 * x * x + 0 for x in xs]) == pytest.approx(2.0)
    assert C.loglog_slope([5], [1.0]) is None


def test_result_paths_and_writers_are_atomic(tmp_path):
    paths = C.result_paths(tmp_path, "x", "a/b c")
    assert paths["json"].parent == tmp_path and "/" not in paths["json"].name
    C.write_json(paths["json"], {"a": 1})
    C.write_csv(paths["csv"], [{"a": 1, "b": None}, {"a": 2, "c": 3}])
    assert json.loads(paths["json"].read_text()) == {"a": 1}
    rows = list(csv.DictReader(paths["csv"].open()))
    assert rows[0] == {"a": "1", "b": "", "c": ""} and rows[1]["c"] == "3"
    with pytest.raises(ValueError):
        C.write_json(paths["json"], {"a": float("nan")})
    assert json.loads(paths["json"].read_text()) == {"a": 1}  # the failed write left the old file
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# ------------------------------------------------------------------------------------------ matching
def test_matching_smoke(tmp_path, capsys):
    rc = matching.main(["--codebook-size", "64", "--dim", "32", "--grids", "4", "8", "--repeats", "1",
                        "--warmup", "0", "--codebook-sizes", "64", "128", "--k-sweep-grid", "4",
                        "--fusion-heads", "4", "--cf-dim", "32", "--cf-heads", "4", "--cf-layers", "2",
                        "--cf-ffn", "64", "--threads", "1", "--out-dir", str(tmp_path)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "codeformer" in out and "slope" in out
    rec = json.loads((tmp_path / "matching_cpu.json").read_text())
    _check_header(rec, "benchmarks.matching")
    assert rec["device"] == "cpu"
    rows = rec["size_sweep"]["rows"]
    assert {(r["tokens"], r["method"]) for r in rows} == {(n, m) for n in (16, 64) for m in matching.METHODS}
    for r in rows + rec["codebook_sweep"]["rows"]:
        assert _finite_positive(r["median_ms"]) and r["min_ms"] <= r["median_ms"] <= r["max_ms"]
        assert r["repeats"] == 1 and len(r["times_ms"]) == 1
    assert {r["codebook_size"] for r in rec["codebook_sweep"]["rows"]} == {64, 128}
    assert set(rec["size_sweep_slopes_vs_tokens"]) == set(matching.METHODS)
    for s in rec["size_sweep_slopes_vs_tokens"].values():
        assert isinstance(s["all"], float) and math.isfinite(s["all"])
    ratios = {r["tokens"]: r for r in rec["size_sweep_ratios"]}
    by = {(r["tokens"], r["method"]): r["median_ms"] for r in rows}
    for n in (16, 64):  # the ratio is the quotient of the two medians of the same run
        assert ratios[n]["codeformer_over_topk"] == pytest.approx(by[(n, "codeformer")] / by[(n, "topk")], rel=1e-2)
    # codeformer: parameters include a position table sized to the grid, so they grow with it
    params = {r["tokens"]: r["parameters"] for r in rows if r["method"] == "codeformer"}
    assert params[64] - params[16] == 32 * (64 - 16)
    assert rec["fused_kernel"]["status"] == "skipped"
    csv_rows = list(csv.DictReader((tmp_path / "matching_cpu.csv").open()))
    assert len(csv_rows) == len(rows) + len(rec["codebook_sweep"]["rows"])
    if rec["plot"]:
        assert Path(rec["plot"]).is_file()
    else:
        assert any("matplotlib" in n for n in rec["notes"])


def test_matching_rejects_bad_settings(tmp_path, capsys):
    rc = matching.main(["--codebook-size", "2", "--top-k", "3", "--out-dir", str(tmp_path)])
    assert rc == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "top-k" in err[0]
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------------------------------ accuracy
@pytest.fixture(scope="module")
def tiny_checkpoints(tmp_path_factory):
    """A tiny HQ prior and three SR models (nearest, topk, codeformer) sharing its codebook."""
    folder = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(1)
    prior = ugtsr.build_model(ugtsr.PRESETS["tiny_x4"].prior_config())
    with torch.no_grad():
        prior.codebook.embedding.normal_(0.0, 0.5)  # spread like a trained codebook: no near ties
    paths = {"prior": ugtsr.save_checkpoint(folder / "prior.pt", prior)}
    configs = {"nearest": ugtsr.PRESETS["tiny_x4"].replace(matching="nearest"),
               "topk": ugtsr.PRESETS["tiny_x4"],
               "codeformer": ugtsr.PRESETS["tiny_x4"].replace(matching="codeformer", codeformer_grid=(8, 8))}
    for name, cfg in configs.items():
        model = ugtsr.build_model(cfg)
        with torch.no_grad():
            model.codebook.embedding.copy_(prior.codebook.embedding)
        paths[name] = ugtsr.save_checkpoint(folder / f"{name}.pt", model)
    return paths


def test_accuracy_smoke(tmp_path, tiny_checkpoints, capsys):
    data = write_package_photos(tmp_path / "hr", 150)  # 150 -> cropped to 128 (multiple of 64)
    ck = tiny_checkpoints
    rc = accuracy.main(["--prior", str(ck["prior"]), "--model", str(ck["nearest"]), "--model", str(ck["topk"]),
                        "--model", str(ck["codeformer"]), "--name", "near", "--name", "top3", "--data", str(data),
                        "--seed", "3", "--threads", "1", "--out-dir", str(tmp_path / "res")])
    assert rc == 0
    assert "hit@3" in capsys.readouterr().out
    rec = json.loads(_only(tmp_path / "res", "accuracy_*.json").read_text())
    _check_header(rec, "benchmarks.accuracy")
    assert rec["geometry"]["hr_multiple"] == 64 and rec["geometry"]["evaluated"] == 2
    models = {m["model"]: m for m in rec["models"]}
    assert set(models) == {"near", "top3", "codeformer"}  # the third name defaults to the file stem
    for m in models.values():
        assert m["positions"] == 2 * (128 // 8) ** 2
        assert 0.0 <= m["hit@1"] <= m["hit@3"] <= m["hit@5"] <= 1.0
        assert 0.0 <= m["final"] <= 1.0
        assert m["codebook_max_abs_diff_vs_prior"] == 0.0
        rows = [r for r in rec["per_image"] if r["model"] == m["model"]]
        assert len(rows) == 2 and sum(r["positions"] for r in rows) == m["positions"]
        pooled = sum(r["hit@3"] * r["positions"] for r in rows) / m["positions"]
        assert pooled == pytest.approx(m["hit@3"], abs=1e-5)
    # nearest: the final index is the nearest code; an untrained Top-k fusion is the top-1 identity
    assert models["near"]["final"] == models["near"]["hit@1"]
    assert models["top3"]["final"] == models["top3"]["hit@1"]
    assert "21%" in rec["paper_reference"]["text"]
    assert len(list(csv.DictReader(_only(tmp_path / "res", "accuracy_*.csv").open()))) == 2 * 3 + 3


def test_accuracy_top1_matches_an_independent_computation(tmp_path, tiny_checkpoints):
    """hit@1 of the nearest model recomputed with torch.cdist in float64 from the same LR/HR pair."""
    from ugtsr.degrade import PIPELINES, float_to_image, image_to_float, read_image, rng_from_key

    data = write_package_photos(tmp_path / "hr", 128, names=("chelsea",))
    ck = tiny_checkpoints
    assert accuracy.main(["--prior", str(ck["prior"]), "--model", str(ck["nearest"]), "--data", str(data),
                          "--seed", "5", "--tag", "t", "--no-plot", "--out-dir", str(tmp_path)]) == 0
    got = json.loads((tmp_path / "accuracy_t.json").read_text())["models"][0]["hit@1"]

    prior, model = ugtsr.load_model(ck["prior"]), ugtsr.load_model(ck["nearest"])
    hr = image_to_float(read_image(data / "chelsea.png"))
    pair = PIPELINES["bsrgan"](hr, scale=4, rng=rng_from_key(5, "chelsea.png"))
    lr = float_to_image(pair.lr).astype(np.float32) / 255.0
    with torch.no_grad():
        zh = prior.encode(torch.from_numpy(pair.hr.transpose(2, 0, 1).copy())[None])[0]
        zl = model.encode(torch.from_numpy(lr.transpose(2, 0, 1).copy())[None])[0]
        book = prior.codebook.embedding.double()
        gt = torch.cdist(zh.flatten(2)[0].t().double(), book).argmin(1)
        pred = torch.cdist(zl.flatten(2)[0].t().double(), book).argmin(1)
    expect = float((gt == pred).double().mean())
    assert got == pytest.approx(expect, abs=2.5 / gt.numel())  # float32 vs float64 near-ties: a position or two


def test_accuracy_refuses_an_sr_model_as_prior(tmp_path, tiny_checkpoints, capsys):
    data = write_package_photos(tmp_path / "hr", 128, names=("coffee",))
    rc = accuracy.main(["--prior", str(tiny_checkpoints["topk"]), "--model", str(tiny_checkpoints["topk"]),
                        "--data", str(data), "--out-dir", str(tmp_path / "res")])
    assert rc == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not an HQ prior" in err[0]
    assert not (tmp_path / "res").exists()


# ------------------------------------------------------------------------------------------- quality
def _y(img_rgb01: np.ndarray) -> np.ndarray:
    """BT.601 luma on the 0..255 scale, written out here independently of ugtsr.metrics."""
    r, g, b = (img_rgb01[..., i].astype(np.float64) for i in range(3))
    return 16.0 + 65.481 * r + 128.553 * g + 24.966 * b


def test_quality_smoke_and_bicubic_psnr_is_reproducible(tmp_path, tiny_checkpoints, capsys):
    cv2 = pytest.importorskip("cv2")
    from ugtsr.degrade import PIPELINES, float_to_image, image_to_float, read_image, rng_from_key

    data = write_package_photos(tmp_path / "hr", 200)
    out_dir = tmp_path / "res"
    rc = quality.main(["--model", str(tiny_checkpoints["topk"]), "--name", "tiny", "--data", str(data),
                       "--seed", "7", "--threads", "1", "--out-dir", str(out_dir)])
    assert rc == 0
    assert "bicubic" in capsys.readouterr().out
    rec = json.loads((out_dir / "quality_bsrgan_x4.json").read_text())
    _check_header(rec, "benchmarks.quality")
    methods = [m["method"] for m in rec["mean"]]
    assert methods == ["HR (reference)", "bicubic", "lanczos", "tiny"]
    assert len(rec["per_image"]) == 2 * 4
    for m in rec["mean"]:
        assert m["images"] == 2
        assert _finite_positive(m["niqe"])
        if m["method"] != "HR (reference)":
            assert _finite_positive(m["psnr_y"]) and 0 < m["ssim_y"] <= 1
    md = (out_dir / "quality_bsrgan_x4.md").read_text()
    for name in methods:
        assert f"| {name} |" in md
    assert "python -m benchmarks.quality" in md

    # independent bicubic PSNR-Y on one image: same seeded degradation, own Y and PSNR
    hr = image_to_float(read_image(data / "astronaut.png"))
    pair = PIPELINES["bsrgan"](hr, scale=4, rng=rng_from_key(7, "astronaut.png"))
    lr_bgr = np.ascontiguousarray(float_to_image(pair.lr)[..., ::-1])
    up = cv2.resize(lr_bgr, (lr_bgr.shape[1] * 4, lr_bgr.shape[0] * 4), interpolation=cv2.INTER_CUBIC)
    sr = up[..., ::-1].astype(np.float64) / 255.0
    diff = (_y(sr) - _y(pair.hr))[4:-4, 4:-4]
    expect = 10 * math.log10(255.0**2 / np.mean(diff**2))
    got = next(r["psnr_y"] for r in rec["per_image"] if r["image"] == "astronaut.png" and r["method"] == "bicubic")
    assert got == pytest.approx(expect, abs=1e-3)


def test_quality_rejects_a_model_of_another_scale(tmp_path, tiny_checkpoints, capsys):
    data = write_package_photos(tmp_path / "hr", 96, names=("coffee",))
    rc = quality.main(["--model", str(tiny_checkpoints["topk"]), "--scale", "2", "--data", str(data),
                       "--no-niqe", "--out-dir", str(tmp_path / "res")])
    assert rc == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "scale" in err[0]


# ------------------------------------------------------------------------------------------- latency
def test_latency_preset_smoke(tmp_path, capsys):
    rc = latency.main(["--preset", "tiny_x4", "--no-onnx", "--sizes", "32", "--repeats", "1", "--warmup", "1",
                       "--threads", "1", "--out-dir", str(tmp_path)])
    assert rc == 0
    assert "RANDOM WEIGHTS" in capsys.readouterr().out
    rec = json.loads(_only(tmp_path, "latency_tiny_x4_*.json").read_text())
    _check_header(rec, "benchmarks.latency")
    assert rec["model"]["random_init"] is True and rec["model"]["preset"] == "tiny_x4"
    assert any("random-weight" in n for n in rec["notes"])
    rows = {r["backend"]: r for r in rec["rows"]}
    assert set(rows) == set(latency.BACKEND_CASES)
    cpu = rows["torch-cpu-fp32"]
    assert cpu["status"] == "measured" and cpu["lr_size"] == "32x32" and cpu["output_size"] == "128x128"
    assert _finite_positive(cpu["median_ms"]) and _finite_positive(cpu["output_mp_per_s"])
    assert cpu["output_mp_per_s"] == pytest.approx(128 * 128 / 1e6 / (cpu["median_ms"] / 1e3), rel=1e-2)
    assert rows["ort-cpu-fp32"]["status"] == "skipped" and "--onnx" in rows["ort-cpu-fp32"]["reason"]
    for r in rec["rows"]:
        assert r["status"] in ("measured", "skipped", "failed")
        if r["status"] != "measured":
            assert r["reason"]
    if not torch.cuda.is_available():
        assert rows["torch-cuda-fp32"]["status"] == "skipped"


def test_latency_needs_a_model(tmp_path, capsys):
    assert latency.main(["--out-dir", str(tmp_path)]) == 1
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory, tiny_checkpoints):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from export.onnx import ExportOptions, onnx_from_checkpoint

    out = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    return onnx_from_checkpoint(tiny_checkpoints["topk"], out, options=ExportOptions(verify=False)).path


@pytest.mark.slow
def test_latency_onnx_and_peak_memory(tmp_path, tiny_checkpoints, tiny_onnx, capsys):
    rc = latency.main(["--checkpoint", str(tiny_checkpoints["topk"]), "--onnx", str(tiny_onnx), "--sizes", "32",
                       "--backends", "torch-cpu-fp32", "ort-cpu-fp32", "--repeats", "1", "--threads", "1",
                       "--tag", "t", "--out-dir", str(tmp_path)])
    assert rc == 0
    rows = {r["backend"]: r for r in json.loads((tmp_path / "latency_t.json").read_text())["rows"]}
    assert set(rows) == {"torch-cpu-fp32", "ort-cpu-fp32"}
    assert all(r["status"] == "measured" and _finite_positive(r["median_ms"]) for r in rows.values())
    assert rows["ort-cpu-fp32"]["providers"][0] == "CPUExecutionProvider"

    rc = latency.main(["--peak-memory", "--onnx", str(tiny_onnx), "--peak-size", "64", "--peak-tile", "32",
                       "--threads", "1", "--tag", "pm", "--out-dir", str(tmp_path)])
    assert rc == 0, capsys.readouterr().err
    rec = json.loads((tmp_path / "latency_pm.json").read_text())
    assert rec["mode"] == "peak_memory"
    cases = {r["case"]: r for r in rec["rows"]}
    assert set(cases) == {"open model only", "whole image", "tile 32"}
    for r in cases.values():
        assert r["returncode"] == 0 and _finite_positive(r["peak_rss_mib"])
    assert cases["whole image"]["output_written"] and cases["tile 32"]["output_written"]
    # the run itself holds at least what opening the model does (same interpreter and libraries)
    assert cases["whole image"]["peak_rss_mib"] >= 0.9 * cases["open model only"]["peak_rss_mib"]


def test_peak_rss_of_measures_the_child_not_the_parent():
    """A child that allocates ~200 MiB reports more than one that allocates nothing."""
    small = latency.peak_rss_of(["-c", "pass"])
    big = latency.peak_rss_of(["-c", "b = bytearray(200 * 2**20); b[::4096] = b'x' * len(b[::4096])"])
    assert small["returncode"] == 0 and big["returncode"] == 0
    if small["rss_source"] == "VmHWM":
        assert small["peak_rss_mib"] < 100  # a bare interpreter, not this torch-holding process
        assert big["peak_rss_mib"] - small["peak_rss_mib"] > 150
