"""python -m runtime.batch on a real local Ray cluster (started once for the module, 2 CPUs, no mocks).

60 images of mixed kinds (8/16-bit, gray, alpha, PNG/JPEG/WebP/TIFF; 16-40 px, so the shipped model is
quick) plus 5 bad files: outputs byte-identical to ``runtime.infer``'s with the same model and settings,
the bad files in the manifest, exit status 1; a worker process killed mid-run (SIGKILL) is restarted by
Ray and the job completes with identical outputs; a rerun skips everything; ``--retry-failed`` redoes
the failed entries.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from runtime.imageio import write_image

from .conftest import random_image

ray = pytest.importorskip("ray", reason="runtime.batch needs the batch extra: pip install 'ugtsr[batch]'")

from runtime import batch  # noqa: E402
from runtime.infer import main as infer_main  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
MAX_PIXELS = 1600  # 40 x 40: the good images fit, "huge.png" (48 x 48) does not
COMMON = ["--threads", "1", "--max-pixels", str(MAX_PIXELS), "--quiet"]  # same ORT threads as each actor
KINDS = [  # (extension, channels, dtype)
    (".png", 3, np.uint8), (".png", None, np.uint8), (".png", 4, np.uint8), (".png", 3, np.uint16),
    (".png", None, np.uint16), (".png", 4, np.uint16), (".jpg", 3, np.uint8), (".webp", 3, np.uint8),
    (".tif", 3, np.uint16), (".tif", 4, np.uint8),
]


@pytest.fixture(scope="module")
def cluster():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    yield
    ray.shutdown()


def _write_bad(folder: Path) -> dict[str, Path]:
    cv2 = pytest.importorskip("cv2")
    png = cv2.imencode(".png", random_image(30, 30, 3, seed=99))[1]
    bad = {name: folder / name for name in ("zero.png", "truncated.png", "text.jpg", "tiny.png", "huge.png")}
    bad["zero.png"].write_bytes(b"")
    bad["truncated.png"].write_bytes(png.tobytes()[: len(png) // 2])
    bad["text.jpg"].write_text("not an image")
    bad["tiny.png"].write_bytes(cv2.imencode(".png", np.zeros((1, 1), np.uint8))[1].tobytes())  # side < 2 px
    write_image(bad["huge.png"], random_image(48, 48, 3, seed=98))  # over --max-pixels
    return bad


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> tuple[Path, dict[str, Path], Path]:
    """(input folder, bad files, runtime.infer's outputs for it)."""
    root = tmp_path_factory.mktemp("batch")
    folder = root / "in"
    rng = np.random.default_rng(12)
    for i in range(60):
        ext, channels, dtype = KINDS[i % len(KINDS)]
        h, w = (int(v) for v in rng.integers(16, 41, size=2))
        write_image(folder / f"img{i:02d}{ext}", random_image(h, w, channels, dtype, seed=i))
    bad = _write_bad(folder)
    reference = root / "reference"
    assert infer_main([str(folder), "-o", str(reference), *COMMON]) == 1  # the bad files fail
    assert len(list(reference.iterdir())) == 60
    return folder, bad, reference


def _manifest(out: Path) -> dict[str, dict]:
    lines = (out / batch.MANIFEST_NAME).read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert len({r["input"] for r in records}) == len(records)  # compacted: one record per input
    return {Path(r["input"]).name: r for r in records}


def _assert_same_outputs(out: Path, reference: Path) -> None:
    produced = sorted(p.name for p in out.iterdir() if p.name != batch.MANIFEST_NAME)
    assert produced == sorted(p.name for p in reference.iterdir())  # no partial or temporary files either
    for ref in reference.iterdir():
        assert (out / ref.name).read_bytes() == ref.read_bytes(), ref.name


def test_outputs_match_infer_and_bad_files_are_listed(cluster, photos, tmp_path, capsys):
    folder, bad, reference = photos
    out = tmp_path / "out"
    rc = batch.main([str(folder), "-o", str(out), "--ray", "auto", "--workers", "2", *COMMON])
    err = capsys.readouterr().err
    assert rc == 1
    _assert_same_outputs(out, reference)
    records = _manifest(out)
    assert len(records) == 65
    failed = {name for name, r in records.items() if r["status"] == "failed"}
    assert failed == set(bad)
    assert all(r["status"] == "ok" and r["seconds"] > 0 for n, r in records.items() if n not in bad)
    assert "over the limit" in records["huge.png"]["message"] and "empty" in records["zero.png"]["message"]
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 5 and all(sum(str(p) in line for line in errors) == 1 for p in bad.values())
    assert "Traceback" not in err

    # a rerun skips everything (no Ray job at all); the earlier failures stay failed: exit status 1
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name != batch.MANIFEST_NAME}
    rc = batch.main([str(folder), "-o", str(out), "--ray", "auto", "--workers", "2", *COMMON[:-1]])  # not quiet
    summary = capsys.readouterr().out
    assert rc == 1
    assert "0 processed, 60 skipped, 5 failed" in summary and "5 of the failed inputs failed in an earlier run" in summary
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name != batch.MANIFEST_NAME} == mtimes
    assert _manifest(out) == records

    # --retry-failed redoes the failed entries: the repaired one now succeeds, the others fail again
    repaired = bad["zero.png"]
    write_image(repaired, random_image(20, 24, 3, seed=7))
    try:
        rc = batch.main([str(folder), "-o", str(out), "--ray", "auto", "--retry-failed", *COMMON])
        single = tmp_path / "single"
        assert infer_main([str(repaired), "-o", str(single), *COMMON]) == 0
    finally:
        repaired.write_bytes(b"")
    assert rc == 1
    after = _manifest(out)
    assert after["zero.png"]["status"] == "ok"
    assert {n for n, r in after.items() if r["status"] == "failed"} == set(bad) - {"zero.png"}
    assert (out / "zero.png").read_bytes() == (single / "zero.png").read_bytes()
    assert {n: r for n, r in after.items() if n != "zero.png" and n not in bad} == \
        {n: r for n, r in records.items() if n != "zero.png" and n not in bad}  # the others untouched


def _descends_from_this_process(pid: int) -> bool:
    while pid > 1:
        if pid == os.getpid():
            return True
        try:
            stat = Path("/proc", str(pid), "stat").read_text()
        except OSError:
            return False
        pid = int(stat.rsplit(")", 1)[1].split()[1])  # field 4, after the parenthesised name
    return False


def _worker_pids() -> list[int]:
    """Our cluster's actor processes (Ray names them ``ray::MapWorker(...)``), not anyone else's."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path("/proc", entry, "cmdline").read_bytes()
            except OSError:
                continue
            if cmdline.startswith(b"ray::MapWorker") and b"_UpscaleWorker" in cmdline \
                    and _descends_from_this_process(int(entry)):
                pids.append(int(entry))
    return pids


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds Ray's worker processes through /proc")
def test_a_killed_worker_is_restarted_and_the_job_completes(cluster, photos, tmp_path):
    folder, bad, reference = photos
    out = tmp_path / "out"
    killed: list[int] = []
    done = threading.Event()

    def kill_one_worker_after_the_first_output() -> None:
        while not done.is_set():
            if out.is_dir() and any(p.suffix in (".png", ".jpg", ".webp", ".tif") for p in out.iterdir()):
                pids = _worker_pids()
                if pids:
                    os.kill(pids[0], signal.SIGKILL)  # the worker process dies as in an OOM kill
                    killed.append(pids[0])
                    return
            time.sleep(0.005)

    killer = threading.Thread(target=kill_one_worker_after_the_first_output, daemon=True)
    killer.start()
    try:
        rc = batch.main([str(folder), "-o", str(out), "--ray", "auto", "--workers", "2", *COMMON])
    finally:
        done.set()
        killer.join(5)
    assert killed, "no Ray worker process was found to kill"
    assert rc == 1  # the five bad files; every good image was done despite the kill
    _assert_same_outputs(out, reference)
    records = _manifest(out)
    assert {n for n, r in records.items() if r["status"] == "failed"} == set(bad)
    assert sum(r["status"] == "ok" for r in records.values()) == 60


@pytest.mark.parametrize("options", [
    ["--save-uncertainty", "--outscale", "2", "--suffix", "x2", "--tile", "16"],
    ["--ext", "jpg", "--quality", "80"],  # alpha and 16-bit images fall back to PNG in the worker
], ids=["uncertainty-outscale-suffix-tile", "ext-jpg-fallback"])
def test_image_options_give_the_same_files_as_infer(cluster, tmp_path, options):
    folder = tmp_path / "in"
    for i, (ext, channels, dtype) in enumerate(KINDS[:6]):
        write_image(folder / f"k{i}{ext}", random_image(18 + i, 24 - i, channels, dtype, seed=40 + i))
    reference, out = tmp_path / "reference", tmp_path / "out"
    assert infer_main([str(folder), "-o", str(reference), *COMMON, *options]) == 0
    assert batch.main([str(folder), "-o", str(out), "--ray", "auto", "--workers", "2", *COMMON, *options]) == 0
    _assert_same_outputs(out, reference)
    if "--ext" in options:
        assert sorted(p.suffix for p in reference.iterdir()) == [".jpg"] * 2 + [".png"] * 4
        before = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.suffix != ".jsonl"}
        assert batch.main([str(folder), "-o", str(out), "--ray", "auto", "--overwrite", *COMMON, *options]) == 0
        after = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.suffix != ".jsonl"}
        assert after.keys() == before.keys() and all(after[k] != before[k] for k in after)  # rewritten
        _assert_same_outputs(out, reference)
    else:
        assert len(list(reference.glob("*_uncertainty.png"))) == 6


def test_recursive_folders_are_mirrored_and_the_output_folder_is_not_an_input(cluster, tmp_path):
    folder = tmp_path / "in"
    write_image(folder / "a.png", random_image(20, 20, 3, seed=1))
    write_image(folder / "sub" / "deeper" / "b.png", random_image(18, 22, None, np.uint16, seed=2))
    write_image(folder / ".hidden" / "c.png", random_image(18, 18, 3, seed=3))
    out = folder / "results"  # inside the input folder: never listed as input on a rerun
    for _ in range(2):
        assert batch.main([str(folder), "-o", str(out), "--ray", "auto", "--suffix", "x4", *COMMON]) == 0
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.png")) == ["a_x4.png", "sub/deeper/b_x4.png"]
    statuses = [r["status"] for r in _manifest(out).values()]
    assert statuses == ["ok", "ok"]  # the rerun kept the first run's records


def test_a_model_that_cannot_be_opened_is_one_line_and_exit_status_2(cluster, tmp_path, capsys):
    write_image(tmp_path / "in" / "a.png", random_image(20, 20, 3))
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx model")
    rc = batch.main([str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--ray", "auto", "--model", str(broken)])
    err = capsys.readouterr().err
    assert rc == 2
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and str(broken) in lines[0] and "Traceback" not in err
    assert not list((tmp_path / "out").glob("*.png"))


def test_plan_refuses_to_overwrite_inputs_and_name_collisions(tmp_path):
    folder = tmp_path / "in"
    for name in ("a.png", "x/b.png", "y/b.png"):
        write_image(folder / name, random_image(20, 20, 3))
    specs = [str(folder / "a.png"), str(folder / "x" / "b.png"), str(folder / "y" / "b.png"),
             str(folder / "*.nothing")]
    listed, problems = batch.list_inputs(specs)
    assert problems == [f"{folder / '*.nothing'}: no files match this pattern"]
    args = batch._build_parser().parse_args([*specs[:3], "-o", str(folder)])
    pending, decided, carried = batch._plan(args, listed, {})
    assert [row["input"] for row in pending] == [str(folder / "x" / "b.png")] and carried == 0
    assert [outcome for outcome, _ in decided] == ["failed", "failed"]
    assert "refusing to overwrite the input file" in decided[0][1]["message"]  # OUT/a.png is the input
    assert f"already written for {folder / 'x' / 'b.png'}" in decided[1][1]["message"]  # both are OUT/b.png
    # an earlier run's failure is not retried, unless --retry-failed
    previous = {str(folder / "x" / "b.png"): {"input": str(folder / "x" / "b.png"), "status": "failed"}}
    args.output = str(tmp_path / "out")
    assert batch._plan(args, listed[1:2], previous)[1:] == ([("failed", previous[str(folder / "x" / "b.png")])], 1)
    args.retry_failed = True
    assert len(batch._plan(args, listed[1:2], previous)[0]) == 1


def test_manifest_reader_keeps_the_latest_record_and_skips_broken_lines(tmp_path):
    path = tmp_path / batch.MANIFEST_NAME
    path.write_text('{"input": "a", "status": "failed"}\n{"input": "b", "status": "ok"}\n'
                    '{"input": "a", "status": "ok"}\n{"input": "c", "sta')
    assert {k: v["status"] for k, v in batch.read_manifest(str(path)).items()} == {"b": "ok", "a": "ok"}


def test_without_ray_the_command_says_what_to_install(tmp_path):
    code = ("import sys; sys.modules['ray'] = None; from runtime.batch import main; "
            f"sys.exit(main([{str(tmp_path)!r}, '-o', {str(tmp_path / 'out')!r}]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "pip install 'ugtsr[batch]'" in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_the_batch_path_imports_no_torch(tmp_path):
    """Driver and Ray workers run with a ``torch`` that cannot be imported: the job still succeeds."""
    blocker = tmp_path / "blocker" / "torch"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('torch is blocked in this test')\n")
    folder = tmp_path / "in"
    for i in range(3):
        write_image(folder / f"p{i}.png", random_image(20, 20, 3, seed=i))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(blocker.parent), str(REPO)]))
    proc = subprocess.run([sys.executable, "-m", "runtime.batch", str(folder), "-o", str(tmp_path / "out"),
                           "--ray", "local", "--workers", "1"], capture_output=True, text=True, cwd=tmp_path,
                          env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "3 processed, 0 skipped, 0 failed" in proc.stdout
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["p0.png", "p1.png", "p2.png"]


def test_uri_listing_reading_and_writing_through_an_fsspec_filesystem(tmp_path):
    """The URI branch (listing, globbing, download, upload) on fsspec's in-memory filesystem, in this
    process: the path that s3:// and gs:// take, without an object store (none is reachable here)."""
    fsspec = pytest.importorskip("fsspec")
    fs = fsspec.filesystem("memory")
    data = write_image(tmp_path / "a.png", random_image(8, 10, 3)).read_bytes()
    for name in ("a.png", "sub/b.png", ".hidden/c.png", "sub/.d.png"):
        fs.pipe(f"/ugtsr-test/in/{name}", data)
    fs.pipe("/ugtsr-test/in/notes.txt", b"text")
    try:
        base = "memory://ugtsr-test/in"
        assert batch.list_inputs([base]) == ([(f"{base}/a.png", ""), (f"{base}/sub/b.png", "sub")], [])
        assert batch.list_inputs([f"{base}/*.png"]) == ([(f"{base}/a.png", "")], [])
        assert batch.list_inputs([f"{base}/**/*.png"])[0] == [(f"{base}/a.png", ""), (f"{base}/sub/b.png", "")]
        assert batch.list_inputs([f"{base}/*.gif"])[1] == [f"{base}/*.gif: no files match this pattern"]
        image = batch._read(f"{base}/sub/b.png", None)
        assert image.shape == (8, 10, 3)
        with pytest.raises(batch.UnsupportedInputError, match=f"^{base}/notes.txt: not an image file"):
            batch._read(f"{base}/notes.txt", None)
        with pytest.raises(batch.UnsupportedInputError, match=f"^{base}/missing.png: no such file$"):
            batch._read(f"{base}/missing.png", None)
        assert not batch._exists("memory://ugtsr-test/out/a.png")
        batch._write("memory://ugtsr-test/out/a.png", image, 95)
        assert fs.cat("/ugtsr-test/out/a.png") == data and batch._exists("memory://ugtsr-test/out/a.png")
    finally:
        fs.rm("/ugtsr-test", recursive=True)
