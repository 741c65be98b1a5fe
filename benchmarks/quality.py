"""Image quality of models against bicubic and Lanczos: PSNR-Y, SSIM-Y and NIQE.

    python -m benchmarks.quality --model ugtsr_x4.onnx --name UGTSR --model femasr_x4.pt --name FeMaSR \\
        --data DIV2K_valid_HR --scale 4 --pipeline bsrgan --seed 0

Protocol. Every HR image (recursive, sorted by relative path) is degraded by ``--pipeline`` with its
own generator seeded from ``(--seed, relative path)`` -- exactly what ``python -m ugtsr.degrade``
writes -- and the LR is rounded to 8 bits (a saved PNG). Each model upscales the LR through
:class:`runtime.Upscaler` (``tile=0``: the whole image; the backend by file extension unless
``--backend``), and the baselines are ``cv2.resize`` with ``INTER_CUBIC`` and ``INTER_LANCZOS4``.
Outputs are 8-bit images, compared with the mod-cropped HR (the pipeline's ``hr``):

* PSNR-Y and SSIM-Y: BasicSR conventions (BT.601 Y, ``crop_border = scale`` pixels removed from
  each edge first; :func:`ugtsr.metrics.psnr` / :func:`ugtsr.metrics.ssim`);
* NIQE (lower is better): :func:`ugtsr.metrics.niqe` on the output, same crop; the HR's own NIQE is
  listed as a reference row. Images too small for NIQE (two 96-pixel blocks) get none.

Writes ``benchmarks/results/quality_<tag>.json`` / ``.csv`` and ``quality_<tag>.md`` (the mean table
as markdown, for the README's model card).
"""
from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ugtsr.errors import ConfigError, UGTSRError, UnsupportedInputError, require

from . import _common as C

__all__ = ["main", "BASELINES", "degraded_pair"]

logger = logging.getLogger(__name__)

#: baseline name -> cv2 interpolation flag name
BASELINES = {"bicubic": "INTER_CUBIC", "lanczos": "INTER_LANCZOS4"}
_HR_ROW = "HR (reference)"


def _parser() -> argparse.ArgumentParser:
    from ugtsr.degrade import PIPELINES, SCALES

    p = argparse.ArgumentParser(prog="python -m benchmarks.quality",
                                description="PSNR-Y / SSIM-Y / NIQE of models vs bicubic and Lanczos.")
    p.add_argument("--model", action="append", default=[], metavar="PATH",
                   help="model (.onnx, .pt checkpoint or .plan engine); repeat for several")
    p.add_argument("--name", action="append", default=None, metavar="NAME",
                   help="display name per --model, in order (default: the file stem)")
    p.add_argument("--data", required=True, metavar="DIR", help="folder of HR images (recursive)")
    p.add_argument("--scale", type=int, choices=SCALES, default=4)
    p.add_argument("--pipeline", choices=sorted(PIPELINES), default="bsrgan")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--draws", type=int, default=1,
                   help="degradation draws per image: seeds --seed .. --seed+N-1 (default 1); more draws "
                        "average over how strong the random degradation happens to be")
    p.add_argument("--crop", type=int, default=None, metavar="N",
                   help="centre-crop each HR to at most NxN first (speed); default: whole image")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N images")
    p.add_argument("--backend", default="auto", help="runtime backend for every model (default: by extension)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (torch / ONNX Runtime CUDA)")
    p.add_argument("--providers", default=None, help="ONNX Runtime providers, e.g. cuda or tensorrt")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime / torch CPU threads")
    p.add_argument("--no-niqe", action="store_true", help="skip NIQE (it takes ~0.1 s per 96x96 block)")
    p.add_argument("--tag", default=None, help="result file tag (default: <pipeline>_x<scale>)")
    p.add_argument("--out-dir", default=None, help="folder for the results (default benchmarks/results)")
    return p


def _center_crop(img: np.ndarray, size: int | None) -> np.ndarray:
    if size is None:
        return img
    h, w = img.shape[:2]
    th, tw = min(h, size), min(w, size)
    y, x = (h - th) // 2, (w - tw) // 2
    return img[y:y + th, x:x + tw]


def degraded_pair(path: Path, rel: str, *, scale: int, pipeline: str, seed: int,
                  crop: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(lr_bgr_uint8 (h, w, 3), hr_rgb_float32 (h*s, w*s, 3) in [0, 1])`` for one HR file.

    The LR is the pipeline's output rounded to 8 bits and flipped to BGR (the layout
    :meth:`runtime.Upscaler.upscale` and ``cv2`` take); the HR is the pipeline's mod-cropped HR.
    """
    from ugtsr.degrade import PIPELINES, float_to_image, image_to_float, read_image, rng_from_key

    hr = _center_crop(image_to_float(read_image(path)), crop)
    pair = PIPELINES[pipeline](np.ascontiguousarray(hr), scale=scale, rng=rng_from_key(seed, rel))
    lr = np.ascontiguousarray(float_to_image(pair.lr)[..., ::-1])
    return lr, pair.hr


def _bgr8_to_rgb(img: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(img[..., ::-1]).astype(np.float32) / 255.0


def _metrics(sr: np.ndarray | None, hr: np.ndarray, scale: int, with_niqe: bool) -> dict[str, float | None]:
    from ugtsr.metrics import niqe, psnr, ssim

    out: dict[str, float | None] = {"psnr_y": None, "ssim_y": None, "niqe": None}
    img = hr if sr is None else sr
    if sr is not None:
        out["psnr_y"] = C.finite_or_none(psnr(sr, hr, crop_border=scale, y_channel=True), 4)
        out["ssim_y"] = C.finite_or_none(ssim(sr, hr, crop_border=scale, y_channel=True), 5)
    if with_niqe:
        try:
            out["niqe"] = C.finite_or_none(niqe(img, crop_border=scale), 4)
        except UnsupportedInputError as exc:
            logger.info("no NIQE: %s", exc)
    return out


def _methods(args: argparse.Namespace) -> list[tuple[str, str, Callable[[np.ndarray], np.ndarray], Any]]:
    """``(name, kind, upscale(lr_bgr) -> sr_bgr, closer)`` for the baselines and every model."""
    cv2 = require("cv2", extra="runtime", purpose="the bicubic / Lanczos baselines")
    scale = args.scale
    methods = []
    for name, flag in BASELINES.items():
        interp = getattr(cv2, flag)

        def resize(lr: np.ndarray, interp: int = interp) -> np.ndarray:
            return cv2.resize(lr, (lr.shape[1] * scale, lr.shape[0] * scale), interpolation=interp)

        methods.append((name, "baseline", resize, None))
    names = list(args.name or [])
    if len(names) > len(args.model):
        raise ConfigError(f"{len(names)} --name given for {len(args.model)} --model")
    names += [Path(p).stem for p in args.model[len(names):]]
    if len(set(names) | set(BASELINES)) != len(names) + len(BASELINES):
        raise ConfigError(f"method names must differ from each other and from the baselines, got {names}")
    from runtime import Upscaler

    for name, path in zip(names, args.model):
        up = Upscaler(path, backend=args.backend, tile=0, device=args.device, providers=args.providers,
                      threads=args.threads)
        if up.scale != scale:
            up.close()
            raise ConfigError(f"{path}: the model's scale is x{up.scale}, not --scale {scale}")
        methods.append((name, "model", up.upscale, up))
    return methods


def _evaluate(args: argparse.Namespace) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    from ugtsr.degrade import list_images

    data = Path(args.data)
    if not data.is_dir():
        raise ConfigError(f"{data}: data folder does not exist")
    files = list_images(data)
    if args.limit is not None:
        files = files[: args.limit]
    if not files:
        raise ConfigError(f"{data}: no images found")
    methods = _methods(args)
    info = [{"name": n, "kind": k, "path": c.info.source if c is not None else None,
             "backend": c.backend.name if c is not None else "cv2.resize"} for n, k, _, c in methods]
    rows: list[dict[str, Any]] = []
    skipped = []
    try:
        for path, seed in ((f, args.seed + d) for f in files for d in range(args.draws)):
            rel = path.relative_to(data).as_posix()
            label = rel if args.draws == 1 else f"{rel}#seed{seed}"
            try:
                lr, hr = degraded_pair(path, rel, scale=args.scale, pipeline=args.pipeline, seed=seed,
                                       crop=args.crop)
            except UGTSRError as exc:
                print(f"{path}: skipped: {exc}", file=sys.stderr)
                skipped.append({"image": label, "reason": str(exc)})
                continue
            size = f"{hr.shape[0]}x{hr.shape[1]}"
            if not args.no_niqe:
                rows.append({"image": label, "method": _HR_ROW, "hr_size": size,
                             **_metrics(None, hr, args.scale, True), "seconds": None})
            for name, _, fn, _ in methods:
                t0 = time.perf_counter()
                out = fn(lr)
                seconds = time.perf_counter() - t0
                if out.shape[:2] != hr.shape[:2]:
                    raise UGTSRError(f"{rel}: {name} returned {out.shape[:2]}, expected {hr.shape[:2]}")
                rows.append({"image": label, "method": name, "hr_size": size,
                             **_metrics(_bgr8_to_rgb(out), hr, args.scale, not args.no_niqe),
                             "seconds": round(seconds, 4)})
    finally:
        for *_, closer in methods:
            if closer is not None:
                closer.close()
    if not rows:
        raise UGTSRError(f"{data}: no image could be evaluated ({len(skipped)} skipped)")
    order = ([_HR_ROW] if not args.no_niqe else []) + [m[0] for m in methods]
    means = []
    for name in order:
        sel = [r for r in rows if r["method"] == name]
        entry: dict[str, Any] = {"method": name, "images": len(sel)}
        for key in ("psnr_y", "ssim_y", "niqe", "seconds"):
            vals = [r[key] for r in sel if r[key] is not None]
            entry[key] = C.finite_or_none(statistics.fmean(vals), 5) if vals else None
        means.append(entry)
    extra = {"methods": info, "images": len(files), "draws": args.draws,
             "evaluated": len(files) * args.draws - len(skipped), "skipped": skipped}
    return rows, means, extra


def _seeds(args: argparse.Namespace) -> str:
    return f"seed {args.seed}" if args.draws == 1 else f"seeds {args.seed}-{args.seed + args.draws - 1}"


def _markdown(args: argparse.Namespace, means: list[dict[str, Any]], extra: dict[str, Any], command: str) -> str:
    cols = [("method", "method"), ("psnr_y", "PSNR-Y (dB) ↑"), ("ssim_y", "SSIM-Y ↑")]
    if not args.no_niqe:
        cols.append(("niqe", "NIQE ↓"))
    table = C.markdown_table(means, cols, {"psnr_y": ".2f", "ssim_y": ".4f", "niqe": ".3f"})
    return (f"Quality on `{Path(args.data).name}` ({extra['evaluated']} images), x{args.scale}, "
            f"`{args.pipeline}` degradation ({_seeds(args)}, per-image generator), LR rounded to 8 bits. "
            f"PSNR-Y / SSIM-Y on BT.601 Y with {args.scale} border pixels cropped (BasicSR convention); "
            f"NIQE on the output (lower is better). Models run whole-image through `runtime.Upscaler`.\n\n"
            f"{table}\n\n<sub>`{command}` — {C.utc_now()}</sub>\n")


def _run(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    if args.threads:
        try:
            import torch

            torch.set_num_threads(args.threads)
        except ImportError:
            pass
    rows, means, extra = _evaluate(args)
    tag = args.tag or f"{args.pipeline}_x{args.scale}"
    paths = C.result_paths(args.out_dir, "quality", tag)
    header = C.record_header("quality", "benchmarks.quality", argv)
    record = {**header,
              "settings": {"data": str(args.data), "scale": args.scale, "pipeline": args.pipeline, "seed": args.seed,
                           "draws": args.draws,
                           "crop": args.crop, "limit": args.limit, "tile": 0, "niqe": not args.no_niqe},
              **extra, "mean": means, "per_image": rows,
              "notes": ["PSNR-Y/SSIM-Y: BT.601 Y, crop_border = scale (BasicSR); NIQE: BasicSR pristine params",
                        "means are unweighted over images; 'seconds' is one call per image, not a benchmark"]}
    C.write_json(paths["json"], record)
    C.write_csv(paths["csv"], rows + [{"image": "MEAN", **m} for m in means])
    C.write_text(paths["md"], _markdown(args, means, extra,
                                        C.command_line("benchmarks.quality", argv, executable="python")))
    cols = ["method", "images", ("psnr_y", "PSNR-Y"), ("ssim_y", "SSIM-Y")]
    if not args.no_niqe:
        cols.append(("niqe", "NIQE"))
    cols.append(("seconds", "s/img"))
    print(f"Quality ({args.pipeline} x{args.scale}, {_seeds(args)}, {extra['evaluated']} degraded images; "
          f"PSNR-Y/SSIM-Y crop {args.scale})")
    print(C.format_table(means, cols, {"psnr_y": ".3f", "ssim_y": ".4f", "niqe": ".3f", "seconds": ".3f"}))
    print(f"wrote {paths['json']} and {paths['md']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return C.run_main("quality", _parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
