"""Atomic file writes shared by the whole toolkit (torch-free: ``runtime`` uses it too).

A write goes to a temporary file in the target folder, is flushed and fsynced, gets the
permissions a normally created file would have (``0o666 & ~umask``; ``mkstemp`` alone gives 0600),
and is renamed over the target with ``os.replace``. A crash at any point leaves the old file or
the new one, never a partial file, and no temporary file survives an exception.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

__all__ = ["atomic_open", "atomic_write_bytes", "default_file_mode"]


def default_file_mode() -> int:
    """``0o666 & ~umask`` (reading the umask requires setting it; restored at once)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, *, suffix: str = ".tmp") -> Iterator[IO[bytes]]:
    """``with atomic_open(p) as fh: fh.write(...)``: ``p`` appears complete or not at all.

    ``suffix`` lets writers that pick a format by extension (cv2.imwrite) keep it on the temp file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_open(path) as fh:
        fh.write(data)
    return Path(path)
