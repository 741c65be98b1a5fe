"""ugtsr.data: image discovery, on-the-fly HR patch dataset, paired dataset; skips and determinism."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

cv2 = pytest.importorskip("cv2", reason="image decoding needs opencv-python-headless (extra 'train')")
skdata = pytest.importorskip("skimage.data", reason="test photos come from scikit-image")

from ugtsr.data import HRPatchDataset, PairedDataset, augment, find_images  # noqa: E402
from ugtsr.errors import ConfigError, UnsupportedInputError  # noqa: E402


def _write(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    bgr = rgb[..., ::-1] if rgb.ndim == 3 else rgb
    assert cv2.imwrite(str(path), np.ascontiguousarray(bgr))


@pytest.fixture()
def hr_root(tmp_path: Path) -> Path:
    """3 usable photos (>= 80 px), 1 too small for a 64 patch, 1 corrupt file, 1 non-image."""
    root = tmp_path / "hr"
    _write(root / "a.png", skdata.astronaut()[:96, 100:196])
    _write(root / "b" / "coffee.jpg", skdata.coffee()[50:130, 50:150])
    _write(root / "b" / "chelsea.PNG", skdata.chelsea()[:100, :90])
    _write(root / "small.png", skdata.rocket()[:40, :40])
    (root / "corrupt.png").write_bytes(b"garbage")
    (root / "readme.txt").write_text("x")
    return root


def test_find_images(hr_root: Path, tmp_path: Path) -> None:
    found = [p.relative_to(hr_root).as_posix() for p in find_images(hr_root)]
    assert found == ["a.png", "b/chelsea.PNG", "b/coffee.jpg", "corrupt.png", "small.png"]
    with pytest.raises(ConfigError, match="does not exist"):
        find_images(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no image files"):
        find_images(tmp_path / "empty")


def test_hr_patch_dataset_items_and_skips(hr_root: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="ugtsr.data"):
        ds = HRPatchDataset(hr_root, scale=4, patch_size=64, pipeline="bsrgan", seed=3)
    assert ds.num_images == 3 and len(ds) == 3
    assert ds.num_too_small == 1 and ds.num_unreadable == 1
    small = [r for r in caplog.records if "smaller than" in r.getMessage()]
    assert len(small) == 1 and "skipped 1 image" in small[0].getMessage()
    assert any("corrupt.png" in r.getMessage() for r in caplog.records)

    for i in range(len(ds)):
        item = ds[i]
        assert set(item) == {"lq", "gt"}
        assert item["lq"].shape == (3, 16, 16) and item["gt"].shape == (3, 64, 64)
        for t in item.values():
            assert t.dtype == torch.float32 and torch.isfinite(t).all()
            assert 0.0 <= t.min() and t.max() <= 1.0


@pytest.mark.parametrize("pipeline", ["bsrgan_plus", "realesrgan"])
def test_hr_patch_dataset_other_pipelines_scale2(hr_root: Path, pipeline: str) -> None:
    ds = HRPatchDataset(hr_root, scale=2, patch_size=48, pipeline=pipeline, seed=0, length=4)
    item = ds[3]
    assert item["lq"].shape == (3, 24, 24) and item["gt"].shape == (3, 48, 48)


def test_hr_patch_dataset_determinism(hr_root: Path) -> None:
    ds = HRPatchDataset(hr_root, scale=4, patch_size=64, seed=11, length=6)
    first = [ds[i] for i in range(6)]
    # order independence and a fresh instance with the same seed
    again = HRPatchDataset(hr_root, scale=4, patch_size=64, seed=11, length=6)
    for i in (5, 2, 0):
        assert torch.equal(again[i]["lq"], first[i]["lq"]) and torch.equal(again[i]["gt"], first[i]["gt"])
    # a new epoch gives new patches; going back reproduces the old ones
    ds.set_epoch(1)
    assert not torch.equal(ds[0]["gt"], first[0]["gt"])
    ds.set_epoch(0)
    assert torch.equal(ds[0]["lq"], first[0]["lq"])
    # another seed differs
    other = HRPatchDataset(hr_root, scale=4, patch_size=64, seed=12, length=6)
    assert not torch.equal(other[0]["gt"], first[0]["gt"])
    # DataLoader workers see the same items (the RNG depends on the index only)
    loader = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=2, shuffle=False)
    batches = list(loader)
    assert batches[0]["lq"].shape == (3, 3, 16, 16)
    assert torch.equal(batches[1]["lq"][2], first[5]["lq"])


def test_hr_patch_dataset_length_and_gt_only(hr_root: Path) -> None:
    ds = HRPatchDataset(hr_root, scale=2, patch_size=32, pipeline=None, length=10, augment=False)
    assert len(ds) == 10
    assert set(ds[9]) == {"gt"} and ds[9]["gt"].shape == (3, 32, 32)
    assert torch.equal(ds[-1]["gt"], ds[9]["gt"])
    with pytest.raises(IndexError):
        ds[10]


def test_hr_patch_dataset_config_errors(hr_root: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="multiple of scale"):
        HRPatchDataset(hr_root, scale=4, patch_size=62)
    with pytest.raises(ConfigError, match="unknown pipeline"):
        HRPatchDataset(hr_root, scale=4, patch_size=64, pipeline="no_such_pipeline")
    with pytest.raises(ConfigError, match="scale"):
        HRPatchDataset(hr_root, scale=3, patch_size=48)
    with pytest.raises(ConfigError, match="length"):
        HRPatchDataset(hr_root, scale=4, patch_size=64, length=0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no image files"):
        HRPatchDataset(tmp_path / "empty", scale=4, patch_size=64)
    with pytest.raises(ConfigError, match="does not exist"):
        HRPatchDataset(tmp_path / "missing", scale=4, patch_size=64)
    # nothing large enough: a one-line error with the counts
    with pytest.raises(ConfigError, match=r"no usable training image \(4 smaller .* 1 unreadable\)"):
        HRPatchDataset(hr_root, scale=4, patch_size=128)


def test_augment_applies_the_same_transform_to_all() -> None:
    rng = np.random.default_rng(0)
    lq = rng.random((4, 5, 3)).astype(np.float32)
    gt = np.kron(lq, np.ones((2, 2, 1), np.float32))
    seen = set()
    for seed in range(16):
        a, b = augment([lq, gt], np.random.default_rng(seed))
        np.testing.assert_array_equal(b[::2, ::2], a)
        seen.add(a.shape)
    assert seen == {(4, 5, 3), (5, 4, 3)}


@pytest.fixture()
def pair_root(tmp_path: Path) -> tuple[Path, Path]:
    """x2 pairs whose GT is the LR upsampled by pixel repetition (so alignment is checkable)."""
    rng = np.random.default_rng(0)
    lq_dir, gt_dir = tmp_path / "lq", tmp_path / "gt"
    for name, (h, w) in {"p1": (20, 24), "sub/p2": (24, 20)}.items():
        lq = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        gt = np.kron(lq, np.ones((2, 2, 1), np.uint8))
        gt = np.pad(gt, ((0, 1), (0, 1), (0, 0)))  # +1 px: removed by the mod-crop
        _write(lq_dir / f"{name}.png", lq)
        _write(gt_dir / f"{name}.png", gt)
    return lq_dir, gt_dir


def test_paired_dataset_whole_images(pair_root: tuple[Path, Path]) -> None:
    ds = PairedDataset(*pair_root, scale=2)
    assert ds.names == ["p1", "sub/p2"] and len(ds) == 2 and ds.num_unmatched == 0
    item = ds[1]
    assert item["name"] == "sub/p2"
    assert item["lq"].shape == (3, 24, 20) and item["gt"].shape == (3, 48, 40)
    assert torch.equal(item["gt"][:, ::2, ::2], item["lq"])


def test_paired_dataset_random_crops(pair_root: tuple[Path, Path]) -> None:
    ds = PairedDataset(*pair_root, scale=2, patch_size=16, seed=4, length=8)
    assert ds.augment
    crops = [ds[i] for i in range(8)]
    for item in crops:
        assert item["lq"].shape == (3, 8, 8) and item["gt"].shape == (3, 16, 16)
        assert torch.equal(item["gt"][:, ::2, ::2], item["lq"])  # aligned after crop + flips
    assert torch.equal(PairedDataset(*pair_root, scale=2, patch_size=16, seed=4, length=8)[5]["gt"], crops[5]["gt"])
    ds.set_epoch(3)
    assert any(not torch.equal(ds[i]["gt"], crops[i]["gt"]) for i in range(8))


def test_paired_dataset_problems(pair_root: tuple[Path, Path], caplog: pytest.LogCaptureFixture) -> None:
    lq_dir, gt_dir = pair_root
    _write(lq_dir / "orphan.png", np.zeros((8, 8, 3), np.uint8))
    _write(lq_dir / "wrong.png", np.zeros((8, 8, 3), np.uint8))
    _write(gt_dir / "wrong.png", np.zeros((20, 16, 3), np.uint8))
    with caplog.at_level(logging.WARNING, logger="ugtsr.data"):
        ds = PairedDataset(lq_dir, gt_dir, scale=2)
    assert ds.num_unmatched == 1 and "orphan" in caplog.text
    with pytest.raises(UnsupportedInputError, match="wrong.png.*not x2"):
        ds[ds.names.index("wrong")]
    with pytest.raises(UnsupportedInputError, match="smaller than"):
        PairedDataset(lq_dir, gt_dir, scale=2, patch_size=44)[0]  # p1 LR is 20x24
    _write(gt_dir / "p1.jpg", np.zeros((40, 48, 3), np.uint8))
    with pytest.raises(ConfigError, match="same name"):
        PairedDataset(lq_dir, gt_dir, scale=2)


def _png_bomb(path: Path, width: int = 100_000, height: int = 100_000) -> None:
    """A small valid PNG whose IHDR then claims ``width x height`` (CRC fixed up)."""
    import struct
    import zlib

    ok, buf = cv2.imencode(".png", np.full((8, 8, 3), 128, np.uint8))
    data = bytearray(buf.tobytes())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))


def test_hr_patch_dataset_skips_a_header_bomb(hr_root: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Issue 11 item 2: the loaders check the header size before decoding (was a raw cv2.error)."""
    _png_bomb(hr_root / "bomb.png")
    before = (hr_root / "bomb.png").read_bytes()
    with caplog.at_level(logging.WARNING, logger="ugtsr.data"):
        ds = HRPatchDataset(hr_root, scale=4, patch_size=64, pipeline="bicubic")
    assert ds.num_images == 3 and ds.num_unreadable == 2  # corrupt.png and bomb.png
    assert "bomb.png" in caplog.text and "100000x100000" in caplog.text
    assert (hr_root / "bomb.png").read_bytes() == before
    # max_pixels: a.png (96x96 = 9216) and chelsea (90x100 = 9000) are over 8999, coffee (100x80) is not
    ds = HRPatchDataset(hr_root, scale=4, patch_size=64, pipeline=None, max_pixels=8999)
    assert ds.num_images == 1 and [p.name for p in ds.paths] == ["coffee.jpg"]


def test_paired_dataset_header_bomb_is_one_clear_error(pair_root: tuple[Path, Path]) -> None:
    lq_dir, gt_dir = pair_root
    _write(lq_dir / "big.png", np.zeros((8, 8, 3), np.uint8))
    _png_bomb(gt_dir / "big.png")
    ds = PairedDataset(lq_dir, gt_dir, scale=2)
    with pytest.raises(UnsupportedInputError, match=r"big\.png: image is 100000x100000"):
        ds[ds.names.index("big")]
    assert ds[ds.names.index("p1")]["lq"].shape == (3, 20, 24)  # the others still load
