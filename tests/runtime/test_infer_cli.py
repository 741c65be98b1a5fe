"""python -m runtime.infer: batches with bad inputs, overwrite rules, exit codes, outputs."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import runtime.upscaler as upscaler_module
from runtime.imageio import read_image, write_image
from runtime.infer import collect_inputs, main, output_path, uncertainty_heatmap

from .conftest import random_image

REPO = Path(__file__).resolve().parents[2]


def stray_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.startswith(".") or p.name.endswith(".tmp")]


@pytest.fixture
def photos(tmp_path) -> Path:
    folder = tmp_path / "photos"
    write_image(folder / "a.png", random_image(12, 20, 3))
    write_image(folder / "b.jpg", random_image(10, 10, 3))
    write_image(folder / "c.png", random_image(9, 7, 4, np.uint16))
    write_image(folder / "sub" / "d.png", random_image(8, 8, None))  # not picked up: non-recursive
    (folder / "notes.txt").write_text("not an image")  # not picked up: no image extension
    return folder


def _bad_inputs(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    ok, png = cv2.imencode(".png", random_image(40, 40, 3))
    png = png.tobytes()
    bad = {
        "zero": folder / "zero.png",
        "truncated": folder / "truncated.png",
        "text": folder / "text.png",
        "gif_named_webp": folder / "tiny.png",
        "missing": folder / "missing.png",
        "exr": folder / "float.exr",
    }
    bad["zero"].write_bytes(b"")
    bad["truncated"].write_bytes(png[: len(png) // 2])
    bad["text"].write_text("hello")
    bad["gif_named_webp"].write_bytes(cv2.imencode(".png", np.zeros((1, 1), np.uint8))[1].tobytes())
    bad["exr"].write_bytes(b"\x76\x2f\x31\x01" + b"\x00" * 32)
    return bad


def test_batch_with_good_and_bad_inputs(tmp_path, photos, nearest_model, capsys):
    bad = _bad_inputs(tmp_path / "bad")
    big = write_image(tmp_path / "big.png", random_image(40, 40, 3))
    out = tmp_path / "out"
    rc = main([str(photos), *map(str, bad.values()), str(big), "-o", str(out), "--model", str(nearest_model),
               "--max-pixels", "1000"])
    captured = capsys.readouterr()
    assert rc == 1
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(errors) == len(bad) + 1  # one line per bad input, incl. the one over --max-pixels
    for path in [*bad.values(), big]:
        assert sum(str(path) in line for line in errors) == 1
    assert "Traceback" not in captured.err
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.jpg", "c.png"]
    assert read_image(out / "c.png").shape == (36, 28, 4) and read_image(out / "c.png").dtype == np.uint16
    assert stray_files(out) == []
    assert "3 processed, 0 skipped, 7 failed" in captured.out


def test_bad_batch_in_a_subprocess_prints_no_traceback(tmp_path, nearest_model):
    bad = _bad_inputs(tmp_path / "bad")
    good = write_image(tmp_path / "good.png", random_image(12, 12, 3))
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "runtime.infer", *map(str, bad.values()), str(good), "-o", str(out),
         "--model", str(nearest_model), "--quiet"],
        capture_output=True, text=True, cwd=REPO, timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")})
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert len(lines) == len(bad) and all(line.startswith("error: ") for line in lines), proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert [p.name for p in out.iterdir()] == ["good.png"]


def test_overwrite_rules(tmp_path, nearest_model, capsys):
    src = write_image(tmp_path / "in" / "x.png", random_image(8, 8, 3))
    out = tmp_path / "out"
    args = [str(src), "-o", str(out), "--model", str(nearest_model)]
    assert main(args) == 0
    first = (out / "x.png").stat().st_mtime_ns
    assert main(args) == 0  # existing output: skipped, not an error
    assert "skipped" in capsys.readouterr().err and (out / "x.png").stat().st_mtime_ns == first
    os.utime(out / "x.png", ns=(0, 0))
    assert main([*args, "--overwrite"]) == 0
    assert (out / "x.png").stat().st_mtime_ns != 0


def test_input_is_never_overwritten(tmp_path, nearest_model, capsys):
    src = write_image(tmp_path / "x.png", random_image(8, 8, 3))
    before = src.read_bytes()
    rc = main([str(src), "-o", str(tmp_path), "--model", str(nearest_model), "--overwrite"])
    err = capsys.readouterr().err
    assert rc == 1 and "refusing to overwrite the input" in err and str(src) in err
    assert src.read_bytes() == before
    assert main([str(src), "-o", str(tmp_path), "--model", str(nearest_model), "--suffix", "_x4"]) == 0
    assert read_image(tmp_path / "x_x4.png").shape == (32, 32, 3)


def test_same_output_name_from_two_inputs(tmp_path, nearest_model, capsys):
    a = write_image(tmp_path / "a" / "x.png", random_image(8, 8, 3))
    b = write_image(tmp_path / "b" / "x.png", random_image(8, 8, 3, seed=1))
    rc = main([str(a), str(b), "-o", str(tmp_path / "out"), "--model", str(nearest_model)])
    assert rc == 1 and "already written for" in capsys.readouterr().err


def test_quoted_glob_and_non_matching_pattern(tmp_path, photos, nearest_model, capsys):
    out = tmp_path / "out"
    rc = main([str(photos / "*.png"), str(tmp_path / "nothing*.jpg"), "-o", str(out), "--model", str(nearest_model)])
    err = capsys.readouterr().err
    assert rc == 1 and "no files match" in err
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "c.png"]


def test_collect_inputs_order_dedup_and_folders(photos):
    files, problems = collect_inputs([str(photos), str(photos / "a.png"), str(photos / "sub" / "d.png")])
    assert [f.name for f in files] == ["a.png", "b.jpg", "c.png", "d.png"] and problems == []


def test_save_uncertainty_and_ext_and_outscale(tmp_path, nearest_model, capsys):
    src = write_image(tmp_path / "in" / "x.png", random_image(10, 6, 4))
    out = tmp_path / "out"
    rc = main([str(src), "-o", str(out), "--model", str(nearest_model), "--save-uncertainty",
               "--ext", "jpg", "--outscale", "2", "--suffix", "_sr"])
    err = capsys.readouterr().err
    assert rc == 0
    assert "writing x_sr.png" in err  # JPEG cannot hold alpha: PNG instead, with a warning
    assert read_image(out / "x_sr.png").shape == (20, 12, 4)
    heat = read_image(out / "x_sr_uncertainty.png")
    assert heat.shape == (20, 12, 3) and heat.dtype == np.uint8


def test_save_uncertainty_needs_the_head(tmp_path, make_model, capsys):
    src = write_image(tmp_path / "x.png", random_image(8, 8, 3))
    rc = main([str(src), "-o", str(tmp_path / "out"), "--model", str(make_model()), "--save-uncertainty"])
    err = capsys.readouterr().err
    assert rc == 2 and "no uncertainty output" in err and len(err.strip().splitlines()) == 1


def test_model_errors_exit_2_with_one_line(tmp_path, make_model, monkeypatch, capsys):
    src = write_image(tmp_path / "x.png", random_image(8, 8, 3))
    monkeypatch.setattr(upscaler_module, "default_model_path", lambda: tmp_path / "ugtsr_tiny_x4.onnx")
    assert main([str(src), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "no default model is shipped yet" in err and "--model" in err and len(err.strip().splitlines()) == 1
    assert main([str(src), "-o", str(tmp_path / "out"), "--model", str(make_model(metadata=False))]) == 2
    err = capsys.readouterr().err
    assert "is not a UGTSR model" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_output_folder_cannot_be_created(tmp_path, nearest_model, capsys):
    src = write_image(tmp_path / "x.png", random_image(8, 8, 3))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    rc = main([str(src), "-o", str(blocker / "out"), "--model", str(nearest_model)])
    err = capsys.readouterr().err
    assert rc == 1 and "cannot create the output folder" in err and len(err.strip().splitlines()) == 1


def test_tiled_run_with_progress_and_quiet(tmp_path, nearest_model, capsys):
    src = write_image(tmp_path / "x.png", random_image(70, 50, 3))
    out = tmp_path / "out"
    assert main([str(src), "-o", str(out), "--model", str(nearest_model), "--tile", "16", "--tile-pad", "4",
                 "--batch-size", "2"]) == 0
    np.testing.assert_array_equal(read_image(out / "x.png"),
                                  np.repeat(np.repeat(read_image(src), 4, 0), 4, 1))
    capsys.readouterr()
    assert main([str(src), "-o", str(out), "--model", str(nearest_model), "--quiet", "--overwrite"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_usage_errors(tmp_path, nearest_model):
    with pytest.raises(SystemExit) as info:
        main(["-o", str(tmp_path)])
    assert info.value.code == 2
    assert main([str(tmp_path), "-o", str(tmp_path / "o"), "--model", str(nearest_model), "--batch-size", "0"]) == 2


def test_output_path_and_heatmap():
    img16 = np.zeros((4, 4, 3), np.uint16)
    assert output_path(Path("a/x.jpeg"), Path("o"), ext="auto", suffix="") == Path("o/x.jpeg")
    assert output_path(Path("a/x.bmp"), Path("o"), ext="auto", suffix="_s") == Path("o/x_s.png")
    assert output_path(Path("a/x.jpg"), Path("o"), ext="auto", suffix="", image=img16) == Path("o/x.png")
    assert output_path(Path("a/x.png"), Path("o"), ext="webp", suffix="") == Path("o/x.webp")
    heat = uncertainty_heatmap(np.array([[0.0, 1.0], [2.0, np.nan]], np.float32))
    assert heat.shape == (2, 2, 3) and heat.dtype == np.uint8
    assert uncertainty_heatmap(np.ones((3, 3), np.float32)).shape == (3, 3, 3)  # constant map: no div by 0


def _digest(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def test_no_input_is_overwritten_by_another_inputs_output(tmp_path, nearest_model, capsys):
    """Issue 11 item 1: photo.bmp's output photo.png is the input photo.png -- refused, both ways."""
    folder = tmp_path / "dir"
    folder.mkdir()
    assert cv2.imwrite(str(folder / "photo.bmp"), random_image(8, 8, 3))
    write_image(folder / "photo.png", random_image(8, 8, 3, seed=1))
    before = _digest(folder)
    rc = main([str(folder), "-o", str(folder), "--model", str(nearest_model), "--overwrite"])
    err = capsys.readouterr().err
    assert rc == 1
    assert _digest(folder) == before  # nothing replaced, nothing added
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 2 and all("refusing to overwrite the input file" in line for line in lines)
    assert any("photo.bmp" in line.split(":")[1] for line in lines)


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_an_output_that_is_a_link_to_an_input_is_refused(tmp_path, nearest_model, capsys, link):
    src = write_image(tmp_path / "in" / "x.png", random_image(8, 8, 3))
    out = tmp_path / "out"
    out.mkdir()
    (out / "x.png").symlink_to(src) if link == "symlink" else os.link(src, out / "x.png")
    before = src.read_bytes()
    rc = main([str(src), "-o", str(out), "--model", str(nearest_model), "--overwrite"])
    assert rc == 1 and "refusing to overwrite the input file" in capsys.readouterr().err
    assert src.read_bytes() == before and (out / "x.png").read_bytes() == before


def test_realesrgan_spellings_and_default_output(tmp_path, nearest_model, capsys, monkeypatch):
    src = write_image(tmp_path / "photo.png", random_image(8, 10, 3))
    monkeypatch.chdir(tmp_path)
    rc = main(["-i", str(src), "--model", str(nearest_model), "-s", "2", "-t", "0", "--tile_pad", "4",
               "--suffix", "out", "--fp32"])
    assert rc == 0, capsys.readouterr().err
    assert read_image(tmp_path / "results" / "photo_out.png").shape == (16, 20, 3)


def test_model_name_and_list_models(tmp_path, capsys):
    assert main(["--list-models"]) == 0
    out = capsys.readouterr().out
    assert "ugtsr_tiny_x4 [default]" in out and "ugtsr_tiny_x4.onnx" in out
    src = write_image(tmp_path / "x.png", random_image(8, 8, 3))
    assert main([str(src), "-o", str(tmp_path / "o"), "-n", "no_such_model"]) == 2
    err = capsys.readouterr().err
    assert "unknown model name 'no_such_model'" in err and "ugtsr_tiny_x4" in err and len(err.splitlines()) == 1
    with pytest.raises(SystemExit):
        main([str(src), "-n", "ugtsr_tiny_x4", "--model", "m.onnx"])


def test_gpu_id_without_a_gpu_says_what_it_fell_back_to(tmp_path, nearest_model, capsys):
    src = write_image(tmp_path / "x.png", random_image(8, 8, 3))
    rc = main([str(src), "-o", str(tmp_path / "o"), "--model", str(nearest_model), "-g", "0", "--fp16"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "CUDAExecutionProvider is not available" in err and "using CPUExecutionProvider" in err
    assert "fp16 has no effect" in err
    assert all(line.startswith("warning: ") for line in err.splitlines())


def test_warnings_of_the_cli_itself_have_the_prefix_under_python_m(tmp_path, nearest_model):
    """Under ``python -m`` the module is ``__main__``; its warnings must still reach the CLI's handler."""
    src = write_image(tmp_path / "x.png", random_image(8, 8, 4))
    proc = subprocess.run(
        [sys.executable, "-m", "runtime.infer", str(src), "-o", str(tmp_path / "out"), "--model", str(nearest_model),
         "--ext", "jpg", "--quiet"],
        capture_output=True, text=True, cwd=REPO, timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")})
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [f"warning: {src}: jpg cannot store this image (alpha, 16-bit or gray); writing x.png"]
