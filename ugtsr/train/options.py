"""Training options: one frozen, validated dataclass, and the argparse parser that builds it.

Paper defaults (§IV-C, Eqs. 14/15): Adam with betas (0.9, 0.99), learning rate 1e-4 for both the
generator and the discriminator, ``λ_adv = 0.1``, codebook loss ``α = 1, β = 0.25``; HR patches of
256 px, batch 32 in total (FeMaSR: 8 per GPU). The options check only what they can check alone;
whether a checkpoint fits the preset is checked when it is loaded (:mod:`ugtsr.train.models`).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from ..config import PRESETS, UGTSRConfig
from ..degrade import PIPELINES
from ..errors import ConfigError
from ..stages import STAGES, stage_config

__all__ = ["TrainOptions", "build_parser", "options_from_args", "DEVICES"]

DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class TrainOptions:
    """Everything one training run needs; written to ``RUN_DIR/settings.json``.

    Paths are strings (plain data). ``batch_size`` is per process: under ``torchrun`` the global
    batch is ``batch_size x world_size``. ``patch_size`` is the HR patch side; the LR patch is
    ``patch_size / scale``.
    """

    stage: str
    preset: str
    data: str
    out: str
    val: str | None = None
    #: ColorFix sigma for the SR stages (None: the preset's, 0 for every preset); see ugtsr.postfilters.ColorFix
    color_fix: float | None = None
    #: add the FidelityGate (ugtsr.postfilters) to the SR stages' model
    fidelity_gate: bool = False
    #: the gate also reads the LR input over 17x17 LR pixels (config fidelity_gate_context)
    fidelity_gate_context: bool = False
    #: the gate also reads an image-level estimate of the degradation (config fidelity_gate_global)
    fidelity_gate_global: bool = False
    #: ablations (Table V): override the preset's matching / skip fusion; stage II's pixel loss
    matching: str | None = None
    skip_fusion: str | None = None
    pixel_loss: str = "udl"
    #: stage sr: train the decoder half and refit the uncertainty head (ESU) too; only the codebook
    #: stays frozen (ugtsr.stages; not the paper's protocol)
    train_decoder: bool = False
    #: stage sr: train only the fidelity gate, on the frozen network (ugtsr.stages)
    train_gate_only: bool = False
    iters: int = 200_000
    batch_size: int = 8
    patch_size: int = 256
    # loss weights (Eqs. 14 / 15)
    pixel_weight: float = 1.0
    perceptual_weight: float = 1.0
    gan_weight: float = 0.1
    codebook_weight: float = 1.0
    udl_plus_one: bool = True
    # optimisation
    lr: float = 1e-4
    lr_d: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.99)
    ema_decay: float = 0.0
    d_features: int = 64
    # initialisation and auxiliary models
    init: str | None = None
    init_femasr: str | None = None
    uncertainty_ckpt: str | None = None
    prior: str | None = None
    #: stage sr without the HQ prior (no GT codes, so no codebook loss): fine-tuning a model whose
    #: prior is not at hand, e.g. the shipped runtime/models/ugtsr_tiny_x4.pt
    no_prior: bool = False
    resume: str | None = None
    vgg_weights: str | None = None
    # data
    pipeline: str = "bsrgan"
    num_workers: int = 0
    val_crop: int = 256
    overfit_batch: bool = False
    # run control
    device: str = "auto"
    seed: int = 0
    threads: int | None = None
    save_every: int = 5000
    #: stop (and write final.pt) once this many minutes of training have passed; 0 = no limit.
    #: The step reached is recorded; a run stopped this way is not comparable step-for-step.
    time_limit: float = 0.0
    val_every: int = 5000
    log_every: int = 100
    tensorboard: bool = True
    quiet: bool = False

    def __post_init__(self) -> None:
        def bad(msg: str) -> None:
            raise ConfigError(f"invalid training option: {msg}")

        if isinstance(self.betas, list):
            object.__setattr__(self, "betas", tuple(self.betas))
        if self.stage not in STAGES:
            bad(f"--stage must be one of {', '.join(STAGES)}, got {self.stage!r}")
        if self.preset not in PRESETS:
            bad(f"unknown --preset {self.preset!r}; choose one of {', '.join(PRESETS)}")
        if PRESETS[self.preset].is_prior and self.stage != "prior":
            bad(f"--preset {self.preset} is an HQ prior; --stage {self.stage} needs an SR preset (e.g. tiny_x4)")
        if (self.color_fix is not None or self.wants_gate) and self.stage == "prior":
            bad("--color-fix and --fidelity-gate apply to the SR stages (uncertainty, sr), not to the prior")
        if (self.matching is not None or self.skip_fusion is not None) and self.stage == "prior":
            bad("--matching and --skip-fusion apply to the SR stages (uncertainty, sr), not to the prior")
        if self.matching not in (None, "nearest", "topk"):
            bad(f"--matching must be nearest or topk, got {self.matching!r}")
        if self.skip_fusion not in (None, "add", "align_attention"):
            bad(f"--skip-fusion must be add or align_attention, got {self.skip_fusion!r}")
        if self.pixel_loss not in ("udl", "l1"):
            bad(f"--pixel-loss must be udl or l1, got {self.pixel_loss!r}")
        if self.pixel_loss != "udl" and self.stage != "sr":
            bad("--pixel-loss applies to --stage sr only")
        if self.train_decoder and self.stage != "sr":
            bad("--train-decoder applies to --stage sr only")
        if self.train_gate_only and self.stage != "sr":
            bad("--train-gate-only applies to --stage sr only")
        if self.train_gate_only and self.train_decoder:
            bad("--train-gate-only and --train-decoder exclude each other")
        if self.train_gate_only and not self.wants_gate:
            bad("--train-gate-only needs the gate: pass --fidelity-gate (and --fidelity-gate-context if the model has it)")
        try:  # the config validates the values (one place for their bounds)
            self.model_preset()
        except ConfigError as exc:
            bad(f"--color-fix / --fidelity-gate / --matching / --skip-fusion: {exc}")
        for name in ("iters", "batch_size", "patch_size", "save_every", "log_every", "d_features"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                bad(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
        for name in ("val_every", "num_workers", "val_crop", "seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                bad(f"--{name.replace('_', '-')} must be a non-negative integer, got {value!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            bad(f"--threads must be a positive integer, got {self.threads!r}")
        for name in ("pixel_weight", "perceptual_weight", "gan_weight", "codebook_weight"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not value >= 0:
                bad(f"--{name.replace('_', '-')} must be >= 0, got {value!r}")
        for name in ("lr", "lr_d"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not value > 0:
                bad(f"--{name.replace('_', '-')} must be > 0, got {value!r}")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            bad(f"--betas must be two numbers in [0, 1), got {self.betas}")
        if not 0.0 <= self.ema_decay < 1.0:
            bad(f"--ema-decay must be in [0, 1) (0 disables EMA), got {self.ema_decay}")
        if self.device not in DEVICES:
            bad(f"--device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        if self.pipeline not in PIPELINES:
            bad(f"--pipeline must be one of {', '.join(PIPELINES)}, got {self.pipeline!r}")
        self._check_stage_flags(bad)
        self._check_patch(bad)

    @property
    def wants_gate(self) -> bool:
        """Any of ``--fidelity-gate``, ``--fidelity-gate-context``, ``--fidelity-gate-global`` (the last
        two imply the first)."""
        return self.fidelity_gate or self.fidelity_gate_context or self.fidelity_gate_global

    def model_preset(self) -> UGTSRConfig:
        """The preset with this run's model options applied (``--color-fix``, ``--fidelity-gate``,
        ``--matching``, ``--skip-fusion``)."""
        changes: dict[str, Any] = {}
        if self.matching is not None:
            changes["matching"] = self.matching
        if self.skip_fusion is not None:
            changes["skip_fusion"] = self.skip_fusion
        if self.color_fix is not None:
            changes["color_fix_sigma"] = float(self.color_fix)
        if self.wants_gate:
            changes["fidelity_gate"] = True
        if self.fidelity_gate_context:
            changes["fidelity_gate_context"] = True
        if self.fidelity_gate_global:
            changes["fidelity_gate_global"] = True
        preset = PRESETS[self.preset]
        changes.update(self._init_decoder_tail(preset))
        return preset.replace(**changes) if changes else preset

    def _init_decoder_tail(self, preset: UGTSRConfig) -> dict[str, Any]:
        """The sub-pixel/norm-free architecture of an SR ``--init`` checkpoint (``subpixel_stages``,
        ``plain_stages``, ``subpixel_skips``) where it differs from the preset's: fine-tuning the
        shipped default model (a sub-pixel, norm-free last stage; from the fifth x4 release a sub-pixel
        last skip) keeps those parts instead of failing on their shapes."""
        if not self.init or self.stage == "prior":
            return {}
        from ..checkpoint import load_checkpoint
        from ..errors import CheckpointError

        try:
            cfg = load_checkpoint(self.init).config
        except CheckpointError:
            return {}  # a FeMaSR file or an unreadable one: the model loaders report it
        if cfg.is_prior:
            return {}
        return {f: getattr(cfg, f) for f in ("subpixel_stages", "plain_stages", "subpixel_skips") if getattr(cfg, f) != getattr(preset, f)}

    def _check_stage_flags(self, bad: Any) -> None:
        if self.stage == "prior":
            for name in ("init", "init_femasr", "uncertainty_ckpt", "prior"):
                if getattr(self, name) is not None:
                    bad(f"--{name.replace('_', '-')} is not used by --stage prior (it trains the HQ prior from scratch; "
                        "use --resume to continue a run)")
        if self.init is not None and self.init_femasr is not None:
            bad("give either --init or --init-femasr, not both")
        if self.init_femasr is not None and self.stage != "uncertainty":
            bad("--init-femasr (FeMaSR's released prior) initialises --stage uncertainty only")
        if self.uncertainty_ckpt is not None and self.stage != "sr":
            bad("--uncertainty-ckpt is used by --stage sr only")
        if self.no_prior and self.stage != "sr":
            bad("--no-prior applies to --stage sr only (stage I needs the prior's GT codes)")
        if self.no_prior and self.prior is not None:
            bad("give either --prior or --no-prior, not both")
        if self.no_prior and PRESETS[self.preset].matching == "codeformer":
            bad("--no-prior: the CodeFormer matcher is trained on the prior's GT code indices")

    def _check_patch(self, bad: Any) -> None:
        preset = PRESETS[self.preset]
        # The HR patch feeds the prior encoder (stride 8) and the discriminator (three stride-2
        # stages): a multiple of 8. The LR patch must need no padding so that the LR code map and
        # the GT code map (HR / 8) line up position by position.
        if self.patch_size % 8:
            bad(f"--patch-size must be a multiple of 8, got {self.patch_size}")
        if self.stage == "prior":
            return
        multiple = max(stage_config(preset, s).multiple_of for s in ("uncertainty", "sr"))
        step = preset.scale * multiple
        if self.patch_size % step:
            bad(f"--patch-size {self.patch_size} does not fit {self.preset}: the LR patch (patch/{preset.scale}) "
                f"must be a multiple of {multiple}, so use a multiple of {step} (e.g. {max(step, self.patch_size // step * step)})")

    # --- plain data ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in dataclasses.fields(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def replace(self, **changes: Any) -> TrainOptions:
        return dataclasses.replace(self, **changes)


def build_parser() -> argparse.ArgumentParser:
    d = TrainOptions.__dataclass_fields__
    p = argparse.ArgumentParser(
        prog="python -m ugtsr.train",
        description="Train the UGTSR stages: the HQ prior (VQGAN), stage I (uncertainty, ESU loss) and "
                    "stage II (Top-k + Align-Attention, UDL loss). Multi-process: launch with torchrun.",
    )
    g = p.add_argument_group("what to train")
    g.add_argument("--stage", required=True, choices=STAGES)
    g.add_argument("--preset", required=True, help=f"model preset: {', '.join(n for n, c in PRESETS.items() if not c.is_prior)}")
    g.add_argument("--color-fix", type=float, default=None, metavar="SIGMA",
                   help="take the output's low band (Gaussian SIGMA output pixels) from the LR input, in training "
                        "and in the exported model (ugtsr.postfilters.ColorFix; not in the paper); default: the preset's (off)")
    g.add_argument("--fidelity-gate", action="store_true",
                   help="add a learned per-pixel blend of the output with bicubic(LR) (ugtsr.postfilters.FidelityGate; "
                        "not in the paper)")
    g.add_argument("--fidelity-gate-context", action="store_true",
                   help="the fidelity gate also reads the LR input over 17x17 LR pixels (implies --fidelity-gate)")
    g.add_argument("--fidelity-gate-global", action="store_true",
                   help="the fidelity gate also reads an image-level estimate of the degradation (LR features "
                        "averaged over the input; implies --fidelity-gate)")
    g.add_argument("--matching", choices=("nearest", "topk"), default=None,
                   help="override the preset's code matching (ablations, Table V)")
    g.add_argument("--skip-fusion", choices=("add", "align_attention"), default=None,
                   help="override the preset's skip fusion: FeMaSR's add or Align-Attention (ablations, Table V)")
    g.add_argument("--train-decoder", action="store_true",
                   help="stage sr: train the decoder half too and refit the uncertainty head with ESU; only the "
                        "codebook stays frozen (for a small prior with a low ceiling; not the paper's protocol)")
    g.add_argument("--train-gate-only", action="store_true",
                   help="stage sr: train only the fidelity gate, on the frozen network (a short last phase)")
    g.add_argument("--data", required=True, help="folder of HR images (or with lq/ and gt/ sub-folders of pairs)")
    g.add_argument("--out", required=True, help="run folder (checkpoints, log.csv, settings.json, TensorBoard)")
    g.add_argument("--val", default=None, help="validation folder: HR images (degraded with a fixed seed) or lq/ + gt/")
    g.add_argument("--iters", type=int, default=d["iters"].default)
    g.add_argument("--time-limit", type=float, default=0.0, metavar="MINUTES",
                   help="stop early after this many minutes of training (single process only; 0 = off)")
    g.add_argument("--batch-size", type=int, default=d["batch_size"].default, help="per process (default %(default)s)")
    g.add_argument("--patch-size", type=int, default=d["patch_size"].default, help="HR patch side (default %(default)s)")
    g = p.add_argument_group("losses")
    g.add_argument("--pixel-weight", type=float, default=d["pixel_weight"].default,
                   help="L1 (prior, stage I) / UDL (stage II) weight")
    g.add_argument("--perceptual-weight", type=float, default=d["perceptual_weight"].default,
                   help="VGG-19 perceptual loss weight; 0 needs no VGG weights")
    g.add_argument("--gan-weight", type=float, default=d["gan_weight"].default,
                   help="λ_adv (default %(default)s); 0 trains without a discriminator")
    g.add_argument("--codebook-weight", type=float, default=d["codebook_weight"].default)
    g.add_argument("--pixel-loss", choices=("udl", "l1"), default="udl",
                   help="stage II pixel loss: UDL (eq. 3, default) or plain L1 (the ablation baseline)")
    g.add_argument("--udl-no-plus-one", dest="udl_plus_one", action="store_false",
                   help="UDL weights s - min(s) exactly as the paper writes (default: +1, as UDL's code)")
    g.add_argument("--vgg-weights", default=None, help="torchvision's vgg19-dcbb9e9d.pth (never downloaded)")
    g = p.add_argument_group("optimisation")
    g.add_argument("--lr", type=float, default=d["lr"].default, help="generator learning rate")
    g.add_argument("--lr-d", type=float, default=d["lr_d"].default, help="discriminator learning rate")
    g.add_argument("--betas", type=float, nargs=2, default=list(d["betas"].default), metavar=("B1", "B2"))
    g.add_argument("--ema-decay", type=float, default=d["ema_decay"].default, help="0 disables the EMA copy")
    g.add_argument("--d-features", type=int, default=d["d_features"].default, help="discriminator width (FeMaSR: 64)")
    g = p.add_argument_group("initialisation")
    g.add_argument("--init", default=None,
                   help="prior checkpoint (stage I), or stage-I or stage-II checkpoint (stage II; e.g. the shipped "
                        "runtime/models/ugtsr_tiny_x4.pt)")
    g.add_argument("--init-femasr", default=None, help="FeMaSR's released prior (FeMaSR_HRP_model_g.pth) for stage I")
    g.add_argument("--uncertainty-ckpt", default=None,
                   help="model whose frozen uncertainty head supplies s for UDL: stage I or II (default: --init)")
    g.add_argument("--prior", default=None, help="HQ prior giving the GT codes (default: from the --init checkpoint)")
    g.add_argument("--no-prior", action="store_true",
                   help="stage sr without the HQ prior: no codebook loss (to fine-tune a model whose prior you "
                        "do not have, e.g. runtime/models/ugtsr_tiny_x4.pt)")
    g.add_argument("--resume", default=None, help="'auto' (RUN_DIR/latest.pt if present) or a state file")
    g = p.add_argument_group("data")
    g.add_argument("--pipeline", default=d["pipeline"].default, choices=sorted(PIPELINES))
    g.add_argument("--num-workers", type=int, default=d["num_workers"].default)
    g.add_argument("--val-crop", type=int, default=d["val_crop"].default,
                   help="centre-crop validation HR images to this side (0: whole images)")
    g.add_argument("--overfit-batch", action="store_true",
                   help="debug: train on the first batch at every step (a model that cannot fit it is broken)")
    g = p.add_argument_group("run control")
    g.add_argument("--device", default=d["device"].default, choices=DEVICES)
    g.add_argument("--seed", type=int, default=d["seed"].default)
    g.add_argument("--threads", type=int, default=None, help="torch CPU threads per process")
    g.add_argument("--save-every", type=int, default=d["save_every"].default)
    g.add_argument("--val-every", type=int, default=d["val_every"].default, help="0: validate only at the end")
    g.add_argument("--log-every", type=int, default=d["log_every"].default)
    g.add_argument("--no-tensorboard", dest="tensorboard", action="store_false")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def options_from_args(ns: argparse.Namespace) -> TrainOptions:
    values = {f.name: getattr(ns, f.name) for f in dataclasses.fields(TrainOptions) if hasattr(ns, f.name)}
    values["betas"] = tuple(values["betas"])
    return TrainOptions(**values)
