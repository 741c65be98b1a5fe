#!/usr/bin/env python3
"""One-shot GPU check of the TensorRT path, for a lent GPU machine (no internet needed).

    python scripts/gpu_check.py --onnx model_fp32.onnx --onnx-fp16 model_fp16.onnx --out OUT_DIR
    python scripts/gpu_check.py --make-toy --out OUT_DIR        # no exported model at hand

Records the machine (``nvidia-smi``, torch, TensorRT, ONNX Runtime, cuda-python / pycuda versions)
and, when TensorRT is importable, builds engines with :mod:`runtime.build` (FP16 from the FP16 ONNX,
and FP32 from the FP32 ONNX unless ``--no-fp32-engine``), runs them with
:class:`runtime.backends.tensorrt.TensorRTBackend`, and compares them with ONNX Runtime (CPU) on
the FP32 ONNX: a natural photo (scikit-image's astronaut, cropped) and uniform random input, each at
the ``--sizes`` given. Metrics per output: max/mean absolute error; PSNR of the clamped ``sr``;
index agreement for ``indices``. When TensorRT is not importable it says so and lists the checks it
skipped instead of failing. Every stage runs in its own try/except that records the error text and
moves on. Results: ``OUT_DIR/gpu_check.json`` plus a table on stdout.
"""
from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

TRT_CHECKS = ["build_fp16_engine", "run_fp16_engine_vs_ort", "build_fp32_engine", "run_fp32_engine_vs_ort",
              "engine_fresh_after_build", "rebuild_skipped_when_up_to_date"]


class Report:
    """Collects every stage's outcome; a failing stage records its error and the run continues."""

    def __init__(self) -> None:
        self.data: dict = {"stages": {}, "skipped": [], "comparisons": []}

    def stage(self, name: str, fn, *args, **kwargs):
        t0 = time.perf_counter()
        entry: dict = {}
        try:
            result = fn(*args, **kwargs)
            entry.update(ok=True)
            if isinstance(result, dict):
                entry.update(result)
            return result
        except Exception as exc:  # record and continue: this script must always finish
            entry.update(ok=False, error=f"{type(exc).__name__}: {exc}",
                         traceback=traceback.format_exc(limit=6))
            print(f"[{name}] FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
            return None
        finally:
            entry["seconds"] = round(time.perf_counter() - t0, 3)
            self.data["stages"][name] = entry


# --------------------------------------------------------------------------------------------------
# environment
# --------------------------------------------------------------------------------------------------
def _run(cmd: list[str]) -> str:
    exe = shutil.which(cmd[0])
    if exe is None:
        return f"{cmd[0]}: not found"
    out = subprocess.run([exe, *cmd[1:]], capture_output=True, text=True, timeout=60)
    return (out.stdout + out.stderr).strip()


def _version(module: str) -> str:
    try:
        mod = importlib.import_module(module)
    except Exception as exc:  # ImportError, or a broken install raising anything else
        return f"not importable ({type(exc).__name__}: {exc})"
    return str(getattr(mod, "__version__", "unknown version"))


def collect_env() -> dict:
    env = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "nvidia_smi": _run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,compute_cap",
                            "--format=csv,noheader"]),
        "nvidia_smi_full": _run(["nvidia-smi"])[:4000],
        "numpy": np.__version__,
        "tensorrt": _version("tensorrt"),
        "onnxruntime": _version("onnxruntime"),
        "onnx": _version("onnx"),
        "cuda_bindings": _version("cuda.bindings"),
        "pycuda": _version("pycuda"),
        "torch": _version("torch"),
    }
    try:
        import torch

        env["torch_cuda"] = torch.version.cuda
        env["torch_cuda_available"] = bool(torch.cuda.is_available())
        if torch.cuda.is_available():
            env["torch_device"] = torch.cuda.get_device_name(0)
    except Exception as exc:  # torch is optional here
        env["torch_error"] = f"{type(exc).__name__}: {exc}"
    try:
        import onnxruntime as ort

        env["onnxruntime_providers"] = ort.get_available_providers()
    except Exception as exc:
        env["onnxruntime_error"] = f"{type(exc).__name__}: {exc}"
    return env


# --------------------------------------------------------------------------------------------------
# toy models (for a machine without an exported model)
# --------------------------------------------------------------------------------------------------
def make_toy_models(out: Path) -> dict:
    """A tiny x2 "SR" model (Conv + DepthToSpace, outputs sr and uncertainty), FP32 and FP16 ONNX."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w_sr = (rng.standard_normal((12, 3, 3, 3)) * 0.2).astype(np.float32)
    w_un = (rng.standard_normal((12, 3, 3, 3)) * 0.2).astype(np.float32)
    paths = {}
    for precision in ("fp32", "fp16"):
        wt = np.float16 if precision == "fp16" else np.float32
        nodes, src = [], "lq"
        if precision == "fp16":
            nodes.append(helper.make_node("Cast", ["lq"], ["lq16"], to=TensorProto.FLOAT16, name="cast_in"))
            src = "lq16"
        for out_name, w in (("sr", "w_sr"), ("uncertainty", "w_un")):
            tail = f"{out_name}_h" if precision == "fp16" else out_name
            nodes.append(helper.make_node("Conv", [src, w], [f"{out_name}_c"], pads=[1, 1, 1, 1], name=f"conv_{out_name}"))
            nodes.append(helper.make_node("DepthToSpace", [f"{out_name}_c"], [tail], blocksize=2, name=f"d2s_{out_name}"))
            if precision == "fp16":
                nodes.append(helper.make_node("Cast", [tail], [out_name], to=TensorProto.FLOAT, name=f"cast_{out_name}"))
        graph = helper.make_graph(
            nodes, f"toy_{precision}",
            [helper.make_tensor_value_info("lq", TensorProto.FLOAT, ["N", 3, "H", "W"])],
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 3, "H2", "W2"]) for n in ("sr", "uncertainty")],
            [numpy_helper.from_array(w_sr.astype(wt), "w_sr"), numpy_helper.from_array(w_un.astype(wt), "w_un")],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        helper.set_model_props(model, {
            "ugtsr_format": "1", "scale": "2", "multiple_of": "8", "min_size": "8",
            "outputs": "sr,uncertainty", "precision": precision, "config": "{}", "ugtsr_version": "toy",
            "matching": "nearest", "opset": "17", "variant": "standard",
        })
        onnx.checker.check_model(model)
        paths[precision] = out / f"toy_{precision}.onnx"
        onnx.save(model, str(paths[precision]))
    return {"fp32": str(paths["fp32"]), "fp16": str(paths["fp16"])}


# --------------------------------------------------------------------------------------------------
# inputs, reference, metrics
# --------------------------------------------------------------------------------------------------
def parse_sizes(text: str) -> list[tuple[int, int]]:
    sizes = []
    for item in text.split(","):
        h, w = (int(v) for v in item.lower().split("x"))
        sizes.append((h, w))
    return sizes


def make_inputs(sizes: list[tuple[int, int]]) -> dict[str, np.ndarray]:
    """``{name: (1, 3, H, W) float32 in [0, 1]}``: astronaut crops and seeded uniform noise."""
    inputs = {}
    photo = None
    try:
        from skimage import data

        photo = data.astronaut().astype(np.float32) / 255.0  # (512, 512, 3) RGB
    except Exception as exc:
        print(f"skimage astronaut unavailable ({exc}); using random inputs only", file=sys.stderr)
    rng = np.random.default_rng(1234)
    for h, w in sizes:
        if photo is not None:
            reps = (math.ceil(h / photo.shape[0]), math.ceil(w / photo.shape[1]), 1)
            big = np.tile(photo, reps) if reps[:2] != (1, 1) else photo
            top, left = (big.shape[0] - h) // 4, (big.shape[1] - w) // 2   # the face region
            crop = big[top:top + h, left:left + w]
            inputs[f"astronaut_{h}x{w}"] = np.ascontiguousarray(crop.transpose(2, 0, 1)[None])
        inputs[f"random_{h}x{w}"] = rng.random((1, 3, h, w), dtype=np.float32)
    return inputs


def ort_run(onnx_path: str, inputs: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return {k: dict(zip(names, sess.run(None, {"lq": x}))) for k, x in inputs.items()}


def compare(name: str, engine: str, ref: dict[str, np.ndarray], got: dict[str, np.ndarray]) -> dict:
    row: dict = {"input": name, "engine": engine}
    for out, r in ref.items():
        if out not in got:
            row[f"{out}_missing"] = True
            continue
        g = got[out]
        if g.shape != r.shape:
            row[f"{out}_shape_mismatch"] = [list(r.shape), list(g.shape)]
            continue
        if out == "indices":
            row["indices_agreement"] = float(np.mean(g == r))
            continue
        diff = np.abs(g.astype(np.float64) - r.astype(np.float64))
        row[f"{out}_max_abs"] = float(diff.max())
        row[f"{out}_mean_abs"] = float(diff.mean())
        row[f"{out}_nan"] = int(np.isnan(g).sum())
        if out == "sr":
            mse = float(np.mean((np.clip(g, 0, 1).astype(np.float64) - np.clip(r, 0, 1)) ** 2))
            row["sr_psnr_db"] = None if mse == 0 else round(10 * math.log10(1.0 / mse), 2)
    return row


def run_engine(engine_path: str, onnx_path: str, inputs: dict, refs: dict, label: str,
               report: Report, repeats: int) -> dict:
    from runtime.backends.tensorrt import TensorRTBackend

    rows, times = [], {}
    with TensorRTBackend(engine_path, onnx=onnx_path, rebuild="never") as be:
        for name, x in inputs.items():
            out = be.run(x)
            rows.append(compare(name, label, refs[name], out))
            t = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                be.run(x)
                t.append(time.perf_counter() - t0)
            times[name] = round(1000 * float(np.median(t)), 3)
        info = {"max_hw": list(be.max_hw), "precision": be.info.precision, "outputs": list(be.info.outputs)}
    for row in rows:
        row["median_ms_incl_copies"] = times[row["input"]]
    report.data["comparisons"].extend(rows)
    return {"rows": len(rows), "backend": info, "median_ms": times}


def build(onnx_path: str, engine_path: Path, sizes, args) -> dict:
    from runtime.build import BuildOptions, build_engine

    hs, ws = [h for h, _ in sizes], [w for _, w in sizes]
    options = BuildOptions(min_shape=(1, 3, min(hs), min(ws)), opt_shape=(1, 3, max(hs), max(ws)),
                           max_shape=(2, 3, max(hs), max(ws)), workspace_gib=args.workspace,
                           opt_level=args.opt_level, timing_cache=str(engine_path.parent / "timing.cache"))
    result = build_engine(onnx_path, engine_path, options, force=True)
    return {"built": result.built, "seconds": round(result.seconds, 2), "trtexec": result.trtexec,
            "sidecar": result.meta.to_dict()}


def cuda_mem_roundtrip() -> dict:
    """H2D + D2H through runtime.cuda_mem (needs cuda-python or pycuda, not TensorRT)."""
    from runtime.cuda_mem import get_cuda_api

    api = get_cuda_api()
    props = api.device_properties(0)
    api.set_device(0)
    stream = api.stream_create()
    x = np.arange(1 << 20, dtype=np.float32)
    y = np.empty_like(x)
    buf = api.malloc(x.nbytes)
    try:
        api.memcpy_htod_async(buf, x, stream)
        api.memcpy_dtoh_async(y, buf, stream)
        api.stream_synchronize(stream)
    finally:
        buf.free()
        api.stream_destroy(stream)
    if not np.array_equal(x, y):
        raise RuntimeError("device round trip changed the data")
    return {"binding": api.name, "device": props.name, "compute_capability": props.compute_capability}


# --------------------------------------------------------------------------------------------------
def print_table(rows: list[dict]) -> None:
    cols = ["engine", "input", "sr_max_abs", "sr_mean_abs", "sr_psnr_db", "uncertainty_max_abs",
            "indices_agreement", "median_ms_incl_copies"]
    cols = [c for c in cols if any(c in r for r in rows)]
    print(" | ".join(f"{c:>22}" for c in cols))
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c, "")
            if c == "sr_psnr_db" and c in r and v is None:
                v = "inf"
            cells.append(f"{v:>22.6g}" if isinstance(v, float) else f"{v!s:>22}")
        print(" | ".join(cells))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--onnx", help="FP32 ONNX (the reference, and the FP32 engine)")
    p.add_argument("--onnx-fp16", help="FP16 ONNX (the FP16 engine)")
    p.add_argument("--out", required=True, help="output folder for engines and gpu_check.json")
    p.add_argument("--sizes", default="64x64,96x128", help="input sizes HxW, comma separated")
    p.add_argument("--make-toy", action="store_true", help="make toy FP32/FP16 ONNX models when none are given")
    p.add_argument("--no-fp32-engine", action="store_true", help="skip the FP32 engine build")
    p.add_argument("--opt-level", type=int, default=3)
    p.add_argument("--workspace", type=float, default=4.0)
    p.add_argument("--repeats", type=int, default=10)
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = Report()
    report.data["argv"] = sys.argv if argv is None else ["gpu_check.py", *argv]
    report.data["env"] = report.stage("env", collect_env) or {}

    onnx32, onnx16 = args.onnx, args.onnx_fp16
    if args.make_toy and not (onnx32 or onnx16):
        toys = report.stage("make_toy_models", make_toy_models, out)
        if toys:
            onnx32, onnx16 = toys["fp32"], toys["fp16"]
    report.data["models"] = {"fp32": onnx32, "fp16": onnx16}

    sizes = parse_sizes(args.sizes)
    inputs = report.stage("make_inputs", make_inputs, sizes) or {}
    refs = None
    if onnx32 and inputs:
        refs = report.stage("ort_cpu_reference_fp32", ort_run, onnx32, inputs)
    if onnx16 and inputs and refs:
        def _ort_fp16():
            got = ort_run(onnx16, inputs)
            rows = [compare(k, "ort-cpu-fp16-onnx", refs[k], got[k]) for k in inputs]
            report.data["comparisons"].extend(rows)
            return {"rows": len(rows)}
        report.stage("ort_cpu_fp16_onnx_vs_fp32", _ort_fp16)

    report.stage("cuda_mem_roundtrip", cuda_mem_roundtrip)

    try:
        import tensorrt  # noqa: F401
        trt_ok, trt_err = True, ""
    except Exception as exc:  # ImportError or a broken install
        trt_ok, trt_err = False, f"{type(exc).__name__}: {exc}"
    report.data["tensorrt_importable"] = trt_ok
    if not trt_ok:
        report.data["tensorrt_import_error"] = trt_err
        report.data["skipped"] = [f"{c} (TensorRT is not importable: {trt_err})" for c in TRT_CHECKS]
        print(f"TensorRT is not importable ({trt_err}); skipped: {', '.join(TRT_CHECKS)}")
    elif refs is None:
        report.data["skipped"] = [f"{c} (no ONNX Runtime reference)" for c in TRT_CHECKS]
    else:
        engines = [("fp16", onnx16)] + ([] if args.no_fp32_engine else [("fp32", onnx32)])
        for label, onnx_path in engines:
            if not onnx_path:
                report.data["skipped"].append(f"build_{label}_engine (no {label} ONNX given)")
                continue
            engine = out / f"model_{label}.plan"
            built = report.stage(f"build_{label}_engine", build, onnx_path, engine, sizes, args)
            if built:
                report.stage(f"run_{label}_engine_vs_ort", run_engine, str(engine), onnx_path, inputs, refs,
                             f"trt-{label}", report, args.repeats)
                if label == "fp16":
                    def _fresh(engine=engine, onnx_path=onnx_path):
                        from runtime.engine_meta import check_engine_fresh
                        reasons = check_engine_fresh(engine, onnx_path)
                        if reasons:
                            raise RuntimeError("; ".join(reasons))
                        return {"reasons": reasons}
                    report.stage("engine_fresh_after_build", _fresh)

                    def _skip(engine=engine, onnx_path=onnx_path):
                        from runtime.build import BuildOptions, build_engine
                        from runtime.engine_meta import read_sidecar
                        opts = BuildOptions.from_meta(read_sidecar(engine))
                        res = build_engine(onnx_path, engine, opts)
                        if res.built:
                            raise RuntimeError("an up-to-date engine was rebuilt")
                        return {"built": res.built}
                    report.stage("rebuild_skipped_when_up_to_date", _skip)

    path = out / "gpu_check.json"
    path.write_text(json.dumps(report.data, indent=2, default=str) + "\n")
    if report.data["comparisons"]:
        print_table(report.data["comparisons"])
    failed = [k for k, v in report.data["stages"].items() if not v.get("ok")]
    print(f"wrote {path}; stages ok: {sum(v.get('ok', False) for v in report.data['stages'].values())}, "
          f"failed: {failed or 'none'}, skipped: {len(report.data['skipped'])}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
