"""One markdown table from several ``benchmarks.quality`` result files (one degradation each):
a row per degradation, a column per method, ``PSNR-Y / SSIM-Y / NIQE`` (the best of each in bold),
then each model's margin over bicubic.

    python scripts/quality_table.py benchmarks/results/quality_default_model_{bsrgan,classic,bicubic}_x4.json
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    results = []
    for path in argv:
        try:
            res = json.loads(Path(path).read_text(encoding="utf-8"))
            if res.get("benchmark") != "quality" or not isinstance(res.get("mean"), list):
                raise ValueError("not a benchmarks.quality result file")
        except (OSError, ValueError, AttributeError) as exc:
            print(f"error: {path}: {getattr(exc, 'strerror', None) or exc}", file=sys.stderr)
            return 2
        results.append(res)
    methods = [m["name"] for m in results[0]["methods"]]
    models = [m["name"] for m in results[0]["methods"] if m["kind"] == "model"]
    print("| degradation (images) | " + " | ".join(methods) + " |")
    print("| --- |" + " --- |" * len(methods))
    margins = []
    for res in results:
        mean = {row["method"]: row for row in res["mean"]}
        cells = []
        best = {k: (max if k != "niqe" else min)(mean[m][k] for m in methods if mean[m].get(k) is not None)
                for k in ("psnr_y", "ssim_y", "niqe") if any(mean[m].get(k) is not None for m in methods)}
        for m in methods:
            parts = []
            for k, fmt in (("psnr_y", "{:.2f}"), ("ssim_y", "{:.4f}"), ("niqe", "{:.2f}")):
                v = mean[m].get(k)
                if v is None:
                    continue
                text = fmt.format(v)
                parts.append(f"**{text}**" if v == best.get(k) else text)
            cells.append(" / ".join(parts))
        s = res["settings"]
        print(f"| {s['pipeline']} x{s['scale']} ({res['evaluated']}) | " + " | ".join(cells) + " |")
        b = mean["bicubic"]
        for m in models:
            row = {"pipeline": s["pipeline"], "model": m, "psnr_y": mean[m]["psnr_y"] - b["psnr_y"],
                   "ssim_y": mean[m]["ssim_y"] - b["ssim_y"]}
            if mean[m].get("niqe") is not None and b.get("niqe") is not None:
                row["niqe"] = mean[m]["niqe"] - b["niqe"]
            margins.append(row)
    print("\n| degradation | model | PSNR-Y vs bicubic | SSIM-Y vs bicubic | NIQE vs bicubic |")
    print("| --- | --- | --- | --- | --- |")
    for r in margins:
        niqe = f"{r['niqe']:+.2f}" if "niqe" in r else "-"
        print(f"| {r['pipeline']} | {r['model']} | {r['psnr_y']:+.2f} dB | {r['ssim_y']:+.4f} | {niqe} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
