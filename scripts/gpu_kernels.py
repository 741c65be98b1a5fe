#!/usr/bin/env python3
"""One-shot GPU check of the fused codebook top-k (Triton) for a lent GPU machine (no internet needed).

    PYTHONPATH=. python scripts/gpu_kernels.py            # results in $OUT (default ./out)

Needs torch (CUDA), triton and numpy only; no TensorRT. Sections, each case in its own try/except
(a failure is recorded with its error and the run goes on):

1. ``correctness`` -- :func:`ugtsr.kernels.fused_topk.fused_topk` against ``ugtsr.codebook.knn_search``
   (PyTorch FP32, TF32 off) and float64 distances, rows near random codes, for N x K in
   {256, 1024, 4096} x d in {64, 512} x k in {1, 3, 5}, plus FP16 inputs and exact ties. Pass: indices
   identical on >= 99.99 % of the rows that are not near-ties (two of the k+1 nearest distances
   within 2e-5 of the norm scale), distances within 1e-3 relative of float64.
2. ``plugin`` -- the TensorRT plugin's kernel: ``codebook_topk_int32``; the JIT plugin body
   (``runtime.plugins.codebook_topk.run_codebook_topk``) on a side stream with
   ``__cuda_array_interface__`` objects as TensorRT passes them; the AOT PTX
   (``compile_codebook_topk_ptx``) loaded and launched through the CUDA driver with exactly the 7
   arguments TensorRT's AOT launcher passes.
3. ``peaks`` -- the device's measured peaks: FP32 (TF32 off) and TF32 ``torch.mm`` at 8192^3, and the
   bandwidth of a 1 GiB device-to-device copy (read + write), beside NVIDIA's datasheet figures for
   the GPUs named in ``NOMINAL`` (issue 13).
4. ``timing`` -- median ms (``triton.testing.do_bench``) of the standard-op search (``knn_search``:
   matmul + topk), ``torch.cdist`` + ``topk`` and the fused kernel (FP32 "ieee"; also TF32 and the
   plugin kernel) for N in {4096, 16384, 65536}, K in {1024, 4096}, d = 512, k = 3; achieved FLOP/s
   (``2 N K d``) and bytes/s (rows + codebook read once, ``N k`` indices and distances written) as
   shares of the measured peaks.
5. ``models`` -- ``tiny_x4`` and ``ugtsr_x4`` (random weights, the Top-k fusion and Align-Attention
   made non-zero) end to end in PyTorch CUDA at 256^2 and 512^2 LR: FP32 eager, FP16 eager
   (``.half()``), FP16 through a captured CUDA graph; median ms and ``max_memory_allocated``.
   ``torch.compile`` is left out: its compile time per model and shape (minutes) does not fit a
   4-minute session. Stops when ``MODELS_BUDGET_S`` is spent.
6. ``configs`` -- a few tile configurations at two sizes (skipped when the time budget is spent).

Writes ``$OUT/fused_topk.json`` after every section and prints a short table last. Designed to
finish in about 3 minutes on an H100/H200 (``scripts/gpu_session.sh`` bounds it at 4).

``--smoke`` runs the same code on the CPU at tiny sizes under ``TRITON_INTERPRET=1`` (no timing of
note, no driver launch): a self-test of this script where no GPU is available.
"""
from __future__ import annotations

import ctypes
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SMOKE = "--smoke" in sys.argv[1:]
if SMOKE:  # must precede the first triton import
    os.environ["TRITON_INTERPRET"] = "1"
DEVICE = "cpu" if SMOKE else "cuda"
T0 = time.perf_counter()
BUDGET_S = 200.0  # the optional configs section stops past this (the whole run must stay < 4 min)
MODELS_BUDGET_S = 120.0  # the models section stops starting new cases past this
# (N, K, d, k) grids; --smoke shrinks them
CORRECTNESS = [(n, kc, d, k) for kc in (256, 1024, 4096) for d in (64, 512) for k in (1, 3, 5)
               for n in (1000, 8193, 30001)]
FP16_CASES = [(4096, 1024, 512, 3), (1000, 4096, 64, 5)]
PLUGIN_CASES = [(1000, 1024, 512, 3), (8193, 4096, 512, 3), (777, 256, 64, 1), (4096, 1024, 64, 5)]
TIMING = [(n, kc) for n in (4096, 16384, 65536) for kc in (1024, 4096)]
MODEL_CASES = [(name, side) for name in ("tiny_x4", "ugtsr_x4") for side in (256, 512)]
PEAK_MM, PEAK_COPY_FLOATS = 8192, 2**28
#: NVIDIA datasheet figures (dense): FP32 TFLOP/s, TF32 tensor-core TFLOP/s, memory TB/s
NOMINAL = {"H100 80GB HBM3": (67.0, 494.7, 3.35), "H200": (67.0, 494.7, 4.8), "A100-SXM4-80GB": (19.5, 156.0, 2.04)}
CONFIG_SIZES = ((16384, 4096), (65536, 4096))
if SMOKE:
    CORRECTNESS = [(n, kc, d, k) for kc in (64, 200) for d in (16, 40) for k in (1, 3, 5) for n in (50, 97)]
    FP16_CASES = [(64, 128, 32, 3)]
    PLUGIN_CASES = [(70, 130, 48, 3), (33, 64, 16, 1)]
    TIMING = [(64, 128)]
    MODEL_CASES = [("tiny_x4", 32)]
    PEAK_MM, PEAK_COPY_FLOATS = 256, 2**20
    CONFIG_SIZES = ((96, 256),)
RESULTS: dict = {"env": {}, "correctness": [], "plugin": [], "peaks": {}, "timing": [], "models": [], "configs": [],
                 "errors": []}


def _elapsed() -> float:
    return time.perf_counter() - T0


def _out_dir() -> Path:
    out = Path(os.environ.get("OUT") or "out")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _save() -> None:
    RESULTS["elapsed_s"] = round(_elapsed(), 2)
    path = _out_dir() / "fused_topk.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(RESULTS, indent=2, default=str))
    os.replace(tmp, path)


def _record_error(section: str, case: dict, exc: BaseException) -> dict:
    entry = dict(case, ok=False, error=f"{type(exc).__name__}: {str(exc)[:500]}",
                 traceback=traceback.format_exc(limit=8)[-3000:])
    RESULTS["errors"].append({"section": section, **entry})
    print(f"[{section}] {case} FAILED: {type(exc).__name__}: {str(exc)[:200]}", file=sys.stderr, flush=True)
    return entry


# --------------------------------------------------------------------------------------------------
def section_env():
    import numpy as np
    import torch

    env = {"python": sys.version.split()[0], "platform": platform.platform(), "torch": torch.__version__,
           "numpy": np.__version__, "cuda_available": torch.cuda.is_available(),
           "torch_cuda": torch.version.cuda}
    try:
        import triton

        env["triton"] = triton.__version__
    except Exception as exc:  # recorded; the kernel sections then fail one by one with the reason
        env["triton"] = f"not importable: {exc}"
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        env.update(gpu=p.name, capability=f"{p.major}.{p.minor}", sms=p.multi_processor_count,
                   memory_gib=round(p.total_memory / 2**30, 1))
        try:
            libcuda = ctypes.CDLL("libcuda.so.1")
            v = ctypes.c_int()
            libcuda.cuDriverGetVersion(ctypes.byref(v))
            env["cuda_driver_api"] = f"{v.value // 1000}.{(v.value % 1000) // 10}"
        except OSError as exc:
            env["cuda_driver_api"] = f"libcuda not loadable: {exc}"
    torch.backends.cuda.matmul.allow_tf32 = False  # the reference is true FP32
    torch.backends.cudnn.allow_tf32 = False
    env["matmul_allow_tf32"] = torch.backends.cuda.matmul.allow_tf32
    RESULTS["env"] = env


def _problem(n, n_codes, d, *, seed, noise=0.3, dtype=None):
    import torch

    g = torch.Generator(device=DEVICE).manual_seed(seed)
    codebook = torch.randn(n_codes, d, device=DEVICE, generator=g)
    owner = torch.randint(0, n_codes, (n,), device=DEVICE, generator=g)
    rows = codebook[owner] + noise * torch.randn(n, d, device=DEVICE, generator=g)
    if dtype is not None:
        rows, codebook = rows.to(dtype), codebook.to(dtype)
    return rows, codebook


def _compare(rows, codebook, idx, dist, k, tie_tol=2e-5):
    """Agreement with float64 ranks (all rows / non-near-tie rows), near-tie share, max rel. distance error."""
    import torch

    from ugtsr import codebook as cb

    r64, c64 = rows.double(), codebook.double()
    d64 = cb.squared_distances(r64, c64)
    ref = torch.topk(d64, min(k + 1, codebook.shape[0]), dim=1, largest=False, sorted=True)
    scale = (r64 ** 2).sum(1) + (c64 ** 2).sum(1).max()
    gaps = ref.values[:, 1:] - ref.values[:, :-1]
    tie = (gaps <= tie_tol * scale[:, None]).any(1)
    same = (idx.long() == ref.indices[:, :k]).all(1)
    out = {"agree_f64": same.float().mean().item(),
           "agree_f64_non_tie": same[~tie].float().mean().item() if bool((~tie).any()) else 1.0,
           "near_tie_rows": tie.float().mean().item()}
    if dist is not None:
        exact = torch.gather(d64, 1, idx.long())
        out["dist_max_rel_err"] = ((dist.double() - exact).abs() / exact.abs().clamp_min(1e-6)).max().item()
    return out


def section_correctness():
    import torch

    from ugtsr import codebook as cb
    from ugtsr.kernels.fused_topk import fused_topk

    for i, (n, kc, d, k) in enumerate(CORRECTNESS):
        case = {"N": n, "K": kc, "d": d, "k": k, "dtype": "fp32"}
        try:
            rows, codebook = _problem(n, kc, d, seed=i)
            got = fused_topk(rows, codebook, None, k, backend="triton")
            _sync()
            ref = cb.knn_search(rows, codebook, k)
            stats = _compare(rows, codebook, got.indices, got.distances, k)
            stats["agree_knn_search"] = (got.indices == ref).all(1).float().mean().item()
            stats["agree_knn_search_vs_f64"] = _compare(rows, codebook, ref, None, k)["agree_f64"]
            ok = (stats["agree_f64_non_tie"] >= 0.9999 and stats["dist_max_rel_err"] <= 1e-3
                  and got.indices.dtype == torch.int64 and tuple(got.indices.shape) == (n, k))
            RESULTS["correctness"].append(dict(case, ok=bool(ok), **stats))
        except Exception as exc:  # record, continue
            RESULTS["correctness"].append(_record_error("correctness", case, exc))
    # FP16 inputs (products exact in FP32 accumulation): compare with float64 of the fp16 values
    for i, (n, kc, d, k) in enumerate(FP16_CASES):
        case = {"N": n, "K": kc, "d": d, "k": k, "dtype": "fp16"}
        try:
            rows, codebook = _problem(n, kc, d, seed=100 + i, dtype=torch.float16)
            got = fused_topk(rows, codebook, None, k, backend="triton")
            stats = _compare(rows, codebook, got.indices, got.distances, k)
            ok = stats["agree_f64_non_tie"] >= 0.999 and stats["dist_max_rel_err"] <= 1e-2
            RESULTS["correctness"].append(dict(case, ok=bool(ok), **stats))
        except Exception as exc:
            RESULTS["correctness"].append(_record_error("correctness", case, exc))
    # exact ties: duplicated codes -> the lower index first (as argmin), with and without a split search
    for splits in (1, 4):
        case = {"case": "exact ties", "num_splits": splits}
        try:
            rows, codebook = _problem(64 if SMOKE else 512, 1024, 64, seed=7)
            codebook[900] = codebook[5]
            rows[:8] = codebook[5] + 0.01
            got = fused_topk(rows, codebook, None, 2, num_splits=splits, backend="triton")
            ok = got.indices[:8, 0].eq(5).all().item() and got.indices[:8, 1].eq(900).all().item()
            RESULTS["correctness"].append(dict(case, ok=bool(ok), first=got.indices[:8].tolist()[:2]))
        except Exception as exc:
            RESULTS["correctness"].append(_record_error("correctness", case, exc))
    _save()


# --------------------------------------------------------------------------------------------------
class _CAI:
    """An object exposing only ``__cuda_array_interface__``, like TensorRT's ``trtp.Tensor``."""

    def __init__(self, t):
        self._t = t
        self.__cuda_array_interface__ = t.__cuda_array_interface__


def _launch_ptx_like_tensorrt(ptx: str, name: str, threads: int, shared: int, block_n: int, rows, codebook, sq,
                              out, stream_handle: int) -> None:
    """cuModuleLoadData + cuLaunchKernel with exactly (rows*, codebook*, sq*, N, K, d, out*)."""
    cuda = ctypes.CDLL("libcuda.so.1")

    def check(res, what):
        if res != 0:
            msg = ctypes.c_char_p()
            cuda.cuGetErrorString(res, ctypes.byref(msg))
            raise RuntimeError(f"{what} failed: CUresult {res} ({(msg.value or b'?').decode()})")

    module, func = ctypes.c_void_p(), ctypes.c_void_p()
    check(cuda.cuModuleLoadData(ctypes.byref(module), ctypes.c_char_p(ptx.encode())), "cuModuleLoadData(PTX)")
    try:
        check(cuda.cuModuleGetFunction(ctypes.byref(func), module, name.encode()), "cuModuleGetFunction")
        n, d = rows.shape
        values = [ctypes.c_uint64(rows.data_ptr()), ctypes.c_uint64(codebook.data_ptr()),
                  ctypes.c_uint64(sq.data_ptr()), ctypes.c_int32(n), ctypes.c_int32(codebook.shape[0]),
                  ctypes.c_int32(d), ctypes.c_uint64(out.data_ptr())]
        params = (ctypes.c_void_p * len(values))(*[ctypes.addressof(v) for v in values])  # void*[7]
        grid = -(-n // block_n)
        check(cuda.cuLaunchKernel(func, ctypes.c_uint(grid), ctypes.c_uint(1), ctypes.c_uint(1),
                                  ctypes.c_uint(threads), ctypes.c_uint(1), ctypes.c_uint(1),
                                  ctypes.c_uint(shared), ctypes.c_void_p(stream_handle), params, None),
              "cuLaunchKernel")
        check(cuda.cuStreamSynchronize(ctypes.c_void_p(stream_handle)), "cuStreamSynchronize")
    finally:
        cuda.cuModuleUnload(module)


def section_plugin():
    import torch

    from ugtsr import codebook as cb

    for n, kc, d, k in PLUGIN_CASES:
        case = {"what": "codebook_topk_int32", "N": n, "K": kc, "d": d, "k": k}
        try:
            from ugtsr.kernels.fused_topk import codebook_topk_int32

            rows, codebook = _problem(n, kc, d, seed=n + k)
            out = codebook_topk_int32(rows, codebook, cb.codebook_sq_norms(codebook), k)
            stats = _compare(rows, codebook, out, None, k)
            ok = out.dtype == torch.int32 and stats["agree_f64_non_tie"] >= 0.9999
            RESULTS["plugin"].append(dict(case, ok=bool(ok), **stats))
        except Exception as exc:
            RESULTS["plugin"].append(_record_error("plugin", case, exc))
    case = {"what": "JIT plugin body on a side stream (run_codebook_topk)", "N": 5000, "K": 1024, "d": 512, "k": 3}
    try:
        if SMOKE:
            raise RuntimeError("skipped in --smoke (needs CUDA streams)")
        from runtime.plugins.codebook_topk import run_codebook_topk

        rows, codebook = _problem(5000, 1024, 512, seed=11)
        sq = cb.codebook_sq_norms(codebook)
        out = torch.full((5000, 3), -1, dtype=torch.int32, device="cuda")
        side = torch.cuda.Stream()
        torch.cuda.synchronize()
        run_codebook_topk(_CAI(rows), _CAI(codebook), _CAI(sq), 3, _CAI(out), side.cuda_stream)
        side.synchronize()
        stats = _compare(rows, codebook, out, None, 3)
        RESULTS["plugin"].append(dict(case, ok=bool(stats["agree_f64_non_tie"] >= 0.9999), **stats))
    except Exception as exc:
        RESULTS["plugin"].append(_record_error("plugin", case, exc))
    for k in (1, 3):
        case = {"what": "AOT PTX launched like TensorRT (7 args)", "N": 3001, "K": 1024, "d": 512, "k": k}
        try:
            from ugtsr.kernels.fused_topk import compile_codebook_topk_ptx

            kern = compile_codebook_topk_ptx(k, target=(90, 32) if SMOKE else None)
            header = kern.ptx[kern.ptx.index(".entry"):]
            case.update(ptx_params=header[:header.index(")")].count(".param"), threads=kern.threads,
                        shared_mem=kern.shared_mem, ptx_version=next((ln.strip() for ln in kern.ptx.splitlines()
                                                                     if ln.strip().startswith(".version")), "?"))
            if SMOKE:
                raise RuntimeError(f"PTX compiled ({case['ptx_params']} params, {case['ptx_version']}); "
                                   "driver launch skipped in --smoke")
            rows, codebook = _problem(3001, 1024, 512, seed=21 + k)
            sq = cb.codebook_sq_norms(codebook)
            out = torch.full((3001, k), -1, dtype=torch.int32, device="cuda")
            torch.cuda.synchronize()
            stream = torch.cuda.Stream()
            _launch_ptx_like_tensorrt(kern.ptx, kern.name, kern.threads, kern.shared_mem, kern.block_n, rows,
                                      codebook, sq, out, stream.cuda_stream)
            stats = _compare(rows, codebook, out, None, k)
            ok = case["ptx_params"] == 7 and stats["agree_f64_non_tie"] >= 0.9999
            RESULTS["plugin"].append(dict(case, ok=bool(ok), **stats))
        except Exception as exc:
            RESULTS["plugin"].append(_record_error("plugin", case, exc))
    _save()


# --------------------------------------------------------------------------------------------------
def _sync() -> None:
    import torch

    if DEVICE == "cuda":
        torch.cuda.synchronize()


def _bench(func, *args, **kwargs) -> float:
    """Median milliseconds of ``func(*args, **kwargs)``."""
    import torch

    def fn():
        return func(*args, **kwargs)

    if SMOKE:
        t = time.perf_counter()
        fn()
        return (time.perf_counter() - t) * 1e3
    try:
        import triton.testing

        q = triton.testing.do_bench(fn, warmup=10, rep=60, quantiles=[0.5, 0.2, 0.8])
        return float(q[0])
    except Exception:  # fall back to CUDA events
        fn()
        torch.cuda.synchronize()
        times = []
        for _ in range(20):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b))
        return float(sorted(times)[len(times) // 2])


def section_peaks():
    """Measured FP32 / TF32 matmul FLOP/s and copy bandwidth; datasheet figures where the GPU is known."""
    import torch

    n = PEAK_MM
    a = torch.randn(n, n, device=DEVICE)
    b = torch.randn(n, n, device=DEVICE)
    peaks = {"matmul_n": n}
    for label, tf32 in (("fp32", False), ("tf32", True)):
        torch.backends.cuda.matmul.allow_tf32 = tf32
        try:
            ms = _bench(torch.mm, a, b)
            peaks[f"{label}_tflops"] = 2.0 * n**3 / (ms * 1e9)
        finally:
            torch.backends.cuda.matmul.allow_tf32 = False
    del a, b
    src = torch.empty(PEAK_COPY_FLOATS, device=DEVICE)
    dst = torch.empty_like(src)
    ms = _bench(dst.copy_, src)
    peaks["copy_bytes"] = 2 * src.numel() * 4
    peaks["bandwidth_tbps"] = peaks["copy_bytes"] / (ms * 1e9)
    name = RESULTS["env"].get("gpu", "")
    nominal = next((v for k, v in NOMINAL.items() if k.lower() in name.lower()), None)
    if nominal:
        peaks["nominal"] = {"fp32_tflops": nominal[0], "tf32_tflops": nominal[1], "bandwidth_tbps": nominal[2],
                            "source": "NVIDIA datasheet (dense)"}
    RESULTS["peaks"] = peaks
    del src, dst
    if DEVICE == "cuda":
        torch.cuda.empty_cache()
    _save()


def section_timing():
    import torch

    from ugtsr import codebook as cb
    from ugtsr.kernels.fused_topk import codebook_topk_int32, fused_topk

    def cdist_topk(rows, codebook, k):
        return torch.cdist(rows, codebook).topk(k, dim=1, largest=False)

    peaks = RESULTS.get("peaks") or {}
    for n, kc in TIMING:
        d, k = 512, 3
        case = {"N": n, "K": kc, "d": d, "k": k}
        try:
            rows, codebook = _problem(n, kc, d, seed=n + kc)
            sq = cb.codebook_sq_norms(codebook)
            out = torch.empty(n, k, dtype=torch.int32, device=DEVICE)
            case["unfused_ms"] = _bench(cb.knn_search, rows, codebook, k)
            case["cdist_topk_ms"] = _bench(cdist_topk, rows, codebook, k)
            case["fused_ms"] = _bench(fused_topk, rows, codebook, sq, k, backend="triton")
            case["fused_tf32_ms"] = _bench(fused_topk, rows, codebook, sq, k, backend="triton", input_precision="tf32")
            case["plugin_kernel_ms"] = _bench(codebook_topk_int32, rows, codebook, sq, k, out=out)
            case["speedup"] = case["unfused_ms"] / case["fused_ms"]
            flops, moved = 2.0 * n * kc * d, 4.0 * (n * d + kc * d) + 8.0 * n * k
            for key in ("unfused", "cdist_topk", "fused", "fused_tf32"):
                ms = case[f"{key}_ms"]
                case[f"{key}_tflops"] = flops / (ms * 1e9)
                case[f"{key}_tbps"] = moved / (ms * 1e9)
                if peaks.get("fp32_tflops"):
                    ref = peaks["tf32_tflops"] if key == "fused_tf32" else peaks["fp32_tflops"]
                    case[f"{key}_share_of_peak_flops"] = case[f"{key}_tflops"] / ref
                    case[f"{key}_share_of_peak_bw"] = case[f"{key}_tbps"] / peaks["bandwidth_tbps"]
            case["gflops_fused"] = flops / (case["fused_ms"] * 1e6)
            RESULTS["timing"].append(dict(case, ok=True))
        except Exception as exc:
            RESULTS["timing"].append(_record_error("timing", case, exc))
        finally:
            if DEVICE == "cuda":
                torch.cuda.empty_cache()
    _save()


def _model(name):
    import torch

    import ugtsr

    torch.manual_seed(0)
    model = ugtsr.build_model(name).eval()
    with torch.no_grad():  # zero-initialised residual outputs would make those paths identities
        if getattr(model.matcher, "fusion", None) is not None:
            torch.nn.init.normal_(model.matcher.fusion.out.weight, std=0.02)
        for aa in model.skip_fusion or []:
            torch.nn.init.normal_(aa.proj.weight, std=0.02)
    return model.to(DEVICE)


def _graphed(model, x):
    """``model`` on a static input captured in a CUDA graph: returns ``replay() -> sr``."""
    import torch

    static = x.clone()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream), torch.no_grad():
        for _ in range(2):
            model(static)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph), torch.no_grad():
        out = model(static).sr

    def replay(_=None):
        graph.replay()
        return out
    return replay


def section_models():
    import torch

    t_start = _elapsed()
    for name, side in MODEL_CASES:
        model = None
        for mode in ("fp32", "fp16", "fp16_cuda_graph"):
            case = {"model": name, "lr": side, "mode": mode}
            if _elapsed() - t_start > MODELS_BUDGET_S:
                RESULTS["models"].append(dict(case, skipped=f"models budget ({MODELS_BUDGET_S:.0f} s) spent"))
                continue
            if SMOKE and mode != "fp32":
                continue
            try:
                if model is None:
                    model = _model(name)
                m = model.half() if mode != "fp32" else model.float()
                x = torch.rand(1, 3, side, side, device=DEVICE, dtype=torch.float16 if mode != "fp32" else torch.float32)
                if DEVICE == "cuda":
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats()
                    base = torch.cuda.memory_allocated()
                with torch.no_grad():
                    fn = _graphed(m, x) if mode == "fp16_cuda_graph" else (lambda inp, m=m: m(inp).sr)
                    sr = fn(x)
                    case["finite"] = bool(torch.isfinite(sr).all().item())
                    case["ms"] = _bench(fn, x)
                case["output"] = list(sr.shape)
                if DEVICE == "cuda":
                    case["peak_mib_above_model"] = (torch.cuda.max_memory_allocated() - base) / 2**20
                    case["peak_kib_per_input_pixel"] = (torch.cuda.max_memory_allocated() - base) / 1024 / side**2
                RESULTS["models"].append(dict(case, ok=case["finite"]))
                del sr, fn, x
            except Exception as exc:
                RESULTS["models"].append(_record_error("models", case, exc))
            finally:
                if DEVICE == "cuda":
                    torch.cuda.empty_cache()
            _save()
        del model
    _save()


def section_configs():
    import torch

    from ugtsr import codebook as cb
    from ugtsr.kernels.fused_topk import KernelConfig, fused_topk

    configs = [(32, 64, 32, 4), (64, 64, 32, 8), (64, 64, 32, 4), (32, 64, 32, 8), (64, 128, 32, 8),
               (128, 64, 32, 8), (32, 32, 32, 4)]
    for n, kc in CONFIG_SIZES:
        rows, codebook = _problem(n, kc, 512, seed=5)
        sq = cb.codebook_sq_norms(codebook)
        for bn, bk, bd, nw in configs:
            if _elapsed() > BUDGET_S:
                RESULTS["configs"].append({"skipped": f"time budget ({BUDGET_S:.0f} s) spent"})
                _save()
                return
            case = {"N": n, "K": kc, "block_n": bn, "block_k": bk, "block_d": bd, "num_warps": nw}
            try:
                cfg = KernelConfig(block_n=bn, block_k=bk, block_d=bd, num_warps=nw)
                got = fused_topk(rows, codebook, sq, 3, config=cfg, backend="triton")
                base = fused_topk(rows, codebook, sq, 3, backend="triton")
                ok = (got.indices == base.indices).all(1).float().mean().item() >= 0.9999
                case["ms"] = _bench(fused_topk, rows, codebook, sq, 3, config=cfg, backend="triton")
                RESULTS["configs"].append(dict(case, ok=bool(ok)))
            except Exception as exc:
                RESULTS["configs"].append(_record_error("configs", case, exc))
        del rows, codebook
        if DEVICE == "cuda":
            torch.cuda.empty_cache()
    _save()


# --------------------------------------------------------------------------------------------------
def _table() -> str:
    lines = []
    env = RESULTS["env"]
    lines.append(f"GPU {env.get('gpu', '?')} (sm {env.get('capability', '?')}), torch {env.get('torch')}, "
                 f"triton {env.get('triton')}, driver CUDA {env.get('cuda_driver_api', '?')}")
    corr = RESULTS["correctness"]
    bad = [c for c in corr if not c.get("ok")]
    worst = min((c.get("agree_f64_non_tie", 1.0) for c in corr if "agree_f64_non_tie" in c), default=float("nan"))
    worst_all = min((c.get("agree_f64", 1.0) for c in corr if "agree_f64" in c), default=float("nan"))
    worst_knn = min((c.get("agree_knn_search", 1.0) for c in corr if "agree_knn_search" in c), default=float("nan"))
    max_rel = max((c.get("dist_max_rel_err", 0.0) for c in corr if "dist_max_rel_err" in c), default=float("nan"))
    lines.append(f"correctness: {len(corr) - len(bad)}/{len(corr)} ok; worst index agreement vs float64 "
                 f"{worst:.6f} (non-tie rows) / {worst_all:.6f} (all rows), vs knn_search {worst_knn:.6f}; "
                 f"max dist rel err {max_rel:.2e}")
    for c in bad[:6]:
        lines.append(f"  FAILED {({k: v for k, v in c.items() if k not in ('traceback',)})}")
    for p in RESULTS["plugin"]:
        status = "ok" if p.get("ok") else "FAILED"
        extra = p.get("error") or f"agree {p.get('agree_f64_non_tie', float('nan')):.6f}"
        lines.append(f"plugin: {p['what']} N={p['N']} k={p['k']}: {status} ({extra})")
    pk = RESULTS.get("peaks") or {}
    if pk.get("fp32_tflops"):
        lines.append(f"peaks (measured): fp32 {pk['fp32_tflops']:.1f} TFLOP/s, tf32 {pk['tf32_tflops']:.1f} TFLOP/s, "
                     f"copy {pk['bandwidth_tbps']:.2f} TB/s; nominal {pk.get('nominal', 'unknown GPU')}")
    lines.append(f"{'N':>6} {'K':>5} {'unfused ms':>11} {'cdist ms':>9} {'fused ms':>9} {'tf32 ms':>8} {'plugin ms':>9} "
                 f"{'speedup':>8} {'fused TFLOP/s':>14} {'fused TB/s':>11}")
    for t in RESULTS["timing"]:
        if t.get("ok"):
            lines.append(f"{t['N']:>6} {t['K']:>5} {t['unfused_ms']:>11.3f} {t['cdist_topk_ms']:>9.3f} "
                         f"{t['fused_ms']:>9.3f} {t['fused_tf32_ms']:>8.3f} {t['plugin_kernel_ms']:>9.3f} "
                         f"{t['speedup']:>7.2f}x {t['fused_tflops']:>14.2f} {t['fused_tbps']:>11.3f}")
        else:
            lines.append(f"{t['N']:>6} {t['K']:>5} FAILED {t.get('error', '')[:80]}")
    for m in RESULTS["models"]:
        if m.get("ok"):
            lines.append(f"model {m['model']} {m['lr']}^2 {m['mode']}: {m['ms']:.2f} ms, peak "
                         f"{m.get('peak_mib_above_model', float('nan')):.0f} MiB above the model")
        else:
            lines.append(f"model {m['model']} {m['lr']}^2 {m['mode']}: {m.get('skipped') or 'FAILED ' + m.get('error', '')[:80]}")
    cfgs = [c for c in RESULTS["configs"] if c.get("ok")]
    for n in sorted({c["N"] for c in cfgs}):
        best = min((c for c in cfgs if c["N"] == n), key=lambda c: c["ms"])
        lines.append(f"best config N={n}: BLOCK_N={best['block_n']} BLOCK_K={best['block_k']} "
                     f"BLOCK_D={best['block_d']} warps={best['num_warps']} {best['ms']:.3f} ms")
    lines.append(f"errors: {len(RESULTS['errors'])}; elapsed {_elapsed():.1f} s; JSON: {_out_dir() / 'fused_topk.json'}")
    return "\n".join(lines)


def main() -> int:
    for name, fn in (("env", section_env), ("correctness", section_correctness), ("plugin", section_plugin),
                     ("peaks", section_peaks), ("timing", section_timing), ("models", section_models),
                     ("configs", section_configs)):
        t = time.perf_counter()
        try:
            if name != "env" and not (RESULTS["env"].get("cuda_available") or SMOKE):
                RESULTS["errors"].append({"section": name, "error": "no CUDA device; section skipped"})
                continue
            fn()
        except Exception as exc:  # a whole section failed (e.g. import error): record and go on
            _record_error(name, {"section": name}, exc)
        finally:
            RESULTS.setdefault("section_seconds", {})[name] = round(time.perf_counter() - t, 2)
            _save()
    print(_table(), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
