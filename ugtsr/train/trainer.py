"""The training loop of the three stages (paper §III-C, Eqs. 10-15; FeMaSR's two-stage recipe).

Generator objective per stage (weights: ``--pixel-weight`` p, ``--codebook-weight`` c,
``--perceptual-weight`` w, ``--gan-weight`` λ_adv = 0.1):

* ``prior``: ``p·L1 + c·L_vq(z, codes) + w·L_per + λ_adv·L_adv`` (HQ VQGAN on HR patches).
* ``uncertainty`` (Eq. 14): ``p·L1 + L_ESU(sr, hr, s) + c·L_codebook(z, z_gt) + w·L_per + λ_adv·L_adv``,
  ``z_gt`` the frozen prior's codes of the HR patch.
* ``sr`` (Eq. 15): ``p·L_UDL(sr, hr, s_I) + c·(L_codebook(z, z_gt) [+ L_codebook(fused, z_gt)])
  [+ L_CE(logits, gt indices)] + w·L_per + λ_adv·L_adv``. ``s_I`` comes from the frozen stage-I
  model (or a stage-II checkpoint's frozen head). ``--no-prior`` drops the codebook terms (no GT codes). UDL's default ``+1`` weights (``ŝ = s - min s + 1``) make ``L_UDL = L1 + mean((s - min s)·|sr - hr|)``,
  i.e. exactly the paper's ``L1 + L_UDL``; with ``--udl-no-plus-one`` the L1 term is dropped too.
  For Top-k matching the codebook loss acts on the fused feature (Eq. 7, the input of the
  re-quantisation) *and* on the encoder output ``z`` (whose neighbours are the Top-k candidates);
  for the CodeFormer baseline the cross-entropy on the GT indices is added.

The discriminator (Real-ESRGAN U-Net with spectral norm, hinge loss) is updated after the generator
at every step on ``[hr, sr.detach()]`` in one forward. Under ``torchrun`` the generator is wrapped in
DistributedDataParallel (frozen parameters are left out by DDP and every trainable one receives a
gradient, so ``find_unused_parameters`` is off). The discriminator is not wrapped: it runs twice per
step, once with frozen parameters for the generator loss, which DDP's reducer does not allow; its
gradients are averaged with one explicit all-reduce instead, and its spectral-norm vectors, a
deterministic function of identical weights, stay identical on every rank.
"""
from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checkpoint import Checkpoint, save_checkpoint
from ..data import HRPatchDataset, PairedDataset
from ..errors import CheckpointError, ConfigError
from ..losses import (
    PerceptualLoss,
    codebook_loss,
    codeformer_ce_loss,
    esu_loss,
    hinge_d_loss,
    hinge_g_loss,
    l1_loss,
    udl_loss,
    vq_prior_loss,
)
from ..stages import stage_config, trainable_summary
from .dist import (
    DistInfo,
    average_gradients,
    broadcast_module,
    gather_objects,
    resolve_device,
    weights_digest,
)
from .logs import LOSS_COLUMNS, RunLog, launch_record, write_json_atomic
from .models import StageModels, build_stage_models, frozen_copy
from .options import TrainOptions
from .sampling import StepSampler, batch_stream
from .state import FINAL, LATEST, find_resume, load_state, rng_state, save_state, set_rng_state
from .validation import ValidationSet

__all__ = ["Trainer", "TrainResult", "train"]

logger = logging.getLogger(__name__)


#: learning-rate factor of the FidelityGate parameters over --lr
GATE_LR_FACTOR = 10.0


@dataclass
class TrainResult:
    """What a run ended with (``final_checkpoint`` is None on ranks other than 0)."""

    run_dir: Path
    step: int
    final_checkpoint: Path | None
    losses: dict[str, float] = field(default_factory=dict)
    val: dict[str, float] | None = None
    step_times: list[float] = field(default_factory=list)
    replica_digests: list[str] = field(default_factory=list)


class Trainer:
    """One training run: build everything from :class:`TrainOptions`, then :meth:`run`."""

    def __init__(self, options: TrainOptions, dist_info: DistInfo | None = None) -> None:
        self.o = options
        # without a DistInfo (programmatic use): one process on the device the options name
        self.info = dist_info or DistInfo(device=resolve_device(options.device))
        self.device = self.info.device
        if options.threads is not None:
            torch.set_num_threads(options.threads)
        self.preset = options.model_preset()
        self.config = stage_config(self.preset, options.stage)
        self.run_dir = Path(options.out)

        resume_path = find_resume(options.resume, self.run_dir)
        if options.resume is None and (self.run_dir / LATEST).is_file():
            raise ConfigError(f"{self.run_dir}: holds a run already (latest.pt); continue it with --resume auto "
                              "or choose another --out")
        resume = load_state(resume_path, stage=options.stage, preset=options.preset, config=self.config) if resume_path else None
        self.resume_path = resume_path

        torch.manual_seed(options.seed)  # identical initial weights on every rank
        self.models: StageModels = build_stage_models(
            options, self.preset, resume_meta=resume.metadata if resume else None, load_init=resume is None)
        self.model = self.models.model
        self.disc = self.models.discriminator
        # Perceptual loss first: without VGG weights it stops here with a one-line how-to.
        self.perceptual = (PerceptualLoss(weights_path=options.vgg_weights) if options.perceptual_weight > 0 else None)
        self.dataset = self._dataset()
        self.sampler = StepSampler(len(self.dataset), batch_size=options.batch_size, seed=options.seed,
                                   rank=self.info.rank, world_size=self.info.world_size, fixed=options.overfit_batch)
        self.val_set = None
        if options.val and self.info.is_main:
            self.val_set = ValidationSet(options.val, scale=self.config.scale, pipeline=options.pipeline,
                                         seed=options.seed, crop=options.val_crop)

        for m in (self.model, self.models.prior, self.models.uncertainty, self.disc, self.perceptual):
            if m is not None:
                m.to(self.device)
        named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        groups = [{"params": [p for n, p in named if not n.startswith("fidelity_gate.")], "lr": options.lr}]
        gate = [p for n, p in named if n.startswith("fidelity_gate.")]
        if gate:  # a small new module next to pretrained weights: 10x the learning rate
            groups.append({"params": gate, "lr": options.lr * GATE_LR_FACTOR})
        groups = [g for g in groups if g["params"]]  # --train-gate-only: the gate's group alone
        self.opt_g = torch.optim.Adam(groups, lr=options.lr, betas=options.betas)
        self.opt_d = (torch.optim.Adam(self.disc.parameters(), lr=options.lr_d, betas=options.betas)
                      if self.disc is not None else None)
        self.ema = frozen_copy(self.model) if options.ema_decay > 0 else None

        self.step = 0
        self.wall_before = 0.0
        if resume is not None:
            self._restore(resume)
        self.g: nn.Module = self.model
        if self.info.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.g = DDP(self.model, device_ids=ids, find_unused_parameters=False)
            if self.disc is not None:
                broadcast_module(self.disc, self.info)
        self.step_times: list[float] = []
        self.last_val: dict[str, float] | None = None
        self.last_losses: dict[str, float] = {}

    # --- setup helpers ----------------------------------------------------------------------
    def _dataset(self) -> Any:
        o = self.o
        root = Path(o.data)
        pairs = (root / "lq").is_dir() and (root / "gt").is_dir()
        if o.stage == "prior":
            # The prior never sees LR images; scale only enters the patch-size check (patch % 8 == 0).
            ds = HRPatchDataset(root / "gt" if pairs else root, scale=4, patch_size=o.patch_size, pipeline=None,
                                seed=o.seed)
        elif pairs:
            ds = PairedDataset(root / "lq", root / "gt", self.config.scale, o.patch_size, seed=o.seed)
        else:
            ds = HRPatchDataset(root, scale=self.config.scale, patch_size=o.patch_size, pipeline=o.pipeline, seed=o.seed)
        self.data_summary = {
            "kind": type(ds).__name__, "items": len(ds),
            "skipped_too_small": getattr(ds, "num_too_small", 0), "skipped_unreadable": getattr(ds, "num_unreadable", 0),
            "unmatched": getattr(ds, "num_unmatched", 0),
        }
        if self.info.is_main:
            logger.info("data: %d usable images in %s (%d smaller than the %d px patch and %d unreadable skipped)",
                        len(ds), root, self.data_summary["skipped_too_small"], o.patch_size,
                        self.data_summary["skipped_unreadable"])
        return ds

    def _restore(self, ckpt: Checkpoint) -> None:
        ts = ckpt.training_state or {}
        self.model.load_state_dict(ckpt.state_dict, strict=True)
        if self.ema is not None:
            self.ema.load_state_dict(ckpt.ema_state_dict if ckpt.ema_state_dict is not None else ckpt.state_dict)
        try:
            self.opt_g.load_state_dict(ts["optimizer_g"])
            if self.disc is not None:
                if ts.get("discriminator") is None:
                    logger.warning("%s: saved without a discriminator; it starts fresh now", ckpt.path)
                else:
                    self.disc.load_state_dict(ts["discriminator"])
                    self.opt_d.load_state_dict(ts["optimizer_d"])
        except (KeyError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"{ckpt.path}: optimizer/discriminator state does not fit this run "
                                  f"({str(exc).splitlines()[0][:200]})") from None
        set_rng_state(ts["rng"])
        self.step = int(ts["step"])
        self.wall_before = float(ts.get("wall_time", 0.0))
        if int(ts.get("world_size", 1)) != self.info.world_size:
            logger.warning("resuming a %s-process run on %d processes: the data order differs from an "
                           "uninterrupted run", ts.get("world_size"), self.info.world_size)
        if self.info.is_main:
            logger.info("resumed from %s at step %d (data epoch %d)", ckpt.path, self.step, self.sampler.epoch_at(self.step))

    # --- one step ---------------------------------------------------------------------------
    def _targets(self, lq: torch.Tensor, gt: torch.Tensor) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            if self.models.prior is not None:
                z_hr, _ = self.models.prior.encode(gt)  # HR patch is a multiple of 8: no padding needed
                m = self.models.prior.match(z_hr)
                out["z_gt"], out["gt_indices"] = m.codes, m.indices
            if self.models.uncertainty is not None and self.o.pixel_loss == "udl":  # plain L1 needs no s
                out["s"] = self.models.uncertainty(lq).uncertainty
        return out

    def _generator_terms(self, out: Any, gt: torch.Tensor, t: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        o, stage = self.o, self.o.stage
        terms: dict[str, torch.Tensor] = {}
        if stage == "prior":
            terms["l1"] = l1_loss(out.sr, gt)
            terms["vq"] = vq_prior_loss(out.z, out.codes)
            total = o.pixel_weight * terms["l1"] + o.codebook_weight * terms["vq"]
        elif stage == "uncertainty":
            terms["l1"] = l1_loss(out.sr, gt)
            terms["esu"] = esu_loss(out.sr, gt, out.uncertainty)
            terms["codebook"] = codebook_loss(out.z, t["z_gt"])
            total = o.pixel_weight * terms["l1"] + terms["esu"] + o.codebook_weight * terms["codebook"]
        else:
            if o.pixel_loss == "l1":  # the ablation baseline: no uncertainty weighting
                terms["l1"] = l1_loss(out.sr, gt)
                total = o.pixel_weight * terms["l1"]
            else:
                terms["udl"] = udl_loss(out.sr, gt, t["s"], plus_one=o.udl_plus_one)
                total = o.pixel_weight * terms["udl"]
            if o.train_decoder and out.uncertainty is not None:
                # the head trains with the decoder: ESU (eq. 2) on the model's own, detached errors
                terms["esu"] = esu_loss(out.sr.detach(), gt, out.uncertainty)
                total = total + terms["esu"]
            if "z_gt" in t:  # absent with --no-prior: no GT codes, no codebook loss
                terms["codebook"] = codebook_loss(out.z, t["z_gt"])
                total = total + o.codebook_weight * terms["codebook"]
                if out.fused is not None:
                    terms["codebook_fused"] = codebook_loss(out.fused, t["z_gt"])
                    total = total + o.codebook_weight * terms["codebook_fused"]
                if out.logits is not None:  # matcher logits are (B, K, h, w); the loss takes (B, N, K)
                    terms["ce"] = codeformer_ce_loss(out.logits.flatten(2).transpose(1, 2), t["gt_indices"])
                    total = total + terms["ce"]
        if self.perceptual is not None:
            terms["perceptual"] = self.perceptual(out.sr, gt)
            total = total + o.perceptual_weight * terms["perceptual"]
        if self.disc is not None:
            self.disc.requires_grad_(False)
            terms["adv_g"] = hinge_g_loss(self.disc(out.sr))
            total = total + o.gan_weight * terms["adv_g"]
        return total, terms

    def _train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        gt = batch["gt"].to(self.device, non_blocking=True)
        lq = batch["lq"].to(self.device, non_blocking=True) if "lq" in batch else gt
        targets = self._targets(lq, gt)
        out = self.g(lq)
        total, terms = self._generator_terms(out, gt, targets)
        self.opt_g.zero_grad(set_to_none=True)
        total.backward()
        self.opt_g.step()
        if self.ema is not None:
            with torch.no_grad():
                for e, p in zip(self.ema.parameters(), self.model.parameters()):
                    e.lerp_(p, 1.0 - self.o.ema_decay)
                for e, b in zip(self.ema.buffers(), self.model.buffers()):
                    e.copy_(b)
        terms["loss"] = total
        if self.disc is not None:
            self.disc.requires_grad_(True)
            logits = self.disc(torch.cat([gt, out.sr.detach()]))
            real, fake = logits.split(gt.shape[0])
            d_loss = hinge_d_loss(real, fake)
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            average_gradients(self.disc, self.info)
            self.opt_d.step()
            terms.update(d_loss=d_loss, d_real=real.mean(), d_fake=fake.mean())
        return {k: v.detach() for k, v in terms.items()}

    # --- bookkeeping ------------------------------------------------------------------------
    def _metadata(self) -> dict[str, Any]:
        o = self.o
        return {
            "stage": o.stage, "preset": o.preset, "iters": o.iters, "step": self.step, "seed": o.seed,
            "data": str(Path(o.data).resolve()), "prior_checkpoint": self.models.prior_source,
            "uncertainty_checkpoint": self.models.uncertainty_source, "init_checkpoint": self.models.init_source,
            "batch_size": o.batch_size, "patch_size": o.patch_size, "pipeline": o.pipeline,
            "world_size": self.info.world_size, "wall_time": self._wall(),
        }

    def _wall(self) -> float:
        return self.wall_before + (time.perf_counter() - self._t_start if hasattr(self, "_t_start") else 0.0)

    def _training_state(self) -> dict[str, Any]:
        o = self.o
        return {
            "step": self.step, "data_epoch": self.sampler.epoch_at(self.step),
            "samples_seen": self.sampler.samples_before(self.step),
            "optimizer_g": self.opt_g.state_dict(),
            "optimizer_d": self.opt_d.state_dict() if self.opt_d is not None else None,
            "discriminator": _cpu(self.disc) if self.disc is not None else None,
            "rng": rng_state(), "wall_time": self._wall(), "stage": o.stage, "preset": o.preset, "seed": o.seed,
            "world_size": self.info.world_size,
        }

    def _write_settings(self) -> None:
        path = self.run_dir / "settings.json"
        launches = []
        if self.resume_path is not None and path.is_file():
            import json

            try:
                launches = json.loads(path.read_text()).get("launches", [])
            except (OSError, ValueError):
                launches = []
        record = launch_record(self.o.to_dict(), self.config.to_dict(), start_step=self.step,
                               resumed_from=str(self.resume_path) if self.resume_path else None,
                               world_size=self.info.world_size, device=str(self.device), data=self.data_summary,
                               trainable=trainable_summary(self.model), init=self.models.notes)
        launches.append({k: record[k] for k in ("command", "start_step", "resumed_from", "world_size", "device")})
        write_json_atomic(path, {**record, "launches": launches})

    def _validate(self, log: RunLog | None) -> None:
        if self.val_set is None:
            return
        self.last_val = self.val_set.evaluate(self.model, self.device)
        logger.info("step %d: validation PSNR %.3f dB, SSIM %.4f (%d images)", self.step, self.last_val["psnr"],
                    self.last_val["ssim"], len(self.val_set))
        if log is not None:
            log.write(self.step, {"wall_s": self._wall(), "val_psnr": self.last_val["psnr"], "val_ssim": self.last_val["ssim"]})

    # --- the loop ---------------------------------------------------------------------------
    def run(self) -> TrainResult:
        o, main = self.o, self.info.is_main
        log = None
        handler = None
        if main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            handler = logging.FileHandler(self.run_dir / "train.log")
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
            logging.getLogger("ugtsr").addHandler(handler)
            self._write_settings()
            log = RunLog(self.run_dir, tensorboard=o.tensorboard,
                         resume_step=self.step if self.resume_path is not None else None)
            for note in self.models.notes:
                logger.info("init: %s", note)
            logger.info("stage %s, preset %s: %s; %d trainable parameters", o.stage, o.preset,
                        trainable_summary(self.model), sum(p.numel() for p in self.model.parameters() if p.requires_grad))
        try:
            self._loop(log)
            return self._finish(log)
        finally:
            if log is not None:
                log.close()
            if handler is not None:
                logging.getLogger("ugtsr").removeHandler(handler)
                handler.close()

    def _loop(self, log: RunLog | None) -> None:
        o, main = self.o, self.info.is_main
        self._t_start = time.perf_counter()
        if o.time_limit and self.info.world_size > 1:
            logger.warning("--time-limit is ignored with %d processes (ranks could stop at different steps)",
                           self.info.world_size)
        self.model.train()
        if self.disc is not None:
            self.disc.train()
        pbar = None
        if main and not o.quiet and sys.stderr.isatty():
            from tqdm import tqdm

            pbar = tqdm(total=o.iters, initial=self.step, unit="it", dynamic_ncols=True, desc=o.stage)
        sums: dict[str, torch.Tensor] = {}
        count, t_window = 0, time.perf_counter()
        stream = batch_stream(self.dataset, self.sampler, start=self.step, stop=o.iters, num_workers=o.num_workers,
                              pin_memory=self.device.type == "cuda")
        for batch in stream:
            t0 = time.perf_counter()
            terms = self._train_step(batch)
            if self.device.type == "cuda":  # step_times are the GPU's, not the launch queue's
                torch.cuda.synchronize(self.device)
            self.step += 1
            self.step_times.append(time.perf_counter() - t0)
            for k, v in terms.items():
                sums[k] = sums[k] + v if k in sums else v
            count += 1
            if pbar is not None:
                pbar.update(1)
            if self.step % o.log_every == 0 or self.step == o.iters:
                now = time.perf_counter()
                ips = count * o.batch_size * self.info.world_size / max(now - t_window, 1e-9)
                self.last_losses = {k: float(v) / count for k, v in sums.items()}
                if log is not None:
                    row = {"wall_s": self._wall(), **{k: self.last_losses.get(k) for k in LOSS_COLUMNS},
                           "lr_g": self.opt_g.param_groups[0]["lr"],
                           "lr_d": self.opt_d.param_groups[0]["lr"] if self.opt_d else None, "images_per_s": ips}
                    log.write(self.step, row)
                if pbar is not None:
                    pbar.set_postfix(loss=f"{self.last_losses['loss']:.4f}", img_s=f"{ips:.1f}")
                sums, count, t_window = {}, 0, now
            if main and o.val_every and self.step % o.val_every == 0:
                self._validate(log)
            out_of_time = bool(o.time_limit) and self.info.world_size == 1 and (time.perf_counter() - self._t_start) > 60.0 * o.time_limit
            if main and (self.step % o.save_every == 0 or self.step == o.iters or out_of_time):
                save_state(self.run_dir, self.model, training_state=self._training_state(),
                           ema=self.ema, **self._metadata())
            if out_of_time:
                logger.info("time limit of %.1f min reached at step %d of %d", o.time_limit, self.step, o.iters)
                break
        if pbar is not None:
            pbar.close()

    def _finish(self, log: RunLog | None) -> TrainResult:
        o = self.o
        if self.val_set is not None and not (o.val_every and self.step % o.val_every == 0 and self.step_times):
            self._validate(log)
        mine = weights_digest(self.model) + ("/" + weights_digest(self.disc) if self.disc is not None else "")
        digests = [str(d) for d in gather_objects(mine, self.info)]  # "generator[/discriminator]" per rank
        final = None
        if self.info.is_main:
            if len(set(digests)) > 1:
                logger.error("the %d processes ended with different weights: %s", len(digests), digests)
            extra = {"discriminator": _cpu(self.disc)} if self.disc is not None else None
            final = save_checkpoint(self.run_dir / FINAL, self.model, ema=self.ema, training_state=extra,
                                    replica_digests=digests, **self._metadata(),
                                    val_psnr=self.last_val["psnr"] if self.last_val else None,
                                    val_ssim=self.last_val["ssim"] if self.last_val else None)
            logger.info("wrote %s (step %d)", final, self.step)
        return TrainResult(run_dir=self.run_dir, step=self.step, final_checkpoint=final, losses=self.last_losses,
                           val=self.last_val, step_times=self.step_times, replica_digests=digests)


def _cpu(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").clone() for k, v in module.state_dict().items()}


def train(options: TrainOptions, dist_info: DistInfo | None = None) -> TrainResult:
    """Build a :class:`Trainer` and run it."""
    return Trainer(options, dist_info).run()
