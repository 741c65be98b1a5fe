"""``python -m runtime.triton MODEL -o REPO``: a model repository for a stock Triton Inference Server.

Writes ``REPO/NAME/config.pbtxt`` and ``REPO/NAME/1/model.onnx`` (platform ``onnxruntime_onnx``) or
``REPO/NAME/1/model.plan`` (platform ``tensorrt_plan``, a TensorRT engine from ``runtime.build``), the
layout Triton's model-repository documentation prescribes. The config is data: a
``tritonclient.grpc.model_config_pb2.ModelConfig`` message (Triton's own schema) written in protobuf
text format, so every field name and enum is checked by protobuf itself.

The network is served as exported (``docs/INTERFACES.md``): input ``lq`` FP32 ``[3, -1, -1]`` (RGB in
[0, 1], NCHW, the batch dimension is Triton's), outputs ``sr`` FP32 ``[3, -1, -1]`` (not clamped),
``uncertainty`` FP32 ``[3, -1, -1]`` and ``indices`` INT64 ``[-1, -1]`` where the model has them.
Triton's dynamic batcher batches requests of the same H and W; clients send whole images or tiles of
one size and do the image conversion themselves (``runtime.serve`` is the server that takes OpenCV
images and files). A graph exported before issue 10 §1 needs H and W padded to ``multiple_of``
(metadata) by the client; a self-padding export does not.

``--device gpu`` adds the execution accelerator of Triton's ONNX Runtime backend: ``tensorrt`` (the
default; ``precision_mode FP16``, ``max_workspace_size_bytes``, engine cache in the version folder) or
``cuda``; parameter names from the onnxruntime_backend README ("ONNX Runtime with TensorRT
optimization"). TensorRT engines carry their precision and need ``KIND_GPU``.

Not run here: Triton's stock ONNX Runtime and TensorRT backends are not part of PyTriton's bundle and
cannot be installed on these machines, so the configs are checked against the schema, not loaded.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ugtsr.errors import UGTSRError, UnsupportedInputError, require
from ugtsr.fileio import atomic_open, atomic_write_bytes

from .backends import ModelInfo, model_info_from_metadata
from .engine_meta import read_onnx_metadata, read_sidecar

__all__ = ["main", "write_repository", "model_config", "read_config", "PLATFORMS", "ACCELERATORS"]

PLATFORMS = {".onnx": "onnxruntime_onnx", ".plan": "tensorrt_plan", ".engine": "tensorrt_plan"}
ACCELERATORS = ("tensorrt", "cuda")
#: output name -> (Triton data type, dims without the batch dimension)
_OUTPUT_SPECS = {"sr": ("TYPE_FP32", [3, -1, -1]), "uncertainty": ("TYPE_FP32", [3, -1, -1]),
                 "indices": ("TYPE_INT64", [-1, -1])}
_WORKSPACE_BYTES = 1 << 30


def _config_pb2():
    return require("tritonclient.grpc.model_config_pb2", extra="serve", purpose="Triton model configs")


def _text_format():
    return require("google.protobuf.text_format", extra="serve", purpose="Triton model configs")


def model_info(model: str | os.PathLike) -> ModelInfo:
    """The model's :class:`ModelInfo`: ONNX metadata (no onnxruntime needed) or the engine's sidecar."""
    path = Path(model)
    if not path.is_file():
        raise UnsupportedInputError(f"{path}: no such model file")
    suffix = path.suffix.lower()
    if suffix not in PLATFORMS:
        raise UnsupportedInputError(f"{path}: expected an .onnx model or a .plan/.engine TensorRT engine")
    if PLATFORMS[suffix] == "onnxruntime_onnx":
        return model_info_from_metadata(read_onnx_metadata(path), source=str(path))
    meta = read_sidecar(path)
    if meta is None:
        raise UnsupportedInputError(f"{path}: no {path.name}.json sidecar next to the engine (written by "
                                    "python -m runtime.build); it names the engine's outputs")
    return ModelInfo(scale=meta.scale, multiple_of=meta.multiple_of, min_size=meta.min_size,
                     outputs=tuple(meta.outputs), precision=meta.precision, config=meta.config, source=str(path))


def model_config(
    info: ModelInfo, *, name: str = "ugtsr", platform: str = "onnxruntime_onnx", max_batch_size: int = 8,
    instances: int = 1, device: str = "cpu", accelerator: str = "tensorrt",
    preferred_batch_sizes: Sequence[int] | None = None, max_queue_delay_us: int = 2000,
    gpus: Sequence[int] | None = None, engine_max_batch: int | None = None,
) -> Any:
    """Build the ``ModelConfig`` message (``tritonclient.grpc.model_config_pb2``) for one model."""
    pb = _config_pb2()
    if max_batch_size < 1:
        raise UnsupportedInputError(f"max_batch_size must be >= 1 (Triton batches the N of lq), got {max_batch_size}")
    if instances < 1:
        raise UnsupportedInputError(f"instances must be >= 1, got {instances}")
    if device not in ("cpu", "gpu"):
        raise UnsupportedInputError(f"device must be cpu or gpu, got {device!r}")
    if accelerator not in ACCELERATORS:
        raise UnsupportedInputError(f"accelerator must be one of {', '.join(ACCELERATORS)}, got {accelerator!r}")
    if platform == "tensorrt_plan" and device != "gpu":
        raise UnsupportedInputError("a TensorRT engine runs on a GPU only; use --device gpu")
    if engine_max_batch is not None and max_batch_size > engine_max_batch:
        raise UnsupportedInputError(f"max_batch_size {max_batch_size} exceeds the engine's largest profile batch "
                                    f"{engine_max_batch}; rebuild the engine or lower --max-batch-size")
    preferred = sorted(set(preferred_batch_sizes or [max_batch_size]))
    if preferred[0] < 1 or preferred[-1] > max_batch_size:
        raise UnsupportedInputError(f"preferred batch sizes must lie in [1, {max_batch_size}], got {preferred}")
    if max_queue_delay_us < 0:
        raise UnsupportedInputError(f"max_queue_delay_us must be >= 0, got {max_queue_delay_us}")

    config = pb.ModelConfig(name=name, platform=platform, max_batch_size=int(max_batch_size))
    config.input.append(pb.ModelInput(name="lq", data_type=pb.TYPE_FP32, dims=[3, -1, -1]))
    for out in info.outputs:
        if out not in _OUTPUT_SPECS:
            raise UnsupportedInputError(f"{info.source}: unknown output {out!r} (known: {', '.join(_OUTPUT_SPECS)})")
        dtype, dims = _OUTPUT_SPECS[out]
        config.output.append(pb.ModelOutput(name=out, data_type=pb.DataType.Value(dtype), dims=dims))
    config.dynamic_batching.preferred_batch_size.extend(preferred)
    config.dynamic_batching.max_queue_delay_microseconds = int(max_queue_delay_us)
    group = config.instance_group.add()
    group.count = int(instances)
    group.kind = pb.ModelInstanceGroup.KIND_GPU if device == "gpu" else pb.ModelInstanceGroup.KIND_CPU
    if device == "gpu" and gpus:
        group.gpus.extend(int(g) for g in gpus)
    if platform == "onnxruntime_onnx" and device == "gpu":
        acc = config.optimization.execution_accelerators.gpu_execution_accelerator.add()
        acc.name = accelerator
        if accelerator == "tensorrt":
            # onnxruntime_backend README, "ONNX Runtime with TensorRT optimization"
            acc.parameters["precision_mode"] = "FP16"
            acc.parameters["max_workspace_size_bytes"] = str(_WORKSPACE_BYTES)
            acc.parameters["trt_engine_cache_enable"] = "1"
            acc.parameters["trt_engine_cache_path"] = "/tmp/triton_trt_cache"
    if platform == "onnxruntime_onnx":
        # the metadata travels with the repository (Triton ignores unknown model parameters)
        for key, value in (("ugtsr_scale", info.scale), ("ugtsr_multiple_of", info.multiple_of),
                           ("ugtsr_min_size", info.min_size), ("ugtsr_precision", info.precision)):
            config.parameters[key].string_value = str(value)
    return config


def read_config(path: str | os.PathLike) -> Any:
    """Parse a ``config.pbtxt`` with Triton's schema (raises ``UGTSRError`` naming the file)."""
    pb, text_format = _config_pb2(), _text_format()
    path = Path(path)
    try:
        return text_format.Parse(path.read_text(encoding="utf-8"), pb.ModelConfig())
    except (OSError, text_format.ParseError) as exc:
        raise UGTSRError(f"{path}: not a valid Triton model config ({' '.join(str(exc).split())})") from None


def write_repository(
    model: str | os.PathLike, repo: str | os.PathLike, *, name: str = "ugtsr", version: int = 1,
    overwrite: bool = False, **options: Any,
) -> Path:
    """Write ``repo/name/config.pbtxt`` and ``repo/name/<version>/model.{onnx,plan}``; returns the model folder.

    ``options`` go to :func:`model_config`. For ONNX Runtime on CPU the model is written with its
    Align-Attention nodes fused for ONNX Runtime's CPU kernel (``runtime.backends.ort_graph``); for
    GPUs and engines it is copied as it is. Both files are written atomically (temporary file in the
    target folder, then ``os.replace``); an existing model folder is refused unless ``overwrite``.
    """
    text_format = _text_format()
    src = Path(model)
    info = model_info(src)
    platform = PLATFORMS[src.suffix.lower()]
    if platform == "tensorrt_plan":
        meta = read_sidecar(src)
        if meta is not None and meta.profiles:
            options.setdefault("engine_max_batch", min(p.max[0] for p in meta.profiles))
    if not name or any(ch in name for ch in "/\\") or name.startswith("."):
        raise UnsupportedInputError(f"model name {name!r}: use letters, digits, '_', '-', '.' (no slashes)")
    config = model_config(info, name=name, platform=platform, **options)
    folder = Path(repo) / name
    target = folder / str(int(version)) / ("model.onnx" if platform == "onnxruntime_onnx" else "model.plan")
    config_path = folder / "config.pbtxt"
    if not overwrite and (config_path.exists() or target.exists()):
        raise UGTSRError(f"{folder}: the model folder exists already (use --overwrite)")
    if target.exists() and os.path.samefile(target, src):
        raise UGTSRError(f"{target}: is the source model itself; choose another repository")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fused = None
        if platform == "onnxruntime_onnx" and options.get("device", "cpu") == "cpu":
            from .backends.ort_graph import cpu_model
            fused = cpu_model(src)  # bytes: WindowAttention as ONNX Runtime's fused CPU kernel
        if isinstance(fused, bytes):
            atomic_write_bytes(target, fused)
        else:
            with open(src, "rb") as fin, atomic_open(target) as fout:
                shutil.copyfileobj(fin, fout, 1 << 20)
        atomic_write_bytes(config_path, text_format.MessageToString(config).encode("utf-8"))
    except OSError as exc:
        raise UGTSRError(f"{folder}: cannot write the repository ({exc.strerror or exc})") from None
    return folder


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m runtime.triton",
                                description="Write a model repository for a stock Triton Inference Server "
                                            "(ONNX Runtime or TensorRT backend).")
    p.add_argument("model", metavar="MODEL", help="exported .onnx, or a .plan/.engine TensorRT engine")
    p.add_argument("-o", "--output", required=True, metavar="REPO", help="model repository folder")
    p.add_argument("--name", default="ugtsr", help="model name (default ugtsr)")
    p.add_argument("--version", type=int, default=1, help="model version folder (default 1)")
    p.add_argument("--max-batch-size", type=int, default=8, metavar="B", help="largest batch (default 8)")
    p.add_argument("--preferred-batch-sizes", default=None, metavar="LIST",
                   help="comma-separated preferred batch sizes (default: the max batch size)")
    p.add_argument("--max-queue-delay-us", type=int, default=2000, metavar="US",
                   help="dynamic batcher's max queue delay in microseconds (default 2000)")
    p.add_argument("--instances", type=int, default=1, metavar="N", help="model instances (default 1)")
    p.add_argument("--device", default="cpu", choices=("cpu", "gpu"), help="instance kind (default cpu)")
    p.add_argument("--accelerator", default="tensorrt", choices=ACCELERATORS,
                   help="ONNX on gpu: ONNX Runtime's TensorRT (FP16) or CUDA execution provider (default tensorrt)")
    p.add_argument("--gpus", default=None, metavar="LIST", help="comma-separated GPU ids for the instances")
    p.add_argument("--overwrite", action="store_true", help="replace an existing model folder's files")
    return p


def _int_list(text: str | None, flag: str) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UnsupportedInputError(f"{flag}: expected comma-separated integers, got {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    """Write the repository; 0 on success, 2 for a bad model or option (one line on stderr)."""
    args = _build_parser().parse_args(argv)
    try:
        folder = write_repository(
            args.model, args.output, name=args.name, version=args.version, overwrite=args.overwrite,
            max_batch_size=args.max_batch_size, instances=args.instances, device=args.device,
            accelerator=args.accelerator, max_queue_delay_us=args.max_queue_delay_us,
            preferred_batch_sizes=_int_list(args.preferred_batch_sizes, "--preferred-batch-sizes"),
            gpus=_int_list(args.gpus, "--gpus"))
    except UGTSRError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {folder}/config.pbtxt and {folder}/{args.version}/ "
          f"(tritonserver --model-repository={Path(args.output).resolve()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
