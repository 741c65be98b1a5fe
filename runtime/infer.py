"""Command line: ``python -m runtime.infer INPUT... -o OUT_DIR [options]``.

Inputs are image files, folders (their images, non-recursively: files with an image extension, hidden
files skipped) and glob patterns (expanded here, so quoted patterns such as ``'photos/*.jpg'`` work too).
Each output is ``OUT_DIR/<stem><suffix>.<ext>``; ``--ext auto`` keeps the input's format where it can
hold the result (BMP/GIF/PNM inputs, and alpha or 16-bit images that JPEG/WebP cannot store, are written
as PNG). ``--save-uncertainty`` also writes ``<stem><suffix>_uncertainty.png``: the model's per-pixel
``s = ln theta`` (mean over RGB) normalised per image between its 1st and 99th percentiles and coloured with ``COLORMAP_INFERNO``
(bright = less certain; the colours are not comparable across images).

Rules: an input file is never overwritten (even with ``--overwrite``); an existing output is skipped
unless ``--overwrite``; outputs are written atomically (no partial files). Every bad input gets exactly
one line on stderr naming the file and the problem, and the batch goes on.

Exit status: 0 when every input was processed or skipped, 1 when any input failed (or the output folder
cannot be created), 2 for usage errors and models that cannot be loaded.
"""
from __future__ import annotations

import argparse
import glob
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ugtsr.errors import UGTSRError, require

from .backends import BACKENDS
from .imageio import DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS, WRITE_FORMATS, read_image, write_image
from .tiling import BLEND_MODES
from .upscaler import Upscaler

__all__ = ["main", "collect_inputs", "output_path", "uncertainty_heatmap"]

logger = logging.getLogger(__name__)

_EXT_CHOICES = ("auto", "png", "jpg", "webp", "tif")


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m runtime.infer",
        description="Super-resolve images with a UGTSR model (ONNX Runtime, TensorRT or PyTorch).",
        epilog="Exit status: 0 all processed or skipped, 1 some input failed, 2 usage or model error.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders (non-recursive) or glob patterns")
    p.add_argument("-o", "--output", required=True, metavar="OUT_DIR", help="output folder (created if needed)")
    p.add_argument("--model", metavar="PATH", help="model: .onnx, .pt/.pth or .plan/.engine (default: the shipped model)")
    p.add_argument("--backend", default="auto", choices=("auto", *BACKENDS), help="default: by model extension")
    p.add_argument("--tile", type=int, default=None, metavar="N",
                   help="tile size in input pixels; 0 = off; default: automatic (no tiling when it fits in memory)")
    p.add_argument("--tile-pad", type=int, default=32, metavar="N", help="context around each tile (default 32)")
    p.add_argument("--batch-size", type=int, default=1, metavar="N", help="tiles per model call (default 1)")
    p.add_argument("--blend", default="feather", choices=BLEND_MODES, help="tile blending (default feather)")
    p.add_argument("--outscale", type=float, default=None, metavar="X",
                   help="final scale relative to the input (default: the model's scale)")
    p.add_argument("--ext", default="auto", choices=_EXT_CHOICES, help="output format (default: like the input)")
    p.add_argument("--suffix", default="", metavar="S", help="appended to each output stem (default: none)")
    p.add_argument("--quality", type=int, default=95, metavar="Q", help="JPEG/WebP quality 1-100 (default 95)")
    p.add_argument("--alpha-upsampler", default="linear", choices=("linear", "model"),
                   help="how to upscale an alpha channel (default linear)")
    p.add_argument("--save-uncertainty", action="store_true",
                   help="also write <stem><suffix>_uncertainty.png (heat map, per-image 1st-99th percentile range)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs (inputs are never replaced)")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, metavar="N",
                   help=f"refuse inputs with more pixels (default {DEFAULT_MAX_PIXELS}; 0 = no limit)")
    p.add_argument("--providers", default=None, metavar="LIST",
                   help="ONNX Runtime providers, comma-separated: cpu, cuda, tensorrt or full names (default cpu)")
    p.add_argument("--device", default=None, metavar="DEV", help="cpu, cuda or cuda:N")
    p.add_argument("--fp16", action="store_true", help="half precision (torch backend; TensorRT provider)")
    p.add_argument("--threads", type=int, default=None, metavar="N", help="ONNX Runtime intra-op threads")
    p.add_argument("--quiet", action="store_true", help="no progress bars and no summary; errors only")
    p.add_argument("--debug", action="store_true", help="show tracebacks of unexpected errors")
    return p


def collect_inputs(specs: Sequence[str]) -> tuple[list[Path], list[str]]:
    """Expand files, folders (non-recursive) and glob patterns into a de-duplicated, ordered file list.

    Returns ``(files, problems)``; a problem is a one-line message for a pattern that matches nothing.
    Paths that do not exist are kept, so that reading them reports the missing file.
    """
    files: list[Path] = []
    problems: list[str] = []

    def folder_images(folder: Path) -> list[Path]:
        found = sorted(f for f in folder.iterdir()
                       if not f.name.startswith(".") and f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file())
        if not found:
            logger.warning("%s: folder contains no images (%s)", folder, ", ".join(IMAGE_EXTENSIONS))
        return found

    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            files.extend(folder_images(path))
        elif path.exists():
            files.append(path)
        elif any(ch in spec for ch in "*?["):
            matches = sorted(glob.glob(spec))
            if not matches:
                problems.append(f"{spec}: no files match this pattern")
            for match in matches:
                m = Path(match)
                files.extend(folder_images(m) if m.is_dir() else [m])
        else:
            files.append(path)
    unique: list[Path] = []
    seen: set[str] = set()
    for f in files:
        key = os.path.realpath(f)
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique, problems


def output_path(src: Path, out_dir: Path, *, ext: str, suffix: str, image: np.ndarray | None = None) -> Path:
    """``out_dir/<stem><suffix>.<ext>``; ``ext="auto"`` keeps a writable input extension.

    With ``image``, a format that cannot hold it (alpha or 16-bit in JPEG, 16-bit in WebP) becomes PNG.
    """
    if ext == "auto":
        chosen = src.suffix.lower() if src.suffix.lower() in WRITE_FORMATS else ".png"
    else:
        chosen = "." + ext
    if image is not None:
        fmt = WRITE_FORMATS[chosen]
        has_alpha = image.ndim == 3 and image.shape[2] == 4
        if (fmt == "JPEG" and (has_alpha or image.dtype != np.uint8)) or (fmt == "WebP" and image.dtype != np.uint8):
            chosen = ".png"
    return out_dir / f"{src.stem}{suffix}{chosen}"


def uncertainty_heatmap(unc: np.ndarray) -> np.ndarray:
    """``(H, W)`` float uncertainty -> ``(H, W, 3)`` uint8 BGR heat map (INFERNO; bright = uncertain).

    Normalised per image between its 1st and 99th percentiles: a few extreme pixels (image borders,
    saturated highlights) would otherwise compress everything else into one colour.
    """
    cv2 = require("cv2", extra="runtime", purpose="heat maps")
    unc = np.nan_to_num(unc.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = (float(v) for v in np.percentile(unc, [1.0, 99.0]))
    norm = np.clip((unc - lo) / (hi - lo), 0.0, 1.0) if hi > lo else np.zeros_like(unc)
    return cv2.applyColorMap(np.rint(norm * 255).astype(np.uint8), cv2.COLORMAP_INFERNO)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


class _Reporter:
    """Prints one-line messages without breaking tqdm bars, and counts outcomes."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.processed = self.skipped = self.failed = 0
        try:
            from tqdm import tqdm
        except ImportError:  # tqdm is in the runtime extra; without it there are no bars
            tqdm = None
        self.tqdm = tqdm

    def write(self, msg: str, *, err: bool = True) -> None:
        stream = sys.stderr if err else sys.stdout
        if self.tqdm is not None:
            self.tqdm.write(msg, file=stream)
        else:
            print(msg, file=stream)

    def fail(self, msg: str) -> None:
        self.failed += 1
        self.write(f"error: {msg}")

    def skip(self, msg: str) -> None:
        self.skipped += 1
        if not self.quiet:
            self.write(f"skipped: {msg}")


class _LogHandler(logging.Handler):
    def __init__(self, reporter: _Reporter) -> None:
        super().__init__(logging.WARNING)
        self.reporter = reporter

    def emit(self, record: logging.LogRecord) -> None:
        self.reporter.write(f"{record.levelname.lower()}: {record.getMessage()}")


def _tile_progress(reporter: _Reporter, name: str):
    """A ``progress(done, total)`` callback showing a tile bar for images cut into several tiles."""
    state: dict = {}

    def update(done: int, total: int) -> None:
        if reporter.quiet or reporter.tqdm is None or total <= 1:
            return
        bar = state.get("bar")
        if bar is None:
            bar = state["bar"] = reporter.tqdm(total=total, desc=f"  {name}", unit="tile", leave=False,
                                               disable=None)  # None: no bar when stderr is not a terminal
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return update


def _collides(src: Path, out: Path, produced: dict[str, Path], reporter: _Reporter) -> bool:
    other = produced.get(os.path.realpath(out))
    if other is not None:
        reporter.fail(f"{src}: output {out} was already written for {other} in this run "
                      "(same name; use --suffix or separate runs)")
    return other is not None


def _process_one(src: Path, up: Upscaler, args: argparse.Namespace, out_dir: Path,
                 produced: dict[str, Path], reporter: _Reporter) -> None:
    provisional = output_path(src, out_dir, ext=args.ext, suffix=args.suffix)
    if _collides(src, provisional, produced, reporter):
        return
    if provisional.exists() and not args.overwrite and not _same_file(provisional, src):
        reporter.skip(f"{src}: output {provisional} exists (use --overwrite)")
        return
    image = read_image(src, max_pixels=args.max_pixels or None)
    out = output_path(src, out_dir, ext=args.ext, suffix=args.suffix, image=image)
    if args.ext != "auto" and out.suffix != "." + args.ext:
        logger.warning("%s: %s cannot store this image (alpha or 16-bit); writing %s", src, args.ext, out.name)
    heat = out.with_name(f"{out.stem}_uncertainty.png") if args.save_uncertainty else None
    for target in (out, heat):
        if target is not None and _same_file(target, src):
            reporter.fail(f"{src}: refusing to overwrite the input file (use another -o folder or a --suffix)")
            return
    if _collides(src, out, produced, reporter):
        return
    existing = [t for t in (out, heat) if t is not None and t.exists()]
    if existing and not args.overwrite:
        reporter.skip(f"{src}: output {existing[0]} exists (use --overwrite)")
        return
    progress = _tile_progress(reporter, src.name)
    if heat is not None:
        result, unc = up.upscale_with_uncertainty(image, progress=progress)
    else:
        result, unc = up.upscale(image, progress=progress), None
    write_image(out, result, quality=args.quality)
    if heat is not None and unc is not None:
        try:
            write_image(heat, uncertainty_heatmap(unc))
        except BaseException:
            out.unlink(missing_ok=True)  # no half-done pair
            raise
    produced[os.path.realpath(out)] = src
    reporter.processed += 1


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 1 some input failed, 2 usage or model error)."""
    args = _build_parser().parse_args(argv)
    reporter = _Reporter(args.quiet)
    handler = _LogHandler(reporter)
    package_logger = logging.getLogger("runtime")
    package_logger.addHandler(handler)
    try:
        return _run(args, reporter)
    finally:
        package_logger.removeHandler(handler)


def _run(args: argparse.Namespace, reporter: _Reporter) -> int:
    for name in ("tile_pad", "batch_size", "max_pixels"):
        if getattr(args, name) < 0 or (name == "batch_size" and args.batch_size < 1):
            reporter.write(f"error: --{name.replace('_', '-')} must be {'>= 1' if name == 'batch_size' else '>= 0'}")
            return 2
    if not 1 <= args.quality <= 100:
        reporter.write("error: --quality must be in [1, 100]")
        return 2
    start = time.perf_counter()
    try:
        up = Upscaler(args.model, backend=args.backend, tile=args.tile, tile_pad=args.tile_pad,
                      batch_size=args.batch_size, outscale=args.outscale, device=args.device,
                      providers=args.providers, fp16=args.fp16, threads=args.threads, blend=args.blend,
                      alpha_upsampler=args.alpha_upsampler)
    except UGTSRError as exc:
        reporter.write(f"error: {exc}")
        return 2
    with up:
        if args.save_uncertainty and not up.info.has_uncertainty:
            reporter.write(f"error: {up.info.source}: the model has no uncertainty output; "
                           "drop --save-uncertainty")
            return 2
        out_dir = Path(args.output)
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            reporter.write(f"error: {out_dir}: cannot create the output folder ({exc.strerror or exc})")
            return 1
        files, problems = collect_inputs(args.inputs)
        for problem in problems:
            reporter.fail(problem)
        if not files and not problems:
            reporter.write("error: no input images found")
            return 1
        produced: dict[str, Path] = {}
        bar = None
        if reporter.tqdm is not None and not args.quiet and len(files) > 1:
            bar = reporter.tqdm(total=len(files), unit="img", desc="upscaling", disable=None)
        for src in files:
            try:
                _process_one(src, up, args, out_dir, produced, reporter)
            except UGTSRError as exc:
                msg = str(exc)
                reporter.fail(msg if str(src) in msg else f"{src}: {msg}")
            except MemoryError:
                reporter.fail(f"{src}: out of memory (try a smaller --tile or --max-pixels)")
            except Exception as exc:  # one line per input, never a traceback (unless --debug)
                if args.debug:
                    raise
                reporter.fail(f"{src}: unexpected error ({type(exc).__name__}: {' '.join(str(exc).split())}); "
                              "rerun with --debug for details")
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
    elapsed = time.perf_counter() - start
    if not args.quiet:
        reporter.write(f"done: {reporter.processed} processed, {reporter.skipped} skipped, {reporter.failed} failed "
                       f"in {elapsed:.1f} s -> {out_dir}", err=False)
    return 1 if reporter.failed else 0


if __name__ == "__main__":
    sys.exit(main())
