"""TensorRT plugins of the toolkit, as Python "quickly deployable plugins" (``tensorrt.plugin``).

Each module registers its plugins when imported in a process where TensorRT is installed (that is
what ``python -m runtime.build --plugins runtime.plugins.codebook_topk`` does before parsing, and
what the TensorRT backend does before deserializing an engine that used the plugin), and imports
cleanly without TensorRT. Nothing is imported here.

* :mod:`runtime.plugins.codebook_topk` -- ``ugtsr::CodebookTopK``, the fused codebook search of the
  plugin export variant (``python -m export.onnx CKPT --matching plugin``).
"""
from __future__ import annotations

__all__: list[str] = []
