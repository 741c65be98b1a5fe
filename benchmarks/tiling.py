"""Tiled versus whole-image inference: how much tiling changes the output (PSNR between them).

    python -m benchmarks.tiling --model runtime/models/ugtsr_tiny_x4.onnx --data data/photos/val

``--as-is`` feeds the photos themselves (hundreds of pixels a side) so that tiles are much smaller
than the image. GroupNorm and MDTA use whole-image statistics and codebook matching is a hard argmin, so a tile
does not see what the whole image sees and the outputs differ. For every photo the LR input (the
seeded BSRGAN degradation used by ``benchmarks.quality``) is upscaled once whole (``tile=0``) and
once per tiling setting; PSNR is computed between the two uint8 outputs (RGB, no crop), together
with the largest jump across a tile seam. The ``auto`` row is what ``runtime.infer`` does by
default on this machine (no tiling when the image fits the memory budget).
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from ugtsr.errors import ConfigError

from ._common import (
    format_table,
    markdown_table,
    record_header,
    result_paths,
    run_main,
    write_csv,
    write_json,
    write_text,
)

__all__ = ["main"]


def _psnr_u8(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def _lr_of(path: Path, seed: int, scale: int) -> np.ndarray:
    import cv2

    from ugtsr.degrade import PIPELINES

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    pair = PIPELINES["bsrgan"](bgr[..., ::-1].astype(np.float32) / 255.0, scale=scale, rng=np.random.default_rng(seed))
    return np.round(pair.lr[..., ::-1] * 255.0).astype(np.uint8)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.tiling", description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="model file (default: the shipped model)")
    p.add_argument("--data", required=True, type=Path, help="folder of HR photos")
    p.add_argument("--tiles", nargs="+", type=int, default=[64, 128], help="tile sizes in LR pixels")
    p.add_argument("--pads", nargs="+", type=int, default=[16, 32, 64], help="tile_pad values")
    p.add_argument("--blend", default="feather", choices=("feather", "linear", "none"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--as-is", action="store_true",
                   help="use each photo itself as the model input (large natural inputs), not its degraded LR")
    p.add_argument("--tag", default="default")
    p.add_argument("--out-dir", default=None)
    return p


def _run(args: argparse.Namespace, argv: list[str] | None) -> int:
    import cv2

    from runtime import Upscaler
    from runtime.backends import load_backend
    from runtime.upscaler import default_model_path

    if any(t < 1 for t in args.tiles) or any(pd < 0 for pd in args.pads):
        raise ConfigError("--tiles must be >= 1 and --pads >= 0")
    photos = sorted(q for q in args.data.rglob("*") if q.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not photos:
        raise ConfigError(f"{args.data}: no .png/.jpg photos found")
    settings = [("auto", None, 32)] + [(f"{t}/{pd}", t, pd) for t in args.tiles for pd in args.pads]
    rows: list[dict[str, Any]] = []
    # One model session serves the whole-image reference and every tiling setting.
    with load_backend(str(args.model or default_model_path())) as backend:
        whole = Upscaler(backend, tile=0)
        upscalers = {name: Upscaler(backend, tile=tile, tile_pad=pad, blend=args.blend)
                     for name, tile, pad in settings}
        for i, photo in enumerate(photos):
            lr = (cv2.imread(str(photo), cv2.IMREAD_COLOR) if args.as_is
                  else _lr_of(photo, args.seed + i, whole.info.scale))
            ref = whole.upscale(lr)
            h, w = lr.shape[:2]
            auto_tile = whole.tile_for(h, w)
            for name, _, pad in settings:
                up = upscalers[name]
                t0 = time.perf_counter()
                out = up.upscale(lr)
                secs = time.perf_counter() - t0
                used = up.tile_for(h, w)
                psnr = _psnr_u8(out, ref)
                rows.append({"photo": photo.stem, "lr_size": f"{w}x{h}", "setting": name, "tile": used or 0,
                             "tile_pad": pad, "blend": args.blend, "psnr_vs_whole_db": None if math.isinf(psnr) else round(psnr, 2),
                             "identical": bool(np.array_equal(out, ref)), "seconds": round(secs, 2),
                             "auto_tile": auto_tile or 0})
                print(f"{photo.stem:12} {name:8} tile {used or 0:4d} pad {pad:3d}: "
                      f"{'identical' if math.isinf(psnr) else f'{psnr:.2f} dB'}", flush=True)
    summary = []
    for name in dict.fromkeys(r["setting"] for r in rows):
        sel = [r for r in rows if r["setting"] == name]
        finite = [r["psnr_vs_whole_db"] for r in sel if r["psnr_vs_whole_db"] is not None]
        summary.append({"setting": name, "photos": len(sel), "identical": sum(r["identical"] for r in sel),
                        "min_psnr_db": min(finite) if finite else None,
                        "mean_psnr_db": round(sum(finite) / len(finite), 2) if finite else None})
    cols = ["setting", "photos", "identical", "min_psnr_db", "mean_psnr_db"]
    print(format_table(summary, cols))
    paths = result_paths(args.out_dir, "tiling", args.tag)
    record = record_header("tiling", "benchmarks.tiling", argv, model=str(args.model or "default"),
                           note="PSNR between tiled and whole-image uint8 outputs; 'identical' rows have no tiling "
                                "or an exactly equal result (infinite PSNR, reported as null)")
    record.update(rows=rows, summary=summary)
    write_json(paths["json"], record)
    write_csv(paths["csv"], rows)
    write_text(paths["md"], markdown_table(summary, cols) + "\n")
    print(f"wrote {paths['json']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main("tiling", _parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
