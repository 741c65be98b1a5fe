"""Fused codebook top-k: the PyTorch reference, lazy imports, the Triton kernel (interpreter on CPU when
triton is installed, compiled on a CUDA GPU) against ``ugtsr.codebook.knn_search``."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from ugtsr import codebook as cb
from ugtsr.errors import MissingDependencyError, UnsupportedInputError
from ugtsr.kernels.fused_topk import (
    MAX_K,
    _drop_unused_trailing_params,
    fused_topk,
    fused_topk_reference,
)

REPO = Path(__file__).resolve().parents[2]
HAS_TRITON = importlib.util.find_spec("triton") is not None
HAS_CUDA = torch.cuda.is_available()


def _problem(n: int, n_codes: int, d: int, *, seed: int = 0, noise: float = 0.3, device: str = "cpu"):
    """Rows near random codes (``code + noise``): the nearest code is unambiguous."""
    g = torch.Generator().manual_seed(seed)
    codebook = torch.randn(n_codes, d, generator=g)
    owner = torch.randint(0, n_codes, (n,), generator=g)
    rows = codebook[owner] + noise * torch.randn(n, d, generator=g)
    return rows.to(device), codebook.to(device)


def _agreement(rows, codebook, idx, dist, k, *, tie_tol=2e-5):
    """Compare ``idx``/``dist`` with float64 distances. Near-tie rows: two of the k+1 smallest
    distances closer than ``tie_tol * (||z||^2 + max ||e||^2)`` (FP32 rounding may order them
    either way). Returns (agreement on all rows, on non-tie rows, tie share, max relative distance error)."""
    r64, c64 = rows.double(), codebook.double()
    d64 = cb.squared_distances(r64, c64)
    ref = torch.topk(d64, min(k + 1, codebook.shape[0]), dim=1, largest=False, sorted=True)
    scale = (r64**2).sum(1) + (c64**2).sum(1).max()
    gaps = ref.values[:, 1:] - ref.values[:, :-1]
    tie = (gaps <= tie_tol * scale[:, None]).any(dim=1) if gaps.shape[1] else torch.zeros(len(rows), dtype=torch.bool)
    same = (idx.long() == ref.indices[:, :k]).all(dim=1)
    exact = torch.gather(d64, 1, idx.long())
    rel = ((dist.double() - exact).abs() / exact.abs().clamp_min(1e-6)).max().item() if dist is not None else 0.0
    non_tie = same[~tie].float().mean().item() if (~tie).any() else 1.0
    return same.float().mean().item(), non_tie, tie.float().mean().item(), rel


# ------------------------------------------------------------------------------------------------ reference
@pytest.mark.parametrize("k", [1, 3, 5])
def test_reference_matches_knn_search_and_is_sorted(k):
    rows, codebook = _problem(300, 128, 24)
    res = fused_topk_reference(rows, codebook, None, k)
    assert res.indices.dtype == torch.int64 and res.distances.dtype == torch.float32
    assert res.indices.shape == res.distances.shape == (300, k)
    assert torch.equal(res.indices, cb.knn_search(rows, codebook, k))
    assert torch.all(res.distances[:, 1:] >= res.distances[:, :-1])
    exact = torch.gather(cb.squared_distances(rows.double(), codebook.double()), 1, res.indices)
    assert torch.allclose(res.distances.double(), exact, rtol=1e-4, atol=1e-3)
    if k == 1:
        assert torch.equal(res.indices[:, 0], cb.nearest_search(rows, codebook))


def test_reference_promotes_fp16_and_uses_given_norms():
    rows, codebook = _problem(64, 32, 16)
    sq = cb.codebook_sq_norms(codebook)
    a = fused_topk_reference(rows.half(), codebook, sq, 3)
    b = fused_topk_reference(rows.half().float(), codebook, None, 3)
    assert a.distances.dtype == torch.float32 and torch.equal(a.indices, b.indices)


def test_cpu_auto_backend_is_the_reference():
    rows, codebook = _problem(50, 40, 8)
    a = fused_topk(rows, codebook, None, 3)
    b = fused_topk_reference(rows, codebook, None, 3)
    assert torch.equal(a.indices, b.indices) and torch.equal(a.distances, b.distances)
    assert fused_topk(rows[:0], codebook, None, 2).indices.shape == (0, 2)


@pytest.mark.parametrize("bad", [
    dict(k=0), dict(k=MAX_K + 1), dict(k=True), dict(codebook=torch.zeros(2, 8)), dict(rows=torch.zeros(5, 7)),
    dict(rows=torch.zeros(5, 8, dtype=torch.int64)), dict(codebook_sq=torch.zeros(3)), dict(rows=torch.zeros(8)),
])
def test_bad_inputs_raise_one_clear_error(bad):
    rows, codebook = _problem(5, 40, 8)
    args = dict(rows=rows, codebook=codebook, codebook_sq=None, k=3) | bad
    with pytest.raises(UnsupportedInputError):
        fused_topk(args["rows"], args["codebook"], args["codebook_sq"], args["k"])


def test_triton_backend_on_cpu_needs_the_interpreter(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    rows, codebook = _problem(5, 40, 8)
    with pytest.raises((UnsupportedInputError, MissingDependencyError)):
        fused_topk(rows, codebook, None, 3, backend="triton")


# ------------------------------------------------------------------------------------------------ imports
def _run_py(code: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=env, timeout=300, cwd=REPO)


def test_package_import_is_lazy_and_works_without_triton():
    out = _run_py("""
        import sys
        sys.modules["triton"] = None  # as if triton were not installed
        import ugtsr.kernels
        assert "torch" not in sys.modules, "ugtsr.kernels imported torch"
        from ugtsr.kernels import KernelConfig, fused_topk_reference
        from ugtsr.kernels.fused_topk import fused_topk
        import torch
        from ugtsr.errors import MissingDependencyError
        r = fused_topk(torch.randn(4, 8), torch.randn(16, 8), None, 2)
        assert r.indices.shape == (4, 2)
        try:
            fused_topk(torch.randn(4, 8), torch.randn(16, 8), None, 2, backend="triton")
        except MissingDependencyError as exc:
            assert "triton" in str(exc)
        else:
            raise SystemExit("expected MissingDependencyError")
        assert "ugtsr.kernels._triton_topk" not in sys.modules
        print("ok")
    """, {"TRITON_INTERPRET": "1"})
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-2000:]


def test_ptx_trailing_parameter_rewrite():
    ptx = (".visible .entry kern(\n\t.param .u64 .ptr .global .align 1 kern_param_0,\n"
           "\t.param .u32 kern_param_1,\n\t.param .u64 .ptr .global .align 1 kern_param_2,\n"
           "\t.param .u64 .ptr .global .align 1 kern_param_3\n)\n{\n\tld.param.u64 %rd1, [kern_param_0];\n"
           "\tld.param.u32 %r1, [kern_param_1];\n}\n")
    out = _drop_unused_trailing_params(ptx, keep=2)
    assert "kern_param_1" in out and "kern_param_2" not in out and "kern_param_3" not in out
    header = out[out.index("("):out.index(")")]
    assert header.count(".param") == 2 and out.endswith(ptx[ptx.index(")"):])
    with pytest.raises(UnsupportedInputError):
        _drop_unused_trailing_params(ptx, keep=1)  # kern_param_1 is read by the body


# ------------------------------------------------------------------------------------------------ triton (CPU)
needs_triton = pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed (pip install triton)")


@needs_triton
def test_plugin_kernel_compiles_to_ptx_for_sm90_without_a_gpu():
    from ugtsr.kernels.fused_topk import compile_codebook_topk_ptx

    kernel = compile_codebook_topk_ptx(3, target=(90, 32))
    entry = kernel.ptx[kernel.ptx.index(".entry"):]
    params = entry[:entry.index(")")].count(".param")
    assert params == 7  # 3 input pointers, N, K, d, output pointer: TensorRT's AOT calling convention
    assert kernel.threads == 128 and 0 < kernel.shared_mem <= 48 * 1024


_INTERPRET_CHECK = """
    import torch, json
    from ugtsr import codebook as cb
    from ugtsr.kernels.fused_topk import fused_topk, codebook_topk_int32, fused_topk_reference
    g = torch.Generator().manual_seed(1)
    res = []
    for n, K, d, k, splits in [(45, 100, 20, 3, 1), (70, 130, 48, 5, None), (33, 200, 40, 1, 3), (9, 17, 33, 8, 2)]:
        codes = torch.randn(K, d, generator=g)
        rows = codes[torch.randint(0, K, (n,), generator=g)] + 0.3 * torch.randn(n, d, generator=g)
        ref = fused_topk_reference(rows, codes, None, k)
        got = fused_topk(rows, codes, None, k, backend="triton", num_splits=splits)
        i32 = codebook_topk_int32(rows, codes, cb.codebook_sq_norms(codes), k)
        rel = ((got.distances - ref.distances).abs() / ref.distances.abs()).max().item()
        res.append([bool(torch.equal(got.indices, ref.indices)), bool(torch.equal(i32.long(), ref.indices)),
                    str(got.indices.dtype), str(i32.dtype), rel])
    # exact ties (duplicated codes): the lower index wins, as argmin does
    codes = torch.randn(40, 16, generator=g)
    codes[25] = codes[3]
    rows = codes[[3, 3, 7]] + 0.01
    got = fused_topk(rows, codes, None, 2, backend="triton", num_splits=2)
    res.append([got.indices[:2, 0].tolist() == [3, 3], got.indices[:2, 1].tolist() == [25, 25]])
    print("RESULT" + json.dumps(res))
"""


@needs_triton
@pytest.mark.slow
def test_triton_kernel_under_the_interpreter_matches_reference():
    probe = _run_py("""
        import triton, triton.language as tl, torch
        @triton.jit
        def k(x, n, B: tl.constexpr):
            for i in range(0, n, B):
                tl.store(x + i + tl.arange(0, B), tl.arange(0, B).to(tl.float32))
        t = torch.zeros(32); k[(1,)](t, 32, B=16); print("ok")
    """, {"TRITON_INTERPRET": "1"})
    if probe.returncode != 0:  # e.g. triton <= 3.6 interpreter with numpy >= 2.4 (int() of 1-element arrays)
        pytest.skip(f"the Triton interpreter does not run here: {probe.stderr.strip().splitlines()[-1][:200]}")
    out = _run_py(_INTERPRET_CHECK, {"TRITON_INTERPRET": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    import json

    res = json.loads(out.stdout.split("RESULT", 1)[1])
    for case in res[:-1]:
        same, same32, dt, dt32, rel = case
        assert same and same32 and dt == "torch.int64" and dt32 == "torch.int32" and rel < 1e-3, case
    assert res[-1] == [True, True]


# ------------------------------------------------------------------------------------------------ GPU
@pytest.mark.gpu
@pytest.mark.skipif(not (HAS_CUDA and HAS_TRITON), reason="needs a CUDA GPU and triton")
@pytest.mark.parametrize("n_codes", [256, 1024, 4096])
@pytest.mark.parametrize("d", [64, 512])
@pytest.mark.parametrize("k", [1, 3, 5])
def test_triton_kernel_matches_knn_search_on_gpu(n_codes, d, k):
    torch.backends.cuda.matmul.allow_tf32 = False
    for n in (1000, 8193):
        rows, codebook = _problem(n, n_codes, d, seed=n + k, device="cuda")
        got = fused_topk(rows, codebook, None, k)
        ref = cb.knn_search(rows, codebook, k)
        same_ref = (got.indices == ref).all(dim=1).float().mean().item()
        agree, agree_non_tie, ties, rel = _agreement(rows, codebook, got.indices, got.distances, k)
        assert agree_non_tie >= 0.9999 and rel <= 1e-3, (n, agree, agree_non_tie, ties, rel)
        assert same_ref >= 0.9999 or same_ref >= 1.0 - ties, (n, same_ref, ties)
        i32 = cb.codebook_sq_norms(codebook)
        from ugtsr.kernels.fused_topk import codebook_topk_int32

        plug = codebook_topk_int32(rows, codebook, i32, k)
        assert (plug.long() == got.indices).all(dim=1).float().mean().item() >= 0.9999
