"""Command line: ``python -m runtime.infer INPUT... [-o OUT_DIR] [options]`` (also ``ugtsr-infer``).

Inputs are image files, folders (their images, non-recursively: files with an image extension, hidden
files skipped) and glob patterns (expanded here, so quoted patterns such as ``'photos/*.jpg'`` work too),
given as arguments or with ``-i/--input``. Each output is ``OUT_DIR/<stem>[_<suffix>].<ext>``
(``OUT_DIR`` defaults to ``results/``); ``--ext auto`` keeps the input's format where it can hold the
result (BMP/GIF/PNM inputs, and alpha, 16-bit or gray images that JPEG/WebP cannot store, are written as PNG).
``--save-uncertainty`` also writes ``<stem>[_<suffix>]_uncertainty.png``: the model's per-pixel
``s = ln theta`` (mean over RGB) normalised per image between its 1st and 99th percentiles and coloured
with ``COLORMAP_INFERNO`` (bright = less certain; the colours are not comparable across images).

Real-ESRGAN's ``inference_realesrgan.py`` spellings work too: ``-i``, ``-o``, ``-n/--model-name``,
``-s`` (outscale), ``-t`` (tile), ``--tile_pad``, ``-g/--gpu-id``, ``--fp32``, ``--suffix out``.

Rules (``runtime.files``): no input file is ever written over, whichever input would produce it (same
name, another input's output name, hard links, symlinks; even with ``--overwrite``); an existing output
is skipped unless ``--overwrite``; outputs are written atomically (no partial files); temporary files of
earlier killed runs are removed. Every bad input gets exactly one line on stderr naming the file and the
problem, and the batch goes on. Ctrl-C / SIGTERM drop the image in progress (nothing partial is left),
print the summary and exit 130 / 143.

Exit status: 0 when every input was processed or skipped, 1 when any input failed (or the output folder
cannot be created), 2 for usage errors and models that cannot be loaded, 130 / 143 when interrupted.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ugtsr.errors import UGTSRError, require

from .backends import BACKENDS
from .console import Console
from .files import (
    InputSet,
    collect_inputs,
    display,
    ensure_folder,
    output_path,
    remove_stale_temp_files,
)
from .imageio import DEFAULT_MAX_PIXELS, read_image, write_image
from .models import DEFAULT_MODEL, SHIPPED_MODELS, models_folder, shipped_model_path
from .tiling import BLEND_MODES
from .upscaler import Upscaler

__all__ = ["main", "collect_inputs", "output_path", "uncertainty_heatmap", "join_suffix", "DEFAULT_OUTPUT"]

# not __name__: under ``python -m`` that is "__main__", outside the "runtime" logger the CLI listens to
logger = logging.getLogger("runtime.infer")

_EXT_CHOICES = ("auto", "png", "jpg", "webp", "tif")
DEFAULT_OUTPUT = "results"
_EXIT_FOR_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m runtime.infer",
        description="Super-resolve images with a UGTSR model (ONNX Runtime, TensorRT or PyTorch).",
        epilog="Exit status: 0 all processed or skipped, 1 some input failed, 2 usage or model error, "
               "130/143 interrupted (SIGINT/SIGTERM).",
    )
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="image files, folders (non-recursive) or glob patterns")
    p.add_argument("-i", "--input", action="append", default=[], metavar="INPUT", dest="more_inputs",
                   help="an input (file, folder or pattern) as a flag; may be repeated")
    p.add_argument("-o", "--output", default=DEFAULT_OUTPUT, metavar="OUT_DIR",
                   help=f"output folder (created if needed; default {DEFAULT_OUTPUT}/)")
    p.add_argument("--model", metavar="PATH", help="model: .onnx, .pt/.pth or .plan/.engine (default: the shipped model)")
    p.add_argument("-n", "--model-name", "--model_name", dest="model_name", metavar="NAME",
                   help=f"a shipped model by name (default {DEFAULT_MODEL}; see --list-models)")
    p.add_argument("--list-models", action="store_true", help="list the shipped models and exit")
    p.add_argument("--server", default=None, metavar="HOST:PORT",
                   help="upscale on a Triton server (python -m runtime.serve) instead of a local model")
    p.add_argument("--protocol", default="grpc", choices=("grpc", "http"),
                   help="with --server: gRPC (Triton port 8001, default) or HTTP (port 8000)")
    p.add_argument("--backend", default="auto", choices=("auto", *BACKENDS), help="default: by model extension")
    p.add_argument("-t", "--tile", type=int, default=None, metavar="N",
                   help="tile size in input pixels; 0 = off; default: automatic (no tiling when it fits in memory)")
    p.add_argument("--tile-pad", "--tile_pad", dest="tile_pad", type=int, default=32, metavar="N",
                   help="context around each tile (default 32)")
    p.add_argument("--batch-size", type=int, default=1, metavar="N", help="tiles per model call (default 1)")
    p.add_argument("--blend", default="feather", choices=BLEND_MODES, help="tile blending (default feather)")
    p.add_argument("-s", "--outscale", type=float, default=None, metavar="X",
                   help="final scale relative to the input (default: the model's scale)")
    p.add_argument("--ext", default="auto", choices=_EXT_CHOICES, help="output format (default: like the input)")
    p.add_argument("--suffix", default="", metavar="S",
                   help="added to each output stem: 'out' gives photo_out.png ('_x4' or '-x4' are used as given)")
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
    p.add_argument("-g", "--gpu-id", "--gpu_id", dest="gpu_id", type=int, default=None, metavar="N",
                   help="GPU index (same as --device cuda:N)")
    precision = p.add_mutually_exclusive_group()
    precision.add_argument("--fp16", action="store_true",
                           help="half precision (torch backend on CUDA; ONNX Runtime's TensorRT provider)")
    precision.add_argument("--fp32", action="store_true", help="full precision (the default; for Real-ESRGAN habits)")
    p.add_argument("--threads", type=int, default=None, metavar="N", help="ONNX Runtime intra-op threads")
    p.add_argument("--quiet", action="store_true", help="no progress bars and no summary; errors only")
    p.add_argument("--debug", action="store_true", help="show tracebacks of unexpected errors")
    return p


def join_suffix(suffix: str) -> str:
    """``"out"`` -> ``"_out"`` (Real-ESRGAN's ``<name>_<suffix>``); ``"_x4"``, ``"-x4"``, ``".sr"`` as given."""
    return "_" + suffix if suffix and suffix[0].isalnum() else suffix


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


class _Interrupted(BaseException):
    """Raised in the main thread by SIGINT / SIGTERM (BaseException: no ``except Exception`` eats it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _signals_interrupt() -> Iterator[None]:
    """While active, the first SIGINT or SIGTERM raises :class:`_Interrupted`; later ones are ignored
    so that cleanup and the summary are not interrupted themselves. Main thread only (elsewhere a
    KeyboardInterrupt is still handled as SIGINT)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired: list[int] = []

    def handler(signum: int, _frame: object) -> None:
        if not fired:
            fired.append(signum)
            raise _Interrupted(signum)

    previous = {}
    for sig in _EXIT_FOR_SIGNAL:
        with contextlib.suppress(ValueError, OSError):
            previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            with contextlib.suppress(ValueError, OSError):
                signal.signal(sig, old)


@contextlib.contextmanager
def _quiet_opencv_log() -> Iterator[None]:
    """OpenCV's own log (``[ WARN:0@...]``/``[ERROR:0@...]`` lines from libtiff and the codecs) off while the
    CLI runs: every problem is reported in the CLI's one line per file. Process-wide, so only the CLI does
    this; :func:`runtime.read_image` as a library leaves the setting alone."""
    try:
        import cv2

        logging_api = cv2.utils.logging
        previous = logging_api.getLogLevel()
        logging_api.setLogLevel(logging_api.LOG_LEVEL_SILENT)
    except (ImportError, AttributeError):
        yield
        return
    try:
        yield
    finally:
        logging_api.setLogLevel(previous)


class _Reporter(Console):
    """Prints one-line messages without breaking tqdm bars, and counts outcomes."""

    def __init__(self, quiet: bool) -> None:
        super().__init__(quiet)
        self.processed = self.skipped = self.failed = 0

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
            bar = state["bar"] = reporter.tqdm(total=total, desc=f"  {display(name)}", unit="tile", leave=False,
                                               disable=None)  # None: no bar when stderr is not a terminal
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return update


class _Batch:
    """One run's state: the protected inputs and the outputs written so far."""

    def __init__(self, args: argparse.Namespace, up: Upscaler, out_dir: Path, inputs: InputSet,
                 reporter: _Reporter) -> None:
        self.args, self.up, self.out_dir, self.inputs, self.reporter = args, up, out_dir, inputs, reporter
        self.suffix = join_suffix(args.suffix)
        self.produced: dict[str, Path] = {}

    def _refused(self, src: Path, target: Path) -> bool:
        """Fail ``src`` when ``target`` is an input of this run or an output already written by it."""
        victim = self.inputs.which(target)
        if victim is not None:
            self.reporter.fail(f"{src}: refusing to overwrite the input file {victim} with the output {target} "
                               "(inputs are never overwritten: use another -o folder or a --suffix)")
            return True
        other = self.produced.get(str(target.resolve()))
        if other is not None:
            self.reporter.fail(f"{src}: output {target} was already written for {other} in this run "
                               "(same name; use --suffix or separate runs)")
            return True
        return False

    def process(self, src: Path) -> None:
        args, reporter = self.args, self.reporter
        provisional = output_path(src, self.out_dir, ext=args.ext, suffix=self.suffix)
        if self._refused(src, provisional):
            return
        if provisional.exists() and not args.overwrite:
            reporter.skip(f"{src}: output {provisional} exists (use --overwrite)")
            return
        image = read_image(src, max_pixels=args.max_pixels or None)
        out = output_path(src, self.out_dir, ext=args.ext, suffix=self.suffix, image=image)
        if args.ext != "auto" and out.suffix != "." + args.ext:
            logger.warning("%s: %s cannot store this image (alpha, 16-bit or gray); writing %s", src, args.ext, out.name)
        heat = out.with_name(f"{out.stem}_uncertainty.png") if args.save_uncertainty else None
        for target in (out, heat):
            if target is not None and target != provisional and self._refused(src, target):
                return
        existing = [t for t in (out, heat) if t is not None and t.exists()]
        if existing and not args.overwrite:
            reporter.skip(f"{src}: output {existing[0]} exists (use --overwrite)")
            return
        progress = _tile_progress(reporter, src.name)
        if heat is not None:
            result, unc = self.up.upscale_with_uncertainty(image, progress=progress)
        else:
            result, unc = self.up.upscale(image, progress=progress), None
        del image
        # the targets are checked again right before writing: another process may have made one a link
        for target in (out, heat):
            if target is not None and self._refused(src, target):
                return
        write_image(out, result, quality=args.quality)
        if heat is not None and unc is not None:
            try:
                write_image(heat, uncertainty_heatmap(unc))
            except BaseException:
                out.unlink(missing_ok=True)  # no half-done pair
                raise
        for target in (out, heat):
            if target is not None:
                self.produced[str(target.resolve())] = src
        reporter.processed += 1


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 1 some input failed, 2 usage or model error,
    130 / 143 interrupted by SIGINT / SIGTERM)."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.list_models:
        return _list_models()
    args.inputs = [*args.inputs, *args.more_inputs]
    if not args.inputs:
        parser.error("no INPUT given (image files, folders or patterns, or -i INPUT)")
    if args.model and args.model_name:
        parser.error("use either --model PATH or -n/--model-name NAME, not both")
    reporter = _Reporter(args.quiet)
    handler = _LogHandler(reporter)
    package_logger = logging.getLogger("runtime")
    package_logger.addHandler(handler)
    start = time.perf_counter()
    state: dict = {"files": 0, "out_dir": Path(args.output)}
    try:
        with _signals_interrupt(), _quiet_opencv_log():
            return _run(args, reporter, state)
    except (_Interrupted, KeyboardInterrupt) as exc:
        signum = exc.signum if isinstance(exc, _Interrupted) else signal.SIGINT
        name = signal.Signals(signum).name
        done = reporter.processed + reporter.skipped + reporter.failed
        left = max(0, state["files"] - done)
        reporter.write(f"interrupted: {name}; the image in progress was dropped (no partial file), "
                       f"{left} not processed")
        if not args.quiet:
            _summary(reporter, start, state["out_dir"])
        return _EXIT_FOR_SIGNAL.get(signum, 130)
    finally:
        package_logger.removeHandler(handler)


def _list_models() -> int:
    folder = models_folder()
    for name, model in SHIPPED_MODELS.items():
        files = [f for f in (model.onnx, model.checkpoint) if f]
        present = ", ".join(f if (folder / f).is_file() else f"{f} (missing)" for f in files)
        default = " [default]" if name == DEFAULT_MODEL else ""
        print(f"{name}{default}: x{model.scale}, {model.description}; files: {present}")
    return 0


def _summary(reporter: _Reporter, start: float, out_dir: Path) -> None:
    elapsed = time.perf_counter() - start
    reporter.write(f"done: {reporter.processed} processed, {reporter.skipped} skipped, {reporter.failed} failed "
                   f"in {elapsed:.1f} s -> {out_dir}", err=False)


def _usage_problem(args: argparse.Namespace) -> str | None:
    for name in ("tile_pad", "max_pixels"):
        if getattr(args, name) < 0:
            return f"--{name.replace('_', '-')} must be >= 0"
    if args.batch_size < 1:
        return "--batch-size must be >= 1"
    if not 1 <= args.quality <= 100:
        return "--quality must be in [1, 100]"
    if args.server and (args.model or args.model_name or args.outscale is not None):
        return "--server uses the server's model at its scale: drop --model, --model-name and --outscale"
    if args.gpu_id is not None:
        if args.gpu_id < 0:
            return "-g/--gpu-id must be >= 0"
        if args.device not in (None, "cuda", f"cuda:{args.gpu_id}"):
            return f"-g/--gpu-id {args.gpu_id} contradicts --device {args.device}"
        args.device = f"cuda:{args.gpu_id}"
    return None


def _model_path(args: argparse.Namespace) -> str | None:
    if args.model:
        return args.model
    if args.model_name or args.backend == "torch":
        return str(shipped_model_path(args.model_name or DEFAULT_MODEL, backend=args.backend))
    return None  # Upscaler's default (the shipped ONNX model)


def _run(args: argparse.Namespace, reporter: _Reporter, state: dict) -> int:
    problem = _usage_problem(args)
    if problem:
        reporter.write(f"error: {problem}")
        return 2
    start = time.perf_counter()
    try:
        if args.server:  # the model, tiling and backend are the server's
            up = Upscaler(server=args.server, protocol=args.protocol)
        else:
            up = Upscaler(_model_path(args), backend=args.backend, tile=args.tile, tile_pad=args.tile_pad,
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
            ensure_folder(out_dir)
        except UGTSRError as exc:
            reporter.write(f"error: {str(exc).replace('cannot create the folder', 'cannot create the output folder')}")
            return 1
        remove_stale_temp_files(out_dir)
        files, problems = collect_inputs(args.inputs)
        state["files"] = len(files) + len(problems)
        for problem in problems:
            reporter.fail(problem)
        if not files and not problems:
            reporter.write("error: no input images found")
            return 1
        batch = _Batch(args, up, out_dir, InputSet(files), reporter)
        bar = None
        if reporter.tqdm is not None and not args.quiet and len(files) > 1:
            bar = reporter.tqdm(total=len(files), unit="img", desc="upscaling", disable=None)
        try:
            for src in files:
                _process_reporting(batch, src)
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
    if not args.quiet:
        _summary(reporter, start, out_dir)
    return 1 if reporter.failed else 0


def _process_reporting(batch: _Batch, src: Path) -> None:
    """Process one input; any problem becomes one ``error:`` line (a traceback only with --debug)."""
    reporter = batch.reporter
    try:
        batch.process(src)
    except UGTSRError as exc:
        msg = str(exc)
        reporter.fail(msg if str(src) in msg or display(src) in msg else f"{src}: {msg}")
    except MemoryError:
        reporter.fail(f"{src}: out of memory (try a smaller --tile or --max-pixels)")
    except Exception as exc:  # one line per input, never a traceback (unless --debug)
        if batch.args.debug:
            raise
        reporter.fail(f"{src}: unexpected error ({type(exc).__name__}: {' '.join(str(exc).split())}); "
                      "rerun with --debug for details")


if __name__ == "__main__":
    sys.exit(main())
