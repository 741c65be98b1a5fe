"""The paper's training stages: which model each trains and which parameters it may change.

* ``prior`` -- the HQ VQGAN (scale 1: encoder, codebook, decoder), everything trainable.
* ``uncertainty`` (stage I, eq. 2) -- FeMaSR's nearest matching and additive skips plus the
  uncertainty head; the codebook and the decoder half (quant_out, decoder, out_conv) are frozen.
* ``sr`` (stage II, eq. 3) -- the full preset (Top-k fusion, Align-Attention); codebook, decoder
  half and the uncertainty head (the stage-I model) are frozen.

FeMaSR keeps ``before_quant`` (our ``quant_in``) trainable in its LQ stage; so do we.

``train_decoder`` (stage ``sr`` only; ``python -m ugtsr.train --train-decoder``; not the paper's
protocol): the decoder half (``quant_out``, decoder, ``out_conv``) and the uncertainty head train
too; only the codebook stays frozen. For a small prior whose reconstruction ceiling is low: the
decoder then learns to use the Align-Attention skips of the LQ encoder, not only the codes. The
trainer refits the head with the ESU loss (eq. 2) on the moving model's own errors.

``gate_only`` (stage ``sr``; ``--train-gate-only``; not the paper's): only the fidelity gate trains
(``ugtsr.postfilters.FidelityGate``), on a frozen network: a short last phase that settles the
choice between the restoration and bicubic at a fifth of the cost per step.
"""
from __future__ import annotations

from torch import nn

from .config import UGTSRConfig
from .errors import ConfigError

__all__ = ["STAGES", "stage_config", "trainable_summary", "set_trainable"]

STAGES = ("prior", "uncertainty", "sr")

_FROZEN_PRIOR = ("codebook.", "quant_out.", "decoder.")


def stage_config(config: UGTSRConfig, stage: str) -> UGTSRConfig:
    """The model a stage trains, derived from a preset (e.g. ``tiny_x4``)."""
    if stage == "prior":
        return config if config.is_prior else config.prior_config()
    if config.is_prior:
        raise ConfigError(f"stage '{stage}' needs an SR preset (scale 2 or 4), got the prior '{config.name}'")
    if stage == "uncertainty":
        return config.replace(matching="nearest", skip_fusion="add", uncertainty_head=True)
    if stage == "sr":
        return config
    raise ConfigError(f"unknown stage '{stage}'; choose one of {', '.join(STAGES)}")


def _is_trainable(name: str, stage: str, train_decoder: bool = False, gate_only: bool = False) -> bool:
    if stage == "prior":
        return True
    if gate_only:
        return name.startswith("fidelity_gate.")
    if train_decoder and stage == "sr":
        return not name.startswith("codebook.")
    if name.startswith(_FROZEN_PRIOR):
        return False
    if stage == "sr" and name.startswith("uncertainty_head."):
        return False
    return True


def trainable_summary(model: nn.Module) -> str:
    """Which top-level modules train and which are frozen, read from ``requires_grad`` (for logs and
    ``settings.json``), e.g. ``"trains encoder, quant_in, matcher; frozen codebook, decoder"``."""
    trains: dict[str, None] = {}
    frozen: dict[str, None] = {}
    for name, p in model.named_parameters():
        (trains if p.requires_grad else frozen)[name.split(".", 1)[0]] = None
    groups = {"trains": [m for m in trains if m not in frozen], "partly": [m for m in trains if m in frozen],
              "frozen": [m for m in frozen if m not in trains]}
    return "; ".join(f"{what} {', '.join(mods)}" for what, mods in groups.items() if mods) or "no parameters"


def set_trainable(model: nn.Module, stage: str, *, train_decoder: bool = False, gate_only: bool = False) -> list[str]:
    """Set ``requires_grad`` per the stage; returns the names of the trainable parameters.
    ``train_decoder`` (stage ``sr`` only): everything but the codebook trains; ``gate_only`` (stage
    ``sr`` only): only the fidelity gate trains (module doc)."""
    if stage not in STAGES:
        raise ConfigError(f"unknown stage '{stage}'; choose one of {', '.join(STAGES)}")
    if (train_decoder or gate_only) and stage != "sr":
        raise ConfigError(f"train_decoder / gate_only apply to stage 'sr' only, not '{stage}'")
    if train_decoder and gate_only:
        raise ConfigError("train_decoder and gate_only exclude each other")
    if gate_only and getattr(model, "fidelity_gate", None) is None:
        raise ConfigError("gate_only needs a model with the fidelity gate")
    names = []
    for name, p in model.named_parameters():
        p.requires_grad_(_is_trainable(name, stage, train_decoder, gate_only))
        if p.requires_grad:
            names.append(name)
    return names
