"""Verification of an exported graph against PyTorch with ONNX Runtime (CPU).

Inputs: a natural photo (scikit-image's astronaut when installed, else a procedural image, said so
in the report) and uniform noise, at two sizes other than the export example: one odd size at batch
1 and a batch of 2 (one photo, one noise image) at another odd size, so the in-graph padding
(``export.padding``), a non-square latent grid, several Swin windows and a mixed batch are all
exercised. Legacy graphs without in-graph padding are verified at multiples of ``multiple_of``.
The sizes are kept small on purpose: the PyTorch reference on the CPU is the slowest part of an
export (issue 13), and larger sizes add time without covering more code paths. For every case: max / mean absolute error of ``sr`` (clamped to [0, 1], as images are
written, and raw), PSNR between the outputs, the share of identical code indices, and the
uncertainty error. Codebook matching is a hard argmin, so index agreement is reported next to
pixel error (a flipped near-tie code moves a whole 8x8 output block).

Pass criteria: FP32 -- clamped max error <= ``atol`` and index agreement >= ``min_index_agreement``;
FP16 -- PSNR against the FP32 PyTorch model >= ``fp16_min_psnr`` dB.
"""
from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from ugtsr.errors import require

__all__ = ["verify_onnx", "format_report", "natural_image", "compare_outputs"]

log = logging.getLogger(__name__)


def natural_image(h: int, w: int, *, seed: int = 0) -> tuple[np.ndarray, str]:
    """A ``(3, h, w)`` float32 RGB image in [0, 1] and a note on where it came from."""
    try:
        import cv2
        from skimage import data as skdata

        img = skdata.astronaut()  # 512x512 RGB uint8, public domain (NASA)
        rng = np.random.default_rng(seed)
        ch, cw = min(512, h * 4), min(512, w * 4)
        y, x = rng.integers(0, 512 - ch + 1), rng.integers(0, 512 - cw + 1)
        crop = img[y:y + ch, x:x + cw]
        small = cv2.resize(crop, (w, h), interpolation=cv2.INTER_AREA)
        return (small.astype(np.float32) / 255.0).transpose(2, 0, 1), "skimage astronaut (downscaled crop)"
    except ImportError:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        rng = np.random.default_rng(seed)
        base = np.stack([0.5 + 0.4 * np.sin(xx / 7.0 + c) * np.cos(yy / 11.0 - c) for c in range(3)])
        base += 0.05 * rng.standard_normal(base.shape).astype(np.float32)
        return np.clip(base, 0, 1).astype(np.float32), "procedural texture (scikit-image not installed)"


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)


def compare_outputs(ref: dict[str, np.ndarray], got: dict[str, np.ndarray]) -> dict[str, float]:
    """Error statistics between two output dicts with ``sr`` (+ ``indices``, ``uncertainty``)."""
    a, b = ref["sr"].astype(np.float64), got["sr"].astype(np.float64)
    ac, bc = np.clip(a, 0, 1), np.clip(b, 0, 1)
    stats = {
        "max_abs": float(np.abs(ac - bc).max()),
        "mean_abs": float(np.abs(ac - bc).mean()),
        "max_abs_raw": float(np.abs(a - b).max()),
        "psnr_db": _psnr(ac, bc),
    }
    if "indices" in ref and "indices" in got:
        stats["index_agreement"] = float(np.mean(ref["indices"] == got["indices"]))
    if ref.get("uncertainty") is not None and got.get("uncertainty") is not None:
        stats["uncertainty_max_abs"] = float(np.abs(ref["uncertainty"] - got["uncertainty"]).max())
    return stats


def _cases(m: int, example_blocks: int, *, pads_input: bool) -> list[tuple[str, tuple[int, int, int]]]:
    """``(kind, (n, h, w))``: kind ``natural`` (photo), or ``mixed`` (image 0 a photo, the others noise)."""
    if pads_input:
        # odd sizes: pads of 11/3 and 13/2 rows/cols; 3x3 and 2x2 latent windows at m = 16
        sizes = [("natural", (1, 3 * m - 11, 3 * m - 3)), ("mixed", (2, 2 * m - 13, 2 * m - 2))]
    else:
        sizes = [("natural", (1, 3 * m, 5 * m)), ("mixed", (2, 2 * m, 6 * m))]
    ex = example_blocks * m
    return [(kind, s) for kind, s in sizes if (s[1], s[2]) != (ex, ex)]


def verify_onnx(model_bytes: bytes, model, *, options) -> dict[str, Any]:
    """Run the exported graph in ONNX Runtime and the PyTorch ``model`` (FP32, ``model.forward``: it
    pads and crops like the graph) on the same inputs."""
    ort = require("onnxruntime", extra="export", purpose="verifying the export")
    torch = require("torch", extra="export")
    m = model.config.multiple_of
    report: dict[str, Any] = {"precision": options.precision, "opset": options.opset, "cases": [],
                              "backend": "onnxruntime-cpu", "notes": []}
    runner = None
    fused = None
    try:
        so = ort.SessionOptions()
        so.log_severity_level = 3
        sess = ort.InferenceSession(model_bytes, sess_options=so, providers=["CPUExecutionProvider"])
        names = [o.name for o in sess.get_outputs()]
        # what runtime's ONNX Runtime CPU backend runs: WindowAttention fused (runtime.backends.ort_graph)
        from runtime.backends.ort_graph import cpu_model
        fused_bytes = cpu_model(model_bytes)
        if fused_bytes is not model_bytes:
            fused = ort.InferenceSession(fused_bytes, sess_options=so, providers=["CPUExecutionProvider"])
            report["backend"] = "onnxruntime-cpu (function body and fused attention)"

        def runner(x: np.ndarray) -> dict[str, np.ndarray]:
            return dict(zip(names, sess.run(None, {"lq": x})))

        def runner_fused(x: np.ndarray) -> dict[str, np.ndarray]:
            return dict(zip(names, fused.run(None, {"lq": x})))
    except Exception as exc:  # e.g. NOT_IMPLEMENTED for an FP16 kernel on this CPU build
        if options.precision != "fp16":
            report.update(passed=False, failure=f"ONNX Runtime cannot load the graph: {str(exc).splitlines()[0][:200]}")
            return report
        report["backend"] = "torch-half (ONNX Runtime could not run the FP16 graph here)"
        report["notes"].append(str(exc).splitlines()[0][:200])
    if runner is None:
        from .fp16 import to_fp16_with_fp32_islands
        half = to_fp16_with_fp32_islands(model)

        def runner(x: np.ndarray) -> dict[str, np.ndarray]:
            with torch.no_grad():
                o = half(torch.from_numpy(x))
            res = {"sr": o.sr.float().numpy(), "indices": o.indices.numpy()}
            if o.uncertainty is not None:
                res["uncertainty"] = o.uncertainty.float().numpy()
            return res

    model = model.eval()
    failures = []
    pads_input = bool(getattr(options, "pad_input", False))
    for i, (kind, (n, h, w)) in enumerate(_cases(m, options.example_blocks, pads_input=pads_input)):
        img, note = natural_image(h, w, seed=i * 10)
        noise = np.random.default_rng(100 + i).random((max(n - 1, 0), 3, h, w), dtype=np.float32)
        x = np.concatenate([img[None], noise]).astype(np.float32)
        if f"natural input: {note}" not in report["notes"]:
            report["notes"].append(f"natural input: {note}")
        with torch.no_grad():
            o = model(torch.from_numpy(x))
        ref = {"sr": o.sr.numpy(), "indices": o.indices.numpy(),
               "uncertainty": o.uncertainty.numpy() if o.uncertainty is not None else None}
        got = runner(np.ascontiguousarray(x))
        if got["sr"].shape != ref["sr"].shape:
            failures.append(f"{kind} {n}x3x{h}x{w}: output shape {got['sr'].shape} != {ref['sr'].shape}")
            continue
        stats = compare_outputs(ref, got)
        case = {"input": kind, "shape": [n, 3, h, w], **stats}
        if fused is not None:  # both forms must pass; the case reports the worse of the two
            fstats = compare_outputs(ref, runner_fused(np.ascontiguousarray(x)))
            case["fused_attention"] = fstats
            worse = {"max_abs": max, "mean_abs": max, "max_abs_raw": max, "psnr_db": min, "index_agreement": min,
                     "uncertainty_max_abs": max}
            stats = {k: worse.get(k, lambda a, b: a)(v, fstats.get(k, v)) for k, v in stats.items()}
            case.update(stats)
        report["cases"].append(case)
        if options.precision == "fp32":
            if stats["max_abs"] > options.atol:
                failures.append(f"{kind} {n}x3x{h}x{w}: max abs error {stats['max_abs']:.2e} > {options.atol:.0e}")
            if stats.get("index_agreement", 1.0) < options.min_index_agreement:
                failures.append(f"{kind} {n}x3x{h}x{w}: index agreement {stats['index_agreement']:.4%}")
        elif stats["psnr_db"] < options.fp16_min_psnr:
            failures.append(f"{kind} {n}x3x{h}x{w}: FP16 PSNR {stats['psnr_db']:.1f} dB < {options.fp16_min_psnr} dB")
    report["passed"] = not failures
    report["failure"] = "; ".join(failures)
    return report


def format_report(report: dict[str, Any]) -> str:
    lines = [f"verification ({report['precision']}, opset {report['opset']}, {report['backend']}): "
             f"{'PASSED' if report.get('passed') else 'FAILED'}"]
    lines.append(f"  {'input':8} {'shape':16} {'max|d|':>9} {'mean|d|':>9} {'raw max':>9} {'PSNR dB':>8} {'idx agree':>9}")
    for c in report.get("cases", []):
        shape = "x".join(map(str, c["shape"]))
        agree = f"{c['index_agreement']:.4%}" if "index_agreement" in c else "-"
        lines.append(f"  {c['input']:8} {shape:16} {c['max_abs']:9.2e} {c['mean_abs']:9.2e} {c['max_abs_raw']:9.2e} "
                     f"{c['psnr_db']:8.1f} {agree:>9}")
    for note in report.get("notes", []):
        lines.append(f"  note: {note}")
    if report.get("failure"):
        lines.append(f"  failure: {report['failure']}")
    return "\n".join(lines)
