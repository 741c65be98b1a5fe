"""What to build: TensorRT build options, the ``lq`` shape profile, and the equivalent ``trtexec`` line.

Pure Python (no TensorRT): :mod:`runtime.build` turns a :class:`BuildOptions` into an engine, the
CLI and tests use :func:`parse_shape` / :func:`resolve_profile` / :func:`trtexec_command` directly.

Shapes are ``HxW`` (batch 1, 3 channels) or ``NxCxHxW`` for the input ``lq``; H and W must be
multiples of the model's ``multiple_of`` and at least ``min_size`` (ONNX metadata). Defaults
(:func:`default_profile`): min ``1x3xMxM`` with ``M`` the smallest multiple of ``multiple_of`` that is
>= ``min_size``, opt ``1x3x256x256``, max ``4x3x1024x1024`` (opt/max rounded up to ``multiple_of``).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from runtime.engine_meta import EngineMeta, Shape, ShapeProfile
from ugtsr.errors import ConfigError

__all__ = [
    "INPUT_NAME",
    "DEFAULT_OPT_HW",
    "DEFAULT_MAX_HW",
    "DEFAULT_MAX_BATCH",
    "BuildOptions",
    "parse_shape",
    "format_shape",
    "default_profile",
    "resolve_profile",
    "is_plugin_library",
    "trtexec_command",
]

INPUT_NAME = "lq"
DEFAULT_OPT_HW = 256
DEFAULT_MAX_HW = 1024
DEFAULT_MAX_BATCH = 4
_LIB_SUFFIXES = (".so", ".dll", ".dylib")


@dataclass(frozen=True)
class BuildOptions:
    """How to build. Shapes left ``None`` get defaults from the model's ``multiple_of``/``min_size``."""

    min_shape: Shape | None = None
    opt_shape: Shape | None = None
    max_shape: Shape | None = None
    workspace_gib: float = 4.0
    opt_level: int = 3
    timing_cache: str | None = None
    device_id: int = 0
    plugins: tuple[str, ...] = ()
    tf32: bool = False
    weak_fp16: bool = False

    def __post_init__(self) -> None:
        if not (self.workspace_gib > 0 and math.isfinite(self.workspace_gib)):
            raise ConfigError(f"--workspace must be a positive number of GiB, got {self.workspace_gib}")
        if not 0 <= self.opt_level <= 5:
            raise ConfigError(f"--opt-level must be 0..5 (TensorRT builder optimization level), got {self.opt_level}")
        if self.device_id < 0:
            raise ConfigError(f"--device must be >= 0, got {self.device_id}")
        object.__setattr__(self, "plugins", tuple(self.plugins))

    def record(self) -> dict[str, Any]:
        """The options that change the engine, as stored in the sidecar's ``build`` entry."""
        return {
            "workspace_gib": self.workspace_gib,
            "opt_level": self.opt_level,
            "tf32": self.tf32,
            "weak_fp16": self.weak_fp16,
            "plugins": list(self.plugins),
        }

    @classmethod
    def from_meta(cls, meta: EngineMeta, *, device_id: int = 0) -> BuildOptions:
        """The options an existing engine was built with (to rebuild it the same way)."""
        b = meta.build or {}
        prof = meta.profiles[0] if meta.profiles else None
        return cls(
            min_shape=prof.min if prof else None,
            opt_shape=prof.opt if prof else None,
            max_shape=prof.max if prof else None,
            workspace_gib=float(b.get("workspace_gib", 4.0)),
            opt_level=int(b.get("opt_level", 3)),
            timing_cache=b.get("timing_cache"),
            device_id=device_id,
            plugins=tuple(b.get("plugins", ())),
            tf32=bool(b.get("tf32", False)),
            weak_fp16=bool(b.get("weak_fp16", False)),
        )


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def parse_shape(text: str, *, multiple_of: int = 1, min_size: int = 1, flag: str = "--max-shape") -> Shape:
    """Parse ``HxW`` (-> ``(1, 3, H, W)``) or ``NxCxHxW``; raise a one-line :class:`ConfigError`.

    H and W must be multiples of ``multiple_of`` and >= ``min_size``; C must be 3; N >= 1.
    """
    parts = str(text).strip().lower().split("x")
    try:
        dims = [int(p) for p in parts]
    except ValueError:
        dims = []
    if len(dims) not in (2, 4) or any(d <= 0 for d in dims):
        raise ConfigError(f"{flag} {text!r}: expected HxW or NxCxHxW with positive integers, e.g. 256x256 or 1x3x256x256")
    n, c, h, w = (1, 3, *dims) if len(dims) == 2 else dims
    if c != 3:
        raise ConfigError(f"{flag} {text!r}: the model takes 3 channels (RGB), got C={c}")
    if h % multiple_of or w % multiple_of:
        hint = f"{_round_up(h, multiple_of)}x{_round_up(w, multiple_of)}"
        raise ConfigError(
            f"{flag} {text!r}: H and W must be multiples of {multiple_of} (the model's multiple_of), e.g. {hint}"
        )
    if h < min_size or w < min_size:
        raise ConfigError(f"{flag} {text!r}: H and W must be at least {min_size} (the model's min_size)")
    return (n, c, h, w)


def format_shape(shape: Shape) -> str:
    return "x".join(str(int(d)) for d in shape)


def default_profile(multiple_of: int, min_size: int) -> ShapeProfile:
    """min ``1x3xMxM`` (M = smallest multiple of ``multiple_of`` >= ``min_size``), opt ``1x3x256x256``,
    max ``4x3x1024x1024``; opt and max rounded up to ``multiple_of``."""
    m = _round_up(max(min_size, multiple_of, 1), multiple_of)
    opt = max(_round_up(DEFAULT_OPT_HW, multiple_of), m)
    mx = max(_round_up(DEFAULT_MAX_HW, multiple_of), opt)
    return ShapeProfile(min=(1, 3, m, m), opt=(1, 3, opt, opt), max=(DEFAULT_MAX_BATCH, 3, mx, mx))


def resolve_profile(options: BuildOptions, *, multiple_of: int, min_size: int) -> ShapeProfile:
    """Merge the user's shapes with :func:`default_profile` so that min <= opt <= max elementwise.

    A missing max grows to cover a given opt/min; a missing opt is the default clamped into
    [min, max]. Raises :class:`ConfigError` when given shapes are out of order or not multiples.
    """
    for label, shape in (("--min-shape", options.min_shape), ("--opt-shape", options.opt_shape),
                         ("--max-shape", options.max_shape)):
        if shape is not None:  # shapes built in code (not parsed from flags) are validated here too
            parse_shape(format_shape(shape), multiple_of=multiple_of, min_size=min_size, flag=label)
    d = default_profile(multiple_of, min_size)
    mn = options.min_shape or d.min
    given_below_max = [s for s in (options.opt_shape, options.min_shape) if s is not None]
    mx = options.max_shape or tuple(max(vals) for vals in zip(d.max, *given_below_max))
    if options.opt_shape is not None:
        opt = options.opt_shape
    else:
        opt = tuple(min(max(o, lo), hi) for o, lo, hi in zip(d.opt, mn, mx))
    if not all(a <= b <= c for a, b, c in zip(mn, opt, mx)):
        raise ConfigError(
            f"shapes must satisfy min <= opt <= max in every dimension, got min {format_shape(mn)}, "
            f"opt {format_shape(opt)}, max {format_shape(mx)}"
        )
    return ShapeProfile(min=mn, opt=opt, max=mx, input=INPUT_NAME)


def is_plugin_library(spec: str) -> bool:
    return spec.lower().endswith(_LIB_SUFFIXES) or ".so." in os.path.basename(spec)


def trtexec_command(
    onnx_path: str | os.PathLike,
    engine_path: str | os.PathLike,
    profile: ShapeProfile,
    options: BuildOptions,
    *,
    trt_major: int,
) -> tuple[list[str], list[str]]:
    """The ``trtexec`` command equivalent to :func:`build_engine`, and notes on what it cannot do.

    TensorRT 10.x: ``--stronglyTyped`` (or ``--fp16`` with ``--weak-fp16``). TensorRT 11: neither
    (strong typing is always on, ``--fp16`` was removed). Python plugin modules have no trtexec
    equivalent (listed in the notes); plugin libraries become ``--dynamicPlugins``.
    """
    name = profile.input
    cmd = [
        "trtexec",
        f"--onnx={onnx_path}",
        f"--saveEngine={engine_path}",
        f"--minShapes={name}:{format_shape(profile.min)}",
        f"--optShapes={name}:{format_shape(profile.opt)}",
        f"--maxShapes={name}:{format_shape(profile.max)}",
        f"--memPoolSize=workspace:{int(round(options.workspace_gib * 1024))}M",
        f"--builderOptimizationLevel={options.opt_level}",
    ]
    notes: list[str] = []
    if trt_major < 11:
        cmd.append("--fp16" if options.weak_fp16 else "--stronglyTyped")
    if not options.tf32:
        cmd.append("--noTF32")
    if options.timing_cache:
        cmd.append(f"--timingCacheFile={options.timing_cache}")
    if options.device_id:
        cmd.append(f"--device={options.device_id}")
    for spec in options.plugins:
        if is_plugin_library(spec):
            cmd.append(f"--dynamicPlugins={spec}")
        else:
            notes.append(f"Python plugin module {spec!r} cannot be loaded by trtexec (use python -m runtime.build)")
    cmd.append("--skipInference")
    return cmd, notes
