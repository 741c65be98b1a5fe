"""The networks of each training stage, their initialisation and the checks on the files given.

* ``prior``: the HQ VQGAN ``stage_config(preset, "prior")``, random init.
* ``uncertainty`` (stage I): ``stage_config(preset, "uncertainty")``. Its codebook, ``quant_out`` and
  decoder (the frozen "decoder half") and ``quant_in`` come from the HQ prior (``--init`` a prior
  checkpoint, or ``--init-femasr`` FeMaSR's released prior). FeMaSR also inherits ``before_quant``
  (our ``quant_in``, trainable) from its prior by name and shape (FeMaSR's ``femasr_model.py`` loads
  ``pretrain_network_hq`` into the LQ network with ``strict=False``; github.com/chaofengc/FeMaSR
  @ 1ca4295); so do we.
  The prior's encoder is *not* the LQ encoder (it sees HR images): it stays in a separate frozen
  copy, the ``prior`` model, which gives the GT codes ``z_gt = q[E(I_hr), Z]`` (Eq. 13).
* ``sr`` (stage II): the full preset. ``--init`` (a stage-I checkpoint) fills every tensor that
  exists with the same shape; the Top-k fusion and Align-Attention start fresh (logged). A frozen
  copy of the stage-I model (``--uncertainty-ckpt``, default ``--init``) supplies ``s`` for UDL.
  ``--init`` may also be a stage-II checkpoint (fine-tuning, e.g. the shipped
  ``runtime/models/ugtsr_tiny_x4.pt``): its uncertainty head is frozen in stage II, so it is its own
  uncertainty model. ``--no-prior`` trains without the HQ prior (no codebook loss), for a model
  whose prior is not at hand. An ``--init`` with the colour fix or fidelity gate needs them in the
  run's model too (``--color-fix``, ``--fidelity-gate``), or they would be dropped silently.

Where a file is not what a stage expects (an SR checkpoint given as a prior, other widths, another
scale) a :class:`~ugtsr.errors.CheckpointError` names the file, what it holds and what was expected.
"""
from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checkpoint import Checkpoint, load_checkpoint, load_matching
from ..config import UGTSRConfig
from ..discriminator import UNetDiscriminatorSN
from ..errors import CheckpointError
from ..femasr import load_femasr, load_femasr_prior
from ..model import UGTSRNet, build_model
from ..stages import set_trainable, stage_config

__all__ = ["StageModels", "build_stage_models", "frozen_copy", "PRIOR_HALF"]

logger = logging.getLogger(__name__)

#: tensors copied from the HQ prior into stage I (codebook + decoder half, and quant_in as FeMaSR does)
PRIOR_HALF = ("codebook.", "quant_out.", "decoder.", "quant_in.")
#: config fields that fix the shapes of the prior half
_PRIOR_FIELDS = ("channels", "norm_groups", "norm_eps", "codebook_size", "codebook_dim")
#: config fields that fix the shapes shared by stage I and stage II
_SHARED_FIELDS = (*_PRIOR_FIELDS, "scale", "swin_depths", "swin_heads", "swin_window", "swin_mlp_ratio",
                  "uncertainty_hidden")


@dataclass
class StageModels:
    """What a stage trains (``model``, ``discriminator``) and the frozen helpers it reads from."""

    model: UGTSRNet
    prior: UGTSRNet | None = None  # frozen HQ prior: GT codes (stages uncertainty, sr)
    uncertainty: UGTSRNet | None = None  # frozen stage-I model: s for UDL (stage sr)
    discriminator: nn.Module | None = None
    prior_source: str | None = None
    uncertainty_source: str | None = None
    init_source: str | None = None
    notes: list[str] = field(default_factory=list)


def frozen_copy(model: UGTSRNet) -> UGTSRNet:
    """An eval-mode copy with ``requires_grad=False`` everywhere."""
    twin = copy.deepcopy(model).eval()
    twin.requires_grad_(False)
    return twin


def _freeze(model: UGTSRNet) -> UGTSRNet:
    model.eval()
    model.requires_grad_(False)
    return model


def _describe(ckpt: Checkpoint) -> str:
    stage = ckpt.metadata.get("stage")
    what = f"a --stage {stage} checkpoint" if stage else "a checkpoint"
    return f"{what} of '{ckpt.config.name}' (scale {ckpt.config.scale})"


def _field_diff(got: UGTSRConfig, want: UGTSRConfig, fields: tuple[str, ...]) -> str:
    diffs = [f"{f} {getattr(got, f)} (expected {getattr(want, f)})" for f in fields if getattr(got, f) != getattr(want, f)]
    return ", ".join(diffs)


def _abs(path: str | Path) -> str:
    return str(Path(path).resolve())


# --- the HQ prior ---------------------------------------------------------------------------------
def _is_femasr_file(exc: CheckpointError) -> bool:
    return "FeMaSR" in str(exc)


def load_prior(path: str | Path, preset: UGTSRConfig, *, flag: str) -> tuple[UGTSRNet, str]:
    """The frozen HQ prior in ``path`` (a ``--stage prior`` checkpoint or FeMaSR's HRP ``.pth``).

    Returns ``(model, format)`` with format ``"ugtsr"`` or ``"femasr"``.
    """
    want = stage_config(preset, "prior")
    try:
        ckpt = load_checkpoint(path)
    except CheckpointError as exc:
        if not _is_femasr_file(exc):
            raise
        model = load_femasr(path)
        if not model.config.is_prior:
            raise CheckpointError(
                f"{path}: FeMaSR's x{model.config.scale} generator has no HQ encoder, so it cannot give the GT codes; "
                f"{flag} needs the HQ prior (FeMaSR_HRP_model_g.pth)") from None
        fmt = "femasr"
    else:
        if not ckpt.config.is_prior:
            raise CheckpointError(f"{path}: is {_describe(ckpt)}; {flag} expects an HQ prior checkpoint "
                                  f"(from --stage prior, scale 1) for preset '{preset.name}'")
        model, fmt = ckpt.build_model(), "ugtsr"
    diff = _field_diff(model.config, want, _PRIOR_FIELDS)
    if diff:
        raise CheckpointError(f"{path}: the prior's widths do not fit preset '{preset.name}': {diff}")
    return _freeze(model), fmt


def _copy_prior_half(model: UGTSRNet, prior: UGTSRNet) -> int:
    source = prior.state_dict()
    wanted = {k: v for k, v in source.items() if k.startswith(PRIOR_HALF)}
    missing, unexpected = model.load_state_dict(wanted, strict=False)
    if unexpected:
        raise CheckpointError(f"prior tensors without a place in the model: {', '.join(unexpected[:5])}")
    return len(wanted)


# --- stage I --------------------------------------------------------------------------------------
def _uncertainty_models(options: Any, preset: UGTSRConfig, resume_meta: dict, load_init: bool) -> StageModels:
    model = build_model(stage_config(preset, "uncertainty"))
    notes: list[str] = []
    continued = _continued_stage1(options, preset, resume_meta, load_init, model)
    if continued is not None:
        return continued
    prior_path = options.prior or options.init or options.init_femasr or resume_meta.get("prior_checkpoint")
    if prior_path is None:
        raise CheckpointError("--stage uncertainty needs the HQ prior: pass --init PRIOR_CKPT (from --stage prior) "
                              "or --init-femasr FeMaSR_HRP_model_g.pth")
    prior_flag = "--prior" if options.prior else ("--init" if options.init else "--init-femasr")
    prior, fmt = load_prior(prior_path, preset, flag=prior_flag)
    init_source = options.init or options.init_femasr
    if load_init and init_source is not None:
        if options.init_femasr is not None:
            load_femasr_prior(model, options.init_femasr)
            notes.append(f"codebook and decoder from FeMaSR file {options.init_femasr}")
            # FeMaSR keeps its prior's before_quant; take it from the HQ prior when we have one
            model.quant_in.load_state_dict(prior.quant_in.state_dict())
        else:
            init_prior = prior if options.prior is None else load_prior(options.init, preset, flag="--init")[0]
            n = _copy_prior_half(model, init_prior)
            notes.append(f"{n} tensors (codebook, quant_in, quant_out, decoder) from {options.init}")
        if not torch.equal(model.codebook.embedding, prior.codebook.embedding):
            logger.warning("the GT-code prior %s has another codebook than the model's init; the codebook loss "
                           "then pulls towards codes the decoder does not use", prior_path)
    return StageModels(model=model, prior=prior, prior_source=_abs(prior_path), init_source=init_source and _abs(init_source),
                       notes=notes + [f"GT codes from the {fmt} prior {prior_path}"])


def _continued_stage1(options: Any, preset: UGTSRConfig, resume_meta: dict, load_init: bool,
                      model: UGTSRNet) -> StageModels | None:
    """Stage I from a stage-I or stage-II checkpoint of the same preset (``--init``): continue or
    re-estimate the uncertainty head on an already trained encoder. The GT-code prior comes from
    ``--prior`` or the checkpoint's ``prior_checkpoint``. None when ``--init`` is a prior."""
    if not options.init:
        return None
    try:
        ckpt = load_checkpoint(options.init)
    except CheckpointError:
        return None  # a FeMaSR file or an unreadable one: the prior path reports it
    if ckpt.config.is_prior:
        return None
    _check_shared(ckpt, preset, "--init")
    prior_path = options.prior or resume_meta.get("prior_checkpoint") or ckpt.metadata.get("prior_checkpoint")
    if prior_path is None:
        raise CheckpointError(f"{options.init}: records no prior_checkpoint; pass the HQ prior with --prior")
    prior, fmt = load_prior(prior_path, preset, flag="--prior")
    notes = []
    if load_init:
        fresh = load_matching(model, ckpt.state_dict)
        notes.append(f"stage I continued from {options.init} ({_describe(ckpt)}); newly initialised: {_summarise(fresh)}")
    if not torch.equal(model.codebook.embedding, prior.codebook.embedding):
        raise CheckpointError(f"{prior_path}: has another codebook than {options.init}; pass the prior it was trained with")
    return StageModels(model=model, prior=prior, prior_source=_abs(prior_path), init_source=_abs(options.init),
                       notes=notes + [f"GT codes from the {fmt} prior {prior_path}"])


# --- stage II -------------------------------------------------------------------------------------
def _check_shared(ckpt: Checkpoint, preset: UGTSRConfig, flag: str) -> None:
    if ckpt.config.is_prior:
        raise CheckpointError(f"{ckpt.path}: is {_describe(ckpt)}, an HQ prior; {flag} expects a --stage uncertainty "
                              f"checkpoint of preset '{preset.name}' (train stage I with --init on the prior first)")
    diff = _field_diff(ckpt.config, stage_config(preset, "uncertainty"), _SHARED_FIELDS)
    if diff:
        raise CheckpointError(f"{ckpt.path}: is {_describe(ckpt)} and does not fit preset '{preset.name}': {diff}")


def _summarise(keys: list[str]) -> str:
    groups: dict[str, int] = {}
    for k in keys:
        parts = k.split(".")
        prefix = ".".join(parts[:2]) if len(parts) > 2 else parts[0]
        groups[prefix] = groups.get(prefix, 0) + 1
    return ", ".join(f"{p} ({n})" for p, n in sorted(groups.items())) or "nothing"


def _sr_models(options: Any, preset: UGTSRConfig, resume_meta: dict, load_init: bool) -> StageModels:
    model = build_model(stage_config(preset, "sr"))
    notes: list[str] = []
    init = load_checkpoint(options.init) if options.init else None
    if init is not None:
        _check_shared(init, preset, "--init")
        _check_post_filters(init, model)
        if load_init:
            fresh = load_matching(model, init.state_dict)
            notes.append(f"weights from {options.init}; newly initialised: {_summarise(fresh)}")
    # the model that supplies s (UDL, Eq. 3): a stage-I model, or a stage-II checkpoint with its
    # uncertainty head (frozen in stage II, so its s is the stage-I head's s it was trained with)
    if options.uncertainty_ckpt:
        unc_path, unc_flag = options.uncertainty_ckpt, "--uncertainty-ckpt"
    elif init is not None:
        unc_path, unc_flag = options.init, "--init"
    else:
        unc_path, unc_flag = resume_meta.get("uncertainty_checkpoint"), "the resumed run's uncertainty_checkpoint"
    if unc_path is None:
        raise CheckpointError("--stage sr needs a model with an uncertainty head: pass --init CKPT (from --stage "
                              "uncertainty, or a stage-II checkpoint such as runtime/models/ugtsr_tiny_x4.pt)")
    unc_ckpt = init if (init is not None and unc_path == options.init) else load_checkpoint(unc_path)
    _check_shared(unc_ckpt, preset, unc_flag)
    if not unc_ckpt.config.uncertainty_head:
        raise CheckpointError(f"{unc_path}: is {_describe(unc_ckpt)} without an uncertainty head; {unc_flag} must "
                              "supply s for UDL: a --stage uncertainty or --stage sr checkpoint")
    uncertainty = _freeze(unc_ckpt.build_model())
    if load_init and model.uncertainty_head is not None:
        # The SR model's (frozen) head is the uncertainty model's head, whatever --init was, so the
        # confidence map of the result is the one stage I learned.
        model.uncertainty_head.load_state_dict(uncertainty.uncertainty_head.state_dict())
        if unc_ckpt is not init:
            notes.append(f"uncertainty head from {unc_path}")
    prior, prior_path, fmt = _sr_prior(options, preset, resume_meta, unc_ckpt, unc_path)
    if prior is None:
        notes.append(f"s from {unc_path}; no HQ prior (--no-prior): no codebook loss")
    else:
        notes.append(f"s from {unc_path}; GT codes from the {fmt} prior {prior_path}")
    return StageModels(model=model, prior=prior, uncertainty=uncertainty, prior_source=prior_path and _abs(prior_path),
                       uncertainty_source=_abs(unc_path), init_source=options.init and _abs(options.init), notes=notes)


def _check_post_filters(init: Checkpoint, model: UGTSRNet) -> None:
    """``--init`` must not silently lose the colour fix / fidelity gate (and its LR context) it was
    trained with (adding them to a model that lacks them is fine: the gate and its context start
    closed, the colour fix has no weights)."""
    got, want = init.config, model.config
    lost = []
    if got.color_fix_sigma and not want.color_fix_sigma:
        lost.append(("the colour fix", f"--color-fix {got.color_fix_sigma:g}"))
    if got.fidelity_gate and not want.fidelity_gate:
        lost.append(("the fidelity gate", "--fidelity-gate"))
    if got.fidelity_gate_context and not want.fidelity_gate_context:
        lost.append(("the gate's LR context", "--fidelity-gate-context"))
    if got.fidelity_gate_global and not want.fidelity_gate_global:
        lost.append(("the gate's image-level estimate", "--fidelity-gate-global"))
    if lost:
        raise CheckpointError(
            f"{init.path}: has {' and '.join(w for w, _ in lost)}, which this run's model lacks; "
            f"pass {' '.join(f for _, f in lost)} to keep {'them' if len(lost) > 1 else 'it'}")


def _sr_prior(options: Any, preset: UGTSRConfig, resume_meta: dict, unc_ckpt: Checkpoint,
              unc_path: str) -> tuple[UGTSRNet | None, str | None, str]:
    """The HQ prior giving the GT codes: ``--prior``, else the one the resumed run recorded, else the one
    the model that supplies ``s`` recorded (``--uncertainty-ckpt``, by default ``--init``).
    ``--no-prior``: none (the codebook loss is left out)."""
    if options.no_prior:
        return None, None, ""
    prior_path = (options.prior or resume_meta.get("prior_checkpoint")
                  or unc_ckpt.metadata.get("prior_checkpoint"))
    if prior_path is None:
        raise CheckpointError(f"{unc_path}: records no prior_checkpoint; pass the HQ prior with --prior, or "
                              "--no-prior to train without the codebook loss")
    if options.prior is None and not Path(prior_path).is_file():
        raise CheckpointError(f"{prior_path}: the HQ prior recorded in {unc_path} is not there; pass it with "
                              "--prior, or --no-prior to train without the codebook loss (e.g. to fine-tune a "
                              "shipped model, whose prior is not shipped)")
    prior, fmt = load_prior(prior_path, preset, flag="--prior")
    return prior, prior_path, fmt


def _discriminator(options: Any, models: StageModels, load_init: bool) -> None:
    if options.gan_weight <= 0:
        return
    d = UNetDiscriminatorSN(num_feat=options.d_features)
    if load_init and models.init_source and options.init:
        # FeMaSR starts the LQ stage's D from the prior's D: final.pt carries it (training_state)
        ts = load_checkpoint(options.init).training_state or {}
        state = ts.get("discriminator")
        if isinstance(state, dict):
            fresh = load_matching(d, state)
            if fresh:
                models.notes.append(f"discriminator: {len(fresh)} tensors do not fit {options.init}, left random")
            else:
                models.notes.append(f"discriminator from {options.init}")
    models.discriminator = d


def build_stage_models(options: Any, preset: UGTSRConfig, *, resume_meta: dict | None = None,
                       load_init: bool = True) -> StageModels:
    """Build (and initialise unless ``load_init`` is False, e.g. when resuming) a stage's models.

    The trainable model gets ``requires_grad`` per :func:`ugtsr.stages.set_trainable`.
    ``resume_meta``: metadata of the state being resumed (fallback sources of the prior and
    stage-I model). The caller seeds torch first so that every rank builds identical weights.
    """
    resume_meta = resume_meta or {}
    if options.stage == "prior":
        models = StageModels(model=build_model(stage_config(preset, "prior")))
    elif options.stage == "uncertainty":
        models = _uncertainty_models(options, preset, resume_meta, load_init)
    else:
        models = _sr_models(options, preset, resume_meta, load_init)
    set_trainable(models.model, options.stage, train_decoder=options.train_decoder, gate_only=options.train_gate_only)
    # --train-decoder: the head's ESU loss trains the head only (ugtsr.model.UGTSRNet.detach_uncertainty_input)
    models.model.detach_uncertainty_input = bool(options.train_decoder)
    _discriminator(options, models, load_init)
    return models
