"""read_image / write_image / conversions: layouts, EXIF orientation, and one clear error per bad file."""
from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime import _formats
from runtime.imageio import (
    ImageLayout,
    float_to_image,
    image_to_float,
    read_image,
    write_image,
)
from ugtsr.errors import UGTSRError, UnsupportedInputError

from .conftest import jpeg_with_orientation, random_image

KINDS = [
    ("gray_u8", None, np.uint8),
    ("gray_u16", None, np.uint16),
    ("gray1_u8", 1, np.uint8),
    ("bgr_u8", 3, np.uint8),
    ("bgr_u16", 3, np.uint16),
    ("bgra_u8", 4, np.uint8),
    ("bgra_u16", 4, np.uint16),
]


def _png_bytes(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", img)
    assert ok
    return buf.tobytes()


def _no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


# ---- round trips -------------------------------------------------------------------------------------
@pytest.mark.parametrize("ext", [".png", ".tif"])
@pytest.mark.parametrize("name,channels,dtype", KINDS)
def test_lossless_round_trip(tmp_path, ext, name, channels, dtype):
    img = random_image(13, 17, channels, dtype)
    path = write_image(tmp_path / "sub" / f"{name}{ext}", img)
    back = read_image(path)
    expected = img[:, :, 0] if channels == 1 else img  # OpenCV reads (H, W, 1) back as (H, W)
    assert back.dtype == dtype
    np.testing.assert_array_equal(back, expected)
    assert _no_temp_files(tmp_path)


@pytest.mark.parametrize("ext,channels", [(".jpg", 3), (".jpg", None), (".webp", 3), (".webp", 4)])
def test_lossy_formats_write_and_read(tmp_path, ext, channels):
    img = np.full((20, 24) if channels is None else (20, 24, channels), 128, np.uint8)
    back = read_image(write_image(tmp_path / f"a{ext}", img, quality=90))
    assert back.shape == img.shape and back.dtype == np.uint8
    assert np.abs(back.astype(int) - 128).max() <= 3


@pytest.mark.parametrize("name,channels,dtype", KINDS)
def test_float_conversion_round_trip(name, channels, dtype):
    img = random_image(9, 11, channels, dtype)
    rgb, alpha, layout = image_to_float(img)
    assert rgb.shape == (9, 11, 3) and rgb.dtype == np.float32
    assert 0.0 <= rgb.min() and rgb.max() <= 1.0
    assert (alpha is not None) == (channels == 4)
    if channels in (3, 4):  # BGR -> RGB
        np.testing.assert_allclose(rgb[:, :, 0] * layout.max_value, img[:, :, 2], atol=1e-2)
    back = float_to_image(rgb, alpha, layout)
    assert back.dtype == img.dtype and back.shape == img.shape
    np.testing.assert_array_equal(back, img)


def test_float_to_image_clamps_and_rounds():
    layout = ImageLayout(channels=3, keepdim=True, dtype=np.dtype(np.uint8))
    rgb = np.array([[[-0.5, 0.5, 1.7]]], np.float32)
    np.testing.assert_array_equal(float_to_image(rgb, None, layout), [[[255, 128, 0]]])


@pytest.mark.parametrize("name,channels,dtype", KINDS)
def test_float_to_image_in_bands_equals_the_whole_image_formula(name, channels, dtype):
    """float_to_image converts in bands of rows (imageio._BAND_ROWS); from a transposed (3, H, W) view
    of a model output with values outside [0, 1], across several band boundaries, it gives what the
    one-shot formula gives."""
    from runtime import imageio
    h, w = 2 * imageio._BAND_ROWS + 7, 13
    rng = np.random.default_rng(3)
    chw = rng.uniform(-0.2, 1.2, (3, h, w)).astype(np.float32)
    rgb = chw.transpose(1, 2, 0)
    assert not rgb.flags.c_contiguous
    alpha = rng.uniform(0, 1, (h, w)).astype(np.float32) if channels == 4 else None
    layout = image_to_float(random_image(h, w, channels, dtype))[2]
    m = layout.max_value

    def q(x):
        return np.rint(np.clip(x, 0.0, 1.0) * m).astype(layout.dtype)
    if layout.channels == 1:
        want = q(rgb[:, :, 0] * 0.299 + rgb[:, :, 1] * 0.587 + rgb[:, :, 2] * 0.114)
        want = want[:, :, None] if layout.keepdim else want
    elif layout.channels == 4:
        want = q(np.concatenate([rgb[:, :, ::-1], alpha[:, :, None]], axis=2))
    else:
        want = q(rgb[:, :, ::-1])
    got = float_to_image(rgb, alpha, layout)
    assert got.dtype == want.dtype and got.shape == want.shape and got.flags.c_contiguous
    np.testing.assert_array_equal(got, want)


# ---- EXIF orientation ------------------------------------------------------------------------------
# what a viewer shows for each orientation, in terms of the stored pixels
EXPECTED = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: np.rot90(a, 2),
    4: lambda a: a[::-1],
    5: lambda a: np.transpose(a, (1, 0, 2)),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: np.rot90(a, 2).transpose(1, 0, 2),
    8: lambda a: np.rot90(a, 1),
}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_jpeg_exif_orientation_is_applied(tmp_path, orientation):
    stored = np.zeros((16, 32, 3), np.uint8)
    stored[:8, :8] = 255  # a white block in the top-left corner of the stored pixels
    ok, buf = cv2.imencode(".jpg", stored, [cv2.IMWRITE_JPEG_QUALITY, 100])
    path = tmp_path / f"o{orientation}.jpg"
    path.write_bytes(jpeg_with_orientation(buf.tobytes(), orientation))
    raw = cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_UNCHANGED)
    assert raw.shape == stored.shape  # IMREAD_UNCHANGED alone ignores the tag
    img = read_image(path)
    np.testing.assert_array_equal(img, EXPECTED[orientation](raw))


@pytest.mark.parametrize("ext", ["jpg", "png", "webp", "tif"])
@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_orientation_matches_pillow(tmp_path, ext, orientation):
    Image = pytest.importorskip("PIL.Image", reason="cross-check against Pillow's exif_transpose")
    ImageOps = pytest.importorskip("PIL.ImageOps")
    rgb = random_image(12, 20, 3)
    exif = Image.Exif()
    exif[274] = orientation
    path = tmp_path / f"x.{ext}"
    extra = {"quality": 100} if ext == "jpg" else {"lossless": True} if ext == "webp" else {}
    Image.fromarray(rgb).save(path, exif=exif.tobytes(), **extra)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))[:, :, ::-1]
    got = read_image(path)
    assert got.shape == expected.shape
    if ext == "jpg":
        assert np.abs(got.astype(int) - expected).max() <= 8
    else:
        np.testing.assert_array_equal(got, expected)


# ---- bad inputs: one UnsupportedInputError naming the file, nothing on stderr ---------------------------
def _truncated_png(tmp_path: Path) -> Path:
    data = _png_bytes(random_image(64, 64, 3))
    path = tmp_path / "truncated.png"
    path.write_bytes(data[: len(data) // 2])
    return path


def _crc_png(tmp_path: Path) -> Path:
    data = bytearray(_png_bytes(random_image(64, 64, 3)))
    data[60:64] = b"\x00\x01\x02\x03"  # inside IDAT
    path = tmp_path / "crc.png"
    path.write_bytes(bytes(data))
    return path


def _truncated_jpeg(tmp_path: Path) -> Path:
    ok, buf = cv2.imencode(".jpg", random_image(64, 64, 3))
    path = tmp_path / "truncated.jpg"
    path.write_bytes(buf.tobytes()[: buf.size // 2])
    return path


def _huge_png_header(tmp_path: Path) -> Path:
    """A PNG whose IHDR claims 100000 x 100000 pixels (a decompression bomb); never decoded."""
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    iend = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    path = tmp_path / "bomb.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk + iend)
    return path


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


BAD_INPUTS = {
    "missing": (lambda t: t / "nope.png", "no such file"),
    "folder": (lambda t: (t / "dir.png").mkdir() or t / "dir.png", "folder"),
    "zero_bytes": (lambda t: _write(t, "empty.png", b""), "empty"),
    "text": (lambda t: _write(t, "notes.jpg", b"hello, this is not an image\n"), "not an image"),
    "exr": (lambda t: _write(t, "a.exr", b"\x76\x2f\x31\x01" + b"\x00" * 64), "unsupported image format"),
    "truncated_png": (_truncated_png, "truncated"),
    "crc_png": (_crc_png, "corrupt"),
    "truncated_jpeg": (_truncated_jpeg, "truncated"),
    "bomb": (_huge_png_header, "over the limit"),
    "one_pixel": (lambda t: _write(t, "dot.png", _png_bytes(np.zeros((1, 1, 3), np.uint8))), "at least 2"),
    "one_row": (lambda t: _write(t, "row.png", _png_bytes(np.zeros((1, 50), np.uint8))), "at least 2"),
    "float_tiff": (lambda t: _write(t, "f.tif", cv2.imencode(".tif", np.ones((4, 4), np.float32))[1].tobytes()),
                   "unsupported pixel type float32"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_gives_one_clear_error(tmp_path, capfd, case):
    make, words = BAD_INPUTS[case]
    path = make(tmp_path)
    capfd.readouterr()
    with pytest.raises(UnsupportedInputError) as info:
        read_image(path)
    msg = str(info.value)
    assert str(path) in msg and words in msg and "\n" not in msg
    out, err = capfd.readouterr()
    assert out == "" and err == ""  # libpng/libjpeg chatter is captured, not printed


def test_unreadable_file(tmp_path):
    import os

    if os.geteuid() == 0:
        pytest.skip("root can read any file")
    path = write_image(tmp_path / "secret.png", np.zeros((4, 4), np.uint8))
    path.chmod(0)
    with pytest.raises(UnsupportedInputError, match="cannot read"):
        read_image(path)


def test_max_pixels_is_checked_before_decoding_and_configurable(tmp_path):
    path = write_image(tmp_path / "a.png", np.zeros((30, 40), np.uint8))
    with pytest.raises(UnsupportedInputError, match="1,200 pixels"):
        read_image(path, max_pixels=1000)
    assert read_image(path, max_pixels=None).shape == (30, 40)
    assert _formats.header_size("PNG", path.read_bytes()) == (40, 30)


@pytest.mark.parametrize("ext", [".png", ".jpg", ".webp", ".tif", ".bmp", ".gif", ".pgm"])
def test_header_size_matches_decoder(tmp_path, ext):
    img = random_image(23, 37, None if ext == ".pgm" else 3)
    if ext == ".gif":
        Image = pytest.importorskip("PIL.Image", reason="OpenCV does not write GIF")
        Image.fromarray(img).save(tmp_path / "a.gif")
    else:
        cv2.imwrite(str(tmp_path / f"a{ext}"), img)
    data = (tmp_path / f"a{ext}").read_bytes()
    fmt = _formats.sniff_format(data)
    assert fmt is not None
    assert _formats.header_size(fmt, data) == (37, 23)
    assert _formats.completeness_problem(fmt, data) is None
    assert read_image(tmp_path / f"a{ext}").shape[:2] == (23, 37)


def test_corrupt_jpeg_data_that_still_decodes_is_a_logged_warning(tmp_path, capfd, caplog):
    ok, buf = cv2.imencode(".jpg", random_image(64, 64, 3))
    data = bytearray(buf.tobytes())
    eoi = data.rfind(b"\xff\xd9")
    data[eoi - 10:eoi] = b"\x00" * 10  # damage the last entropy-coded bytes
    path = _write(tmp_path, "damaged.jpg", bytes(data))
    capfd.readouterr()
    img = read_image(path)
    assert img.shape == (64, 64, 3)
    assert capfd.readouterr().err == ""
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings and str(path) in warnings[0]


# ---- writing ------------------------------------------------------------------------------------------
def test_write_refuses_what_the_format_cannot_hold(tmp_path):
    with pytest.raises(UnsupportedInputError, match="alpha"):
        write_image(tmp_path / "a.jpg", np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(UnsupportedInputError, match="uint16"):
        write_image(tmp_path / "a.webp", np.zeros((4, 4, 3), np.uint16))
    with pytest.raises(UnsupportedInputError, match="cannot write"):
        write_image(tmp_path / "a.xyz", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(UnsupportedInputError, match="float"):
        write_image(tmp_path / "a.png", np.zeros((4, 4, 3), np.float32))
    assert list(tmp_path.iterdir()) == []


def test_write_error_names_the_path_and_leaves_nothing(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UGTSRError) as info:
        write_image(blocker / "sub" / "a.png", np.zeros((4, 4), np.uint8))
    assert str(blocker / "sub" / "a.png") in str(info.value)
    target = tmp_path / "dir.png"
    target.mkdir()  # os.replace onto a folder fails after the temp file was written
    with pytest.raises(UGTSRError, match="cannot write"):
        write_image(target, np.zeros((4, 4), np.uint8))
    assert _no_temp_files(tmp_path)


def test_write_replaces_atomically(tmp_path):
    path = write_image(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    write_image(path, np.full((4, 4), 7, np.uint8))
    assert read_image(path).max() == 7
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


# ---- thread safety (issue 10 section 5) -----------------------------------------------------------------
def _smooth_jpeg(h: int, w: int, seed: int) -> bytes:
    img = cv2.GaussianBlur(random_image(h, w, 3, seed=seed), (5, 5), 0)
    return cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


def test_eight_threads_over_good_pngs_and_truncated_jpegs(tmp_path, capfd):
    """200 good PNGs and 40 truncated JPEGs (half of them cut short, half cut and closed with an EOI marker,
    which libjpeg only reports as a warning) read by 8 threads: every good file is accepted, every truncated
    one is rejected with a message naming itself and no other file, and fd 2 is left alone."""
    from concurrent.futures import ThreadPoolExecutor

    # sizes that keep decodes overlapping across threads (the old fd-2 capture then mixed up messages)
    good = [_write(tmp_path, f"good{i:03d}.png", _png_bytes(random_image(160 + i % 9, 200 + i % 7, 3, seed=i)))
            for i in range(200)]
    bad = []
    for i in range(40):
        data = _smooth_jpeg(480, 640, seed=i)
        cut = data[: len(data) // 2]
        bad.append(_write(tmp_path, f"cut{i:02d}.jpg", cut + (b"\xff\xd9" if i % 2 else b"")))
    before = os.fstat(2)
    capfd.readouterr()

    def read(path: Path) -> tuple[Path, str | None]:
        try:
            read_image(path)
        except UnsupportedInputError as exc:
            return path, str(exc)
        return path, None

    order = [p for pair in zip(good[:40], bad) for p in pair] + good[40:]
    with ThreadPoolExecutor(8) as pool:
        results = dict(pool.map(read, order))
    after = os.fstat(2)
    rejected_good = [results[p] for p in good if results[p] is not None]
    accepted_bad = [p.name for p in bad if results[p] is None]
    wrong = [results[p] for p in bad if results[p] is not None and
             not (results[p].startswith(f"{p}: JPEG file is truncated") and
                  sum(q.name in results[p] for q in [*good, *bad]) == 1)]
    assert (rejected_good, accepted_bad, wrong) == ([], [], [])
    assert (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino)  # stderr still the same file
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_decode_image_from_memory_matches_read_image(tmp_path):
    from runtime.imageio import decode_image

    path = write_image(tmp_path / "a.png", random_image(12, 9, 4, np.uint16))
    data = path.read_bytes()
    np.testing.assert_array_equal(decode_image(data), read_image(path))
    np.testing.assert_array_equal(decode_image(memoryview(data), source="request-7"), read_image(path))
    with pytest.raises(UnsupportedInputError, match=r"^request-7: PNG file is truncated"):
        decode_image(data[:60], source="request-7")
    with pytest.raises(UnsupportedInputError, match=r"^<bytes>: empty file"):
        decode_image(b"")
