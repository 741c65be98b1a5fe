"""Padding and tiling invariants: exact for local models, measured for whole-image-statistics models."""
from __future__ import annotations

import numpy as np
import pytest

from runtime.padding import crop, pad_to_multiple, padded_size
from runtime.tiling import available_memory_bytes, choose_tile, tile_grid, tile_process
from ugtsr.errors import UGTSRError, UnsupportedInputError

SCALE = 4


def nearest_fn(batch: np.ndarray) -> np.ndarray:
    """A purely local x4 model: nearest-neighbour upscaling."""
    return np.repeat(np.repeat(batch, SCALE, axis=2), SCALE, axis=3)


def box_blur_fn(batch: np.ndarray) -> np.ndarray:
    """Local with a receptive field of radius 2 (input pixels): 5x5 box blur, then nearest x4.

    Replicate borders, so a tile's edge pixels differ from the untiled result: blending must not use them.
    """
    p = np.pad(batch, ((0, 0), (0, 0), (2, 2), (2, 2)), mode="edge")
    h, w = batch.shape[2:]
    acc = sum(p[:, :, dy:dy + h, dx:dx + w] for dy in range(5) for dx in range(5)) / 25.0
    return nearest_fn(acc.astype(np.float32))


def stats_fn(batch: np.ndarray) -> np.ndarray:
    """Output depends on whole-input statistics (like GroupNorm): resize(x - mean(x) + 0.5)."""
    return nearest_fn(batch - batch.mean(axis=(2, 3), keepdims=True) + 0.5)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


def smooth_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """(1, 3, h, w) float32 in [0, 1] with large-scale structure, so tile means differ."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = 0.5 + 0.35 * np.sin(xx / max(w, 1) * 5.0 + 1.0) * np.cos(yy / max(h, 1) * 4.0)
    img = base[None] + 0.05 * rng.standard_normal((3, h, w))
    return np.clip(img, 0, 1).astype(np.float32)[None]


# ---- padding -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("h,w", [(1, 1), (2, 3), (5, 17), (16, 16), (31, 33), (40, 7)])
def test_pad_to_multiple_shapes_and_content(h, w):
    x = np.random.default_rng(0).random((1, 3, h, w)).astype(np.float32)
    padded, (ph, pw) = pad_to_multiple(x, 16, min_size=16)
    assert padded.shape[2] % 16 == 0 and padded.shape[3] % 16 == 0
    assert padded.shape[2] >= max(h, 16) and padded.shape[3] >= max(w, 16)
    assert (ph, pw) == (padded.shape[2] - h, padded.shape[3] - w)
    assert padded.flags.c_contiguous and padded.dtype == np.float32
    np.testing.assert_array_equal(crop(padded, h, w), x)


def test_reflect_when_possible_replicate_otherwise():
    x = np.arange(20, dtype=np.float32).reshape(1, 1, 1, 20)
    padded, _ = pad_to_multiple(x, 8)  # pad 4 < 20: reflect without repeating the edge
    np.testing.assert_array_equal(padded[0, 0, 0, 20:], [18, 17, 16, 15])
    small = np.arange(3, dtype=np.float32).reshape(1, 1, 1, 3)
    padded, _ = pad_to_multiple(small, 8)  # pad 5 >= 3: replicate the edge
    np.testing.assert_array_equal(padded[0, 0, 0], [0, 1, 2, 2, 2, 2, 2, 2])
    assert padded_size(3, 8, min_size=20) == 24


def test_padding_rejects_bad_arguments():
    with pytest.raises(UnsupportedInputError):
        pad_to_multiple(np.zeros((3, 4, 4), np.float32), 4)
    with pytest.raises(UnsupportedInputError):
        padded_size(5, 0)
    with pytest.raises(UnsupportedInputError):
        crop(np.zeros((1, 3, 4, 4)), 8, 4)


# ---- grid --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [1, 15, 16, 17, 63, 100, 257, 1000])
@pytest.mark.parametrize("tile,pad,mult", [(16, 0, 16), (32, 8, 16), (48, 10, 8), (1, 4, 4), (64, 32, 16)])
def test_grid_covers_aligned_equal_sized_overlapping(size, tile, pad, mult):
    rows, _ = tile_grid(size, 5, tile=tile, tile_pad=pad, multiple_of=mult, min_size=mult)
    padded = padded_size(size, mult, min_size=mult)
    lengths = {n for _, n in rows}
    assert len(lengths) == 1  # one tile shape: stackable into batches, one engine shape
    assert all(s % mult == 0 and n % mult == 0 for s, n in rows)
    assert rows[0][0] == 0 and rows[-1][0] + rows[-1][1] == padded
    starts = [s for s, _ in rows]
    assert starts == sorted(set(starts))
    for (s0, n0), (s1, _) in zip(rows, rows[1:]):
        assert s0 + n0 - s1 >= 2 * pad  # overlap gives every seam tile_pad context on both sides


def test_no_tiling_when_tile_is_zero_or_large():
    assert tile_grid(100, 50, tile=0, tile_pad=8, multiple_of=16) == ([(0, 112)], [(0, 64)])
    assert tile_grid(100, 50, tile=512, tile_pad=8, multiple_of=16) == ([(0, 112)], [(0, 64)])


# ---- local models: tiled == untiled -------------------------------------------------------------------
@pytest.mark.parametrize("h,w", [(2, 2), (3, 7), (15, 16), (17, 33), (40, 29), (64, 64), (75, 101)])
@pytest.mark.parametrize("blend", ["feather", "linear", "none"])
def test_local_model_tiled_equals_untiled(h, w, blend):
    x = np.random.default_rng(1).random((1, 3, h, w)).astype(np.float32)
    kw = dict(scale=SCALE, multiple_of=8, min_size=8)
    whole = tile_process(x, box_blur_fn, tile=0, tile_pad=4, **kw)
    assert whole.shape == (1, 3, h * SCALE, w * SCALE) and whole.dtype == np.float32
    for tile, pad in [(8, 4), (16, 6), (24, 8)]:
        tiled = tile_process(x, box_blur_fn, tile=tile, tile_pad=pad, blend=blend, **kw)
        np.testing.assert_allclose(tiled, whole, atol=1e-6, rtol=0)


def test_nearest_untiled_is_exact_repeat():
    x = np.random.default_rng(2).random((1, 3, 13, 9)).astype(np.float32)
    out = tile_process(x, nearest_fn, scale=SCALE, tile=0, multiple_of=16, min_size=16)
    np.testing.assert_array_equal(out, nearest_fn(x))


@pytest.mark.parametrize("batch_size", [2, 3, 16])
def test_batching_gives_the_same_result(batch_size):
    x = np.random.default_rng(3).random((1, 3, 70, 90)).astype(np.float32)
    calls: list[tuple[int, ...]] = []

    def fn(batch):
        calls.append(batch.shape)
        return stats_fn(batch)  # per-sample statistics: batching must not mix tiles

    kw = dict(scale=SCALE, tile=16, tile_pad=8, multiple_of=8)
    one = tile_process(x, fn, batch_size=1, **kw)
    n_tiles = len(calls)
    calls.clear()
    many = tile_process(x, fn, batch_size=batch_size, **kw)
    np.testing.assert_allclose(many, one, atol=1e-6)
    assert max(c[0] for c in calls) == min(batch_size, n_tiles)
    assert sum(c[0] for c in calls) == n_tiles


def test_fn_only_sees_contract_shapes():
    seen = []

    def fn(batch):
        seen.append(batch.shape)
        assert batch.dtype == np.float32 and batch.flags.c_contiguous
        return nearest_fn(batch)

    x = np.random.default_rng(4).random((1, 3, 37, 53)).astype(np.float32)
    for tile in (0, 16, 20):
        tile_process(x, fn, scale=SCALE, tile=tile, tile_pad=5, multiple_of=16, min_size=32, batch_size=2)
    assert all(s[2] % 16 == 0 and s[3] % 16 == 0 and min(s[2:]) >= 32 for s in seen)


def test_dict_outputs_are_blended_and_foreign_shapes_dropped():
    def fn(batch):
        sr = box_blur_fn(batch)
        return {"sr": sr, "uncertainty": -sr[:, :1], "indices": np.zeros((batch.shape[0], 4, 4), np.int64)}

    x = np.random.default_rng(5).random((1, 3, 40, 44)).astype(np.float32)
    whole = tile_process(x, fn, scale=SCALE, tile=0, multiple_of=8)
    tiled = tile_process(x, fn, scale=SCALE, tile=16, tile_pad=6, multiple_of=8)
    assert set(whole) == set(tiled) == {"sr", "uncertainty"}
    assert tiled["uncertainty"].shape == (1, 1, 160, 176)
    for key in whole:
        np.testing.assert_allclose(tiled[key], whole[key], atol=1e-6)


def test_progress_reports_every_batch():
    events = []
    x = np.zeros((1, 3, 64, 64), np.float32)
    tile_process(x, nearest_fn, scale=SCALE, tile=16, tile_pad=0, multiple_of=16, batch_size=3,
                 progress=lambda done, total: events.append((done, total)))
    total = events[-1][1]
    assert total == 16 and events[-1][0] == total
    assert [d for d, _ in events] == sorted(d for d, _ in events)


def test_wrong_output_shape_is_a_clear_error():
    x = np.zeros((1, 3, 16, 16), np.float32)
    with pytest.raises(UGTSRError, match="expected"):
        tile_process(x, lambda b: b, scale=SCALE, tile=0, multiple_of=16)
    with pytest.raises(UnsupportedInputError):
        tile_process(np.zeros((2, 3, 16, 16), np.float32), nearest_fn, scale=SCALE, tile=0)
    with pytest.raises(UnsupportedInputError):
        tile_process(x, nearest_fn, scale=SCALE, tile=8, blend="gaussian")


# ---- whole-image statistics: measured, and seams hidden -------------------------------------------------
def _seam_jump(err: np.ndarray) -> float:
    """Largest jump between neighbouring pixels of an error map (a hard seam is a step)."""
    return float(max(np.abs(np.diff(err, axis=-1)).max(), np.abs(np.diff(err, axis=-2)).max()))


def test_whole_image_statistics_model_tiled_vs_untiled(record_property, capsys):
    x = smooth_image(96, 128)
    kw = dict(scale=SCALE, multiple_of=16, min_size=16)
    whole = tile_process(x, stats_fn, tile=0, **kw)
    np.testing.assert_allclose(whole, stats_fn(x), atol=1e-6)  # untiled is the reference model
    report = {}
    for blend in ("none", "linear", "feather"):
        tiled = tile_process(x, stats_fn, tile=32, tile_pad=16, blend=blend, **kw)
        err = (tiled - whole)[0].mean(axis=0)
        report[blend] = (psnr(np.clip(tiled, 0, 1), np.clip(whole, 0, 1)), _seam_jump(err))
        record_property(f"psnr_tiled_vs_untiled_{blend}", round(report[blend][0], 2))
    with capsys.disabled():
        print("\n[tiling] whole-image-statistics model, 96x128 input, tile 32, tile_pad 16: "
              + ", ".join(f"{b}: PSNR {p:.2f} dB, max seam step {j:.4f}" for b, (p, j) in report.items()))
    # tiling really changes such a model (so the measurement is meaningful) ...
    assert all(np.isfinite(p) and p < 80 for p, _ in report.values())
    # ... and feathering turns the hard seams into ramps: much smaller pixel-to-pixel steps
    assert report["feather"][1] < report["none"][1] / 4
    assert report["linear"][1] < report["none"][1] / 4


# ---- choose_tile -------------------------------------------------------------------------------------------
def test_choose_tile_no_tiling_when_it_fits():
    assert choose_tile(100, 200, bytes_per_pixel_estimate=1000, available_bytes=10**9) == 0


def test_choose_tile_largest_fitting_multiple():
    bpp, avail, pad = 1000.0, 10**8, 16
    tile = choose_tile(4000, 3000, bytes_per_pixel_estimate=bpp, available_bytes=avail, multiple_of=16,
                       tile_pad=pad, memory_fraction=0.5)
    assert tile > 0 and tile % 16 == 0
    window = -(-(tile + 2 * pad) // 16) * 16
    assert window**2 * bpp <= 0.5 * avail
    bigger = -(-(tile + 16 + 2 * pad) // 16) * 16
    assert bigger**2 * bpp > 0.5 * avail


def test_choose_tile_respects_backend_max_shape_and_floor():
    tile = choose_tile(300, 300, bytes_per_pixel_estimate=1, available_bytes=10**12, multiple_of=16,
                       tile_pad=10, max_hw=(128, 128))
    assert 0 < tile and -(-(tile + 20) // 16) * 16 <= 128
    assert choose_tile(5000, 5000, bytes_per_pixel_estimate=10**9, available_bytes=10**9, multiple_of=16) == 16


def test_available_memory_is_known_on_linux():
    mem = available_memory_bytes()
    assert mem is None or mem > 0
