"""runtime.files: the shared file rules (escaping, input protection, naming, atomic writes, stale temp files)."""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from runtime.files import (
    InputSet,
    display,
    ensure_folder,
    is_temp_name,
    output_path,
    remove_stale_temp_files,
    write_bytes_atomic,
)
from ugtsr.errors import UGTSRError


def test_display_keeps_one_line_and_printable_text():
    assert display("photo é.png") == "photo é.png"
    assert display("bad\nname\r\t.png") == "bad\\nname\\r\\t.png"
    assert display("a\x1b[31mb") == "a\\x1b[31mb"
    assert display(Path(os.fsdecode(b"caf\xff.png"))) == "caf\\udcff.png"  # undecodable byte of a name
    assert "\n" not in display("x\u2028y") and display("x\U000e0001") == "x\\U000e0001"


def test_input_set_catches_names_links_and_inodes(tmp_path):
    a = tmp_path / "in" / "a.png"
    a.parent.mkdir()
    a.write_bytes(b"a")
    inputs = InputSet([a])
    assert a in inputs and (tmp_path / "in" / ".." / "in" / "a.png") in inputs
    link = tmp_path / "link.png"
    link.symlink_to(a)
    hard = tmp_path / "hard.png"
    os.link(a, hard)
    assert link in inputs and hard in inputs and inputs.which(hard) == a
    assert (tmp_path / "other.png") not in inputs and "not a path" not in inputs


def test_output_path_naming():
    img16 = np.zeros((2, 2, 3), np.uint16)
    rgba = np.zeros((2, 2, 4), np.uint8)
    assert output_path("a/x.jpeg", "o") == Path("o/x.jpeg")
    assert output_path("a/x.bmp", "o", suffix="_s") == Path("o/x_s.png")
    assert output_path("a/x.jpg", "o", image=img16) == Path("o/x.png")
    assert output_path("a/x.jpg", "o", image=rgba) == Path("o/x.png")
    assert output_path("a/x.png", "o", ext="webp") == Path("o/x.webp")
    # WebP has no gray mode (a gray image comes back with three channels): gray stays gray as PNG
    for gray in (np.zeros((2, 2), np.uint8), np.zeros((2, 2, 1), np.uint8)):
        assert output_path("a/x.png", "o", ext="webp", image=gray) == Path("o/x.png")
        assert output_path("a/x.png", "o", ext="jpg", image=gray) == Path("o/x.jpg")
    assert output_path("a/x.png", "o", ext="webp", image=np.zeros((2, 2, 3), np.uint8)) == Path("o/x.webp")


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.png"
    write_bytes_atomic(target, b"old")
    (tmp_path / "folder.png").mkdir()
    with pytest.raises(UGTSRError, match="cannot write"):
        write_bytes_atomic(tmp_path / "folder.png", b"new")  # rename onto a folder fails after the write
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder.png", "out.png"]
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UGTSRError, match="Not a directory"):
        write_bytes_atomic(blocker / "a.png", b"x")
    with pytest.raises(UGTSRError, match="Not a directory"):
        ensure_folder(blocker)


def test_temp_names_and_stale_cleanup_by_age(tmp_path):
    assert is_temp_name(".photo.png.a1b2c3d4.tmp") and is_temp_name(".x.jpg.ab_cd9z0.tmp")
    assert not is_temp_name("photo.png.a1b2c3d4.tmp") and not is_temp_name(".notes.tmp")
    old = tmp_path / ".a.png.00000000.tmp"
    new = tmp_path / ".a.png.11111111.tmp"
    for p in (old, new):
        p.write_bytes(b"x")
    os.utime(old, (time.time() - 10, time.time() - 10))
    assert remove_stale_temp_files(tmp_path) == [old]
    assert new.exists() and remove_stale_temp_files(tmp_path / "missing") == []


def test_unlocked_writers_temp_names_get_an_hour(tmp_path):
    """``ugtsr.fileio`` (mkstemp names, no lock) may still be writing a big file: not removed within the hour."""
    mkstemp_like = tmp_path / ".model.onnx.k_9zq2xy.tmp"
    mkstemp_like.write_bytes(b"x")
    os.utime(mkstemp_like, (time.time() - 600, time.time() - 600))
    assert remove_stale_temp_files(tmp_path) == [] and mkstemp_like.exists()
    os.utime(mkstemp_like, (time.time() - 7200, time.time() - 7200))
    assert remove_stale_temp_files(tmp_path) == [mkstemp_like]
