"""TensorRT plugin ``ugtsr::CodebookTopK``: the fused codebook search of the plugin export variant.

Node (written by ``export.plugin``)::

    CodebookTopK(rows (N, d) f32, codebook (K, d) f32, codebook_sq (K,) f32) -> indices (N, k) int32
        attributes: k (int), plugin_namespace "ugtsr", plugin_version "1"; aot (0/1, see below)

Implementations, both the Triton kernel of :mod:`ugtsr.kernels.fused_topk` (one pass over the
codebook per block of rows, running top-k in registers, FP32 products, ties to the lower index):

* JIT (``@trtp.impl``, TensorRT >= 10.6): a Python callback at inference time that wraps TensorRT's
  buffers as torch tensors (``torch.as_tensor`` on their ``__cuda_array_interface__``, zero copy)
  and launches the kernel on TensorRT's stream. The engine needs this module, torch and triton in
  the process that runs it.
* AOT (``@trtp.aot_impl``, TensorRT >= 10.9): the kernel compiled to PTX while the engine is built
  and embedded in it; the engine then runs without Python (trtexec, C++). The PTX declares exactly
  the parameters TensorRT passes (inputs, N/K/d as int32, output): Triton's unused scratch-pointer
  parameters are dropped (``compile_codebook_topk_ptx``).

When both are registered TensorRT needs a choice: the node attribute ``aot`` (1: AOT, 0: JIT), which
``export.plugin.strip_plugin_functions(proto, aot=...)`` sets, or the network flag
``PREFER_AOT_PYTHON_PLUGINS`` / ``PREFER_JIT_PYTHON_PLUGINS``.

Use: import this module before parsing (``python -m runtime.build MODEL.onnx --plugins
runtime.plugins.codebook_topk``; the entry point is :func:`register`, which the import calls when
TensorRT is installed). Without TensorRT the import does nothing, so the module always imports.

Note: no ``from __future__ import annotations`` here -- ``tensorrt.plugin`` validates the decorated
functions' annotations as real types.
"""
import importlib.util
import logging

from ugtsr.errors import require

__all__ = ["PLUGIN_ID", "PLUGIN_NAMESPACE", "PLUGIN_NAME", "register", "is_registered", "run_codebook_topk"]

log = logging.getLogger(__name__)

PLUGIN_NAMESPACE = "ugtsr"
PLUGIN_NAME = "CodebookTopK"
PLUGIN_ID = f"{PLUGIN_NAMESPACE}::{PLUGIN_NAME}"

_state = {"registered": False, "aot": False}


def is_registered() -> bool:
    """Whether :func:`register` has run in this process."""
    return _state["registered"]


def run_codebook_topk(rows, codebook, codebook_sq, k: int, out, stream: int) -> None:
    """The JIT implementation's body: launch the kernel on ``stream`` into ``out``.

    ``rows``, ``codebook``, ``codebook_sq`` and ``out`` are any objects with a
    ``__cuda_array_interface__`` (TensorRT's ``trtp.Tensor``, or a torch tensor in tests); ``out`` is
    int32 ``(N, k)``; ``stream`` a ``cudaStream_t`` as an int. Needs torch (CUDA) and triton.
    """
    import torch

    from ugtsr.kernels.fused_topk import codebook_topk_int32

    with torch.cuda.stream(torch.cuda.ExternalStream(int(stream))):
        r = torch.as_tensor(rows, device="cuda")
        c = torch.as_tensor(codebook, device="cuda")
        s = torch.as_tensor(codebook_sq, device="cuda")
        o = torch.as_tensor(out, device="cuda")
        codebook_topk_int32(r, c, s, int(k), out=o)


def register() -> bool:
    """Register ``ugtsr::CodebookTopK`` with TensorRT (idempotent).

    Defines the shape/type descriptor and the JIT implementation, plus the AOT implementation when
    this TensorRT has ``tensorrt.plugin.aot_impl`` (10.9+). Returns whether the AOT implementation
    is available. Raises ``MissingDependencyError`` without TensorRT >= 10.6.
    """
    if _state["registered"]:
        return _state["aot"]
    trt = require("tensorrt", extra="gpu", purpose="the CodebookTopK TensorRT plugin")
    trtp = require("tensorrt.plugin", extra="gpu",
                   purpose=f"Python plugins (TensorRT >= 10.6; this is {getattr(trt, '__version__', '?')})")
    import numpy as np
    import numpy.typing as npt

    # k arrives as a 1-element int32 array: the ONNX parser passes an INT attribute as an int32
    # plugin field, and an `int` annotation would convert it with int(ndarray), an error on numpy >= 2.4.
    @trtp.register(PLUGIN_ID)
    def codebook_topk_desc(rows: trtp.TensorDesc, codebook: trtp.TensorDesc, codebook_sq: trtp.TensorDesc,
                           k: npt.NDArray[np.int32]) -> trtp.TensorDesc:
        if rows.ndim != 2 or codebook.ndim != 2 or codebook_sq.ndim != 1:
            raise ValueError(f"{PLUGIN_ID}: expected rows (N, d), codebook (K, d), codebook_sq (K,); got ranks "
                             f"{rows.ndim}, {codebook.ndim}, {codebook_sq.ndim}")
        return trtp.from_shape_expr((rows.shape_expr[0], int(np.asarray(k).reshape(-1)[0])), dtype=trt.int32)

    @trtp.impl(PLUGIN_ID)
    def codebook_topk_jit(rows: trtp.Tensor, codebook: trtp.Tensor, codebook_sq: trtp.Tensor,
                          k: npt.NDArray[np.int32], outputs: tuple[trtp.Tensor], stream: int) -> None:
        run_codebook_topk(rows, codebook, codebook_sq, int(np.asarray(k).reshape(-1)[0]), outputs[0], stream)

    has_aot = hasattr(trtp, "aot_impl")
    if has_aot:
        @trtp.aot_impl(PLUGIN_ID)
        def codebook_topk_aot(rows: trtp.TensorDesc, codebook: trtp.TensorDesc, codebook_sq: trtp.TensorDesc,
                              k: npt.NDArray[np.int32], outputs: tuple[trtp.TensorDesc], tactic: int
                              ) -> tuple[str | bytes, str | bytes, trtp.KernelLaunchParams, trtp.SymIntExprs]:
            # TensorRT's schema: inputs, attributes, outputs, tactic (required here, one tactic only);
            # returns (kernel name, PTX, launch parameters, extra int32 kernel arguments)
            from ugtsr.kernels.fused_topk import compile_codebook_topk_ptx

            dtype = "fp32" if rows.dtype == trt.float32 else "fp16"
            kernel = compile_codebook_topk_ptx(int(np.asarray(k).reshape(-1)[0]), dtype=dtype)
            n_rows = rows.shape_expr[0]
            launch = trtp.KernelLaunchParams()
            launch.grid_x = trtp.cdiv(n_rows, kernel.block_n)
            launch.block_x = kernel.threads
            launch.shared_mem = kernel.shared_mem
            # kernel arguments after the input pointers, before the output pointer: N, K, d (int32)
            extra = trtp.SymIntExprs.from_tuple([trtp.SymInt32(e) for e in
                                                 (n_rows, codebook.shape_expr[0], codebook.shape_expr[1])])
            return kernel.name.encode(), kernel.ptx.encode(), launch, extra

    _state.update(registered=True, aot=has_aot)
    log.info("registered TensorRT plugin %s (JIT%s)", PLUGIN_ID, " + AOT" if has_aot else "")
    return has_aot


# ``runtime.build --plugins runtime.plugins.codebook_topk`` only imports this module: register when
# TensorRT is installed, and stay importable (doing nothing) when it is not.
if importlib.util.find_spec("tensorrt") is not None:
    register()
