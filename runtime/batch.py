"""Command line: ``python -m runtime.batch INPUT... -o OUT [--ray auto|local|ADDRESS] [options]``.

Upscales many images on Ray Data (https://docs.ray.io/en/latest/data/), on one machine or a cluster,
with the same model options, output names and file rules as :mod:`runtime.infer`. The pipeline is
declarative; scheduling, placement, back-pressure and retries are Ray's:

    plan (driver: list inputs, name outputs, skip what exists, manifest of earlier runs)
      -> ray.data.from_items(pending)
      -> .map(_read_row)                      read + validate (header check, pixel limit): runtime.imageio
      -> .map_batches(_UpscaleWorker, ...)    actor pool, one runtime.Upscaler (one Backend) per actor,
                                              built once in __init__; upscale + atomic write
      -> driver: progress bar, manifest (JSON lines), summary

The actor writes its own outputs: an output is ``scale**2`` times larger than its input, so moving it
through the object store to a separate write stage would cost more than the write. On CPU-only
workers Ray fuses the read stage into the actor (same resources); with GPUs the reads run as
separate CPU tasks while the actors keep the GPUs busy.

Faults: actors run with ``max_restarts=-1`` and ``max_task_retries=-1`` (Ray restarts a dead worker
process and re-runs its tasks; outputs are written atomically, so a killed write leaves no partial
file). Every per-image problem (bad file, over the pixel limit, model error) becomes one ``failed``
record, never a failed Ray task.

Inputs: files, folders (recursive; the sub-folders are mirrored under OUT), glob patterns (``**``
allowed), and remote URIs (``s3://``, ``gs://``, ... read through ``pyarrow.fs`` or fsspec; OUT may
be a URI too). Only local paths are tested.

Exit status: 0 every input processed or skipped, 1 any input failed (now or, not retried, in an
earlier run), 2 usage errors, a model or cluster that cannot be used, or ray not installed.
"""
from __future__ import annotations

import argparse
import fnmatch
import glob
import json
import logging
import math
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ugtsr.errors import UGTSRError, UnsupportedInputError, require

from .console import Console
from .files import IMAGE_EXTENSIONS, InputSet, display, output_path, remove_stale_temp_files
from .imageio import DEFAULT_MAX_PIXELS, decode_image, read_image, write_image

__all__ = ["main", "MANIFEST_NAME", "read_manifest", "list_inputs"]

logger = logging.getLogger(__name__)

#: the manifest's file name under OUT: one JSON object per line,
#: ``{"input", "output", "status": "ok"|"skipped"|"failed", "message", "seconds"}``
MANIFEST_NAME = "batch_manifest.jsonl"
_EXT_CHOICES = ("auto", "png", "jpg", "webp", "tif")
_BACKENDS = ("auto", "onnxruntime", "torch", "tensorrt")
# Small blocks (Ray Data tasks): a restarted actor redoes little and the pool stays balanced; at most
# _BLOCKS_PER_WORKER per actor, so a job of millions of images is not millions of tasks.
_ROWS_PER_BLOCK = 2
_BLOCKS_PER_WORKER = 256
_MAX_ERROR_LINES = 100
_URI_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


# ---- paths: local or URI ----------------------------------------------------------------------------
def _is_uri(path: str) -> bool:
    return bool(_URI_RE.match(path)) and not path.startswith("file://")


def _local(path: str) -> str:
    return path[len("file://"):] if path.startswith("file://") else path


def _filesystem(uri: str):
    """``(pyarrow FileSystem, path inside it)``: pyarrow's own (S3, GCS, HDFS) or fsspec's."""
    pafs = require("pyarrow.fs", extra="batch", purpose="remote paths")
    try:
        return pafs.FileSystem.from_uri(uri)
    except (ValueError, OSError):  # pyarrow.ArrowInvalid is a ValueError: a scheme pyarrow lacks
        pass
    fsspec = require("fsspec", extra="batch", purpose=f"{uri.split('://')[0]}:// paths")
    fs, path = fsspec.core.url_to_fs(uri)
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path


def _join(root: str, *parts: str) -> str:
    parts = tuple(p for p in parts if p)
    if _is_uri(root):
        return "/".join([root.rstrip("/"), *parts])
    return str(Path(root, *parts))


def _exists(path: str) -> bool:
    if not _is_uri(path):
        return os.path.lexists(path)
    pafs = require("pyarrow.fs", extra="batch")
    fs, p = _filesystem(path)
    return fs.get_file_info(p).type != pafs.FileType.NotFound


def _is_image_name(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _walk_local(folder: Path, exclude: str | None) -> Iterator[tuple[str, str]]:
    """``(file, sub-folder relative to folder)`` for the images under ``folder``, sorted, hidden skipped."""
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                         and (exclude is None or os.path.realpath(os.path.join(root, d)) != exclude))
        rel = os.path.relpath(root, folder)
        for name in sorted(names):
            if _is_image_name(name) and os.path.isfile(os.path.join(root, name)):
                yield os.path.join(root, name), "" if rel == "." else rel


def _walk_remote(uri: str) -> Iterator[tuple[str, str]]:
    pafs = require("pyarrow.fs", extra="batch")
    fs, root = _filesystem(uri)
    infos = fs.get_file_info(pafs.FileSelector(root, recursive=True))
    for info in sorted(infos, key=lambda i: i.path):
        rel = os.path.relpath(info.path, root)  # URIs keep the spelling of the one given
        rel_dir = os.path.dirname(rel)
        if info.type == pafs.FileType.File and _is_image_name(info.base_name) \
                and not any(part.startswith(".") for part in rel_dir.split("/") if part):
            yield f"{uri.rstrip('/')}/{rel}", rel_dir


def list_inputs(specs: Sequence[str], *, exclude: str | None = None) -> tuple[list[tuple[str, str]], list[str]]:
    """Expand inputs into ``[(file, sub-folder), ...]`` (de-duplicated, in order) and problems.

    Folders are walked recursively (hidden files and folders skipped; ``exclude``, the output folder,
    is never entered) and each file keeps its sub-folder, mirrored under OUT. Glob patterns are
    expanded here (``**`` included); a pattern that matches nothing is a problem (a one-line message).
    Paths that do not exist are kept, so that reading them reports the missing file.
    """
    found: list[tuple[str, str]] = []
    problems: list[str] = []
    exclude = os.path.realpath(exclude) if exclude and not _is_uri(exclude) else None
    for spec in specs:
        spec = _local(os.fspath(spec))
        if _is_uri(spec):
            found.extend(_list_remote(spec, problems))
            continue
        path = Path(spec)
        if path.is_dir():
            files = list(_walk_local(path, exclude))
            if not files:
                logger.warning("%s: folder contains no images (%s)", display(path), ", ".join(IMAGE_EXTENSIONS))
            found.extend(files)
        elif path.exists() or not any(ch in spec for ch in "*?["):
            found.append((spec, ""))
        else:
            matches = sorted(glob.glob(spec, recursive=True))
            if not matches:
                problems.append(f"{display(spec)}: no files match this pattern")
            for m in matches:
                found.extend(_walk_local(Path(m), exclude) if os.path.isdir(m) else [(m, "")])
    unique: list[tuple[str, str]] = []
    seen: set[str] = set()
    for src, rel in found:
        key = src if _is_uri(src) else os.path.realpath(src)
        if key not in seen:
            seen.add(key)
            unique.append((src, rel))
    return unique, problems


def _glob_match(parts: list[str], pattern: list[str]) -> bool:
    """``glob`` semantics on path segments: ``*``/``?``/``[...]`` within a segment, ``**`` any number."""
    if not pattern:
        return not parts
    if pattern[0] == "**":
        return any(_glob_match(parts[i:], pattern[1:]) for i in range(len(parts) + 1))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], pattern[0]) and _glob_match(parts[1:], pattern[1:])


def _list_remote(spec: str, problems: list[str]) -> list[tuple[str, str]]:
    pafs = require("pyarrow.fs", extra="batch")
    fs, path = _filesystem(spec)
    kind = fs.get_file_info(path).type
    if kind == pafs.FileType.Directory:
        return list(_walk_remote(spec))
    if kind == pafs.FileType.File or not any(ch in spec for ch in "*?["):
        return [(spec, "")]
    base = re.split(r"[*?\[]", spec, maxsplit=1)[0].rsplit("/", 1)[0]
    pattern = spec.split("://", 1)[1].split("/")
    matches = [(src, "") for src, _ in _walk_remote(base) if _glob_match(src.split("://", 1)[1].split("/"), pattern)]
    if not matches:
        problems.append(f"{display(spec)}: no files match this pattern")
    return matches


# ---- reading and writing: runtime.imageio; a URI is read into memory, its output uploaded from a temp file ---
def _read(src: str, max_pixels: int | None) -> np.ndarray:
    if not _is_uri(src):
        return read_image(src, max_pixels=max_pixels)
    fs, path = _filesystem(src)
    try:
        with fs.open_input_stream(path) as fh:
            data = fh.read()
    except FileNotFoundError:
        raise UnsupportedInputError(f"{src}: no such file") from None
    except OSError as exc:
        raise UnsupportedInputError(f"{src}: cannot read ({' '.join(str(exc).split())})") from None
    try:
        return decode_image(data, source=src, max_pixels=max_pixels)
    except UGTSRError as exc:  # decode_image names its source as a Path: "s3:/bucket/..." for "s3://bucket/..."
        msg, collapsed = str(exc), str(Path(src))
        if collapsed != src and msg.startswith(collapsed):
            raise type(exc)(src + msg[len(collapsed):]) from None
        raise


def _write(target: str, image: np.ndarray, quality: int) -> None:
    if not _is_uri(target):
        write_image(target, image, quality=quality)
        return
    # object stores make an object visible only once its upload completes: no partial outputs
    with tempfile.TemporaryDirectory(prefix="ugtsr-batch-") as tmp:
        local = write_image(Path(tmp, "output" + os.path.splitext(target)[1]), image, quality=quality)
        fs, path = _filesystem(target)
        try:
            with fs.open_output_stream(path) as fh:
                fh.write(local.read_bytes())
        except OSError as exc:
            raise UGTSRError(f"{target}: cannot write ({' '.join(str(exc).split())})") from None


def _remove(target: str) -> None:
    try:
        if _is_uri(target):
            fs, path = _filesystem(target)
            fs.delete_file(path)
        else:
            os.unlink(target)
    except (OSError, FileNotFoundError):
        pass


# ---- manifest ---------------------------------------------------------------------------------------------
def read_manifest(path: str) -> dict[str, dict[str, Any]]:
    """The latest record per input of a manifest (``{}`` when there is none; broken lines are ignored)."""
    try:
        if _is_uri(path):
            fs, p = _filesystem(path)
            with fs.open_input_stream(p) as fh:
                text = fh.read().decode("utf-8", "replace")
        else:
            text = Path(path).read_text(encoding="utf-8", errors="replace")
    except (OSError, FileNotFoundError):
        return {}
    records: dict[str, dict[str, Any]] = {}
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:  # a line cut by a crash of an earlier run
            continue
        if isinstance(record, dict) and isinstance(record.get("input"), str):
            records.pop(record["input"], None)  # keep the file's order of latest records
            records[record["input"]] = record
    return records


class _Manifest:
    """Records of this run: appended line by line to a local manifest (a crash loses nothing), and
    rewritten atomically at the end with the latest record per input (earlier runs' inputs kept)."""

    def __init__(self, path: str, previous: dict[str, dict[str, Any]]) -> None:
        self.path = path
        self.records = dict(previous)
        self._fh = None
        if not _is_uri(path):
            self._fh = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def add(self, record: dict[str, Any]) -> None:
        self.records.pop(record["input"], None)
        self.records[record["input"]] = record
        if self._fh is not None:
            self._fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in self.records.values()).encode()
        if _is_uri(self.path):
            fs, p = _filesystem(self.path)
            with fs.open_output_stream(p) as fh:
                fh.write(data)
        else:
            from .files import write_bytes_atomic

            write_bytes_atomic(self.path, data)


def _record(src: str, out: str, status: str, message: str = "", seconds: float = 0.0) -> dict[str, Any]:
    return {"input": src, "output": out, "status": status, "message": display(message),
            "seconds": round(float(seconds), 4)}


# ---- plan (driver) ------------------------------------------------------------------------------------------
def _heat_path(out: str) -> str:
    stem, _ = os.path.splitext(out)
    return f"{stem}_uncertainty.png"


def _names(src: str, ext: str, suffix: str, image: np.ndarray | None = None) -> tuple[str, str]:
    """``(output name, PNG fallback name or "")``: :func:`runtime.files.output_path` for ``image``
    (before reading: ``None``), and for an image the chosen format cannot hold (alpha and 16-bit)."""
    base = Path(src.rsplit("/", 1)[-1] if _is_uri(src) else src)
    name = output_path(base, ".", ext=ext, suffix=suffix, image=image).name
    fallback = output_path(base, ".", ext=ext, suffix=suffix, image=np.zeros((1, 1, 4), np.uint16)).name
    return name, (fallback if fallback != name else "")


def _plan(args: argparse.Namespace, listed: list[tuple[str, str]], previous: dict[str, dict[str, Any]]
          ) -> tuple[list[dict[str, Any]], list[tuple[str, dict[str, Any]]], int]:
    """Split the inputs into pending rows and ``(outcome, record)`` decided here (skipped, failed).

    The same rules as ``runtime.infer``, in its order: an output name taken by an earlier input of
    the run fails; an output that is an input (:class:`runtime.files.InputSet`) fails whatever
    ``--overwrite`` says; an existing output is skipped unless ``--overwrite``. On top: inputs that
    failed in an earlier run are not retried unless ``--retry-failed``. Returns
    ``(pending, decided, carried)``, ``carried`` counting the earlier failures not retried. A kept
    record (an earlier run's ``ok`` whose output exists, an earlier ``failed``) is the same object as in
    ``previous``; its outcome in this run is ``skipped`` or ``failed``.
    """
    inputs = InputSet(src for src, _ in listed if not _is_uri(src))
    produced: dict[str, str] = {}
    pending: list[dict[str, Any]] = []
    decided: list[tuple[str, dict[str, Any]]] = []
    carried = 0

    def key(path: str) -> str:
        return path if _is_uri(path) else os.path.realpath(path)

    for src, rel in listed:
        name, fallback_name = _names(src, args.ext, args.suffix)
        out = _join(args.output, rel, name)
        heat = _heat_path(out) if args.save_uncertainty else ""
        victim = next((inputs.which(t) for t in (out, heat) if t and not _is_uri(t) and t in inputs), None)
        if victim is not None:
            decided.append(("failed", _record(src, out, "failed", f"{src}: refusing to overwrite the input file "
                                              f"{victim} with the output {out} (inputs are never overwritten: "
                                              "use another -o folder or a --suffix)")))
            continue
        other = produced.get(key(out))
        if other is not None:
            decided.append(("failed", _record(src, out, "failed", f"{src}: output {out} was already written for "
                                              f"{other} in this run (same name; use --suffix or separate runs)")))
            continue
        produced[key(out)] = src
        before = previous.get(src)
        if before is not None and before.get("status") == "failed" and not args.retry_failed:
            carried += 1
            decided.append(("failed", before))
            continue
        existing = [t for t in (out, heat) if t and _exists(t)]
        if existing and not args.overwrite:
            if before is not None and before.get("status") == "ok" and before.get("output") == out:
                decided.append(("skipped", before))  # done by an earlier run: keep its record
            else:
                decided.append(("skipped", _record(src, out, "skipped",
                                                   f"{src}: output {existing[0]} exists (use --overwrite)")))
            continue
        pending.append({"input": src, "output": out, "heat": heat,
                        "fallback": _join(os.path.dirname(out) if not _is_uri(out) else out.rsplit("/", 1)[0],
                                          fallback_name) if fallback_name else "",
                        "fallback_problem": ""})
    for row in pending:  # a PNG fallback must not land on another input's output or on an input
        fb = row["fallback"]
        if not fb:
            continue
        other = produced.get(key(fb))
        if other is not None:
            row["fallback_problem"] = (f"{row['input']}: the image needs PNG, but {fb} is the output of {other} "
                                       "in this run (use --suffix or separate runs)")
        elif not _is_uri(fb) and fb in inputs:
            row["fallback_problem"] = (f"{row['input']}: the image needs PNG, and {fb} is the input file "
                                       f"{inputs.which(fb)}; refusing to overwrite it")
    return pending, decided, carried


# ---- pipeline stages (run in Ray workers) ---------------------------------------------------------------
def _failure(src: str, exc: BaseException) -> str:
    if isinstance(exc, UGTSRError):
        msg = str(exc)
        return msg if src in msg or display(src) in msg else f"{src}: {msg}"
    if isinstance(exc, MemoryError):
        return f"{src}: out of memory (try a smaller --tile or --max-pixels)"
    return f"{src}: unexpected error ({type(exc).__name__}: {' '.join(str(exc).split())})"


def _read_row(row: dict[str, Any], *, max_pixels: int | None) -> dict[str, Any]:
    """Read and validate one input (runtime.imageio: header check and pixel limit before decoding).

    Adds the decoded pixels as raw bytes with their shape and dtype (images of any layout travel
    through Arrow blocks that way), or ``status="failed"`` with the one-line reason.
    """
    start = time.perf_counter()
    out = dict(row, status="", message="", pixels=b"", shape="", dtype="")
    try:
        image = _read(row["input"], max_pixels)
    except Exception as exc:  # noqa: BLE001 - every problem becomes a manifest record
        out.update(status="failed", message=_failure(row["input"], exc))
    else:
        out.update(pixels=image.tobytes(), shape=",".join(map(str, image.shape)), dtype=image.dtype.str)
    out["read_s"] = time.perf_counter() - start
    return out


class _Collect(logging.Handler):
    """Warnings of the runtime while one image is processed, for its manifest record."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _open_upscaler(options: dict[str, Any]):
    from .upscaler import Upscaler

    device = options["device"]
    if device is None and options["gpus"] > 0:
        device = "cuda"  # Ray sets CUDA_VISIBLE_DEVICES to this actor's GPU
    up = Upscaler(options["model"], backend=options["backend"], tile=options["tile"], tile_pad=options["tile_pad"],
                  batch_size=options["batch_size"], outscale=options["outscale"], device=device,
                  providers=options["providers"], fp16=options["fp16"], threads=options["threads"],
                  blend=options["blend"], alpha_upsampler=options["alpha_upsampler"])
    if options["save_uncertainty"] and not up.info.has_uncertainty:
        up.close()
        raise UGTSRError(f"{up.info.source}: the model has no uncertainty output; drop --save-uncertainty")
    return up


def _probe(options: dict[str, Any]) -> str:
    """Open the model once where an actor would run: ``""`` or the one-line reason it cannot be used."""
    try:
        _open_upscaler(options).close()
    except Exception as exc:  # noqa: BLE001 - reported in one line by the driver
        return " ".join(str(exc).split()) if isinstance(exc, UGTSRError) else f"{type(exc).__name__}: {exc}"
    return ""


class _UpscaleWorker:
    """Ray Data callable class: one :class:`runtime.Upscaler` per actor, built once in ``__init__``."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        self.up = _open_upscaler(options)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = [{k: batch[k][i] for k in batch} for i in range(len(batch["input"]))]
        records = [self._one(row) for row in rows]
        return {k: np.array([r[k] for r in records]) for k in ("input", "output", "status", "message", "seconds")}

    def _one(self, row: dict[str, Any]) -> dict[str, Any]:
        src, out, heat = str(row["input"]), str(row["output"]), str(row["heat"])
        if row["status"] == "failed":
            return _record(src, out, "failed", str(row["message"]), row["read_s"])
        start = time.perf_counter()
        collect = _Collect()
        runtime_logger = logging.getLogger("runtime")
        runtime_logger.addHandler(collect)
        try:
            status, message, out = self._upscale(row, src, out, heat)
        except Exception as exc:  # noqa: BLE001 - every problem becomes a manifest record
            status, message = "failed", _failure(src, exc)
        finally:
            runtime_logger.removeHandler(collect)
        if status == "ok" and collect.messages:
            message = "; ".join(collect.messages)
        return _record(src, out, status, message, float(row["read_s"]) + time.perf_counter() - start)

    def _upscale(self, row: dict[str, Any], src: str, out: str, heat: str) -> tuple[str, str, str]:
        o = self.options
        shape = tuple(int(v) for v in str(row["shape"]).split(","))
        image = np.frombuffer(row["pixels"], dtype=np.dtype(str(row["dtype"]))).reshape(shape)
        fallback = str(row["fallback"])
        if fallback and _names(src, o["ext"], o["suffix"], image)[0] != os.path.basename(out):
            # the chosen format cannot hold this image (alpha, 16-bit): PNG, as runtime.infer does
            if row["fallback_problem"]:
                return "failed", str(row["fallback_problem"]), out
            out = fallback
            heat = _heat_path(out) if heat else ""
            existing = [t for t in (out, heat) if t and _exists(t)]
            if existing and not o["overwrite"]:
                return "skipped", f"{src}: output {existing[0]} exists (use --overwrite)", out
            logger.warning("%s: %s cannot store this image (alpha, 16-bit or gray); writing %s", src,
                           os.path.splitext(str(row["output"]))[1].lstrip("."), os.path.basename(out))
        # an existing `out` here was written by an earlier attempt of this task (the plan skipped
        # the outputs that existed): rewriting it gives the same bytes
        if heat:
            result, unc = self.up.upscale_with_uncertainty(image)
        else:
            result, unc = self.up.upscale(image), None
        _write(out, result, o["quality"])
        if heat and unc is not None:
            from .infer import uncertainty_heatmap

            try:
                _write(heat, uncertainty_heatmap(unc), 95)
            except BaseException:
                _remove(out)  # no half-done pair
                raise
        return "ok", "", out


# ---- command line (driver) ----------------------------------------------------------------------------------
def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m runtime.batch",
        description="Upscale many images on a Ray cluster (Ray Data), with runtime.infer's options and file rules; "
                    f"resumable, with a manifest OUT/{MANIFEST_NAME}.",
        epilog="Exit status: 0 all processed or skipped, 1 some input failed, 2 usage, model or cluster error.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="image files, folders (recursive), glob patterns, or URIs (s3://, gs://, ...)")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="output folder or URI (created if needed)")
    ray = p.add_argument_group("cluster")
    ray.add_argument("--ray", default="auto", metavar="auto|local|ADDRESS",
                     help="auto: RAY_ADDRESS or a cluster started with `ray start` on this machine, else a new "
                          "local one; local: always a new local one; ADDRESS: e.g. ray://head:10001 or head:6379")
    ray.add_argument("--workers", type=int, default=None, metavar="N",
                     help="actors, each with one model (default: cluster GPUs / G, or CPUs / C)")
    ray.add_argument("--cpus-per-worker", type=float, default=1.0, metavar="C", help="CPUs per actor (default 1)")
    ray.add_argument("--gpus-per-worker", type=float, default=None, metavar="G",
                     help="GPUs per actor (default: 1 when the cluster has GPUs, else 0)")
    ray.add_argument("--retry-failed", action="store_true", help="redo the inputs the manifest lists as failed")
    img = p.add_argument_group("model and images (as in runtime.infer)")
    img.add_argument("--model", metavar="PATH",
                     help="model file, at the same path on every node (default: the shipped model)")
    img.add_argument("-n", "--model-name", dest="model_name", metavar="NAME", help="a shipped model by name")
    img.add_argument("--backend", default="auto", choices=_BACKENDS, help="default: by model extension")
    img.add_argument("-t", "--tile", type=int, default=None, metavar="N",
                     help="tile size in input pixels; 0 = off; default: automatic")
    img.add_argument("--tile-pad", type=int, default=32, metavar="N", help="context around each tile (default 32)")
    img.add_argument("--batch-size", type=int, default=1, metavar="N", help="tiles per model call (default 1)")
    img.add_argument("--blend", default="feather", choices=("feather", "linear", "none"), help="tile blending")
    img.add_argument("-s", "--outscale", type=float, default=None, metavar="X",
                     help="final scale relative to the input (default: the model's scale)")
    img.add_argument("--ext", default="auto", choices=_EXT_CHOICES, help="output format (default: like the input)")
    img.add_argument("--suffix", default="", metavar="S", help="added to each output stem, as in runtime.infer")
    img.add_argument("--quality", type=int, default=95, metavar="Q", help="JPEG/WebP quality 1-100 (default 95)")
    img.add_argument("--alpha-upsampler", default="linear", choices=("linear", "model"))
    img.add_argument("--save-uncertainty", action="store_true", help="also write <stem><suffix>_uncertainty.png")
    img.add_argument("--overwrite", action="store_true", help="replace existing outputs (inputs are never replaced)")
    img.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, metavar="N",
                     help=f"refuse inputs with more pixels (default {DEFAULT_MAX_PIXELS}; 0 = no limit)")
    img.add_argument("--providers", default=None, metavar="LIST", help="ONNX Runtime providers (default cpu; "
                     "cuda when the actor has a GPU)")
    img.add_argument("--device", default=None, metavar="DEV", help="cpu or cuda (default cuda when G > 0)")
    img.add_argument("--fp16", action="store_true", help="half precision (torch backend; TensorRT provider)")
    img.add_argument("--threads", type=int, default=None, metavar="N",
                     help="ONNX Runtime intra-op threads per actor (default: C)")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no summary; errors only")
    return p


def _usage_problem(args: argparse.Namespace) -> str | None:
    for name in ("tile_pad", "max_pixels"):
        if getattr(args, name) < 0:
            return f"--{name.replace('_', '-')} must be >= 0"
    if args.tile is not None and args.tile < 0:
        return "--tile must be >= 0"
    if args.batch_size < 1:
        return "--batch-size must be >= 1"
    if not 1 <= args.quality <= 100:
        return "--quality must be in [1, 100]"
    if args.workers is not None and args.workers < 1:
        return "--workers must be >= 1"
    if not args.cpus_per_worker > 0:
        return "--cpus-per-worker must be > 0"
    if args.gpus_per_worker is not None and args.gpus_per_worker < 0:
        return "--gpus-per-worker must be >= 0"
    if args.model and args.model_name:
        return "use either --model PATH or -n/--model-name NAME, not both"
    if args.model and not _is_uri(args.model) and not Path(args.model).is_file():
        return f"{display(args.model)}: no such model file"
    return None


def _model_path(args: argparse.Namespace) -> str | None:
    if args.model:
        return str(Path(args.model).resolve())  # actors may run in another working folder
    if args.model_name or args.backend == "torch":
        from .models import DEFAULT_MODEL, shipped_model_path

        return str(shipped_model_path(args.model_name or DEFAULT_MODEL, backend=args.backend))
    return None


class _Console(Console):
    """:class:`runtime.console.Console` with a capped number of error lines."""

    def __init__(self, quiet: bool) -> None:
        super().__init__(quiet)
        self.errors = 0

    def error(self, msg: str) -> None:
        self.errors += 1
        if self.errors <= _MAX_ERROR_LINES:
            self.write(f"error: {msg}")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 1 some input failed, 2 usage, model or cluster error)."""
    args = _build_parser().parse_args(argv)
    console = _Console(args.quiet)
    problem = _usage_problem(args)
    if problem:
        console.write(f"error: {problem}")
        return 2
    try:
        ray = require("ray", extra="batch", purpose="python -m runtime.batch")
        require("ray.data", extra="batch", purpose="python -m runtime.batch")
    except UGTSRError as exc:
        console.write(f"error: {exc}")
        return 2
    from .infer import join_suffix

    args.suffix = join_suffix(args.suffix)
    args.output = _local(args.output)
    try:
        return _run(args, ray, console)
    except UGTSRError as exc:
        console.write(f"error: {exc}")
        return 2


def _connect(ray, address: str) -> bool:
    """Join or start a cluster; ``False`` when this process was already connected (then not shut down)."""
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False}
    try:
        if address == "local":
            ray.init(address="local", include_dashboard=False, **kwargs)
        elif address == "auto":
            ray.init(**kwargs)
        else:
            ray.init(address=address, **kwargs)
    except Exception as exc:  # noqa: BLE001 - ConnectionError, RuntimeError, ...: one line
        raise UGTSRError(f"cannot connect to the Ray cluster {address!r} "
                         f"({' '.join(str(exc).split())[:300]})") from None
    return True


def _run(args: argparse.Namespace, ray, console: _Console) -> int:
    start = time.perf_counter()
    out_root = args.output
    if not _is_uri(out_root):
        from .files import ensure_folder

        try:
            ensure_folder(out_root)
        except UGTSRError as exc:
            console.write(f"error: {exc}")
            return 1
        remove_stale_temp_files(out_root)
    listed, problems = list_inputs(args.inputs, exclude=out_root)
    if not listed and not problems:
        console.write("error: no input images found")
        return 1
    manifest_path = _join(out_root, MANIFEST_NAME)
    manifest = _Manifest(manifest_path, read_manifest(manifest_path))
    for problem in problems:
        console.error(problem)
    pending, decided, carried = _plan(args, listed, manifest.records)
    counts = {"ok": 0, "skipped": 0, "failed": len(problems)}
    for outcome, record in decided:
        counts[outcome] += 1
        if outcome == "failed" and record is not manifest.records.get(record["input"]):
            console.error(record["message"])  # new now; an earlier run's failure is only counted
        manifest.add(record)
    stats: dict[str, float] = {}
    interrupted = False
    try:
        if pending:
            interrupted = _execute(args, ray, pending, manifest, counts, console, stats)
    finally:
        manifest.close()
        if not _is_uri(out_root):  # temporary files of writes killed in this run or an earlier one
            for folder in sorted({os.path.dirname(r["output"]) for r in (*pending, *(r for _, r in decided))}):
                remove_stale_temp_files(folder)
    if console.errors > _MAX_ERROR_LINES:
        console.write(f"error: ... {console.errors - _MAX_ERROR_LINES} more failures, listed in {manifest_path}")
    if not args.quiet:
        elapsed = time.perf_counter() - start
        console.write(f"done: {counts['ok']} processed, {counts['skipped']} skipped, {counts['failed']} failed "
                      f"in {elapsed:.1f} s -> {out_root}", err=False)
        if stats:
            after = elapsed - stats["connect_s"]
            console.write(f"  {stats['workers']:.0f} workers x ({stats['cpus']:g} CPU, {stats['gpus']:g} GPU); "
                          f"Ray start/connect {stats['connect_s']:.1f} s, then "
                          f"{counts['ok'] / after if after > 0 else 0.0:.2f} images/s", err=False)
        if carried:
            console.write(f"  {carried} of the failed inputs failed in an earlier run and were not retried "
                          "(--retry-failed redoes them)", err=False)
        console.write(f"  manifest: {manifest_path}", err=False)
    if interrupted:
        return 130
    return 1 if counts["failed"] else 0


def _execute(args: argparse.Namespace, ray, pending: list[dict[str, Any]], manifest: _Manifest,
             counts: dict[str, int], console: _Console, stats: dict[str, float]) -> bool:
    """Connect, size the pool, probe the model, run the pipeline; ``True`` when interrupted."""
    t0 = time.perf_counter()
    started = _connect(ray, args.ray)
    stats["connect_s"] = time.perf_counter() - t0
    try:
        resources = ray.cluster_resources()
        gpus = args.gpus_per_worker
        if gpus is None:
            gpus = 1.0 if resources.get("GPU", 0) >= 1 else 0.0
        cpus = float(args.cpus_per_worker)
        if args.workers:
            workers = args.workers
        elif gpus > 0:
            workers = max(1, int(resources.get("GPU", 0) // gpus))
        else:
            workers = max(1, int(resources.get("CPU", 1) // cpus))
        workers = min(workers, math.ceil(len(pending) / _ROWS_PER_BLOCK))  # no idle actors
        options = {
            "model": _model_path(args), "backend": args.backend, "tile": args.tile, "tile_pad": args.tile_pad,
            "batch_size": args.batch_size, "outscale": args.outscale, "device": args.device,
            "providers": args.providers, "fp16": args.fp16,
            "threads": args.threads if args.threads is not None else max(1, int(cpus)),
            "blend": args.blend, "alpha_upsampler": args.alpha_upsampler, "save_uncertainty": args.save_uncertainty,
            "ext": args.ext, "suffix": args.suffix, "quality": args.quality, "overwrite": args.overwrite, "gpus": gpus,
        }
        # open the model once where an actor would run: a bad model is one line, not a pool of dying actors
        problem = ray.get(ray.remote(_probe).options(num_cpus=cpus, num_gpus=gpus, max_retries=0).remote(options))
        if problem:
            raise UGTSRError(problem)
        stats.update(workers=workers, cpus=cpus, gpus=gpus)
        return _stream(args, ray, pending, options, workers, cpus, gpus, manifest, counts, console)
    finally:
        if started:
            ray.shutdown()


def _stream(args: argparse.Namespace, ray, pending: list[dict[str, Any]], options: dict[str, Any], workers: int,
            cpus: float, gpus: float, manifest: _Manifest, counts: dict[str, int], console: _Console) -> bool:
    """Run the Ray Data pipeline over ``pending``; record every result. ``True`` when interrupted."""
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # ours is one bar over images
    ctx.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "progress bars disabled"
    max_pixels = args.max_pixels or None
    blocks = max(1, min(math.ceil(len(pending) / _ROWS_PER_BLOCK), workers * _BLOCKS_PER_WORKER))
    ds = ray.data.from_items(pending, override_num_blocks=blocks)
    # same resources as the actors on CPU-only workers, so Ray fuses the read into them; with GPUs
    # separate CPU tasks read while the actors compute
    ds = ds.map(_read_row, fn_kwargs={"max_pixels": max_pixels}, num_cpus=cpus if gpus == 0 else 1.0)
    # Ray Data's actor pools run with max_restarts=-1 and max_task_retries=-1 unless told otherwise
    # (ActorPoolMapOperator._apply_default_remote_args): a dead actor is restarted and its tasks re-run.
    # Passing them here would also stop the fusion of the read stage into the actors.
    ds = ds.map_batches(_UpscaleWorker, fn_constructor_kwargs={"options": options}, batch_size=1,
                        compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=cpus, num_gpus=gpus or None)
    bar = None
    if console.tqdm is not None and not args.quiet:
        bar = console.tqdm(total=len(pending), unit="img", desc=f"upscaling ({workers} workers)", disable=None)
    try:
        for row in ds.iter_rows():
            record = _record(str(row["input"]), str(row["output"]), str(row["status"]), str(row["message"]),
                             float(row["seconds"]))
            manifest.add(record)
            counts[record["status"]] = counts.get(record["status"], 0) + 1
            if record["status"] == "failed":
                console.error(record["message"])
            if bar is not None:
                bar.update(1)
                bar.set_postfix(ok=counts["ok"], failed=counts["failed"], refresh=False)
    except KeyboardInterrupt:
        console.write("interrupted: the images in progress were dropped (no partial files); rerun to resume")
        return True
    except Exception as exc:  # noqa: BLE001 - Ray's errors (e.g. actors that cannot start): one line
        last = [line for line in str(exc).splitlines() if line.strip()][-1:] or [type(exc).__name__]
        raise UGTSRError(f"the Ray job failed ({type(exc).__name__}: {last[0].strip()[:300]})") from None
    finally:
        if bar is not None:
            bar.close()
    return False


if __name__ == "__main__":
    sys.exit(main())
