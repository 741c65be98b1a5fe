"""Reproducible measurements: the paper's Fig. 7 / Fig. 8 and deployment numbers.

Each module is a CLI run as ``python -m benchmarks.<name>`` with ``main(argv=None) -> int``; each prints
a table and writes ``benchmarks/results/<name>_<tag>.json`` (+ ``.csv``, + ``.png`` where a figure helps
and matplotlib is installed) recording the machine, library versions, the exact command and the UTC time.

* :mod:`benchmarks.matching` -- matching time versus feature size and codebook size (Fig. 8):
  FeMaSR's nearest code, UGTSR's Top-k matcher, the CodeFormer-style transformer.
* :mod:`benchmarks.accuracy` -- matching accuracy against the HQ prior's codes (Fig. 7): top-1, hit@k,
  and the final index of Top-k / CodeFormer models.
* :mod:`benchmarks.latency` -- end-to-end latency per backend (torch, ONNX Runtime, TensorRT) and
  peak memory of ``runtime.infer`` with and without tiling.
* :mod:`benchmarks.quality` -- PSNR-Y / SSIM-Y / NIQE of models against bicubic and Lanczos.
* :mod:`benchmarks.tiling` -- how much tiled inference differs from whole-image inference.
* :mod:`benchmarks.train_throughput` -- training steps per second.

Shared plumbing (machine and version records, median timing, writers) lives in
:mod:`benchmarks._common`. Importing this package imports nothing heavy.
"""
from __future__ import annotations

__all__ = ["accuracy", "latency", "matching", "quality", "tiling", "train_throughput"]
