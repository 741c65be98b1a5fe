"""Collect the natural colour photos that ship inside installed Python packages into a dataset folder.

No downloads: scikit-image's ``skimage/data`` (astronaut, chelsea, coffee, hubble_deep_field,
motorcycle_left/right, rocket), scikit-learn's ``datasets/images`` (china, flower) and matplotlib's
``sample_data`` (grace_hopper), where those packages are installed. Grayscale, binary, synthetic,
microscopy and medical images are left out. The split is fixed (held-out photos are never used
for training)::

    python scripts/prepare_photos.py data/photos      # -> data/photos/{train,val}/*.png
"""
from __future__ import annotations

import sys as _sys
from pathlib import Path as _Path

_sys.path.insert(0, str(_Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import argparse
import importlib
import shutil
import sys
from pathlib import Path

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


def collect(out: Path) -> dict[str, list[str]]:
    import cv2

    found: dict[str, list[str]] = {}
    for split, items in PHOTOS.items():
        (out / split).mkdir(parents=True, exist_ok=True)
        for package, rel, name in items:
            try:
                mod = importlib.import_module(package)
            except ImportError:
                print(f"skip {name}: package {package} not installed", file=sys.stderr)
                continue
            src = Path(mod.__file__).parent / rel
            if not src.is_file():
                print(f"skip {name}: {src} missing", file=sys.stderr)
                continue
            img = cv2.imread(str(src), cv2.IMREAD_COLOR)  # drops alpha; 8-bit BGR
            dst = out / split / f"{name}.png"
            tmp = dst.with_suffix(".tmp.png")
            cv2.imwrite(str(tmp), img)
            shutil.move(tmp, dst)
            found.setdefault(split, []).append(name)
    return found


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    args = p.parse_args(argv)
    found = collect(args.out)
    for split, names in found.items():
        print(f"{split}: {len(names)} photos: {', '.join(names)}")
    return 0 if found.get("train") else 1


if __name__ == "__main__":
    raise SystemExit(main())
