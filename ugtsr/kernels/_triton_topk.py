"""Triton kernels of the fused codebook top-k (imports triton; use :mod:`ugtsr.kernels.fused_topk`).

One program takes ``BLOCK_N`` rows and walks the codebook in tiles of ``BLOCK_K`` codes. For every
tile it forms the ranking score ``||e||^2 - 2 z.e`` (``tl.dot`` with FP32 accumulation; with
``PRECISION="ieee"`` the FP32 products are exact, so ranks match the PyTorch FP32 reference except on
near-ties) and merges the tile's ``TOPK`` best codes into a running list held in registers. The
``(N, K)`` distance matrix is never written. ``||z||^2`` is the same for every code of a row, so it
is added to the reported distances only, never to the ranked score.

Running list: ``TOPK`` slots per row (``KPAD`` = the next power of two; the padding slots hold
``-inf`` so they are never the "worst" slot). A candidate replaces the worst kept one when it is
smaller, or equal with a lower code index -- ties go to the lowest index, as ``argmin`` does.

Only plain ``tl.load``/``tl.store`` with masks, ``tl.dot`` on 2-D tiles of at least 16, min/max
reductions and ``tl.where``: nothing architecture-specific, and the kernels run under
``TRITON_INTERPRET=1`` on a CPU.

Two entry points share the search:

* :func:`fused_topk_kernel` -- distances + indices (int64 or int32), optionally one slice of the
  codebook per ``program_id(1)`` (split search; the caller merges the partial lists);
* :func:`codebook_topk_kernel` -- int32 indices only, whole codebook per program. Its parameters are
  ordered (input pointers, int32 scalars, output pointer), the calling convention of TensorRT's AOT
  "quickly deployable plugins", so ``runtime.plugins.codebook_topk`` can compile it to PTX.
"""
import triton
import triton.language as tl

__all__ = ["fused_topk_kernel", "codebook_topk_kernel", "INT32_MAX"]

INT32_MAX = 2147483647


@triton.jit
def _search(rows_ptr, cb_ptr, cbsq_ptr, row_start, n_rows, code_start, span, n_codes, dim,
            BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
            TOPK: tl.constexpr, KPAD: tl.constexpr, PRECISION: tl.constexpr):
    """Running top-``TOPK`` of ``||e||^2 - 2 z.e`` over codes ``[code_start, min(code_start + span, n_codes))``.

    The loop runs over the kernel argument ``span`` (not a computed bound) so that the trip count is
    a plain scalar for the compiler and the interpreter alike; codes past ``n_codes`` are masked.
    """
    rows = row_start + tl.arange(0, BLOCK_N)
    row_mask = rows < n_rows
    rows64 = rows.to(tl.int64)
    dd = tl.arange(0, BLOCK_D)
    slots = tl.arange(0, KPAD)
    inf_tile = tl.full((BLOCK_N, KPAD), float("inf"), tl.float32)
    best_d = tl.where(slots[None, :] < TOPK, inf_tile, -inf_tile)
    best_i = tl.full((BLOCK_N, KPAD), 2147483647, tl.int32)
    for c0 in range(0, span, BLOCK_K):
        cols = code_start + c0 + tl.arange(0, BLOCK_K)
        col_mask = cols < n_codes
        cols64 = cols.to(tl.int64)
        acc = tl.zeros((BLOCK_N, BLOCK_K), dtype=tl.float32)
        for d0 in range(0, dim, BLOCK_D):
            dmask = (d0 + dd) < dim
            z = tl.load(rows_ptr + rows64[:, None] * dim + (d0 + dd)[None, :],
                        mask=row_mask[:, None] & dmask[None, :], other=0.0)
            e_t = tl.load(cb_ptr + cols64[None, :] * dim + (d0 + dd)[:, None],
                          mask=col_mask[None, :] & dmask[:, None], other=0.0)  # (BLOCK_D, BLOCK_K)
            acc = tl.dot(z, e_t, acc, input_precision=PRECISION)
        esq = tl.load(cbsq_ptr + cols, mask=col_mask, other=0.0).to(tl.float32)
        score = esq[None, :] - 2.0 * acc
        score = tl.where(col_mask[None, :], score, float("inf"))
        for _t in tl.static_range(TOPK):
            # the tile's best remaining code per row (lowest index among equal scores)
            v = tl.min(score, axis=1)
            j = tl.min(tl.where(score == v[:, None], cols[None, :], 2147483647), axis=1)
            score = tl.where(cols[None, :] == j[:, None], float("inf"), score)
            # the worst kept slot (largest score; among equal scores the largest index)
            worst = tl.max(best_d, axis=1)
            at_worst = best_d == worst[:, None]
            worst_i = tl.max(tl.where(at_worst, best_i, -1), axis=1)
            slot = tl.min(tl.where(at_worst & (best_i == worst_i[:, None]), slots[None, :], KPAD), axis=1)
            take = ((v < worst) | ((v == worst) & (j < worst_i))) & (v < float("inf"))
            hit = take[:, None] & (slots[None, :] == slot[:, None])
            best_d = tl.where(hit, v[:, None], best_d)
            best_i = tl.where(hit, j[:, None], best_i)
    return best_d, best_i


@triton.jit
def _row_sq_norms(rows_ptr, row_start, n_rows, dim, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    """``||z||^2`` in FP32 for the program's rows ``(BLOCK_N,)``."""
    rows = row_start + tl.arange(0, BLOCK_N)
    row_mask = rows < n_rows
    rows64 = rows.to(tl.int64)
    dd = tl.arange(0, BLOCK_D)
    total = tl.zeros((BLOCK_N,), dtype=tl.float32)
    for d0 in range(0, dim, BLOCK_D):
        dmask = (d0 + dd) < dim
        z = tl.load(rows_ptr + rows64[:, None] * dim + (d0 + dd)[None, :],
                    mask=row_mask[:, None] & dmask[None, :], other=0.0).to(tl.float32)
        total += tl.sum(z * z, axis=1)
    return total


@triton.jit
def _store_sorted(best_d, best_i, row_start, n_rows, out_stride, out_col0, offset, dist_ptr, idx_ptr,
                  BLOCK_N: tl.constexpr, TOPK: tl.constexpr, KPAD: tl.constexpr, WRITE_DIST: tl.constexpr):
    """Write the kept slots in ascending (score, index) order; ``offset`` is added to the distances."""
    rows = row_start + tl.arange(0, BLOCK_N)
    row_mask = rows < n_rows
    rows64 = rows.to(tl.int64)
    slots = tl.arange(0, KPAD)
    d = tl.where(slots[None, :] < TOPK, best_d, float("inf"))
    ids = best_i
    for t in tl.static_range(TOPK):
        v = tl.min(d, axis=1)
        i = tl.min(tl.where(d == v[:, None], ids, 2147483647), axis=1)
        out = rows64 * out_stride + out_col0 + t
        tl.store(idx_ptr + out, i, mask=row_mask)
        if WRITE_DIST:
            tl.store(dist_ptr + out, v + offset, mask=row_mask)
        done = (d == v[:, None]) & (ids == i[:, None])
        d = tl.where(done, float("inf"), d)
        ids = tl.where(done, 2147483647, ids)


@triton.jit
def fused_topk_kernel(rows_ptr, cb_ptr, cbsq_ptr, n_rows, n_codes, dim, codes_per_split, out_stride,
                      dist_ptr, idx_ptr,
                      BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
                      TOPK: tl.constexpr, KPAD: tl.constexpr, PRECISION: tl.constexpr,
                      ADD_ROW_NORM: tl.constexpr):
    """Grid ``(cdiv(N, BLOCK_N), splits)``; split ``s`` searches codes ``[s*cps, (s+1)*cps)`` and writes
    columns ``[s*TOPK, (s+1)*TOPK)`` of rows with stride ``out_stride``."""
    pid_n = tl.program_id(0)
    pid_s = tl.program_id(1)
    row_start = pid_n * BLOCK_N
    code_start = pid_s * codes_per_split
    best_d, best_i = _search(rows_ptr, cb_ptr, cbsq_ptr, row_start, n_rows, code_start, codes_per_split, n_codes, dim,
                             BLOCK_N, BLOCK_K, BLOCK_D, TOPK, KPAD, PRECISION)
    if ADD_ROW_NORM:
        offset = _row_sq_norms(rows_ptr, row_start, n_rows, dim, BLOCK_N, BLOCK_D)
    else:
        offset = tl.zeros((BLOCK_N,), dtype=tl.float32)
    _store_sorted(best_d, best_i, row_start, n_rows, out_stride, pid_s * TOPK, offset, dist_ptr, idx_ptr,
                  BLOCK_N, TOPK, KPAD, True)


@triton.jit
def codebook_topk_kernel(rows_ptr, cb_ptr, cbsq_ptr, n_rows, n_codes, dim, idx_ptr,
                         BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
                         TOPK: tl.constexpr, KPAD: tl.constexpr, PRECISION: tl.constexpr):
    """Grid ``(cdiv(N, BLOCK_N),)``: int32 indices ``(N, TOPK)`` of the nearest codes, nearest first."""
    row_start = tl.program_id(0) * BLOCK_N
    best_d, best_i = _search(rows_ptr, cb_ptr, cbsq_ptr, row_start, n_rows, 0, n_codes, n_codes, dim,
                             BLOCK_N, BLOCK_K, BLOCK_D, TOPK, KPAD, PRECISION)
    offset = tl.zeros((BLOCK_N,), dtype=tl.float32)
    _store_sorted(best_d, best_i, row_start, n_rows, TOPK, 0, offset, idx_ptr, idx_ptr,
                  BLOCK_N, TOPK, KPAD, False)
