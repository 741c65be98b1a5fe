"""The hostile-input matrix (issue 11): every bad or odd input kind, replayed through ``python -m runtime.infer``
with the shipped model on tiny images.

For every case: one line per bad file naming it, no traceback and no other stderr chatter (libpng, libjpeg,
OpenCV's ``[ERROR:0@...]``, numpy warnings), no partial or temporary file, inputs byte-identical afterwards,
and the rest of the batch done. Run-level cases (data loss, NaN model, forged metadata, full disk, kill -9,
SIGINT/SIGTERM, two processes on one folder, stale temporary files) follow the per-file matrix.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime.files import display, is_temp_name
from runtime.imageio import read_image, write_image
from runtime.infer import main

from .conftest import jpeg_with_orientation, random_image

Image = pytest.importorskip("PIL.Image", reason="the matrix writes GIF/CMYK/palette files with Pillow")
tifffile = pytest.importorskip("tifffile", reason="the matrix writes TIFF variants with tifffile")

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "runtime" / "models" / "ugtsr_tiny_x4.onnx"
H, W = 20, 24  # tiny inputs: the shipped model takes ~0.25 s each on one loaded CPU core
ENV = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}

pytestmark = pytest.mark.skipif(not MODEL.is_file(), reason="the shipped model is missing")


# ---- helpers ---------------------------------------------------------------------------------------------
def smooth(h: int = H, w: int = W, channels: int = 3, seed: int = 0, dtype=np.uint8) -> np.ndarray:
    img = random_image(h, w, channels, dtype=dtype, seed=seed)
    return cv2.GaussianBlur(img, (3, 3), 0)


def encode(ext: str, img: np.ndarray, params: list[int] | None = None) -> bytes:
    ok, buf = cv2.imencode(ext, img, params or [])
    assert ok
    return buf.tobytes()


def pil_bytes(fmt: str, image, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kwargs)
    return buf.getvalue()


def tiff_bytes(array: np.ndarray, **kwargs) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, array, **kwargs)
    return buf.getvalue()


def png_chunk(ctype: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + ctype + payload + struct.pack(">I", zlib.crc32(ctype + payload))


def bomb_png() -> bytes:
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + \
        png_chunk(b"IEND", b"")


def zlib_bomb_png() -> bytes:
    """A valid 24x20 header whose image data inflates to 64 MiB (200 KB on disk)."""
    ihdr = struct.pack(">IIBBBBB", W, H, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(bytes(64 << 20))) + \
        png_chunk(b"IEND", b"")


def png_with_bad_iccp() -> bytes:
    """A good image with a malformed colour profile, which libpng warns about on stderr."""
    data = encode(".png", smooth())
    return data[:33] + png_chunk(b"iCCP", b"x\x00\x00" + zlib.compress(b"junk")) + data[33:]


def bomb_jpeg() -> bytes:
    data = bytearray(encode(".jpg", smooth()))
    sof = data.find(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", 60_000, 60_000)
    return bytes(data)


def bomb_tiff() -> bytes:
    # little-endian TIFF, one IFD: width = height = 100000 (LONG), 8-bit gray, one 8-byte strip
    entries = [(256, 4, 1, 100_000), (257, 4, 1, 100_000), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
               (273, 4, 1, 8 + 2 + 12 * 7 + 4), (279, 4, 1, 8)]
    ifd = struct.pack("<H", len(entries))
    for tag, typ, n, value in entries:
        ifd += struct.pack("<HHI", tag, typ, n) + (struct.pack("<HH", value, 0) if typ == 3 else struct.pack("<I", value))
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + b"\x00" * 8


def bomb_gif() -> bytes:
    data = bytearray(pil_bytes("GIF", Image.fromarray(smooth()[:, :, ::-1])))
    data[6:10] = struct.pack("<HH", 65_535, 65_535)
    return bytes(data)


def bomb_bmp() -> bytes:
    data = bytearray(encode(".bmp", smooth()))
    data[18:26] = struct.pack("<ii", 100_000, 100_000)
    return bytes(data)


def cut_jpeg(with_eoi: bool) -> bytes:
    data = encode(".jpg", smooth(48, 64), [cv2.IMWRITE_JPEG_QUALITY, 90])
    return data[: len(data) // 2] + (b"\xff\xd9" if with_eoi else b"")


def tiff_with_corrupt_strip() -> bytes:
    """A deflate-compressed TIFF whose directory is fine but whose compressed strip is garbage: libtiff reports
    it only in OpenCV's log and OpenCV returns an image anyway; the strip check refuses it."""
    data = bytearray(tiff_bytes(smooth(), photometric="rgb", compression="zlib"))
    with tifffile.TiffFile(io.BytesIO(bytes(data))) as tif:
        page = tif.pages[0]
        start, size = page.dataoffsets[0], page.databytecounts[0]
    data[start:start + size] = bytes(range(7, 7 + size % 200)) * (size // max(1, size % 200)) + bytes(size % max(1, size % 200))
    data[start:start + 2] = b"\x00\xff"  # not a zlib header
    return bytes(data)


def animated_gif() -> bytes:
    frames = [Image.fromarray(smooth(seed=i)[:, :, ::-1]) for i in range(3)]
    return pil_bytes("GIF", frames[0], save_all=True, append_images=frames[1:])


def digest(folder: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def _is_temp(name: str) -> bool:
    return is_temp_name(name) or name.endswith(".tmp")


def temp_files(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*") if _is_temp(p.name)]


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runtime.infer", *args], capture_output=True, text=True,
                          cwd=REPO, env=ENV, timeout=timeout)


def start_cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "runtime.infer", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=REPO, env=ENV)


def assert_clean_stderr(err: str) -> None:
    """Only our own one-line messages: no traceback, no decoder or numpy chatter."""
    assert "Traceback" not in err, err
    for line in err.splitlines():
        assert line.startswith(("error: ", "warning: ", "skipped: ", "interrupted: ")), line


def assert_complete_outputs(folder: Path, scale: int = 4) -> list[Path]:
    """Every output in ``folder`` is a whole image (atomic writes: nothing half-written). Temporary
    files are not outputs: a kill -9 can land after a temp file is written and before its rename
    (callers check ``temp_files`` separately where none may be left)."""
    outputs = sorted(p for p in folder.iterdir() if p.is_file() and not _is_temp(p.name))
    for p in outputs:
        assert read_image(p).shape[:2] == (H * scale, W * scale), p
    return outputs


# ---- the per-file matrix -----------------------------------------------------------------------------------
# name -> (file name, bytes builder, expectation); expectation: ("error", words) or ("ok", shape, dtype, warning)
Expect = tuple
CASES: dict[str, tuple[str, Callable[[], bytes], Expect]] = {
    "good_png": ("good.png", lambda: encode(".png", smooth()), ("ok", (80, 96, 3), np.uint8, None)),
    "zero_byte": ("zero.png", lambda: b"", ("error", "empty file")),
    "truncated_png": ("cut.png", lambda: encode(".png", smooth())[:300], ("error", "truncated")),
    "truncated_jpeg": ("cut.jpg", lambda: cut_jpeg(False), ("error", "truncated")),
    "truncated_jpeg_with_eoi": ("cut_eoi.jpg", lambda: cut_jpeg(True), ("error", "truncated")),
    "non_image": ("notes.png", lambda: b"just some text, not an image\n", ("error", "not an image")),
    "html_as_jpg": ("page.jpg", lambda: b"<!doctype html><html></html>", ("error", "not an image")),
    "bomb_png": ("bomb.png", bomb_png, ("error", "over the limit")),
    "png_bad_iccp": ("iccp.png", png_with_bad_iccp, ("ok", (80, 96, 3), np.uint8, None)),
    "zlib_bomb_png": ("zbomb.png", zlib_bomb_png, ("error", "inflates to more than")),
    "bomb_jpeg": ("bomb.jpg", bomb_jpeg, ("error", "over the limit")),
    "bomb_tiff": ("bomb.tif", bomb_tiff, ("error", "over the limit")),
    "bomb_gif": ("bomb.gif", bomb_gif, ("error", "over the limit")),
    "bomb_bmp": ("bomb.bmp", bomb_bmp, ("error", "over the limit")),
    "one_by_one": ("dot.png", lambda: encode(".png", np.zeros((1, 1, 3), np.uint8)), ("error", "at least 2")),
    "png_16bit": ("deep.png", lambda: encode(".png", smooth(dtype=np.uint16)), ("ok", (80, 96, 3), np.uint16, None)),
    "cmyk_jpeg": ("cmyk.jpg", lambda: pil_bytes("JPEG", Image.fromarray(smooth()[:, :, ::-1]).convert("CMYK")),
                  ("ok", (80, 96, 3), np.uint8, None)),
    "palette_png": ("palette.png", lambda: pil_bytes("PNG", Image.fromarray(smooth()[:, :, ::-1]).convert("P")),
                    ("ok", (80, 96, 3), np.uint8, None)),
    "exif_rotated": ("rotated.jpg", lambda: jpeg_with_orientation(encode(".jpg", smooth()), 6),
                     ("ok", (96, 80, 3), np.uint8, None)),  # stored 20x24, shown 24x20
    "gray_alpha_png": ("ga.png", lambda: pil_bytes("PNG", Image.fromarray(smooth(channels=2)[:, :, :2], "LA")),
                       ("ok", (80, 96, 4), np.uint8, None)),
    # OpenCV 5 decodes GIF frames as BGRA
    "animated_gif": ("anim.gif", animated_gif, ("ok", (80, 96, 4), np.uint8, "3 frames")),
    "multipage_tiff": ("pages.tif", lambda: tiff_bytes(np.stack([smooth(), smooth(seed=1)]), photometric="rgb"),
                       ("ok", (80, 96, 3), np.uint8, "2 pages")),
    "gray_extra_channel_tiff": ("extra.tif", lambda: tiff_bytes(smooth(channels=2)[:, :, :2], photometric="minisblack",
                                                                planarconfig="contig", extrasamples=["unassalpha"]),
                                ("ok", (80, 96), np.uint8, "extra channel")),
    "five_channel_tiff": ("five.tif", lambda: tiff_bytes(smooth(channels=5), photometric="minisblack",
                                                         planarconfig="contig"), ("error", "5 channels")),
    "tiff_corrupt_strip": ("badstrip.tif", tiff_with_corrupt_strip, ("error", "strip/tile 0 is invalid")),
    "float_tiff": ("float.tif", lambda: tiff_bytes(np.ones((H, W, 3), np.float32), photometric="rgb"), ("error", "float32")),
    "newline_in_name": ("bad\nname.png", lambda: b"", ("error", "empty file")),
    "escape_in_name": ("bell\x1b[31m.png", lambda: b"\x00" * 40, ("error", "not an image")),
}


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    """One ``python -m runtime.infer`` run over every file case; returns what each test needs."""
    root = tmp_path_factory.mktemp("hostile")
    inputs, out = root / "in", root / "out"
    inputs.mkdir()
    paths = {}
    for name, (filename, build, _expect) in CASES.items():
        paths[name] = inputs / filename
        paths[name].write_bytes(build())
    before = digest(inputs)
    proc = run_cli(str(inputs), "-o", str(out), "--threads", "1")
    return {"proc": proc, "paths": paths, "out": out, "before": before, "after": digest(inputs)}


def _lines_about(err: str, path: Path) -> list[str]:
    return [line for line in err.splitlines() if display(path) in line]


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_file(matrix, case):
    filename, _build, expect = CASES[case]
    path = matrix["paths"][case]
    err = matrix["proc"].stderr
    lines = _lines_about(err, path)
    if expect[0] == "error":
        assert len(lines) == 1, (case, err)
        assert lines[0].startswith("error: ") and expect[1] in lines[0], lines[0]
        assert lines[0].count(display(path)) == 1, lines[0]  # named once, not prefixed twice
        assert "[ERROR" not in lines[0] and "OpenCV(" not in lines[0]
        assert not any(p.stem == Path(filename).stem for p in matrix["out"].iterdir())  # nothing written
    else:
        _ok, shape, dtype, warning = expect
        assert not [line for line in lines if line.startswith("error:")], lines
        if warning:
            assert len(lines) == 1 and lines[0].startswith("warning: ") and warning in lines[0], (case, lines)
        else:
            assert lines == [], lines
        out = [p for p in matrix["out"].iterdir() if p.stem == Path(filename).stem]
        assert len(out) == 1, case
        img = read_image(out[0])
        assert img.shape == shape and img.dtype == dtype, (case, img.shape, img.dtype)


def test_matrix_run_as_a_whole(matrix):
    proc = matrix["proc"]
    assert proc.returncode == 1  # some inputs failed; the rest were done
    assert_clean_stderr(proc.stderr)
    bad = sum(e[0] == "error" for _n, _b, e in CASES.values())
    good = len(CASES) - bad
    assert len([line for line in proc.stderr.splitlines() if line.startswith("error: ")]) == bad
    assert f"done: {good} processed, 0 skipped, {bad} failed" in proc.stdout
    assert matrix["after"] == matrix["before"]  # inputs byte-identical
    assert temp_files(matrix["out"]) == []
    assert len(list(matrix["out"].iterdir())) == good


# ---- run-level cases ---------------------------------------------------------------------------------------
def _folder_of_images(folder: Path, n: int) -> list[Path]:
    return [write_image(folder / f"img{i:02d}.png", smooth(seed=i)) for i in range(n)]


def test_no_input_is_overwritten_whichever_input_produced_the_output(tmp_path, capfd):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "photo.bmp").write_bytes(encode(".bmp", smooth()))
    write_image(folder / "photo.png", smooth(seed=1))
    (folder / "other.jpg").write_bytes(encode(".jpg", smooth(seed=2)))
    before = digest(folder)
    rc = main([str(folder), "-o", str(folder), "--overwrite", "--threads", "1", "--quiet"])
    err = capfd.readouterr().err
    assert rc == 1
    assert_clean_stderr(err)
    # photo.bmp -> photo.png and photo.png -> photo.png are refused; other.jpg -> other.jpg too (itself)
    assert len(err.splitlines()) == 3 and all("refusing to overwrite the input file" in x for x in err.splitlines())
    assert digest(folder) == before


def test_nan_output_is_one_line_naming_the_model_and_no_file(tmp_path, make_model, capfd):
    onnx = pytest.importorskip("onnx")
    from onnx import helper, numpy_helper

    model = onnx.load(str(make_model()))
    model.graph.initializer.append(numpy_helper.from_array(np.array(np.nan, np.float32), "poison"))
    model.graph.node[-1].output[0] = "sr_clean"
    model.graph.node.append(helper.make_node("Mul", ["sr_clean", "poison"], ["sr"]))
    bad_model = tmp_path / "diverged.onnx"
    onnx.save(model, str(bad_model))
    inputs = _folder_of_images(tmp_path / "in", 2)
    out = tmp_path / "out"
    rc = main([*map(str, inputs), "-o", str(out), "--model", str(bad_model), "--quiet"])
    err = capfd.readouterr().err
    assert rc == 1
    assert_clean_stderr(err)
    lines = err.splitlines()
    assert len(lines) == 2 and all(str(bad_model) in x and "NaN or infinite" in x for x in lines)
    assert "RuntimeWarning" not in err and list(out.iterdir()) == []


@pytest.mark.parametrize("args, words", [
    (["--outscale", "inf"], "outscale must be a finite number"),
    (["--outscale", "nan"], "outscale must be a finite number"),
    (["-s", "-2"], "outscale must be a finite number"),
    (["--tile", "-3"], "tile must be >= 0"),
])
def test_bad_options_are_one_line_exit_2(tmp_path, capfd, args, words):
    src = write_image(tmp_path / "x.png", smooth())
    rc = main([str(src), "-o", str(tmp_path / "out"), *args])
    err = capfd.readouterr().err
    assert rc == 2 and len(err.splitlines()) == 1 and words in err, err
    assert not (tmp_path / "out").exists()


def test_forged_model_metadata_is_one_line(tmp_path, make_model, capfd):
    src = write_image(tmp_path / "x.png", smooth())
    model = make_model(extra_metadata={"multiple_of": "1000000"})
    rc = main([str(src), "-o", str(tmp_path / "out"), "--model", str(model)])
    err = capfd.readouterr().err
    assert rc == 2 and len(err.splitlines()) == 1
    assert "metadata 'multiple_of' is 1000000, outside the valid range" in err and "out of memory" not in err


@pytest.mark.parametrize("where", ["file", "file/out"])
def test_output_folder_under_a_file_says_not_a_directory(tmp_path, capfd, where):
    src = write_image(tmp_path / "x.png", smooth())
    (tmp_path / "file").write_text("x")
    rc = main([str(src), "-o", str(tmp_path / where)])
    err = capfd.readouterr().err
    assert rc == 1 and len(err.splitlines()) == 1 and "Not a directory" in err and "File exists" not in err
    assert (tmp_path / "file").read_text() == "x"


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str):
    path.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip() or 'not permitted'})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_full_disk(tmp_path, capfd):
    """A 64 KiB tmpfs fills after a few outputs: each later image fails with one ENOSPC line, no partial or
    temporary file is left, and the batch goes on to the end."""
    inputs = _folder_of_images(tmp_path / "in", 8)
    before = digest(tmp_path / "in")
    with small_tmpfs(tmp_path / "disk", "64k") as disk:
        rc = main([str(tmp_path / "in"), "-o", str(disk), "--threads", "1", "--quiet"])
        err = capfd.readouterr().err
        written = assert_complete_outputs(disk)
        left = temp_files(disk)
    assert rc == 1
    assert_clean_stderr(err)
    lines = err.splitlines()
    assert lines and all("No space left on device" in x for x in lines), err
    assert len(written) + len(lines) == len(inputs) and written
    assert left == [] and digest(tmp_path / "in") == before


def _wait_for_outputs(folder: Path, n: int, proc: subprocess.Popen, limit: float = 120) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and proc.poll() is None:
        if folder.is_dir() and len([p for p in folder.iterdir() if not p.name.startswith(".")]) >= n:
            return
        time.sleep(0.05)
    raise AssertionError(f"{folder}: fewer than {n} outputs before the deadline (rc {proc.poll()})")


def test_kill_9_mid_batch_then_rerun(tmp_path):
    inputs = _folder_of_images(tmp_path / "in", 12)
    before = digest(tmp_path / "in")
    out = tmp_path / "out"
    proc = start_cli(str(tmp_path / "in"), "-o", str(out), "--threads", "1")
    _wait_for_outputs(out, 2, proc)
    proc.kill()
    proc.communicate(timeout=30)
    done = assert_complete_outputs(out) if out.is_dir() else []
    assert 2 <= len(done) < len(inputs)  # killed mid-batch; what is there is whole
    # a write cut by the kill leaves a hidden temp file; plant one for certain, as old as a real leftover
    stale = out / ".img99.png.0a1b2c3d.tmp"
    stale.write_bytes(b"\x89PNG half")
    os.utime(stale, (time.time() - 60, time.time() - 60))
    rerun = run_cli(str(tmp_path / "in"), "-o", str(out), "--threads", "1")
    assert rerun.returncode == 0, rerun.stderr
    assert_clean_stderr(rerun.stderr)
    assert f"{len(inputs) - len(done)} processed, {len(done)} skipped, 0 failed" in rerun.stdout
    assert len(assert_complete_outputs(out)) == len(inputs)
    assert temp_files(out) == [] and digest(tmp_path / "in") == before


@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_mid_batch(tmp_path, sig, status):
    inputs = _folder_of_images(tmp_path / "in", 12)
    before = digest(tmp_path / "in")
    out = tmp_path / "out"
    proc = start_cli(str(tmp_path / "in"), "-o", str(out), "--threads", "1")
    _wait_for_outputs(out, 1, proc)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == status, stderr
    assert_clean_stderr(stderr)
    assert stderr.splitlines()[-1].startswith(f"interrupted: {sig.name}; the image in progress was dropped")
    done = assert_complete_outputs(out)
    assert f"done: {len(done)} processed, 0 skipped, 0 failed" in stdout and len(done) < len(inputs)
    assert temp_files(out) == [] and digest(tmp_path / "in") == before


def test_two_processes_on_one_output_folder(tmp_path):
    inputs = _folder_of_images(tmp_path / "in", 8)
    before = digest(tmp_path / "in")
    out = tmp_path / "out"
    procs = [start_cli(str(tmp_path / "in"), "-o", str(out), "--threads", "1", *extra)
             for extra in ([], ["--overwrite"])]
    results = [p.communicate(timeout=300) for p in procs]
    for proc, (_stdout, stderr) in zip(procs, results):
        assert proc.returncode == 0, stderr
        assert_clean_stderr(stderr)
        assert "error:" not in stderr
    assert len(assert_complete_outputs(out)) == len(inputs)
    assert temp_files(out) == [] and digest(tmp_path / "in") == before


def test_stale_temp_files_are_removed_but_live_ones_are_kept(tmp_path):
    """Only our own temp-name pattern, only unlocked and a few seconds old: a concurrent writer's live file
    (locked) and a just-created one survive, and so does a user's file that merely looks similar."""
    src = write_image(tmp_path / "in" / "x.png", smooth())
    out = tmp_path / "out"
    out.mkdir()
    old = time.time() - 60
    stale, live, fresh = (out / f".x.png.{tag}.tmp" for tag in ("00000000", "11111111", "22222222"))
    foreign = [out / ".notes.tmp", out / "x.png.tmp", out / ".x.png.NOTOURS.tmp"]
    for p in (stale, live, fresh, *foreign):
        p.write_bytes(b"partial")
    for p in (stale, live, *foreign):
        os.utime(p, (old, old))
    with open(live, "rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)  # as a writer in another process holds it
        rc = main([str(src), "-o", str(out), "--threads", "1", "--quiet"])
    assert rc == 0
    assert not stale.exists() and live.exists() and fresh.exists() and all(p.exists() for p in foreign)
    assert read_image(out / "x.png").shape == (80, 96, 3)
