"""Train the fidelity gate on cached outputs of the frozen network (``python -m ugtsr.train.gate_cache``).

With ``--train-gate-only`` (``ugtsr.train``) every step runs the whole frozen network forward to
train the gate's 8.6 k (with the image-level estimate 26 k) parameters: two seconds a step on one
CPU core, of which the gate is a few percent. The network's output before the gate does not change
while only the gate trains, so it can be computed once per sample: this module degrades
``--samples`` random HR patches with a named mixture of ``ugtsr.degrade`` components, runs the
network (colour fix included, gate left out) on each once, keeps ``(lq, sr, hr)`` in memory and
then trains only the gate on them, with the 8 flips/transposes of each triple as augmentation. The
gradients are those of gate-only training on the same samples (up to the flips: a flipped cached
output stands in for the output of the flipped input, which the network does not exactly equal); what changes is that thousands of
steps fit in minutes, and that the mixture can be weighted towards the cases the gate must tell
apart (clean against degraded LR).

    python -m ugtsr.train.gate_cache --init runtime/models/ugtsr_tiny_x4.pt --data data/photos/train \\
        --out runs/v3c/x4_global --global-context --samples 1600 --patch-size 256 --iters 0 \\
        --pretrain-global 3000 --seed 41 --cache runs/v3b/x4_cache.pt   # the third default model's gate

A tenth of the samples (``--val-fraction``, the same training photos at other crops and seeds) is
kept out of the gate's training: every ``--eval-every`` steps the log reports PSNR (RGB, 8-bit
range) per mixture component on it for the gate, for the network without gate (w = 0) and for
bicubic (w = 1). Writes ``OUT/final.pt`` (a normal checkpoint: ``python -m export.onnx``,
``benchmarks.quality``), the average of the gate weights of the last ``--average`` evaluations
``OUT/swa.pt``, ``OUT/log.csv`` and ``OUT/settings.json`` (command, seed, samples, steps, wall time).
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..checkpoint import atomic_torch_save, load_checkpoint, load_matching, save_checkpoint
from ..data import HRPatchDataset
from ..degrade.simple import COMPONENTS, MIXTURE_WIDE, mixed_choice, mixture_component
from ..errors import ConfigError, UGTSRError
from ..model import UGTSRNet
from ..postfilters import FidelityGate, bicubic_upsample
from .logs import CsvRows, write_json_atomic

__all__ = ["parse_mixture", "degraded_batches", "build_cache", "GateCache", "optimal_global_weights", "pretrain_global", "train_gate", "main"]

logger = logging.getLogger(__name__)

_DEGRADE_SALT = 0x6A7E


def parse_mixture(text: str) -> tuple[tuple[str, float], ...]:
    """``"bsrgan=0.3,clean=0.2,..."`` -> normalised ``((name, p), ...)`` (names from ``COMPONENTS``)."""
    items = []
    for part in text.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep or name not in COMPONENTS:
            raise ConfigError(f"--mixture: expected NAME=P with NAME in {', '.join(COMPONENTS)}, got {part.strip()!r}")
        try:
            p = float(value)
        except ValueError:
            raise ConfigError(f"--mixture: {name}: {value!r} is not a number") from None
        if not (math.isfinite(p) and p > 0):
            raise ConfigError(f"--mixture: {name}: the share must be > 0, got {value!r}")
        items.append((name, p))
    total = sum(p for _, p in items)
    return tuple((n, p / total) for n, p in items)


class GateCache:
    """``lq`` float32 ``(N, 3, h, w)``, ``sr`` float16 ``(N, 3, H, W)`` (the network's output before the
    gate), ``hr`` uint8 ``(N, 3, H, W)`` and ``component`` (the mixture component of each sample)."""

    def __init__(self, lq: torch.Tensor, sr: torch.Tensor, hr: torch.Tensor, component: list[str]) -> None:
        self.lq, self.sr, self.hr, self.component = lq, sr, hr, list(component)

    def __len__(self) -> int:
        return self.lq.shape[0]

    def batch(self, idx: torch.Tensor, *, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, ...]:
        return self.lq[idx].to(dtype), self.sr[idx].to(dtype), self.hr[idx].to(dtype) / 255.0


def degraded_batches(data: str | Path, *, scale: int, samples: int, patch_size: int, seed: int,
                     mixture: tuple[tuple[str, float], ...], batch: int, salt: int):
    """``(lq float32 (n, 3, h, w), hr uint8 (n, 3, H, W), component names)`` in batches of ``batch``:
    ``samples`` random HR patches of the photos in ``data``, each degraded by one mixture component
    drawn from ``np.random.default_rng([seed, i, salt])`` (the caches of this module and of
    ``ugtsr.train.distill_tail``). Logs progress every 25 batches."""
    ds = HRPatchDataset(data, scale=scale, patch_size=patch_size, pipeline=None, seed=seed, length=samples)
    start = time.perf_counter()
    pending_lq, pending_hr, names = [], [], []
    for i in range(samples):
        hr = ds[i]["gt"].permute(1, 2, 0).numpy()
        rng = np.random.default_rng([seed, i, salt])
        name = mixed_choice(rng, mixture)
        pair = mixture_component(name)(hr, scale=scale, rng=rng)
        names.append(name)
        pending_lq.append(torch.from_numpy(np.ascontiguousarray(pair.lr.transpose(2, 0, 1))).float())
        pending_hr.append(torch.from_numpy(np.ascontiguousarray(pair.hr.transpose(2, 0, 1))).float())
        if len(pending_lq) == batch or i == samples - 1:
            yield torch.stack(pending_lq), torch.stack(pending_hr).mul(255.0).round().to(torch.uint8), names
            pending_lq, pending_hr, names = [], [], []
            if (i + 1) % (batch * 25) == 0 or i == samples - 1:
                logger.info("cache: %d/%d samples (%.0f s)", i + 1, samples, time.perf_counter() - start)


@torch.inference_mode()
def build_cache(model: UGTSRNet, data: str | Path, *, samples: int, patch_size: int, seed: int,
                mixture: tuple[tuple[str, float], ...], batch: int = 8) -> GateCache:
    """Degrade ``samples`` random patches of the photos in ``data`` and run ``model`` without its
    gate on each (see the module docstring)."""
    scale = model.config.scale
    gate, model.fidelity_gate = model.fidelity_gate, None
    lqs, srs, hrs, names = [], [], [], []
    try:
        for lq, hr, batch_names in degraded_batches(data, scale=scale, samples=samples, patch_size=patch_size, seed=seed,
                                                    mixture=mixture, batch=batch, salt=_DEGRADE_SALT):
            lqs.append(lq)
            srs.append(model(lq).sr.clamp(0.0, 1.0).half())
            hrs.append(hr)
            names += batch_names
    finally:
        model.fidelity_gate = gate
    return GateCache(torch.cat(lqs), torch.cat(srs), torch.cat(hrs), names)


def _dihedral(t: torch.Tensor, k: int) -> torch.Tensor:
    """One of the 8 flips/transposes of the last two axes (``k`` in 0..7)."""
    if k & 4:
        t = t.transpose(-1, -2)
    if k & 2:
        t = t.flip(-2)
    if k & 1:
        t = t.flip(-1)
    return t


def _psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample PSNR in dB of [0, 1] images, both rounded to 8-bit levels first."""
    a = (a.clamp(0, 1) * 255).round()
    b = (b.clamp(0, 1) * 255).round()
    mse = (a - b).pow(2).flatten(1).mean(1).clamp_min(1e-10)
    return 10 * torch.log10(255.0**2 / mse)


@torch.no_grad()
def evaluate(model: UGTSRNet, cache: GateCache, idx: torch.Tensor, *, batch: int = 16) -> dict[str, dict[str, float]]:
    """Mean PSNR per component on ``idx`` for the gate, the network without gate and bicubic, and
    the gate's mean weight."""
    gate = model.fidelity_gate
    out: dict[str, dict[str, list[float]]] = {}
    for s in range(0, len(idx), batch):
        ids = idx[s:s + batch]
        lq, sr, hr = cache.batch(ids)
        bic = bicubic_upsample(lq, gate.bicubic, gate.scale)
        w = gate.weight_map(sr, bic, lq)
        res = sr + w * (bic - sr)
        rows = {"gate": _psnr(res, hr), "network": _psnr(sr, hr), "bicubic": _psnr(bic, hr),
                "weight": w.flatten(1).mean(1)}
        for j, i in enumerate(ids.tolist()):
            d = out.setdefault(cache.component[i], {k: [] for k in rows})
            for k, v in rows.items():
                d[k].append(float(v[j]))
    table = {name: {k: float(np.mean(v)) for k, v in d.items()} | {"n": len(d["gate"])} for name, d in sorted(out.items())}
    allrows = [v for d in out.values() for v in zip(d["gate"], d["network"], d["bicubic"])]
    table["all"] = {"gate": float(np.mean([r[0] for r in allrows])), "network": float(np.mean([r[1] for r in allrows])),
                    "bicubic": float(np.mean([r[2] for r in allrows])), "n": len(allrows)}
    return table


@torch.no_grad()
def optimal_global_weights(cache: GateCache, scale: int, *, lo: float = 0.02, hi: float = 0.98,
                           chunk: int = 64) -> torch.Tensor:
    """``(N,)``: per sample, the one blend weight ``w`` that minimises ``|| sr + w (bicubic - sr) - hr ||^2``
    (least squares, clamped to ``[lo, hi]``)."""
    weight = FidelityGate.bicubic_weight(scale)
    out = []
    for s in range(0, len(cache), chunk):
        lq, sr, hr = cache.batch(torch.arange(s, min(s + chunk, len(cache))))
        diff = bicubic_upsample(lq, weight, scale) - sr
        out.append((diff * (hr - sr)).flatten(1).sum(1) / diff.square().flatten(1).sum(1).clamp_min(1e-12))
    return torch.cat(out).clamp(lo, hi)


def pretrain_global(model: UGTSRNet, cache: GateCache, train_idx: torch.Tensor, val_idx: torch.Tensor, *, steps: int,
                    lr: float, seed: int, batch_size: int = 32) -> dict[str, float]:
    """Fit the gate's image-level estimate alone to :func:`optimal_global_weights` (MSE on
    ``sigmoid(logit)``; the estimate reads only the LR, so a step costs little), then set the local
    parts' last layers to zero: the gate starts its joint training as ``w = sigmoid(image logit)``.

    Trained end to end from zero, the estimate did not learn to tell clean from degraded LR in 3,000
    steps (the blend weight stayed within 0.1 across the mixture's components, where the optimal
    weights range from 0.3 to 0.85); as a regression on the optimal weight it does within 1,500-3,000."""
    gate = model.fidelity_gate
    target = optimal_global_weights(cache, gate.scale)
    params = list(gate.global_features.parameters()) + list(gate.global_head.parameters())
    opt = torch.optim.Adam(params, lr=lr)
    g = torch.Generator().manual_seed(seed + 1)
    for _ in range(steps):
        ids = train_idx[torch.randint(len(train_idx), (batch_size,), generator=g)]
        lq = _dihedral(cache.lq[ids], int(torch.randint(8, (1,), generator=g)))
        loss = F.mse_loss(torch.sigmoid(gate.global_estimate(lq)[:, 0]), target[ids])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        val = float(F.mse_loss(torch.sigmoid(gate.global_estimate(cache.lq[val_idx])[:, 0]), target[val_idx]))
        for seq in (gate.body, gate.context):
            if seq is not None:
                seq[-1].weight.zero_()
                seq[-1].bias.zero_()
    logger.info("global estimate: %d steps, MSE to the optimal weight %.4f (train batch) / %.4f (val)", steps, float(loss), val)
    return {"steps": steps, "train_mse": float(loss), "val_mse": val}


def train_gate(model: UGTSRNet, cache: GateCache, train_idx: torch.Tensor, val_idx: torch.Tensor, *, iters: int,
               batch_size: int, lr: float, seed: int, eval_every: int, average: int, log_path: Path | None = None,
               time_limit_min: float | None = None, crop: int | None = None,
               loss_name: str = "l1") -> tuple[dict[str, torch.Tensor], list[dict]]:
    """Adam on the gate's parameters, L1 (or MSE) against the HR, cosine decay to lr/10, on random ``crop``-pixel
    (HR) windows of the cached patches if given. Returns the average of the gate state at the last
    ``average`` evaluations and the evaluation log."""
    gate = model.fidelity_gate
    scale = gate.scale
    if crop is not None and (crop % scale or crop // scale > cache.lq.shape[-1] or crop // scale > cache.lq.shape[-2]):
        raise ConfigError(f"--crop {crop}: must be a multiple of {scale} and at most the patch size")
    params = list(gate.parameters())
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(t, iters) / iters)))
    g = torch.Generator().manual_seed(seed)
    history: list[dict] = []
    snapshots: list[dict[str, torch.Tensor]] = []
    start = time.perf_counter()
    with CsvRows(log_path) as log_rows:
        for step in range(1, iters + 1):
            ids = train_idx[torch.randint(len(train_idx), (batch_size,), generator=g)]
            k = int(torch.randint(8, (1,), generator=g))
            lq, sr, hr = cache.batch(ids)
            if crop:  # one random LR-aligned window of the batch's patches
                c, h, w = crop // scale, lq.shape[-2], lq.shape[-1]
                top, left = (int(torch.randint(n - c + 1, (1,), generator=g)) for n in (h, w))
                lq = lq[..., top:top + c, left:left + c]
                sr, hr = (t[..., top * scale:(top + c) * scale, left * scale:(left + c) * scale] for t in (sr, hr))
            lq, sr, hr = (_dihedral(t, k) for t in (lq, sr, hr))
            loss = (F.mse_loss if loss_name == "mse" else F.l1_loss)(gate(sr, lq), hr)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            last = step == iters or (time_limit_min is not None and time.perf_counter() - start > 60 * time_limit_min)
            if step % eval_every == 0 or last:
                gate.eval()
                table = evaluate(model, cache, val_idx)
                gate.train()
                row = {"step": step, "loss": float(loss.detach()), "seconds": round(time.perf_counter() - start, 1),
                       **{f"{c}_{k}": round(v, 4) for c, d in table.items() for k, v in d.items() if k != "n"}}
                history.append(row)
                snapshots = (snapshots + [{n: t.detach().clone() for n, t in gate.state_dict().items()}])[-average:]
                logger.info("step %d loss %.4f  val PSNR gate %.2f / network %.2f / bicubic %.2f  (%s)", step, row["loss"],
                            table["all"]["gate"], table["all"]["network"], table["all"]["bicubic"],
                            ", ".join(f"{c} {d['gate'] - d['bicubic']:+.2f} w {d['weight']:.2f}"
                                      for c, d in table.items() if c != "all"))
                log_rows.write(row)
            if last:
                break
    avg = {n: torch.stack([s[n].float() for s in snapshots]).mean(0).to(snapshots[-1][n].dtype) for n in snapshots[-1]}
    return avg, history


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ugtsr.train.gate_cache", description=__doc__.splitlines()[0])
    p.add_argument("--init", required=True, help="checkpoint of the network (its gate, if any, is the starting point)")
    p.add_argument("--data", required=True, help="folder of HR training photos")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--global-context", action="store_true", help="give the gate the image-level estimate (config fidelity_gate_global)")
    p.add_argument("--context", action="store_true", help="give the gate the 17x17 LR context if the checkpoint lacks it")
    p.add_argument("--reset-gate", action="store_true", help="start the gate from its initialisation, not the checkpoint's")
    p.add_argument("--mixture", default=",".join(f"{n}={w}" for n, w in MIXTURE_WIDE),
                   help="NAME=P,... over bsrgan, realesrgan, classic, light, clean (default: mixed_wide's)")
    p.add_argument("--cache", type=Path, default=None, metavar="FILE",
                   help="keep the cached samples in FILE (written after the first run, read by later runs with the "
                        "same --init, --data, --samples, --patch-size, --seed and --mixture)")
    p.add_argument("--samples", type=int, default=1600)
    p.add_argument("--patch-size", type=int, default=256, help="HR patch side")
    p.add_argument("--crop", type=int, default=None, help="train on random windows of this HR side of the cached patches "
                   "(faster steps; the evaluation uses the whole patches)")
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--iters", type=int, default=4000, help="joint training steps (0: only --pretrain-global)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--average", type=int, default=5, help="swa.pt: the mean of the gate at the last N evaluations")
    p.add_argument("--loss", choices=("l1", "mse"), default="l1", help="the joint training's pixel loss")
    p.add_argument("--pretrain-global", type=int, default=0, metavar="STEPS",
                   help="first fit the image-level estimate to the optimal per-sample blend weight for STEPS steps, "
                        "then train the whole gate from w = sigmoid(image logit) (needs --global-context)")
    p.add_argument("--pretrain-lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--time-limit", type=float, default=None, metavar="MIN", help="stop training after MIN minutes")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        mixture = parse_mixture(args.mixture)
        if args.iters < 0 or args.pretrain_global < 0:
            raise ConfigError("--iters and --pretrain-global must be >= 0")
        if args.iters == 0 and not args.pretrain_global:
            raise ConfigError("--iters 0 trains nothing without --pretrain-global")
        if not 0 < args.val_fraction < 1:
            raise ConfigError(f"--val-fraction must be in (0, 1), got {args.val_fraction}")
        if args.crop is not None and (args.crop <= 0 or args.crop > args.patch_size):
            raise ConfigError(f"--crop {args.crop}: must be in (0, --patch-size {args.patch_size}]")
        torch.set_num_threads(args.threads)
        t0 = time.perf_counter()
        ck = load_checkpoint(args.init)
        cfg = ck.config
        if cfg.is_prior:
            raise ConfigError(f"{args.init}: an HQ prior has no fidelity gate")
        cfg = cfg.replace(fidelity_gate=True, fidelity_gate_context=cfg.fidelity_gate_context or args.context,
                          fidelity_gate_global=cfg.fidelity_gate_global or args.global_context)
        model = UGTSRNet(cfg)
        state = ck.state_dict
        if args.reset_gate:
            state = {k: v for k, v in state.items() if not k.startswith("fidelity_gate.")}
        fresh = load_matching(model, state)
        unexpected = [k for k in fresh if not k.startswith("fidelity_gate.")]
        if unexpected:
            raise ConfigError(f"{args.init}: the checkpoint lacks {len(unexpected)} network tensors ({unexpected[0]}, ...)")
        if fresh:
            logger.info("gate tensors newly initialised: %d (%s)", len(fresh), ", ".join(sorted({k.split('.')[1] for k in fresh})))
        model.eval().requires_grad_(False)
        model.fidelity_gate.requires_grad_(True)
        key = {"init": str(Path(args.init).resolve()), "data": str(Path(args.data).resolve()), "samples": args.samples,
               "patch_size": args.patch_size, "seed": args.seed, "mixture": [list(m) for m in mixture]}
        cache = None
        if args.cache is not None and args.cache.is_file():
            saved = torch.load(args.cache, weights_only=True)
            if saved.get("key") != key:
                raise ConfigError(f"{args.cache}: a cache of other settings ({saved.get('key')}); remove it or pass another --cache")
            cache = GateCache(saved["lq"], saved["sr"], saved["hr"], saved["component"])
            logger.info("cache: %d samples from %s", len(cache), args.cache)
        if cache is None:
            cache = build_cache(model, args.data, samples=args.samples, patch_size=args.patch_size, seed=args.seed,
                                mixture=mixture)
            if args.cache is not None:
                atomic_torch_save({"key": key, "lq": cache.lq, "sr": cache.sr, "hr": cache.hr, "component": cache.component},
                            args.cache)
        t_cache = time.perf_counter() - t0
        n_val = max(1, int(round(len(cache) * args.val_fraction)))
        idx = torch.arange(len(cache))
        train_idx, val_idx = idx[:-n_val], idx[-n_val:]
        args.out.mkdir(parents=True, exist_ok=True)
        pre = None
        if args.pretrain_global:
            if model.fidelity_gate.global_head is None:
                raise ConfigError("--pretrain-global needs --global-context (or a checkpoint whose gate has it)")
            pre = pretrain_global(model, cache, train_idx, val_idx, steps=args.pretrain_global, lr=args.pretrain_lr,
                                  seed=args.seed)
            pre["val"] = evaluate(model, cache, val_idx)
            logger.info("after the global estimate alone: %s", ", ".join(
                f"{c} {d['gate'] - d['bicubic']:+.2f}" for c, d in pre["val"].items()))
        if args.iters:
            model.fidelity_gate.train()
            avg, history = train_gate(model, cache, train_idx, val_idx, iters=args.iters, batch_size=args.batch_size,
                                      lr=args.lr, seed=args.seed, eval_every=args.eval_every, average=args.average,
                                      log_path=args.out / "log.csv", time_limit_min=args.time_limit, crop=args.crop,
                                      loss_name=args.loss)
        else:  # --iters 0: the image-level estimate alone (the local parts' last layers stay at zero)
            avg = {n: t.detach().clone() for n, t in model.fidelity_gate.state_dict().items()}
            history = [{"step": 0, **{f"{c}_{k}": round(v, 4) for c, d in pre["val"].items() for k, v in d.items()
                                      if k != "n"}}]
        model.eval()
        wall = time.perf_counter() - t0
        meta = {"stage": "sr", "step": int(history[-1]["step"]), "init": str(args.init),
                "trained_by": "ugtsr.train.gate_cache", "command": " ".join([p.prog, *(argv if argv is not None else sys.argv[1:])])}
        save_checkpoint(args.out / "final.pt", model, **meta)
        model.fidelity_gate.load_state_dict(avg)
        final_avg = evaluate(model, cache, val_idx) if args.iters else pre["val"]  # --iters 0: the same gate
        save_checkpoint(args.out / "swa.pt", model, **meta, averaged=len(history[-args.average:]))
        settings = {"command": meta["command"], "seed": args.seed, "samples": len(cache), "train_samples": len(train_idx),
                    "val_samples": len(val_idx), "patch_size": args.patch_size, "crop": args.crop, "mixture": dict(mixture),
                    "components": {c: cache.component.count(c) for c in sorted(set(cache.component))},
                    "pretrain_global": pre, "loss": args.loss,
                    "steps": int(history[-1]["step"]), "batch_size": args.batch_size, "lr": args.lr, "threads": args.threads,
                    "cache_seconds": round(t_cache, 1), "wall_seconds": round(wall, 1),
                    "gate_parameters": sum(t.numel() for t in model.fidelity_gate.parameters()),
                    "val_swa": final_avg, "val_last": history[-1]}
        write_json_atomic(args.out / "settings.json", settings)
        logger.info("wrote %s and %s (%d steps, %.0f s, cache %.0f s); swa val: %s", args.out / "final.pt",
                    args.out / "swa.pt", settings["steps"], wall, t_cache,
                    ", ".join(f"{c} {d['gate'] - d['bicubic']:+.2f}" for c, d in final_avg.items()))
        print(json.dumps({"out": str(args.out), "steps": settings["steps"], "val_swa": final_avg}, indent=1))
    except (UGTSRError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
