"""Degrade a folder of HR images into LR images (and aligned HR crops): the Table I data protocol.

    python -m ugtsr.degrade HR_DIR -o LR_DIR --scale 4 --pipeline bsrgan_plus --seed 0 [--hr-out DIR]

- Recursive over png, jpg, jpeg, bmp, tif, tiff, webp (case-insensitive; hidden files skipped).
- ``LR_DIR/<relative path>.png``: the LR image, 8-bit RGB PNG (grey inputs become RGB, alpha dropped).
- ``--hr-out DIR``: ``DIR/<relative path>.png``, the HR mod-cropped to a multiple of ``--scale`` (never
  sharpened), so LR and HR are pixel-aligned; 16-bit inputs stay 16-bit.
- Each image's random generator is seeded from ``(--seed, relative path)`` through SHA-256, so an
  image's LR depends neither on the file order nor on the other files, and a rerun is byte-identical.
- Existing outputs are kept (the run resumes) unless ``--overwrite``.
- Files are read through the runtime's checked reader: the size is checked from the header before
  decoding, over ``--max-pixels`` (default 4096 x 4096) a file is refused without being decoded.
- A file that cannot be read or degraded prints one line to stderr and is skipped; the others are
  written; the exit status is then 1. Outputs are written to a temp file and renamed, so an
  interrupted run leaves no partial image. Usage or setup errors exit with status 2.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

from ..errors import ConfigError, UGTSRError, require
from . import PIPELINES, SCALES
from ._io import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    float_to_image,
    image_to_float,
    list_images,
    read_image,
    write_png_atomic,
)
from ._ops import rng_from_key

__all__ = ["main"]

logger = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ugtsr.degrade",
        description="Synthesize LR images from a folder of HR images with a blind-SR degradation pipeline.",
    )
    p.add_argument("hr_dir", metavar="HR_DIR", type=Path, help="folder of HR images (searched recursively)")
    p.add_argument("-o", "--output", metavar="LR_DIR", type=Path, required=True,
                   help="where to write the LR PNGs (same relative paths)")
    p.add_argument("--scale", type=int, choices=SCALES, required=True, help="downscaling factor")
    p.add_argument("--pipeline", choices=sorted(PIPELINES), required=True, help="degradation model")
    p.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    p.add_argument("--hr-out", metavar="DIR", type=Path, default=None,
                   help="also write the mod-cropped HR images here, aligned with the LR")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs instead of skipping")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, metavar="N",
                   help=f"refuse inputs of more than N pixels, checked from the header before decoding "
                        f"(default {DEFAULT_MAX_PIXELS}; 0 = no limit)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary line")
    return p


def _check_folders(hr_dir: Path, lr_dir: Path, hr_out: Path | None) -> None:
    if not hr_dir.is_dir():
        raise ConfigError(f"{hr_dir}: input folder does not exist")
    src = hr_dir.resolve()
    if lr_dir.resolve() == src:
        raise ConfigError(f"{lr_dir}: the LR folder must differ from the HR folder")
    if hr_out is not None:
        if hr_out.resolve() == src:
            raise ConfigError(f"{hr_out}: --hr-out must differ from the HR folder (it would overwrite the inputs)")
        if hr_out.resolve() == lr_dir.resolve():
            raise ConfigError(f"{hr_out}: --hr-out must differ from the LR folder")


def _run(args: argparse.Namespace) -> int:
    hr_dir, lr_dir, hr_out = args.hr_dir, args.output, args.hr_out
    _check_folders(hr_dir, lr_dir, hr_out)
    if args.max_pixels < 0:
        raise ConfigError(f"--max-pixels must be >= 0 (0 = no limit), got {args.max_pixels}")
    max_pixels = args.max_pixels or None
    tqdm = require("tqdm", extra="train", purpose="the progress bar").tqdm
    require("cv2", extra="train", purpose="reading and writing images")

    files = list_images(hr_dir, exclude=[d for d in (lr_dir, hr_out) if d is not None])
    if not files:
        raise ConfigError(f"{hr_dir}: no image files ({', '.join(e[1:] for e in IMAGE_EXTENSIONS)}) found")
    pipeline = PIPELINES[args.pipeline]

    failed = written = kept = 0

    def fail(msg: str) -> None:
        nonlocal failed
        failed += 1
        tqdm.write(msg, file=sys.stderr)

    claimed: dict[str, Path] = {}
    bar = tqdm(files, desc=f"{args.pipeline} x{args.scale}", unit="img", disable=True if args.quiet else None)
    for path in bar:
        rel = path.relative_to(hr_dir)
        out_rel = rel.with_suffix(".png").as_posix()
        if out_rel in claimed:  # e.g. a.jpg and a.png
            fail(f"{path}: skipped, its output name {out_rel} is already used by {claimed[out_rel]}")
            continue
        claimed[out_rel] = path
        lr_path = lr_dir / out_rel
        hr_path = hr_out / out_rel if hr_out is not None else None
        if not args.overwrite and lr_path.exists() and (hr_path is None or hr_path.exists()):
            kept += 1
            continue
        try:
            raw = read_image(path, max_pixels=max_pixels)
            rng = rng_from_key(args.seed, rel.as_posix())
            pair = pipeline(image_to_float(raw), scale=args.scale, rng=rng)
            write_png_atomic(lr_path, float_to_image(pair.lr, np.uint8))
            if hr_path is not None:
                depth = np.uint8 if raw.dtype == np.uint8 else np.uint16
                write_png_atomic(hr_path, float_to_image(pair.hr, depth))
        except UGTSRError as exc:
            msg = str(exc)
            fail(msg if msg.startswith(str(path)) else f"{path}: {msg}")
            continue
        except OSError as exc:
            fail(f"{path}: cannot write output ({exc.strerror or exc})")
            continue
        written += 1

    if not args.quiet:
        line = f"{args.pipeline} x{args.scale} seed {args.seed}: wrote {written} LR image(s) to {lr_dir}"
        if hr_out is not None:
            line += f" and HR to {hr_out}"
        if kept:
            line += f"; kept {kept} existing (use --overwrite to redo)"
        if failed:
            line += f"; {failed} failed"
        print(line)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m ugtsr.degrade``; returns the exit status (0 ok, 1 some files failed,
    2 usage or setup error)."""
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except UGTSRError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
