"""The runtime's file rules, in one place for every front end (``runtime.infer``, ``runtime.batch``,
``runtime.serve`` clients): which inputs a run takes, how outputs are named, that no input is ever
written over, atomic writes, stale temporary files, and how a path is shown in a one-line message.

- :func:`collect_inputs`: files, folders (non-recursive, hidden files skipped) and glob patterns.
- :func:`output_path`: ``OUT_DIR/<stem><suffix>.<ext>``; ``ext="auto"`` keeps a writable input format.
- :class:`InputSet`: every input of a run by device and inode *and* real path, so an output that is an
  input -- the same name, a hard link, a symlink, another input that maps to the same output name --
  is refused whatever ``--overwrite`` says (issue 11 item 1).
- :func:`write_bytes_atomic`: a hidden temporary file ``.NAME.XXXXXXXX.tmp`` next to the target, locked
  while it is written, fsynced and renamed over the target; nothing partial survives an exception.
- :func:`remove_stale_temp_files`: removes such temporary files that a killed process left behind: only
  names of that pattern, only when no live writer holds the lock and the file is a few seconds old,
  so two processes writing into one folder do not delete each other's files.
- :func:`display`: a path or message with control characters escaped, so it stays one line.
"""
from __future__ import annotations

import contextlib
import glob
import logging
import os
import re
import secrets
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from ugtsr.errors import UGTSRError

try:  # POSIX advisory locks; on other systems stale files are judged by age alone
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "collect_inputs",
    "output_path",
    "InputSet",
    "ensure_folder",
    "write_bytes_atomic",
    "remove_stale_temp_files",
    "is_temp_name",
    "display",
    "IMAGE_EXTENSIONS",
    "WRITE_FORMATS",
    "STALE_TEMP_AGE_S",
]

logger = logging.getLogger(__name__)

#: extensions :func:`runtime.imageio.write_image` understands, mapped to the format it writes
WRITE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WebP", ".tif": "TIFF", ".tiff": "TIFF"}
#: extensions picked up when a folder is given
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".gif", ".ppm", ".pgm", ".pnm")
#: an unlocked temporary file younger than this may belong to a writer that has not locked it yet
STALE_TEMP_AGE_S = 2.0
#: temporary files that may belong to a writer without the lock are stale only when this old
_UNLOCKABLE_STALE_AGE_S = 3600.0

# ``.NAME.XXXXXXXX.tmp``: ours (token_hex, locked while written) and ugtsr.fileio's (tempfile.mkstemp:
# [a-z0-9_]{8}, not locked -- so those count as stale only after an hour: a long write of a live writer
# must not lose its file)
_TEMP_RE = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")
_LOCKED_TEMP_RE = re.compile(r"^\..+\.[0-9a-f]{8}\.tmp$")
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


# ---- messages ------------------------------------------------------------------------------------
def display(text: object) -> str:
    """``str(text)`` with control and other unprintable characters escaped (``\\n``, ``\\x1b``,
    ``\\udcff`` for undecodable bytes of a file name), so a message naming it stays on one line and
    can always be printed."""
    s = str(text)
    if s.isprintable():
        return s
    out = []
    for ch in s:
        if ch.isprintable():
            out.append(ch)
        elif ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x100:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return "".join(out)


# ---- inputs ----------------------------------------------------------------------------------------
def collect_inputs(specs: Sequence[str | os.PathLike]) -> tuple[list[Path], list[str]]:
    """Expand files, folders (non-recursive) and glob patterns into a de-duplicated, ordered file list.

    Returns ``(files, problems)``; a problem is a one-line message for a pattern that matches nothing.
    Paths that do not exist are kept, so that reading them reports the missing file.
    """
    files: list[Path] = []
    problems: list[str] = []

    def folder_images(folder: Path) -> list[Path]:
        found = sorted(f for f in folder.iterdir()
                       if not f.name.startswith(".") and f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file())
        if not found:
            logger.warning("%s: folder contains no images (%s)", display(folder), ", ".join(IMAGE_EXTENSIONS))
        return found

    for spec in specs:
        spec = os.fspath(spec)
        path = Path(spec)
        if path.is_dir():
            files.extend(folder_images(path))
        elif path.exists():
            files.append(path)
        elif any(ch in spec for ch in "*?["):
            matches = sorted(glob.glob(spec))
            if not matches:
                problems.append(f"{display(spec)}: no files match this pattern")
            for match in matches:
                m = Path(match)
                files.extend(folder_images(m) if m.is_dir() else [m])
        else:
            files.append(path)
    unique: list[Path] = []
    seen: set[str] = set()
    for f in files:
        key = os.path.realpath(f)
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique, problems


def _file_id(path: str | os.PathLike) -> tuple[int, int] | None:
    try:
        st = os.stat(path)  # follows symlinks: a link to an input is that input
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


class InputSet:
    """The input files of a run; ``path in inputs`` is true when writing ``path`` could destroy one.

    A path is an input when it resolves to the same real path as an input, or names the same file
    (device and inode: hard links, symlinks, bind mounts). Build it from *all* inputs before the
    first output is written: an input processed later is protected as well as one processed earlier.
    """

    def __init__(self, paths: Iterable[str | os.PathLike] = ()) -> None:
        self._real: dict[str, Path] = {}
        self._ids: dict[tuple[int, int], Path] = {}
        for p in paths:
            self.add(p)

    def add(self, path: str | os.PathLike) -> None:
        path = Path(path)
        self._real[os.path.realpath(path)] = path
        fid = _file_id(path)
        if fid is not None:
            self._ids[fid] = path

    def which(self, path: str | os.PathLike) -> Path | None:
        """The input that writing ``path`` would overwrite, or ``None``."""
        hit = self._real.get(os.path.realpath(path))
        if hit is not None:
            return hit
        fid = _file_id(path)
        return self._ids.get(fid) if fid is not None else None

    def __contains__(self, path: object) -> bool:
        return isinstance(path, str | os.PathLike) and self.which(path) is not None

    def __len__(self) -> int:
        return len(self._real)


# ---- output names ----------------------------------------------------------------------------------
def output_path(src: str | os.PathLike, out_dir: str | os.PathLike, *, ext: str = "auto", suffix: str = "",
                image: np.ndarray | None = None) -> Path:
    """``out_dir/<stem><suffix>.<ext>``; ``ext="auto"`` keeps a writable input extension, else PNG.

    With ``image``, a format that cannot hold it (alpha or 16-bit in JPEG; 16-bit or gray in WebP, which
    has no gray mode: it would come back as three channels) becomes PNG.
    """
    src = Path(src)
    if ext == "auto":
        chosen = src.suffix.lower() if src.suffix.lower() in WRITE_FORMATS else ".png"
    else:
        chosen = "." + ext.lstrip(".").lower()
    if image is not None:
        fmt = WRITE_FORMATS.get(chosen)
        has_alpha = image.ndim == 3 and image.shape[2] == 4
        gray = image.ndim == 2 or image.shape[2] == 1
        if (fmt == "JPEG" and (has_alpha or image.dtype != np.uint8)) or (
                fmt == "WebP" and (image.dtype != np.uint8 or gray)):
            chosen = ".png"
    return Path(out_dir) / f"{src.stem}{suffix}{chosen}"


# ---- folders and atomic writes -------------------------------------------------------------------
def ensure_folder(folder: str | os.PathLike) -> Path:
    """Create ``folder`` (and its parents) unless it exists.

    Raises:
        UGTSRError: one line naming the folder: "Not a directory" when a part of the path is a file,
            otherwise the OS reason (permission denied, read-only file system, ...).
    """
    folder = Path(folder)
    blocker = _file_in_the_way(folder)
    if blocker is not None:
        raise UGTSRError(f"{display(folder)}: cannot create the folder: Not a directory "
                         f"({display(blocker)} is a file)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UGTSRError(f"{display(folder)}: cannot create the folder ({exc.strerror or exc})") from None
    return folder


def _file_in_the_way(folder: Path) -> Path | None:
    """The nearest existing part of ``folder`` when it is not a folder (``mkdir`` would say "File exists")."""
    for part in (folder, *folder.parents):
        if part.exists() or part.is_symlink():
            return None if part.is_dir() else part
    return None


def _lock(fd: int, *, blocking: bool) -> bool:
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except OSError:
        return False
    return True


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` completely or not at all.

    The bytes go to ``.NAME.XXXXXXXX.tmp`` in the target folder (created with the permissions a
    normally created file gets, and locked while written so :func:`remove_stale_temp_files` in
    another process leaves it alone), are fsynced, and the file is renamed over ``path``.

    Raises:
        UGTSRError: one line naming ``path`` (full disk, permission denied, not a directory, ...).
            The temporary file is removed; an existing ``path`` is left as it was.
    """
    path = Path(path)
    blocker = _file_in_the_way(path.parent)
    if blocker is not None:
        raise UGTSRError(f"{display(path)}: cannot write: Not a directory ({display(blocker)} is a file)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UGTSRError(f"{display(path)}: cannot create the folder {display(path.parent)} "
                         f"({exc.strerror or exc})") from None
    tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as exc:
        raise UGTSRError(f"{display(path)}: cannot write ({exc.strerror or exc})") from None
    try:
        try:
            _lock(fd, blocking=True)
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
            if fcntl is not None:  # rename while still locked: no cleaner can take the file in between
                os.replace(tmp, path)
        finally:
            os.close(fd)
        if fcntl is None:
            os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise UGTSRError(f"{display(path)}: cannot write ({exc.strerror or exc})") from None
        raise
    return path


def is_temp_name(name: str) -> bool:
    """True for the hidden temporary names of :func:`write_bytes_atomic` and ``ugtsr.fileio``."""
    return bool(_TEMP_RE.match(name))


def remove_stale_temp_files(folder: str | os.PathLike, *, min_age_s: float = STALE_TEMP_AGE_S) -> list[Path]:
    """Remove the temporary files of interrupted writes (a ``kill -9`` mid-write) from ``folder``.

    Only names matching ``.NAME.XXXXXXXX.tmp``, only regular files, only when not locked by a live
    writer (POSIX ``flock``) and at least ``min_age_s`` old -- or an hour old for names that a writer
    without the lock may have made (``ugtsr.fileio``'s ``mkstemp`` names) and on systems without ``flock``.
    Returns the removed paths; problems (no such folder, permissions) are ignored.
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        if not is_temp_name(entry.name):
            continue
        locked_kind = fcntl is not None and _LOCKED_TEMP_RE.match(entry.name)
        min_age = min_age_s if locked_kind else max(min_age_s, _UNLOCKABLE_STALE_AGE_S)
        try:
            if not entry.is_file(follow_symlinks=False) or now - entry.stat(follow_symlinks=False).st_mtime < min_age:
                continue
            fd = os.open(entry.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            continue
        try:
            if _lock(fd, blocking=False):  # a live writer holds its lock until the rename
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            pass
        finally:
            os.close(fd)
    for p in removed:
        logger.info("removed the stale temporary file %s", display(p))
    return removed
