"""Build a TensorRT engine from a UGTSR ONNX model (TensorRT 10.x and 11.x Python API).

CLI::

    python -m runtime.build MODEL.onnx -o ENGINE.plan [--min-shape S] [--opt-shape S] [--max-shape S]
        [--workspace GiB] [--opt-level N] [--timing-cache PATH] [--device N] [--force]
        [--plugins LIB.so|module|file.py ...] [--tf32] [--weak-fp16] [--print-trtexec [--trt-major N]]

Shapes are ``HxW`` (batch 1) or ``NxCxHxW`` for the input ``lq``, at least ``min_size`` (ONNX
metadata). A model that pads itself (metadata ``pads_input="1"``, every ``python -m export.onnx``
graph since issue 10) takes any such size, e.g. ``--opt-shape 1x3x1080x1920`` for a 1080p frame;
for older exports H and W must be multiples of the model's ``multiple_of``. Defaults: min
``1x3xMxM`` with ``M`` = the smallest allowed side >= ``min_size``, opt ``1x3x256x256``, max
``4x3x1024x1024`` (rounded up to ``multiple_of`` for older exports); see :mod:`runtime.engine_spec`.

Precision comes from the ONNX, not from a builder flag. An FP16 model is an FP16 ONNX (``export.onnx
--precision fp16``: FP16 compute with FP32 islands and FP32 I/O), built as a **strongly typed**
network: on TensorRT 10.x the network is created with ``NetworkDefinitionCreationFlag.STRONGLY_TYPED``,
on 11.x with flags 0 (strong typing is always on; ``BuilderFlag.FP16`` no longer exists). So TensorRT
runs each tensor in the type the ONNX gives it, on both versions. ``--weak-fp16`` is a legacy option
for 10.x only (``BuilderFlag.FP16`` on a weakly typed network) and is refused on TensorRT 11.

TF32 is cleared by default (``--tf32`` keeps it): TensorRT enables TF32 for FP32 convolutions and
matmuls, which rounds their inputs to a 10-bit mantissa. FP32 engines should match ONNX Runtime's FP32
CPU results (the parity checks compare them), and the FP32 islands of an FP16 model (codebook
distances, Top-k, norms) exist precisely to keep full FP32 precision; TF32 would defeat both.

The engine and its sidecar ``ENGINE.plan.json`` (:mod:`runtime.engine_meta`) are written atomically:
a failed build leaves no partial file, and raises :class:`~ugtsr.errors.EngineBuildError` with a
one-line message. Without ``--force`` an existing engine whose sidecar matches the ONNX, the
running TensorRT/GPU and the requested options is kept.
"""
from __future__ import annotations

import argparse
import ctypes
import dataclasses
import hashlib
import importlib
import importlib.util
import logging
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime.backends.base import model_info_from_metadata
from runtime.engine_meta import (
    EngineMeta,
    ShapeProfile,
    atomic_write_bytes,
    check_engine_fresh,
    current_gpu,
    current_tensorrt_version,
    default_built_at,
    onnx_fingerprint,
    read_onnx_metadata,
    read_sidecar,
    write_sidecar,
)
from runtime.engine_spec import (
    BuildOptions,
    format_shape,
    is_plugin_library,
    parse_shape,
    resolve_profile,
    trtexec_command,
)
from ugtsr.errors import EngineBuildError, MissingDependencyError, UGTSRError, require

__all__ = [
    "BuildOptions",  # re-exported from runtime.engine_spec for convenience
    "BuildResult",
    "build_engine",
    "load_plugins",
    "make_trt_logger",
    "trt_major",
    "shape_multiple",
    "main",
]

_log = logging.getLogger(__name__)

@dataclass(frozen=True)
class BuildResult:
    """What :func:`build_engine` did."""

    meta: EngineMeta
    built: bool            # False: an up-to-date engine was kept
    seconds: float = 0.0
    trtexec: str = ""      # the equivalent trtexec command line
    notes: tuple[str, ...] = field(default_factory=tuple)


def shape_multiple(info: Any) -> int:
    """What profile H and W must be multiples of: 1 for a graph that pads itself (``pads_input``),
    else the model's ``multiple_of``."""
    return 1 if getattr(info, "pads_input", False) else info.multiple_of


# --------------------------------------------------------------------------------------------------
# TensorRT helpers (every function takes the imported ``tensorrt`` module)
# --------------------------------------------------------------------------------------------------
def trt_major(trt: Any) -> int:
    return int(str(trt.__version__).split(".")[0])


def make_trt_logger(trt: Any) -> Any:
    """A ``trt.ILogger`` forwarding to :mod:`logging` and keeping error messages in ``.errors``."""

    sev = trt.ILogger.Severity
    levels = {
        sev.INTERNAL_ERROR: logging.CRITICAL,
        sev.ERROR: logging.ERROR,
        sev.WARNING: logging.WARNING,
        sev.INFO: logging.INFO,
        sev.VERBOSE: logging.DEBUG,
    }
    trt_log = logging.getLogger("runtime.tensorrt")

    class _Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            level = levels.get(severity, logging.INFO)
            # TensorRT's INFO chatter is demoted to DEBUG: the CLI prints its own summary.
            level = logging.DEBUG if level == logging.INFO else level
            if level >= logging.ERROR:
                self.errors.append(" ".join(str(msg).split()))
            if trt_log.isEnabledFor(level):
                trt_log.log(level, "%s", msg)

        def last_error(self) -> str:
            return self.errors[-1] if self.errors else "no error message from TensorRT"

    return _Logger()


def load_plugins(plugins: tuple[str, ...] | list[str], trt: Any, logger: Any = None) -> None:
    """Load TensorRT plugins before parsing (and before deserializing an engine that uses them).

    ``*.so``/``*.dll`` files go through ``trt.get_plugin_registry().load_library`` (IPluginV3
    libraries exporting ``getCreators``), falling back to :func:`ctypes.CDLL` (libraries that register
    their creators in static initializers). Anything else is a Python module defining TensorRT
    "quickly deployable plugins": a ``.py`` file path or a dotted module name, imported so that its
    ``@trtp.register`` decorators run. TensorRT's own plugin library is initialised first.
    """
    if hasattr(trt, "init_libnvinfer_plugins"):
        try:
            trt.init_libnvinfer_plugins(logger, "")
        except Exception as exc:  # TensorRT's plugins are optional for standard-op graphs
            _log.debug("init_libnvinfer_plugins failed: %s", exc)
    for spec in plugins:
        if is_plugin_library(spec):
            if not Path(spec).is_file():
                raise EngineBuildError(f"plugin library {spec}: no such file")
            registry = trt.get_plugin_registry() if hasattr(trt, "get_plugin_registry") else None
            try:
                if registry is not None and hasattr(registry, "load_library"):
                    if registry.load_library(str(spec)) is None:
                        raise OSError("IPluginRegistry.load_library returned no handle")
                else:
                    ctypes.CDLL(str(spec), mode=ctypes.RTLD_GLOBAL)
            except (OSError, RuntimeError) as exc:
                try:  # libraries without getCreators register in static initializers: ctypes suffices
                    ctypes.CDLL(str(spec), mode=ctypes.RTLD_GLOBAL)
                except OSError:
                    raise EngineBuildError(f"plugin library {spec}: cannot be loaded ({exc})") from exc
            _log.info("loaded plugin library %s", spec)
            continue
        try:
            if spec.endswith(".py"):
                mod_name = "ugtsr_trt_plugin_" + Path(spec).stem
                if mod_name not in sys.modules:
                    spec_obj = importlib.util.spec_from_file_location(mod_name, spec)
                    if spec_obj is None or spec_obj.loader is None:
                        raise ImportError(f"cannot import {spec}")
                    module = importlib.util.module_from_spec(spec_obj)
                    sys.modules[mod_name] = module
                    spec_obj.loader.exec_module(module)
            else:
                importlib.import_module(spec)
        except Exception as exc:  # any failure in the plugin module is reported as one line
            raise EngineBuildError(f"plugin module {spec}: cannot be imported ({type(exc).__name__}: {exc})") from exc
        _log.info("imported plugin module %s", spec)


def _network_flags(trt: Any, *, weak_fp16: bool) -> tuple[int, bool]:
    """``(create_network flags, strongly_typed)`` for the running TensorRT."""
    if trt_major(trt) >= 11:
        return 0, True  # always strongly typed; the STRONGLY_TYPED flag is deprecated and ignored
    if weak_fp16:
        return 0, False
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    if flag is None:
        _log.warning("this TensorRT %s has no STRONGLY_TYPED networks; FP16 ONNX types may not be honoured",
                     trt.__version__)
        return 0, False
    return 1 << int(flag), True


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


#: Python module registering the CodebookTopK TensorRT plugin (export --matching plugin graphs)
PLUGIN_MODULE = "runtime.plugins.codebook_topk"


# --------------------------------------------------------------------------------------------------
def build_engine(
    onnx_path: str | os.PathLike,
    engine_path: str | os.PathLike,
    options: BuildOptions | None = None,
    *,
    force: bool = False,
) -> BuildResult:
    """Build ``engine_path`` (+ its sidecar) from ``onnx_path``; keep an up-to-date one unless ``force``.

    Raises :class:`EngineBuildError` (one line; no partial file left), :class:`ConfigError` for bad
    shapes/options, :class:`MissingDependencyError` (``gpu`` extra) without TensorRT.
    """
    options = options or BuildOptions()
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    if not onnx_path.is_file():
        raise EngineBuildError(f"{onnx_path}: no such ONNX file")
    raw_meta = read_onnx_metadata(onnx_path)
    info = model_info_from_metadata(raw_meta, source=str(onnx_path))
    profile = resolve_profile(options, multiple_of=shape_multiple(info), min_size=info.min_size)
    if raw_meta.get("variant") == "plugin" and PLUGIN_MODULE not in options.plugins:
        # the CodebookTopK node needs its plugin registered before parsing (and before deserializing)
        options = dataclasses.replace(options, plugins=(*options.plugins, PLUGIN_MODULE))
    trt = require("tensorrt", extra="gpu", purpose="building TensorRT engines")
    major = trt_major(trt)
    if options.weak_fp16 and not hasattr(trt.BuilderFlag, "FP16"):
        raise EngineBuildError(
            f"--weak-fp16 needs BuilderFlag.FP16, which TensorRT {trt.__version__} no longer has; "
            "build an FP16 ONNX instead: python -m export.onnx CKPT --precision fp16"
        )
    cmd, notes = trtexec_command(onnx_path, engine_path, profile, options, trt_major=major)
    command = shlex.join(cmd)

    if not force and engine_path.is_file():
        old = _read_sidecar_quietly(engine_path)
        if old is not None and _same_request(old, profile, options, info.precision):
            reasons = check_engine_fresh(engine_path, onnx_path, device_id=options.device_id)
            if not reasons:
                _log.info("%s is up to date (use --force to rebuild)", engine_path)
                return BuildResult(meta=old, built=False, trtexec=command, notes=tuple(notes))
            _log.info("rebuilding %s: %s", engine_path, "; ".join(reasons))

    _select_device(options.device_id)
    gpu = current_gpu(options.device_id)
    if gpu is None:
        _log.warning("could not identify GPU %d; the sidecar will not record it", options.device_id)
    t0 = time.perf_counter()
    plan, strongly_typed, cache_bytes = _build_plan(trt, onnx_path, profile, options, info.precision,
                                                    plugin_variant=raw_meta.get("variant") == "plugin")
    seconds = time.perf_counter() - t0

    meta = EngineMeta(
        scale=info.scale, multiple_of=info.multiple_of, min_size=info.min_size, outputs=tuple(info.outputs),
        precision=info.precision, config=info.config, source=str(onnx_path.resolve()),
        onnx_path=str(onnx_path.resolve()), onnx_sha256=onnx_fingerprint(onnx_path),
        engine_sha256=_sha256_bytes(plan), profiles=(profile,),
        build={**options.record(), "strongly_typed": strongly_typed, "timing_cache": options.timing_cache,
               "seconds": round(seconds, 1)},
        built_at=default_built_at(), ugtsr_version=_ugtsr_version(),
        tensorrt_version=str(trt.__version__),
        gpu_name=gpu[0] if gpu else "", compute_capability=gpu[1] if gpu else "",
    )
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        atomic_write_bytes(engine_path, plan)
        write_sidecar(engine_path, meta)
    except OSError as exc:
        raise EngineBuildError(f"{engine_path}: cannot write the engine ({exc})") from exc
    if options.timing_cache and cache_bytes is not None:
        try:
            atomic_write_bytes(options.timing_cache, cache_bytes)
        except OSError as exc:  # the engine is fine; a lost cache only slows the next build
            _log.warning("could not save the timing cache %s: %s", options.timing_cache, exc)
    return BuildResult(meta=meta, built=True, seconds=seconds, trtexec=command, notes=tuple(notes))


def _plugin_graph_bytes(onnx_path: Path, trt: Any) -> bytes:
    """The plugin-variant graph without its fallback function (TensorRT's parser would inline the
    function instead of calling the plugin); the AOT Triton kernel where TensorRT >= 10.9 has it."""
    onnx = require("onnx", extra="export", purpose="preparing the plugin graph for TensorRT")
    from export.plugin import strip_plugin_functions

    version = tuple(int(v) for v in str(trt.__version__).split(".")[:2] if v.isdigit())
    proto = onnx.load(str(onnx_path))
    return strip_plugin_functions(proto, aot=version >= (10, 9)).SerializeToString()


def _build_plan(trt: Any, onnx_path: Path, profile: ShapeProfile, options: BuildOptions,
                precision: str, *, plugin_variant: bool = False) -> tuple[Any, bool, Any]:
    """Parse + build; returns ``(serialized plan, strongly_typed, timing cache bytes or None)``."""
    logger = make_trt_logger(trt)
    load_plugins(options.plugins, trt, logger)
    builder = trt.Builder(logger)
    if builder is None:
        raise EngineBuildError(f"TensorRT could not create a builder ({logger.last_error()})")
    flags, strongly_typed = _network_flags(trt, weak_fp16=options.weak_fp16)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    parsed = (parser.parse(_plugin_graph_bytes(onnx_path, trt), str(onnx_path)) if plugin_variant
              else parser.parse_from_file(str(onnx_path)))
    if not parsed:
        errors = [_one_line(str(parser.get_error(i))) for i in range(parser.num_errors)]
        detail = " | ".join(errors) if errors else logger.last_error()
        raise EngineBuildError(
            f"{onnx_path}: TensorRT's ONNX parser failed with {len(errors) or 1} error(s): {detail}"
        )
    inputs = [network.get_input(i).name for i in range(network.num_inputs)]
    if inputs != [profile.input]:
        raise EngineBuildError(
            f"{onnx_path}: expected exactly one input '{profile.input}', found {inputs}; "
            "export the model with python -m export.onnx"
        )
    if precision == "fp16" and not strongly_typed and not options.weak_fp16:
        _log.warning("FP16 ONNX built without strong typing: TensorRT may run it in FP32")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(options.workspace_gib * (1 << 30)))
    config.builder_optimization_level = int(options.opt_level)
    if not options.tf32 and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)   # parity with ONNX Runtime FP32 (module docstring)
    if options.weak_fp16:
        config.set_flag(trt.BuilderFlag.FP16)     # only reachable on 10.x (checked by the caller)

    cache = None
    if options.timing_cache:
        cache = _attach_timing_cache(config, Path(options.timing_cache))

    prof = builder.create_optimization_profile()
    prof.set_shape(profile.input, profile.min, profile.opt, profile.max)
    if config.add_optimization_profile(prof) < 0:
        raise EngineBuildError(f"TensorRT rejected the shape profile {profile.to_dict()} ({logger.last_error()})")

    _log.info("building the TensorRT engine (this can take minutes; --opt-level lower is faster)")
    try:
        plan = builder.build_serialized_network(network, config)
    except RuntimeError as exc:  # the bindings raise for some invalid configurations
        raise EngineBuildError(f"TensorRT build failed: {_one_line(str(exc))}") from exc
    if plan is None:
        raise EngineBuildError(
            f"TensorRT could not build the engine: {logger.last_error()} "
            "(try a larger --workspace, a smaller --max-shape, or see the log with -v)"
        )
    cache_bytes = None
    if cache is not None:
        live = config.get_timing_cache() if hasattr(config, "get_timing_cache") else cache
        cache_bytes = (live or cache).serialize()
    return plan, strongly_typed, cache_bytes


def _attach_timing_cache(config: Any, path: Path) -> Any:
    data = b""
    if path.is_file():
        data = path.read_bytes()
    cache = config.create_timing_cache(data)
    if cache is None and data:
        _log.warning("timing cache %s is unusable (other TensorRT version?); starting a new one", path)
        cache = config.create_timing_cache(b"")
    if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
        _log.warning("timing cache %s was not accepted (made on another GPU?); starting a new one", path)
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
    elif data:
        _log.info("using timing cache %s", path)
    return cache


def _select_device(device_id: int) -> None:
    """Make ``device_id`` current (the builder uses the current device)."""
    from runtime.cuda_mem import get_cuda_api  # noqa: PLC0415

    try:
        api = get_cuda_api()
    except MissingDependencyError:
        if device_id != 0:
            raise
        _log.debug("no CUDA binding installed; building on the default device 0")
        return
    try:
        api.set_device(device_id)
    except UGTSRError as exc:
        raise EngineBuildError(f"cannot use GPU {device_id}: {exc}") from exc


def _sha256_bytes(data: Any) -> str:
    return hashlib.sha256(memoryview(data)).hexdigest()


def _ugtsr_version() -> str:
    try:
        from ugtsr import __version__  # noqa: PLC0415

        return str(__version__)
    except ImportError:
        return ""


def _read_sidecar_quietly(engine_path: Path) -> EngineMeta | None:
    try:
        return read_sidecar(engine_path)
    except EngineBuildError as exc:
        _log.info("%s", exc)
        return None


def _same_request(meta: EngineMeta, profile: ShapeProfile, options: BuildOptions, precision: str) -> bool:
    wanted = options.record()
    have = {k: meta.build.get(k) for k in wanted}
    return meta.profiles == (profile,) and meta.precision == precision and have == wanted


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m runtime.build",
        description="Build a TensorRT engine (+ ENGINE.plan.json sidecar) from a UGTSR ONNX model.",
    )
    p.add_argument("onnx", help="the ONNX model (python -m export.onnx); FP16 models build FP16 engines")
    p.add_argument("-o", "--output", required=True, help="engine file to write, e.g. model.plan")
    p.add_argument("--min-shape", help="smallest lq shape, HxW or NxCxHxW (default 1x3xMxM, M = multiple_of)")
    p.add_argument("--opt-shape", help="shape to tune for (default 1x3x256x256)")
    p.add_argument("--max-shape", help="largest lq shape (default 4x3x1024x1024); tiles must fit in it")
    p.add_argument("--workspace", type=float, default=4.0, help="builder workspace memory pool, GiB (default 4)")
    p.add_argument("--opt-level", type=int, default=3, help="builder optimization level 0..5 (default 3)")
    p.add_argument("--timing-cache", help="timing cache file to load (if present) and save")
    p.add_argument("--device", type=int, default=0, help="CUDA device index (default 0)")
    p.add_argument("--force", action="store_true", help="rebuild even if the engine is up to date")
    p.add_argument("--plugins", nargs="+", default=[], metavar="LIB_OR_PY",
                   help="plugin libraries (.so) or Python plugin modules (file.py or dotted name)")
    p.add_argument("--tf32", action="store_true", help="allow TF32 (off by default for parity with FP32 ORT)")
    p.add_argument("--weak-fp16", action="store_true",
                   help="legacy: BuilderFlag.FP16 on an FP32 ONNX (TensorRT 10.x only)")
    p.add_argument("--print-trtexec", action="store_true",
                   help="only print the equivalent trtexec command (TensorRT not needed)")
    p.add_argument("--trt-major", type=int, choices=(10, 11), default=None,
                   help="TensorRT major version for --print-trtexec (default: the installed one, else 10)")
    p.add_argument("-v", "--verbose", action="store_true", help="show TensorRT's log")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        onnx_path = Path(args.onnx)
        if not onnx_path.is_file():
            raise EngineBuildError(f"{onnx_path}: no such ONNX file")
        info = model_info_from_metadata(read_onnx_metadata(onnx_path), source=str(onnx_path))
        shapes = {
            key: parse_shape(getattr(args, key), multiple_of=shape_multiple(info), min_size=info.min_size,
                             flag="--" + key.replace("_", "-"))
            if getattr(args, key) else None
            for key in ("min_shape", "opt_shape", "max_shape")
        }
        options = BuildOptions(
            **shapes, workspace_gib=args.workspace, opt_level=args.opt_level, timing_cache=args.timing_cache,
            device_id=args.device, plugins=tuple(args.plugins), tf32=args.tf32, weak_fp16=args.weak_fp16,
        )
        profile = resolve_profile(options, multiple_of=shape_multiple(info), min_size=info.min_size)
        if args.print_trtexec:
            installed = current_tensorrt_version()
            major = args.trt_major or (int(installed.split(".")[0]) if installed else 10)
            cmd, notes = trtexec_command(onnx_path, args.output, profile, options, trt_major=major)
            print(shlex.join(cmd))
            for note in notes:
                print(f"# note: {note}")
            return 0
        trt = require("tensorrt", extra="gpu", purpose="building TensorRT engines")
        cmd, notes = trtexec_command(onnx_path, args.output, profile, options, trt_major=trt_major(trt))
        print(f"TensorRT {trt.__version__}; {info.precision} model {onnx_path}; profile "
              f"min {format_shape(profile.min)} opt {format_shape(profile.opt)} max {format_shape(profile.max)}")
        print("equivalent trtexec command:\n  " + shlex.join(cmd))
        for note in notes:
            print(f"  # note: {note}")
        result = build_engine(onnx_path, args.output, options, force=args.force)
    except UGTSRError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    meta = result.meta
    if result.built:
        print(f"wrote {args.output} ({meta.precision}, TensorRT {meta.tensorrt_version}, "
              f"{meta.gpu_name or 'unknown GPU'} sm_{meta.compute_capability.replace('.', '')}) "
              f"in {result.seconds:.1f} s; sidecar {args.output}.json")
    else:
        print(f"{args.output} is up to date (built {meta.built_at}); use --force to rebuild")
    return 0


if __name__ == "__main__":
    sys.exit(main())
