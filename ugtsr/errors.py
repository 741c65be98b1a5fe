"""The toolkit's exception hierarchy: user errors in one family, bugs left as tracebacks.

Every error the toolkit raises on purpose derives from :class:`UGTSRError`, so a CLI can catch one
family, print one line and exit non-zero, while a genuine bug (any other exception) still surfaces
with its traceback. This module imports nothing heavy: ``runtime`` uses it without torch installed.
"""
from __future__ import annotations

__all__ = [
    "UGTSRError",
    "ConfigError",
    "CheckpointError",
    "ExportError",
    "EngineBuildError",
    "UnsupportedInputError",
    "MissingDependencyError",
    "require",
    "first_line",
]


class UGTSRError(Exception):
    """Base class of every error the toolkit raises for a user-facing problem."""


class ConfigError(UGTSRError, ValueError):
    """An invalid model, training or export setting."""


class CheckpointError(UGTSRError):
    """A checkpoint that is missing, corrupt, foreign, unsafe or does not fit the model."""


class ExportError(UGTSRError):
    """ONNX export or its verification failed."""


class EngineBuildError(UGTSRError):
    """A TensorRT engine could not be built or loaded."""


class UnsupportedInputError(UGTSRError, ValueError):
    """An input image or tensor the toolkit cannot process (format, size, dtype, ...)."""


class MissingDependencyError(UGTSRError, ImportError):
    """An optional dependency is not installed; the message names the pip extra that provides it."""


def first_line(exc: BaseException, limit: int = 240) -> str:
    """The first non-empty line of ``str(exc)`` (at most ``limit`` characters), or the exception's
    type name when it has no message: for one-line error messages that wrap a third-party error."""
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:limit]


def require(module: str, *, extra: str, purpose: str | None = None):
    """Import an optional dependency or raise :class:`MissingDependencyError` naming the extra.

    ``require("onnxruntime", extra="export")`` returns the module. The import is attempted only
    when called, so the packages that use it stay importable on a minimal install.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # re-raised with an actionable message, never swallowed
        what = f" (needed for {purpose})" if purpose else ""
        raise MissingDependencyError(
            f"the optional dependency '{module}' is not installed{what}; "
            f"install it with: pip install 'ugtsr[{extra}]'"
        ) from exc


def torch_missing_message(command: str, extra: str) -> str | None:
    """The one-line error for ``command`` when torch is not installed, else ``None``.

    Used by the entry points that need torch (``python -m ugtsr.train``, ``python -m export.onnx``,
    ``ugtsr-train``, ``ugtsr-export``) before they import it: a ``pip install ".[runtime]"`` has no
    torch, and its user should read what to install, not a ``ModuleNotFoundError`` traceback.
    """
    import importlib.util

    if importlib.util.find_spec("torch") is not None:
        return None
    return (f"error: {command} needs PyTorch, which is not installed; install it with: "
            f"pip install 'ugtsr[{extra}]' (or pip install torch first to choose a CPU or CUDA build)")
