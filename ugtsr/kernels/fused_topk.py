"""Fused codebook top-k: the ``k`` nearest codes of every row without the ``(N, K)`` distance matrix.

:func:`fused_topk` is the PyTorch entry point: on CUDA tensors it launches the Triton kernel of
:mod:`ugtsr.kernels._triton_topk` (one pass over the codebook per block of rows, a running top-k in
registers), on CPU tensors it runs :func:`fused_topk_reference`, the unfused PyTorch math of
:mod:`ugtsr.codebook` (``||z||^2 + ||e||^2 - 2 z.e``, FP32, ``torch.topk``). Indices agree with
``ugtsr.codebook.knn_search`` except on near-ties (two codes whose distances differ by float
rounding); the kernel breaks exact ties towards the lower code index.

:func:`codebook_topk_int32` is the single-kernel variant used by the TensorRT plugin
(``runtime.plugins.codebook_topk``): int32 indices only, written into a given buffer on the current
CUDA stream, no codebook split and no temporary allocation. :func:`compile_codebook_topk_ptx`
compiles that kernel ahead of time for TensorRT's AOT plugins.

triton is imported on first use only (``pip install triton``; it ships with CUDA builds of torch).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import torch

from ugtsr import codebook as cb
from ugtsr.errors import UnsupportedInputError, require

__all__ = [
    "MAX_K",
    "KernelConfig",
    "TopKResult",
    "fused_topk",
    "fused_topk_reference",
    "codebook_topk_int32",
    "compile_codebook_topk_ptx",
    "CompiledKernel",
    "default_config",
]

#: Largest ``k`` the kernel keeps in registers (UGTSR uses 3; the paper sweeps up to 5).
MAX_K = 8
_FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_TRITON_DTYPES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}


class TopKResult(NamedTuple):
    """``distances`` ``(N, k)`` float32 (squared, ascending) and ``indices`` ``(N, k)`` int64."""

    distances: torch.Tensor
    indices: torch.Tensor


@dataclass(frozen=True)
class KernelConfig:
    """Tile sizes of the Triton kernel. ``block_*`` are powers of two >= 16 (``tl.dot`` minimum)."""

    block_n: int = 32
    block_k: int = 64
    block_d: int = 32
    num_warps: int = 4

    def __post_init__(self) -> None:
        for name in ("block_n", "block_k", "block_d"):
            v = getattr(self, name)
            if v < 16 or v & (v - 1):
                raise UnsupportedInputError(f"KernelConfig.{name} must be a power of two >= 16, got {v}")
        if self.num_warps not in (1, 2, 4, 8, 16):
            raise UnsupportedInputError(f"KernelConfig.num_warps must be 1, 2, 4, 8 or 16, got {self.num_warps}")


def default_config(n_rows: int) -> KernelConfig:
    """Tiles for ``n_rows`` rows: 64-row blocks (8 warps) for big inputs, 32 rows (4 warps) otherwise.

    Both keep the FP32 kernel under 255 registers without spills on sm_90 (``ptxas -v``); the
    plugin kernel uses the 32-row tiles (``KernelConfig()``) for any N.
    """
    if n_rows >= 8192:
        return KernelConfig(block_n=64, block_k=64, block_d=32, num_warps=8)
    return KernelConfig()


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _next_pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def _check_inputs(rows: torch.Tensor, codebook: torch.Tensor, codebook_sq: torch.Tensor | None, k: int) -> None:
    if rows.dim() != 2 or codebook.dim() != 2:
        raise UnsupportedInputError(f"rows must be (N, d) and codebook (K, d); got {tuple(rows.shape)} and "
                                    f"{tuple(codebook.shape)}")
    if rows.shape[1] != codebook.shape[1]:
        raise UnsupportedInputError(f"rows have d={rows.shape[1]} but the codebook has d={codebook.shape[1]}")
    if rows.dtype not in _FLOAT_DTYPES or codebook.dtype not in _FLOAT_DTYPES:
        raise UnsupportedInputError(f"rows and codebook must be float32/float16/bfloat16, got {rows.dtype} and "
                                    f"{codebook.dtype}")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise UnsupportedInputError(f"k must be an int in [1, {MAX_K}], got {k!r}")
    if k > codebook.shape[0]:
        raise UnsupportedInputError(f"k={k} exceeds the codebook size {codebook.shape[0]}")
    if codebook.device != rows.device:
        raise UnsupportedInputError(f"rows are on {rows.device} but the codebook is on {codebook.device}")
    if codebook_sq is not None:
        if tuple(codebook_sq.shape) != (codebook.shape[0],):
            raise UnsupportedInputError(f"codebook_sq must be ({codebook.shape[0]},), got {tuple(codebook_sq.shape)}")
        if codebook_sq.device != rows.device:
            raise UnsupportedInputError(f"codebook_sq is on {codebook_sq.device}, rows on {rows.device}")


def fused_topk_reference(rows: torch.Tensor, codebook: torch.Tensor, codebook_sq: torch.Tensor | None,
                         k: int) -> TopKResult:
    """The unfused PyTorch computation (any device): FP32 distances ``(N, K)`` then ``torch.topk``.

    ``rows`` ``(N, d)``, ``codebook`` ``(K, d)``, ``codebook_sq`` ``(K,)`` or ``None``; float inputs are
    promoted to float32 (the FP32 island of ``ugtsr.matching``). Indices equal
    ``ugtsr.codebook.knn_search(rows.float(), codebook.float(), k)``.
    """
    _check_inputs(rows, codebook, codebook_sq, k)
    sq = None if codebook_sq is None else codebook_sq.float()
    dist = cb.squared_distances(rows.float(), codebook.float(), sq)
    top = torch.topk(dist, k, dim=1, largest=False, sorted=True)
    return TopKResult(top.values, top.indices)


def _triton():
    return require("triton", extra="gpu", purpose="the fused codebook top-k kernel")


def _kernels():
    _triton()
    from . import _triton_topk

    return _triton_topk


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _prepare(rows: torch.Tensor, codebook: torch.Tensor, codebook_sq: torch.Tensor | None):
    dtype = torch.promote_types(rows.dtype, codebook.dtype)
    rows_c = rows.to(dtype).contiguous()
    cb_c = codebook.to(dtype).contiguous()
    if codebook_sq is None:
        sq = cb.codebook_sq_norms(codebook.float())
    else:
        sq = codebook_sq.float()
    return rows_c, cb_c, sq.contiguous()


def _auto_splits(n_rows: int, n_codes: int, cfg: KernelConfig, device: torch.device) -> int:
    """Split the codebook across programs when there are too few row blocks to fill the GPU."""
    if device.type != "cuda":
        return 1
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    row_blocks = _cdiv(n_rows, cfg.block_n)
    if row_blocks >= 2 * sms:
        return 1
    max_splits = max(1, n_codes // (2 * cfg.block_k))  # at least two codebook tiles per split
    return max(1, min(_cdiv(2 * sms, row_blocks), max_splits))


def fused_topk(rows: torch.Tensor, codebook: torch.Tensor, codebook_sq: torch.Tensor | None = None, k: int = 1, *,
               backend: Literal["auto", "triton", "reference"] = "auto", num_splits: int | None = None,
               config: KernelConfig | None = None,
               input_precision: Literal["ieee", "tf32"] = "ieee") -> TopKResult:
    """The ``k`` nearest codes of every row, nearest first.

    ``rows`` ``(N, d)`` and ``codebook`` ``(K, d)`` float32/float16 (promoted to a common dtype),
    ``codebook_sq`` ``(K,)`` float32 ``||e||^2`` (``None``: computed), ``1 <= k <= 8``. Returns
    :class:`TopKResult`: ``distances`` ``(N, k)`` float32 squared distances ``||z - e||^2`` (ascending)
    and ``indices`` ``(N, k)`` int64.

    ``backend="auto"``: the Triton kernel for CUDA tensors, :func:`fused_topk_reference` otherwise;
    ``"triton"`` forces the kernel (CPU tensors only under ``TRITON_INTERPRET=1``). ``num_splits``
    divides the codebook among that many programs per row block (``None``: enough to fill the GPU);
    the partial lists are merged with a stable sort. ``input_precision="tf32"`` trades exact FP32
    products for tensor-core speed (more near-tie flips).
    """
    _check_inputs(rows, codebook, codebook_sq, k)
    if backend not in ("auto", "triton", "reference"):
        raise UnsupportedInputError(f"backend must be 'auto', 'triton' or 'reference', got {backend!r}")
    if input_precision not in ("ieee", "tf32"):
        raise UnsupportedInputError(f"input_precision must be 'ieee' or 'tf32', got {input_precision!r}")
    use_triton = backend == "triton" or (backend == "auto" and rows.is_cuda)
    if not use_triton:
        return fused_topk_reference(rows, codebook, codebook_sq, k)
    if not rows.is_cuda and not _interpreting():
        raise UnsupportedInputError("the Triton kernel needs CUDA tensors (or TRITON_INTERPRET=1 for a CPU check)")
    triton = _triton()
    kern = _kernels()
    rows_c, cb_c, sq = _prepare(rows, codebook, codebook_sq)
    n, d = rows_c.shape
    n_codes = cb_c.shape[0]
    dev = rows_c.device
    if n == 0:
        return TopKResult(torch.empty(0, k, device=dev), torch.empty(0, k, dtype=torch.long, device=dev))
    cfg = config or default_config(n)
    splits = _auto_splits(n, n_codes, cfg, dev) if num_splits is None else int(num_splits)
    if splits < 1:
        raise UnsupportedInputError(f"num_splits must be >= 1, got {num_splits}")
    # codes per split: whole tiles; recount the splits so that none is empty
    per_split = _cdiv(_cdiv(n_codes, splits), cfg.block_k) * cfg.block_k
    splits = _cdiv(n_codes, per_split)
    width = splits * k
    dist = torch.empty(n, width, dtype=torch.float32, device=dev)
    idx = torch.empty(n, width, dtype=torch.long, device=dev)
    grid = (triton.cdiv(n, cfg.block_n), splits)
    kern.fused_topk_kernel[grid](
        rows_c, cb_c, sq, n, n_codes, d, per_split, width, dist, idx,
        BLOCK_N=cfg.block_n, BLOCK_K=cfg.block_k, BLOCK_D=cfg.block_d, TOPK=k, KPAD=_next_pow2(max(k, 2)),
        PRECISION=input_precision, ADD_ROW_NORM=splits == 1, num_warps=cfg.num_warps,
    )
    if splits == 1:
        return TopKResult(dist, idx)
    # Merge: stable sort keeps equal scores in split order, i.e. lower code index first.
    vals, order = torch.sort(dist, dim=1, stable=True)
    top_idx = torch.gather(idx, 1, order[:, :k])
    row_sq = torch.sum(rows_c.float() ** 2, dim=1, keepdim=True)
    return TopKResult(vals[:, :k] + row_sq, top_idx)


def codebook_topk_int32(rows: torch.Tensor, codebook: torch.Tensor, codebook_sq: torch.Tensor, k: int, *,
                        out: torch.Tensor | None = None, config: KernelConfig | None = None) -> torch.Tensor:
    """int32 indices ``(N, k)`` of the nearest codes (nearest first), one kernel, current stream.

    The computation of the ``ugtsr::CodebookTopK`` plugin node: ``rows`` ``(N, d)``, ``codebook``
    ``(K, d)``, ``codebook_sq`` ``(K,)`` float32. ``out``: a contiguous int32 ``(N, k)`` buffer to write
    (TensorRT's output); allocated when ``None``. Same kernel as :func:`compile_codebook_topk_ptx`.
    """
    _check_inputs(rows, codebook, codebook_sq, k)
    if not rows.is_cuda and not _interpreting():
        raise UnsupportedInputError("the Triton kernel needs CUDA tensors (or TRITON_INTERPRET=1 for a CPU check)")
    triton = _triton()
    kern = _kernels()
    rows_c, cb_c, sq = _prepare(rows, codebook, codebook_sq)
    n, d = rows_c.shape
    if out is None:
        out = torch.empty(n, k, dtype=torch.int32, device=rows_c.device)
    elif out.dtype != torch.int32 or tuple(out.shape) != (n, k) or not out.is_contiguous():
        raise UnsupportedInputError(f"out must be a contiguous int32 ({n}, {k}) tensor, got {out.dtype} "
                                    f"{tuple(out.shape)}")
    if n == 0:
        return out
    cfg = config or KernelConfig()
    grid = (triton.cdiv(n, cfg.block_n),)
    kern.codebook_topk_kernel[grid](
        rows_c, cb_c, sq, n, cb_c.shape[0], d, out,
        BLOCK_N=cfg.block_n, BLOCK_K=cfg.block_k, BLOCK_D=cfg.block_d, TOPK=k, KPAD=_next_pow2(max(k, 2)),
        PRECISION="ieee", num_warps=cfg.num_warps,
    )
    return out


class CompiledKernel(NamedTuple):
    """An ahead-of-time compiled :func:`codebook_topk_int32` kernel.

    Launch: grid ``(cdiv(N, block_n), 1, 1)``, ``threads`` threads per block, ``shared_mem`` bytes of
    dynamic shared memory; arguments ``(rows*, codebook*, codebook_sq*, N:i32, K:i32, d:i32, out*)``.
    """

    name: str
    ptx: str
    threads: int
    shared_mem: int
    block_n: int


_PTX_ENTRY = re.compile(r"(\.visible\s+\.entry\s+(\w+)\s*\()([^)]*)(\))")


def _drop_unused_trailing_params(ptx: str, keep: int) -> str:
    """Remove entry parameters ``keep..`` that the body never reads.

    Triton >= 3.2 appends ``global_scratch``/``profile_scratch`` pointers to every kernel; TensorRT's
    AOT launcher passes exactly (inputs, extra scalars, outputs), so the PTX must declare exactly
    those. They are unused unless the kernel needs scratch memory (checked by the caller).
    """
    m = _PTX_ENTRY.search(ptx)
    if m is None:
        raise UnsupportedInputError("no .entry found in the Triton PTX")
    name = m.group(2)
    params = [p.strip() for p in m.group(3).split(",") if p.strip()]
    if len(params) <= keep:
        return ptx
    body = ptx[m.end():]
    for p in params[keep:]:
        pname = p.split()[-1]
        if re.search(rf"\b{re.escape(pname)}\b", body):
            raise UnsupportedInputError(f"kernel {name}: trailing parameter {pname} is used; cannot drop it")
    new_params = ",\n".join("\t" + p for p in params[:keep])
    return ptx[:m.start(3)] + "\n" + new_params + "\n" + ptx[m.end(3):]


def compile_codebook_topk_ptx(k: int, *, dtype: Literal["fp32", "fp16"] = "fp32",
                              target: tuple[int, int] | None = None,
                              config: KernelConfig | None = None) -> CompiledKernel:
    """Compile the plugin kernel to PTX (TensorRT AOT plugins take PTX).

    ``target``: ``(compute capability, warp size)``, e.g. ``(90, 32)`` for an H100; ``None`` uses the
    current GPU. Compiling for an explicit target needs no GPU. The PTX declares exactly the seven
    parameters of :class:`CompiledKernel` (Triton's scratch pointers are dropped when unused).
    """
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise UnsupportedInputError(f"k must be an int in [1, {MAX_K}], got {k!r}")
    if dtype not in ("fp32", "fp16"):
        raise UnsupportedInputError(f"dtype must be 'fp32' or 'fp16', got {dtype!r}")
    triton = _triton()
    kern = _kernels()
    cfg = config or KernelConfig()
    constexprs: dict[str, Any] = {"BLOCK_N": cfg.block_n, "BLOCK_K": cfg.block_k, "BLOCK_D": cfg.block_d,
                                  "TOPK": k, "KPAD": _next_pow2(max(k, 2)), "PRECISION": "ieee"}
    signature = {"rows_ptr": f"*{dtype}", "cb_ptr": f"*{dtype}", "cbsq_ptr": "*fp32", "n_rows": "i32",
                 "n_codes": "i32", "dim": "i32", "idx_ptr": "*i32", **{c: "constexpr" for c in constexprs}}
    import inspect

    # Triton >= 3.2 names the argument ``constexprs``; 3.0/3.1 called it ``constants``
    key = "constexprs" if "constexprs" in inspect.signature(triton.compiler.ASTSource.__init__).parameters else "constants"
    src = triton.compiler.ASTSource(fn=kern.codebook_topk_kernel, signature=signature, **{key: constexprs})
    kwargs: dict[str, Any] = {"options": {"num_warps": cfg.num_warps}}
    if target is not None:
        from triton.backends.compiler import GPUTarget

        kwargs["target"] = GPUTarget("cuda", int(target[0]), int(target[1]))
    compiled = triton.compile(src, **kwargs)
    meta = compiled.metadata
    if getattr(meta, "global_scratch_size", 0) or getattr(meta, "profile_scratch_size", 0):
        raise UnsupportedInputError("the compiled kernel needs Triton scratch memory; TensorRT AOT cannot provide it")
    if meta.shared > 48 * 1024:
        raise UnsupportedInputError(f"the kernel needs {meta.shared} B of shared memory (> 48 KiB); use smaller tiles")
    ptx = _drop_unused_trailing_params(compiled.asm["ptx"], keep=7)
    return CompiledKernel(name=meta.name, ptx=ptx, threads=meta.num_warps * 32, shared_mem=int(meta.shared),
                          block_n=cfg.block_n)
