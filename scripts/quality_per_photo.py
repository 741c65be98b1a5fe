"""Per-photo means (over degradation draws) of a ``benchmarks.quality`` result file, as a markdown table.

    python scripts/quality_per_photo.py benchmarks/results/quality_default_model_bsrgan_x4.json

A mean over a few photos can hide that a model wins on some and loses on others; this shows it.
"""
from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path


def main(argv: list[str]) -> int:
    for path in argv:
        res = json.loads(Path(path).read_text(encoding="utf-8"))
        acc: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
        for row in res["per_image"]:
            if row["psnr_y"] is None:
                continue
            acc[(row["image"].split("#")[0], row["method"])].append((row["psnr_y"], row["ssim_y"]))
        photos = sorted({p for p, _ in acc})
        methods = [m["name"] for m in res["methods"]]
        print(f"{res['settings']['pipeline']} x{res['settings']['scale']}, {res['draws']} draws per photo "
              "(PSNR-Y / SSIM-Y)\n")
        print("| photo | " + " | ".join(methods) + " |")
        print("| --- |" + " --- |" * len(methods))
        for p in photos:
            cells = []
            for m in methods:
                v = acc.get((p, m), [])
                cells.append(f"{sum(a for a, _ in v) / len(v):.2f} / {sum(b for _, b in v) / len(v):.4f}" if v else "-")
            print(f"| {p} | " + " | ".join(cells) + " |")
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
