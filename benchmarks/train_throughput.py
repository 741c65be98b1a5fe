"""Training throughput (images/s) of stage II (``--stage sr``) steps, measured with the real trainer.

For each preset the script writes random-weight stand-ins for the HQ prior and the stage-I model (so
no trained files are needed), builds :class:`ugtsr.train.Trainer` on a few HR photos from
scikit-image, runs ``warmup + steps`` iterations and reports the median step time. A step is what
``python -m ugtsr.train --stage sr`` does per iteration: the frozen prior's GT codes, the frozen
stage-I model's ``s``, generator forward/backward/Adam, discriminator forward/backward/Adam
(λ_adv 0.1, 64-feature U-Net D as in FeMaSR). Batch loading is outside the timed step (it overlaps
compute with ``--num-workers``). The perceptual term is off (``--perceptual-weight 0``): this
machine has no VGG-19 ImageNet weights and nothing is downloaded; VGG-19 would add its own
forward/backward on every step.

    python -m benchmarks.train_throughput                 # tiny_x4 (patch 64, 128), ugtsr_x4 (patch 128)
    python -m benchmarks.train_throughput --cases ugtsr_x4:256 --device cuda --batch-size 8

Writes ``benchmarks/results/train_throughput.json`` (machine, versions, command, per-case numbers).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ugtsr.checkpoint import save_checkpoint
from ugtsr.config import PRESETS
from ugtsr.errors import ConfigError
from ugtsr.model import build_model
from ugtsr.stages import stage_config
from ugtsr.train import Trainer, TrainOptions
from ugtsr.train.logs import environment

from . import _common as C

RESULTS = Path(__file__).resolve().parent / "results" / "train_throughput.json"
DEFAULT_CASES = ("tiny_x4:64", "tiny_x4:128", "ugtsr_x4:128")


def _photos(folder: Path, size: int) -> Path:
    import cv2
    import skimage.data as data

    folder.mkdir(parents=True, exist_ok=True)
    for name in ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field"):
        img = getattr(data, name)()
        h, w = img.shape[:2]
        s = min(size, h, w)
        crop = img[(h - s) // 2 : (h + s) // 2, (w - s) // 2 : (w + s) // 2]
        cv2.imwrite(str(folder / f"{name}.png"), np.ascontiguousarray(crop[..., ::-1]))
    return folder


def _stand_ins(preset: str, folder: Path) -> Path:
    """Random HQ prior + random stage-I model sharing its decoder half; returns the stage-I file."""
    cfg = PRESETS[preset]
    prior = build_model(stage_config(cfg, "prior"))
    prior_path = save_checkpoint(folder / f"{preset}_prior.pt", prior, stage="prior", preset=preset)
    stage1 = build_model(stage_config(cfg, "uncertainty"))
    stage1.load_state_dict({k: v for k, v in prior.state_dict().items()
                            if k.startswith(("codebook.", "quant_out.", "decoder.", "quant_in."))}, strict=False)
    return save_checkpoint(folder / f"{preset}_stage1.pt", stage1, stage="uncertainty", preset=preset,
                           prior_checkpoint=str(prior_path))


def measure(preset: str, patch: int, *, batch_size: int, warmup: int, steps: int, device: str, workdir: Path,
            data: Path, d_features: int) -> dict:
    stage1 = _stand_ins(preset, workdir)
    options = TrainOptions(
        stage="sr", preset=preset, data=str(data), out=str(workdir / f"run_{preset}_{patch}"), iters=warmup + steps,
        batch_size=batch_size, patch_size=patch, perceptual_weight=0.0, gan_weight=0.1, d_features=d_features,
        init=str(stage1), device=device, save_every=10**9, log_every=10**9, val_every=0, tensorboard=False, quiet=True,
    )
    trainer = Trainer(options)
    t0 = time.perf_counter()
    result = trainer.run()
    wall = time.perf_counter() - t0
    timed = result.step_times[warmup:]
    median = statistics.median(timed)
    return {
        "preset": preset, "stage": "sr", "batch_size": batch_size, "hr_patch": patch, "lr_patch": patch // PRESETS[preset].scale,
        "device": str(trainer.device), "warmup_steps": warmup, "timed_steps": len(timed),
        "median_step_s": round(median, 4), "images_per_s": round(batch_size / median, 3),
        "step_times_s": [round(t, 4) for t in result.step_times], "run_wall_s": round(wall, 2),
        "trainable_parameters": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
        "discriminator_features": d_features, "perceptual_weight": 0.0, "gan_weight": 0.1,
    }


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.train_throughput", description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", nargs="+", default=list(DEFAULT_CASES), help="PRESET:HR_PATCH (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--d-features", type=int, default=64)
    p.add_argument("-o", "--out", type=Path, default=RESULTS)
    return p


def _cases(texts: list[str]) -> list[tuple[str, int]]:
    cases = []
    for case in texts:
        preset, _, patch = case.partition(":")
        if preset not in PRESETS or PRESETS[preset].is_prior:
            raise ConfigError(f"--cases {case}: unknown SR preset {preset!r}")
        try:
            cases.append((preset, int(patch or 128)))
        except ValueError:
            raise ConfigError(f"--cases {case}: the HR patch must be an integer (PRESET:HR_PATCH)") from None
    return cases


def _run(args: argparse.Namespace, argv: list[str] | None) -> int:
    for name in ("batch_size", "steps"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1")
    if args.warmup < 0:
        raise ConfigError("--warmup must be >= 0")
    if args.threads:
        torch.set_num_threads(args.threads)
    cases = _cases(args.cases)
    rows = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="ugtsr_train_bench_") as tmp:
        tmp = Path(tmp)
        data = _photos(tmp / "hr", max(patch for _, patch in cases))
        for preset, patch in cases:
            row = measure(preset, patch, batch_size=args.batch_size, warmup=args.warmup, steps=args.steps,
                          device=args.device, workdir=tmp, data=data, d_features=args.d_features)
            rows.append(row)
            print(f"{preset:10s} patch {patch:4d} batch {args.batch_size}: {row['median_step_s']:.3f} s/step "
                  f"(median of {row['timed_steps']}), {row['images_per_s']:.2f} images/s on {row['device']}")
    record = {
        "benchmark": "train_throughput", "command": " ".join([sys.executable, "-m", "benchmarks.train_throughput",
                                                                *(argv if argv is not None else sys.argv[1:])]),
        "environment": environment(), "results": rows,
        "load_average_1_5_15min": {"before": [round(x, 2) for x in load_before],
                                   "after": [round(x, 2) for x in os.getloadavg()]},
        "notes": ("stage sr training steps with the real Trainer on random-weight stand-ins; perceptual loss off "
                  "(no VGG-19 ImageNet weights on this machine; nothing is downloaded); data loading not timed; "
                  "median of the timed steps after warm-up; on a CPU shared with other jobs (see load_average) "
                  "one torch thread gives steadier numbers than two"),
    }
    C.write_json(args.out, record)
    print(f"wrote {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return C.run_main("train_throughput", _parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
