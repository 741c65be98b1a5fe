"""Replace the decoder's output-resolution stage by a sub-pixel one, distilled from the trained model
(``python -m ugtsr.train.distill_tail``).

The last decoder stage of ``tiny_x4`` upsamples to the output resolution and runs a convolution and
two GroupNorm residual blocks there (32 channels at 16 pixels per input pixel): 40 % of the graph's
FLOPs and the peak of whole-image memory (issue 13, ``docs/EFFICIENCY.md``). The student built here
(``UGTSRConfig.subpixel_stages = 1``, with ``plain_stages = 1``) runs that stage at its input
resolution with norm-free residual blocks and ends in a sub-pixel convolution (Conv to 12 channels +
DepthToSpace x2; Shi et al., "Real-Time Single Image and Video Super-Resolution Using an Efficient
Sub-Pixel Convolutional Neural Network", CVPR 2016, arXiv 1609.05158); the uncertainty head likewise.
Everything before that stage (encoder, matching, the first two decoder stages, Align-Attention) and
the post-filters (colour fix, fidelity gate) are the teacher's, frozen; so only the new stage and the
head train, on cached inputs:

1. ``--samples`` random HR patches of the training photos are degraded with a named mixture of
   ``ugtsr.degrade`` components (as ``ugtsr.train.gate_cache`` does); the teacher runs once on each
   and the cache keeps the input of its last stage (float16), the LR, the teacher's output before
   the post-filters, its final output and its uncertainty map.
2. Adam on the student's stage and head: ``--teacher-weight`` x the L1 to the teacher's output
   before and after the post-filters, ``--hr-weight`` x the L1 of the final output to the HR patch
   and ``--unc-weight`` x the L1 to the teacher's uncertainty map, cosine decay, on random windows
   (``--crop``) of the cached patches.

``--student skip`` (issue 13, the fifth x4 release) distils the other part of the network that
computes at twice the LR: the LQ encoder's last up stage (nearest x2, a convolution and two GroupNorm
residual blocks) and the Align-Attention that fuses its skip into the decoder. The student
(``UGTSRConfig.subpixel_skips = 1``, on a teacher that already has the sub-pixel last stage) makes
that skip by a sub-pixel convolution of the encoder's previous skip (at the LR for x4) and adds it to
the decoder's feature; the new convolution, the last stage, the output convolution and the
uncertainty head train, on cached decoder features and skips.

``--student residual`` (issue 14) keeps the whole network and retrains its output path as a residual
on bicubic(LR) (``UGTSRConfig.bicubic_residual``: the global residual of VDSR, Kim et al., CVPR 2016,
arXiv 1511.04587) with the raw LR into the last decoder stage (``UGTSRNet.lr_tail``, a convolution
and DepthToSpace to that stage's resolution). The new convolution and the output convolution start
at zero, so the student starts as bicubic through the teacher's colour fix and gate; the last stage,
the output convolution, the LR convolution, the uncertainty head and (on a teacher with a sub-pixel
last skip) that skip's convolution train. What the LR already holds then need not pass through the
codebook: on a clean LR the fifth release's network alone was 1.5-12.6 dB below bicubic.

``--student plain`` (issue 13) makes every decoder stage norm-free (``plain_stages`` = all): the
residual blocks that lose their GroupNorm start as identities; every decoder stage, the output
convolution and the uncertainty head train, on cached decoder inputs (after ``quant_out``) and skips,
with the Align-Attention between the stages frozen. The training windows (``--crop``) must then hold
whole attention windows.

A tenth of the samples (``--val-fraction``) is held back: every ``--eval-every`` steps the log
reports PSNR (RGB, 8-bit) against the HR for the student, the teacher and bicubic, and the
student's PSNR against the teacher. Writes ``OUT/final.pt`` (a normal checkpoint), ``OUT/log.csv``
and ``OUT/settings.json`` (command, seed, samples, steps, wall time).

    python -m ugtsr.train.distill_tail --init runtime/models/ugtsr_tiny_x4.pt --data data/photos/train \\
        --out runs/v4/x4_subpixel --samples 1600 --patch-size 256 --iters 3000 --seed 43
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

from ..checkpoint import atomic_torch_save, load_checkpoint, save_checkpoint
from ..config import UGTSRConfig
from ..degrade.simple import MIXTURE_WIDE
from ..errors import ConfigError, UGTSRError
from ..model import UGTSRNet
from ..postfilters import FidelityGate, bicubic_upsample
from .gate_cache import _psnr, degraded_batches, parse_mixture
from .logs import CsvRows, write_json_atomic

__all__ = ["STUDENTS", "student_config", "build_student", "TailCache", "build_tail_cache", "student_tail", "main"]

logger = logging.getLogger(__name__)

_DEGRADE_SALT = 0x7A11


#: what ``--student`` replaces: ``tail`` the last decoder stage (``subpixel_stages``), ``skip`` the
#: encoder's last up stage and its Align-Attention (``subpixel_skips``); ``residual`` retrains the
#: output path as a residual on bicubic(LR) with the LR into the last stage (``bicubic_residual``);
#: ``plain`` makes every decoder stage norm-free (``plain_stages`` = all)
STUDENTS = ("tail", "skip", "residual", "plain")


def student_config(teacher: UGTSRConfig, kind: str = "tail") -> UGTSRConfig:
    """The teacher's config with a sub-pixel, norm-free last decoder stage (``tail``) or a sub-pixel,
    added last skip (``skip``; the teacher must have the sub-pixel last stage)."""
    if teacher.is_prior:
        raise ConfigError("distill_tail needs an SR model, not an HQ prior")
    if kind == "tail":
        if teacher.subpixel_stages:
            raise ConfigError(f"'{teacher.name}' already has a sub-pixel last stage")
        return teacher.replace(subpixel_stages=1, plain_stages=max(1, teacher.plain_stages))
    if kind == "skip":
        if teacher.subpixel_skips:
            raise ConfigError(f"'{teacher.name}' already has a sub-pixel last skip")
        if not teacher.subpixel_stages:
            raise ConfigError(f"'{teacher.name}' has no sub-pixel last stage: distil that first (--student tail)")
        return teacher.replace(subpixel_skips=1)
    if kind == "plain":
        if teacher.plain_stages >= teacher.decoder_stages:
            raise ConfigError(f"'{teacher.name}' has no decoder stage with GroupNorm left")
        return teacher.replace(plain_stages=teacher.decoder_stages)
    if kind == "residual":
        if teacher.bicubic_residual:
            raise ConfigError(f"'{teacher.name}' already has a bicubic residual")
        return teacher.replace(bicubic_residual=True)
    raise ConfigError(f"unknown student '{kind}'; choose one of {', '.join(STUDENTS)}")


def _subpixel_from_upsampling_conv(conv: torch.nn.Conv2d) -> torch.Tensor:
    """The weights of a 3x3 convolution at the low resolution whose DepthToSpace x2 equals ``conv``
    (3x3) applied after a nearest x2 upsampling: output phase 0 of a row reads LR rows ``(-1, 0)``
    with taps ``(w[-1], w[0] + w[1])``, phase 1 rows ``(0, +1)`` with ``(w[-1] + w[0], w[1])``;
    likewise for columns. Shape ``(4 c_out, c_in, 3, 3)`` in ``pixel_shuffle``'s channel order."""
    w = conv.weight.detach()
    c_out, c_in = w.shape[:2]
    # phase matrices P[a] (3 LR taps x 3 HR taps): LR tap r gets the sum of the HR taps mapped to it
    P = torch.zeros(2, 3, 3, dtype=w.dtype)
    P[0, 0, 0] = 1; P[0, 1, 1] = 1; P[0, 1, 2] = 1  # noqa: E702
    P[1, 1, 0] = 1; P[1, 1, 1] = 1; P[1, 2, 2] = 1  # noqa: E702
    out = torch.einsum("ary,bsx,oiyx->oabirs", P, P, w)  # (c_out, a, b, c_in, 3, 3)
    return out.reshape(c_out * 4, c_in, 3, 3)


def build_student(teacher: UGTSRNet, kind: str = "tail") -> UGTSRNet:
    """``tail``: a student that shares every tensor of the teacher but the last decoder stage, the
    output convolution and the uncertainty head, which start from the teacher's where that is
    meaningful: the stage's first convolution as is, the residual blocks as identities (second
    convolution at zero), and the output convolutions' weights repeated for the four sub-pixel phases
    (so the student starts as a nearest-neighbour x2 of the teacher's stage run at half resolution).

    ``skip``: every tensor of the teacher but the last up stage of the encoder and the last
    Align-Attention; the new sub-pixel convolution starts as the exact low-resolution form of that
    stage's first (upsampling) convolution, so the student starts with the teacher's skip without its
    residual blocks and without the attention term."""
    cfg = student_config(teacher.config, kind)
    student = UGTSRNet(cfg)
    t_state = teacher.state_dict()
    if kind == "plain":
        # the convolutions keep their names; the norms go; the blocks that lose them start as
        # identities (second convolution at zero), their stage's upsampling convolution as it was
        keep = student.state_dict().keys()
        state = {k: v for k, v in t_state.items() if k in keep}
        missing, unexpected = student.load_state_dict(state, strict=False)
        assert not missing and not unexpected, (missing, unexpected)
        with torch.no_grad():
            for i in range(cfg.decoder_stages - teacher.config.plain_stages):
                for block in student.decoder.stages[i].res:
                    torch.nn.init.zeros_(block.conv2.weight)
                    torch.nn.init.zeros_(block.conv2.bias)
        return student
    if kind == "residual":
        missing, unexpected = student.load_state_dict(t_state, strict=False)
        assert not unexpected and all(k.startswith("lr_tail.") for k in missing), (missing, unexpected)
        with torch.no_grad():  # the student starts as bicubic (then the teacher's colour fix and gate)
            for conv in (student.lr_tail.conv, student.decoder.out_conv):
                torch.nn.init.zeros_(conv.weight)
                torch.nn.init.zeros_(conv.bias)
        return student
    if kind == "skip":
        up = f"encoder.up.{len(student.encoder.up) - 1}."
        state = {k: v for k, v in t_state.items()
                 if not k.startswith(up) and not k.startswith(f"skip_fusion.{cfg.align_skips}.")}
        missing, unexpected = student.load_state_dict(state, strict=False)
        assert not unexpected and all(k.startswith(up) for k in missing), (missing, unexpected)
        with torch.no_grad():
            t_conv = teacher.encoder.up[-1].conv
            s_conv = student.encoder.up[-1].conv
            s_conv.weight.copy_(_subpixel_from_upsampling_conv(t_conv))
            s_conv.bias.copy_(t_conv.bias.repeat_interleave(4))
        return student
    last = f"decoder.stages.{cfg.decoder_stages - 1}."
    new_prefixes = (last, "decoder.out_conv.", "uncertainty_head.")
    state = {k: v for k, v in t_state.items() if not k.startswith(new_prefixes)}
    missing, unexpected = student.load_state_dict(state, strict=False)
    assert not unexpected, unexpected
    with torch.no_grad():
        s_stage = student.decoder.stages[-1]
        t_stage = teacher.decoder.stages[-1]
        s_stage.conv.load_state_dict(t_stage.conv.state_dict())
        for block in s_stage.res:
            torch.nn.init.zeros_(block.conv2.weight)
            torch.nn.init.zeros_(block.conv2.bias)
        r = student.decoder.shuffle ** 2
        for s_conv, t_conv in ((student.decoder.out_conv, teacher.decoder.out_conv),) + (
                ((student.uncertainty_head.conv3, teacher.uncertainty_head.conv3),)
                if student.uncertainty_head is not None else ()):
            s_conv.weight.copy_(t_conv.weight.repeat_interleave(r, dim=0))
            s_conv.bias.copy_(t_conv.bias.repeat_interleave(r, dim=0))
        if student.uncertainty_head is not None:
            for name in ("conv1", "conv2"):
                getattr(student.uncertainty_head, name).load_state_dict(getattr(teacher.uncertainty_head, name).state_dict())
    return student


class TailCache:
    """Per sample: ``feat`` float16 ``(N, C, 2h', 2w')`` (the input of the last decoder stage; for the
    ``skip`` student the decoder's feature before the last skip is added), ``skip`` (``skip`` student:
    float16, the encoder's skip that the new sub-pixel convolution reads; else None), ``lq`` float32,
    the teacher's ``pre`` (before the post-filters), ``out`` (final, clamped) and ``unc`` (float16,
    output resolution), ``hr`` uint8 and the mixture ``component``."""

    def __init__(self, feat, lq, pre, out, unc, hr, component, skip=None, skips=None) -> None:
        self.feat, self.lq, self.pre, self.out, self.unc, self.hr = feat, lq, pre, out, unc, hr
        self.skip = skip
        #: ``plain`` student: ``feat`` is the decoder's input (after quant_out) and ``skips`` the
        #: encoder's skips (float16), all of which the decoder reads
        self.skips = list(skips) if skips is not None else None
        self.component = list(component)

    def __len__(self) -> int:
        return self.lq.shape[0]


def _decoder_inputs(model: UGTSRNet, lq: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``(the decoder's input after quant_out, the encoder's skips)`` for an input whose size is a
    multiple of ``model.multiple_of`` (what the ``plain`` student caches)."""
    z, skips = model.encode(lq)
    return model.quant_out(model.match(z).z_q), skips


def _before_last_skip_from(model: UGTSRNet, d_in: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
    return model.decoder.last_stage_input(d_in, skips, model.skip_fusion, fuse_last=False)


def _before_last_skip(model: UGTSRNet, lq: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``(the decoder's feature before the last stage's skip is fused, the encoder's skips)`` for an
    input whose size is a multiple of ``model.multiple_of``."""
    d_in, skips = _decoder_inputs(model, lq)
    return _before_last_skip_from(model, d_in, skips), skips


def _fuse_last_skip(model: UGTSRNet, x: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
    return model.decoder.fuse_skip(len(model.decoder.stages) - 1, x, skips, model.skip_fusion) if skips else x


def _last_stage_input(model: UGTSRNet, lq: torch.Tensor) -> torch.Tensor:
    """The feature that enters the last decoder stage (after its skip fusion), for an input whose
    size is a multiple of ``model.multiple_of``."""
    return _fuse_last_skip(model, *_before_last_skip(model, lq))


def _last_skip_inputs(model: UGTSRNet, lq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(decoder feature before the last skip is fused, the encoder skip before the last one)``:
    what the ``skip`` student's new parts read (``model`` is the teacher or the student)."""
    x, skips = _before_last_skip(model, lq)
    return x, skips[-2]


def student_tail(model: UGTSRNet, feat: torch.Tensor, lq: torch.Tensor,
                 skip: torch.Tensor | None = None,
                 skips: list[torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``(pre, out, unc)`` of ``model`` from the last stage's input: the decoder's last stage, the
    output convolution, the uncertainty head and the post-filters. With ``skip`` (the ``skip``
    student), ``feat`` is the decoder's feature before the last skip, which is made here: the
    encoder's last (sub-pixel) up stage on ``skip``, added."""
    if skips is not None:  # the plain student: ``feat`` is the decoder's input; every stage runs
        feat = model.decoder.last_stage_input(feat, skips, model.skip_fusion)
    if skip is not None:
        feat = feat + model.encoder.up[-1](skip)
    if model.lr_tail is not None:
        feat = feat + model.lr_tail(lq)
    pre, x = model.decoder.finish(feat)
    pre = model.add_residual(pre, lq)
    unc = model.uncertainty_head(x) if model.uncertainty_head is not None else None
    return pre, model.post_filter(pre, lq), unc


@torch.inference_mode()
def build_tail_cache(teacher: UGTSRNet, data: str | Path, *, samples: int, patch_size: int, seed: int,
                     mixture: tuple[tuple[str, float], ...], batch: int = 8, kind: str = "tail") -> TailCache:
    scale = teacher.config.scale
    cols: dict[str, list[torch.Tensor]] = {k: [] for k in ("feat", "lq", "pre", "out", "unc", "hr", "skip")}
    skip_cols: list[list[torch.Tensor]] = []
    names: list[str] = []
    for lq, hr, batch_names in degraded_batches(data, scale=scale, samples=samples, patch_size=patch_size, seed=seed,
                                                mixture=mixture, batch=batch, salt=_DEGRADE_SALT):
        if lq.shape[-1] % teacher.multiple_of or lq.shape[-2] % teacher.multiple_of:
            raise ConfigError(f"--patch-size {patch_size}: the LR patch must be a multiple of {teacher.multiple_of}")
        d_in, skips = _decoder_inputs(teacher, lq)
        before = _before_last_skip_from(teacher, d_in, skips)
        feat = _fuse_last_skip(teacher, before, skips)
        pre, out, unc = student_tail(teacher, feat, lq)
        if kind == "skip":  # the student's inputs instead: the decoder's feature before the last skip
            feat = before
            cols["skip"].append(skips[-2].half())
        elif kind == "plain":  # the decoder's input and every skip
            feat = d_in
            if not skip_cols:
                skip_cols = [[] for _ in skips]
            for col, t in zip(skip_cols, skips):
                col.append(t.half())
        cols["feat"].append(feat.half())
        cols["lq"].append(lq)
        cols["pre"].append(pre.half())
        cols["out"].append(out.clamp(0, 1).half())
        cols["unc"].append((unc if unc is not None else torch.zeros_like(pre)).half())
        cols["hr"].append(hr)
        names += batch_names
    return TailCache(*(torch.cat(cols[k]) for k in ("feat", "lq", "pre", "out", "unc", "hr")), names,
                     skip=torch.cat(cols["skip"]) if cols["skip"] else None,
                     skips=[torch.cat(c) for c in skip_cols] if skip_cols else None)


def _window(t: torch.Tensor, top: int, left: int, size: int, factor: float) -> torch.Tensor:
    """The window of ``t`` over LR pixels ``[top, top + size) x [left, left + size)``, ``t`` having
    ``factor`` pixels per LR pixel (below 1 for a coarser map: the window must cover whole pixels)."""
    return t[..., int(top * factor):int((top + size) * factor), int(left * factor):int((left + size) * factor)]


@torch.no_grad()
def evaluate(student: UGTSRNet, cache: TailCache, idx: torch.Tensor, *, batch: int = 16) -> dict[str, dict[str, float]]:
    """Mean PSNR per component on ``idx``: student, teacher and bicubic against the HR, and the
    student against the teacher."""
    scale = student.config.scale
    weight = FidelityGate.bicubic_weight(scale)
    rows: dict[str, dict[str, list[float]]] = {}
    for s in range(0, len(idx), batch):
        ids = idx[s:s + batch]
        lq = cache.lq[ids]
        skip = cache.skip[ids].float() if cache.skip is not None else None
        skips = [t[ids].float() for t in cache.skips] if cache.skips is not None else None
        _, out, _ = student_tail(student, cache.feat[ids].float(), lq, skip, skips)
        out = out.clamp(0, 1)
        hr = cache.hr[ids].float() / 255.0
        teacher = cache.out[ids].float()
        vals = {"student": _psnr(out, hr), "teacher": _psnr(teacher, hr),
                "bicubic": _psnr(bicubic_upsample(lq, weight, scale), hr), "to_teacher": _psnr(out, teacher)}
        for j, i in enumerate(ids.tolist()):
            d = rows.setdefault(cache.component[i], {k: [] for k in vals})
            for k, v in vals.items():
                d[k].append(float(v[j]))
    table = {c: {k: float(np.mean(v)) for k, v in d.items()} | {"n": len(d["student"])} for c, d in sorted(rows.items())}
    every = {k: [v for d in rows.values() for v in d[k]] for k in ("student", "teacher", "bicubic", "to_teacher")}
    table["all"] = {k: float(np.mean(v)) for k, v in every.items()} | {"n": len(every["student"])}
    return table


def train_tail(student: UGTSRNet, cache: TailCache, train_idx: torch.Tensor, val_idx: torch.Tensor, *, iters: int,
               batch_size: int, lr: float, seed: int, crop: int, unc_weight: float, eval_every: int,
               teacher_weight: float = 1.0, hr_weight: float = 0.0,
               log_path: Path | None, time_limit_min: float | None = None) -> list[dict]:
    scale = student.config.scale
    f = cache.feat.shape[-1] / cache.lq.shape[-1]  # feature pixels per LR pixel (plain: the latent, below 1)
    # the cached maps may be coarser than the LR (the skip student's skip at x2, the plain student's
    # decoder input): windows start and end on whole pixels of each
    maps = [cache.feat] + ([cache.skip] if cache.skip is not None else []) + list(cache.skips or [])
    align = max(max(1, cache.lq.shape[-1] // t.shape[-1]) for t in maps)
    sf = cache.skip.shape[-1] / cache.lq.shape[-1] if cache.skip is not None else 0.0  # skip pixels per LR pixel
    c_lr = crop // scale
    if cache.skips is not None and c_lr % student.config.multiple_of:
        # the plain student runs the decoder's Align-Attention on the window: whole attention windows
        raise ConfigError(f"--crop {crop}: the plain student needs a multiple of {scale * student.config.multiple_of}")
    if crop % (scale * align) or c_lr > cache.lq.shape[-1] or c_lr > cache.lq.shape[-2] or c_lr < 8:
        raise ConfigError(f"--crop {crop}: must be a multiple of {scale * align}, at least {8 * scale} and at most "
                          "the patch size")
    params = [p for n, p in student.named_parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(t, iters) / iters)))
    g = torch.Generator().manual_seed(seed)
    history: list[dict] = []
    start = time.perf_counter()
    with CsvRows(log_path) as log_rows:
        for step in range(1, iters + 1):
            ids = train_idx[torch.randint(len(train_idx), (batch_size,), generator=g)]
            h, w = cache.lq.shape[-2:]
            top = align * int(torch.randint((h - c_lr) // align + 1, (1,), generator=g))
            left = align * int(torch.randint((w - c_lr) // align + 1, (1,), generator=g))
            lq = _window(cache.lq[ids], top, left, c_lr, 1)
            feat = _window(cache.feat[ids], top, left, c_lr, f).float()
            skip = _window(cache.skip[ids], top, left, c_lr, sf).float() if cache.skip is not None else None
            skips = ([_window(t[ids], top, left, c_lr, t.shape[-1] / cache.lq.shape[-1]).float() for t in cache.skips]
                     if cache.skips is not None else None)
            pre_t, out_t, unc_t = (_window(t[ids], top, left, c_lr, scale).float() for t in (cache.pre, cache.out, cache.unc))
            pre, out, unc = student_tail(student, feat, lq, skip, skips)
            loss = teacher_weight * (F.l1_loss(pre, pre_t) + F.l1_loss(out, out_t))
            if hr_weight > 0:
                loss = loss + hr_weight * F.l1_loss(out, _window(cache.hr[ids], top, left, c_lr, scale).float() / 255.0)
            if unc is not None and unc_weight > 0:
                loss = loss + unc_weight * F.l1_loss(unc, unc_t)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            last = step == iters or (time_limit_min is not None and time.perf_counter() - start > 60 * time_limit_min)
            if step % eval_every == 0 or last:
                student.eval()
                table = evaluate(student, cache, val_idx)
                student.train()
                row = {"step": step, "loss": float(loss.detach()), "seconds": round(time.perf_counter() - start, 1),
                       **{f"{c}_{k}": round(v, 4) for c, d in table.items() for k, v in d.items() if k != "n"}}
                history.append(row)
                a = table["all"]
                logger.info("step %d loss %.4f  val PSNR student %.2f / teacher %.2f / bicubic %.2f, to teacher %.2f dB",
                            step, row["loss"], a["student"], a["teacher"], a["bicubic"], a["to_teacher"])
                log_rows.write(row)
            if last:
                break
    return history


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ugtsr.train.distill_tail", description=__doc__.splitlines()[0])
    p.add_argument("--init", required=True, help="the trained model (teacher) checkpoint")
    p.add_argument("--student", choices=STUDENTS, default="tail",
                   help="tail: a sub-pixel last decoder stage; skip: a sub-pixel, added last skip (module doc)")
    p.add_argument("--data", required=True, help="folder of HR training photos")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--mixture", default=",".join(f"{n}={w}" for n, w in MIXTURE_WIDE),
                   help="NAME=P,... over bsrgan, realesrgan, classic, light, clean (default: mixed_wide's)")
    p.add_argument("--cache", type=Path, default=None, metavar="FILE",
                   help="keep the cached teacher runs in FILE (written after the first run, read by later runs with "
                        "the same --init, --student, --data, --samples, --patch-size, --seed and --mixture)")
    p.add_argument("--student-init", type=Path, default=None, metavar="CKPT",
                   help="start the student from this checkpoint (a student of --init, e.g. an earlier run's "
                        "final.pt) instead of building it from the teacher")
    p.add_argument("--samples", type=int, default=1600)
    p.add_argument("--patch-size", type=int, default=256, help="HR patch side")
    p.add_argument("--crop", type=int, default=128, help="HR side of the random training windows")
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--iters", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--unc-weight", type=float, default=0.05, help="weight of the L1 to the teacher's uncertainty map")
    p.add_argument("--teacher-weight", type=float, default=1.0,
                   help="weight of the L1 to the teacher's output before and after the post-filters")
    p.add_argument("--hr-weight", type=float, default=0.0,
                   help="weight of an L1 of the final output to the HR patch (0: distillation only)")
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--time-limit", type=float, default=None, metavar="MIN", help="stop training after MIN minutes")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        mixture = parse_mixture(args.mixture)
        if args.iters < 1 or args.samples < 2:
            raise ConfigError("--iters must be >= 1 and --samples >= 2")
        if not 0 < args.val_fraction < 1:
            raise ConfigError(f"--val-fraction must be in (0, 1), got {args.val_fraction}")
        torch.set_num_threads(args.threads)
        t0 = time.perf_counter()
        teacher = load_checkpoint(args.init).build_model().eval().requires_grad_(False)
        student = build_student(teacher, args.student).eval().requires_grad_(False)
        if args.student_init is not None:
            start = load_checkpoint(args.student_init)
            if start.config != student.config:
                raise ConfigError(f"{args.student_init}: not a '{args.student}' student of {args.init} (its config differs)")
            student.load_state_dict(start.build_model().state_dict())
        trainable = [student.decoder.stages[-1], student.decoder.out_conv]
        if args.student == "plain":  # every decoder stage (the Align-Attention between them stays frozen)
            trainable = [student.decoder.stages, student.decoder.out_conv]
        # the cache's form: the residual student on a teacher with a sub-pixel last skip trains that
        # skip's convolution too
        cache_kind = "skip" if args.student == "skip" or (args.student == "residual" and teacher.config.subpixel_skips) \
            else "plain" if args.student == "plain" else "tail"
        if cache_kind == "skip":
            trainable.append(student.encoder.up[-1])
        if student.lr_tail is not None:
            trainable.append(student.lr_tail)
        if student.uncertainty_head is not None:
            trainable.append(student.uncertainty_head)
        for module in trainable:
            module.requires_grad_(True)
        key = {"init": str(Path(args.init).resolve()), "kind": cache_kind, "data": str(Path(args.data).resolve()),
               "samples": args.samples, "patch_size": args.patch_size, "seed": args.seed,
               "mixture": [list(m) for m in mixture]}
        fields = ("feat", "lq", "pre", "out", "unc", "hr")
        if args.cache is not None and args.cache.is_file():
            saved = torch.load(args.cache, weights_only=True)
            if saved.get("key") != key:
                raise ConfigError(f"{args.cache}: a cache of other settings ({saved.get('key')}); remove it or pass "
                                  "another --cache")
            cache = TailCache(*(saved[k] for k in fields), saved["component"], skip=saved["skip"], skips=saved["skips"])
            logger.info("cache: %d samples from %s", len(cache), args.cache)
        else:
            cache = build_tail_cache(teacher, args.data, samples=args.samples, patch_size=args.patch_size,
                                     seed=args.seed, mixture=mixture, kind=cache_kind)
            if args.cache is not None:
                atomic_torch_save({"key": key, **{k: getattr(cache, k) for k in fields}, "skip": cache.skip,
                                   "skips": cache.skips, "component": cache.component}, args.cache)
        t_cache = time.perf_counter() - t0
        n_val = max(1, int(round(len(cache) * args.val_fraction)))
        idx = torch.arange(len(cache))
        train_idx, val_idx = idx[:-n_val], idx[-n_val:]
        args.out.mkdir(parents=True, exist_ok=True)
        start_table = evaluate(student, cache, val_idx)
        logger.info("student at initialisation: PSNR %.2f (teacher %.2f), to teacher %.2f dB", start_table["all"]["student"],
                    start_table["all"]["teacher"], start_table["all"]["to_teacher"])
        student.train()
        history = train_tail(student, cache, train_idx, val_idx, iters=args.iters, batch_size=args.batch_size, lr=args.lr,
                             seed=args.seed, crop=args.crop, unc_weight=args.unc_weight, eval_every=args.eval_every,
                             teacher_weight=args.teacher_weight, hr_weight=args.hr_weight,
                             log_path=args.out / "log.csv", time_limit_min=args.time_limit)
        student.eval()
        final = evaluate(student, cache, val_idx)
        wall = time.perf_counter() - t0
        meta = {"stage": "sr", "step": int(history[-1]["step"]), "init": str(args.init),
                "trained_by": "ugtsr.train.distill_tail",
                "command": " ".join([p.prog, *(argv if argv is not None else sys.argv[1:])])}
        save_checkpoint(args.out / "final.pt", student, **meta)
        settings = {"command": meta["command"], "student": args.student,
                    "student_init": str(args.student_init) if args.student_init else None, "seed": args.seed, "samples": len(cache), "train_samples": len(train_idx),
                    "val_samples": len(val_idx), "patch_size": args.patch_size, "crop": args.crop, "mixture": dict(mixture),
                    "components": {c: cache.component.count(c) for c in sorted(set(cache.component))},
                    "steps": int(history[-1]["step"]), "batch_size": args.batch_size, "lr": args.lr,
                    "unc_weight": args.unc_weight, "teacher_weight": args.teacher_weight, "hr_weight": args.hr_weight,
                    "threads": args.threads, "cache_seconds": round(t_cache, 1),
                    "wall_seconds": round(wall, 1),
                    "trained_parameters": sum(p.numel() for p in student.parameters() if p.requires_grad),
                    "val_start": start_table, "val_final": final}
        write_json_atomic(args.out / "settings.json", settings)
        logger.info("wrote %s (%d steps, %.0f s, cache %.0f s); val: student %.2f, teacher %.2f, bicubic %.2f, "
                    "to teacher %.2f dB", args.out / "final.pt", settings["steps"], wall, t_cache, final["all"]["student"],
                    final["all"]["teacher"], final["all"]["bicubic"], final["all"]["to_teacher"])
        print(json.dumps({"out": str(args.out), "steps": settings["steps"], "val_final": final["all"]}, indent=1))
    except (UGTSRError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
