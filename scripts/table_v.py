"""Table V at this project's scale: held-out quality and matching accuracy of the stage-II variants
that ``scripts/gpu_train_v2.sh`` trains from one prior and one stage-I model.

    python scripts/table_v.py RUN_DIR --data data/photos/val [--pipeline realesrgan] [--draws 2]

``RUN_DIR`` holds ``prior.pt`` and the slim stage-II checkpoints ``t5_baseline.pt``, ``t5_udl.pt``,
``t5_topk.pt``, ``t5_align.pt`` and ``s2_x4.pt`` (all three). Runs ``python -m benchmarks.quality``
(PSNR-Y / SSIM-Y / NIQE against bicubic) and ``python -m benchmarks.accuracy`` (top-1, hit@3, final
codes against the prior's codes of the HR) on the same held-out photos and degradation seeds, and
writes ``benchmarks/results/table_v_<tag>.{md,json}`` with the commands, whichever way the numbers go.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = [  # (file stem, row label, uncertainty (UDL), top-k, Align-Attention)
    ("t5_baseline", "baseline: nearest matching, additive skips, plain L1", False, False, False),
    ("t5_udl", "+ uncertainty (UDL)", True, False, False),
    ("t5_topk", "+ Top-k (k = 3) with the fusion", False, True, False),
    ("t5_align", "+ Align-Attention", False, False, True),
    ("s2_x4", "all three", True, True, True),
]


def _f(value, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("--data", required=True)
    p.add_argument("--pipeline", default="realesrgan")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--draws", type=int, default=2)
    p.add_argument("--crop", type=int, default=None)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--tag", default=None)
    p.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks" / "results")
    args = p.parse_args(argv)
    tag = args.tag or f"{args.pipeline}_x4"
    present = [v for v in VARIANTS if (args.run_dir / f"{v[0]}.pt").is_file()]
    if not present or not (args.run_dir / "prior.pt").is_file():
        print(f"{args.run_dir}: needs prior.pt and the t5_*.pt / s2_x4.pt checkpoints of scripts/gpu_train_v2.sh",
              file=sys.stderr)
        return 1
    crop = ["--crop", str(args.crop)] if args.crop else []
    models = [a for v in present for a in ("--model", str(args.run_dir / f"{v[0]}.pt"), "--name", v[0])]
    q_cmd = [sys.executable, "-m", "benchmarks.quality", *models, "--data", args.data, "--pipeline", args.pipeline,
             "--seed", str(args.seed), "--draws", str(args.draws), "--threads", str(args.threads),
             "--tag", f"table_v_{tag}", "--out-dir", str(args.out_dir), *crop]
    a_cmd = [sys.executable, "-m", "benchmarks.accuracy", "--prior", str(args.run_dir / "prior.pt"), *models,
             "--data", args.data, "--pipeline", args.pipeline, "--seed", str(args.seed), "--threads", str(args.threads),
             "--tag", f"table_v_{tag}", "--out-dir", str(args.out_dir), "--no-plot", *crop]
    _run(q_cmd)
    _run(a_cmd)
    quality = {m["method"]: m for m in json.loads((args.out_dir / f"quality_table_v_{tag}.json").read_text())["mean"]}
    accuracy = {m["model"]: m for m in json.loads((args.out_dir / f"accuracy_table_v_{tag}.json").read_text())["models"]}
    mark = {True: "x", False: ""}
    lines = [f"# Table V at this scale ({args.pipeline} x4, held-out photos of `{args.data}`, {args.draws} draws)", "",
             "| variant | UDL | top-k | Align-Attention | PSNR-Y | SSIM-Y | NIQE | top-1 | hit@3 | final codes |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    b = quality.get("bicubic", {})
    lines.append(f"| bicubic | | | | {_f(b.get('psnr_y'), '.2f')} | {_f(b.get('ssim_y'), '.4f')} | "
                 f"{_f(b.get('niqe'), '.2f')} | | | |")
    rows = []
    for stem, label, udl, topk, align in present:
        q, a = quality[stem], accuracy[stem]
        rows.append({"variant": stem, "label": label, "udl": udl, "topk": topk, "align": align,
                     **{k: q[k] for k in ("psnr_y", "ssim_y", "niqe")},
                     **{k: a[k] for k in ("hit@1", "hit@3", "final")}})
        lines.append(f"| {label} | {mark[udl]} | {mark[topk]} | {mark[align]} | {_f(q['psnr_y'], '.2f')} | "
                     f"{_f(q['ssim_y'], '.4f')} | {_f(q['niqe'], '.2f')} | {_f(a['hit@1'], '.3f')} | "
                     f"{_f(a['hit@3'], '.3f')} | {_f(a['final'], '.3f')} |")
    lines += ["", "Commands:", "", "    " + " ".join(q_cmd[1:]), "    " + " ".join(a_cmd[1:]), ""]
    (args.out_dir / f"table_v_{tag}.md").write_text("\n".join(lines))
    (args.out_dir / f"table_v_{tag}.json").write_text(json.dumps({"rows": rows, "bicubic": b,
                                                                  "commands": [q_cmd[1:], a_cmd[1:]]}, indent=1))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
