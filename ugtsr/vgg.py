"""VGG-19 feature extractor (Simonyan & Zisserman, arXiv 1409.1556), the Φ of UGTSR Eq. 11.

The module reproduces torchvision's ``vgg19().features`` layout module for module (indices 0..36:
16 convs, each followed by a ReLU, and 5 max-pools), so the ImageNet weights that torchvision ships
as ``vgg19-dcbb9e9d.pth`` load with their own key names (``features.N.weight`` / ``features.N.bias``).
torchvision itself is not used (it does not install beside this torch).

The weights are never downloaded: :func:`load_vgg19_weights` reads an explicit file or the file
torchvision would have cached under ``torch.hub.get_dir()/checkpoints``; anything else raises a
:class:`~ugtsr.errors.ConfigError` whose one line says how to provide the file.

Layer names follow BasicSR's ``NAMES['vgg19']`` (``conv1_1``, ``relu1_1``, ..., ``pool5``), so a
layer can be requested by name: ``conv3_4`` is the pre-activation output of the 8th convolution.
The ReLUs are *not* in-place, so a requested ``convX_Y`` output stays pre-activation.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import nn

from ugtsr.errors import CheckpointError, ConfigError

__all__ = [
    "VGG19_LAYER_NAMES",
    "VGG19_WEIGHTS_FILENAME",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "VGG19Features",
    "default_vgg19_weights_path",
    "load_vgg19_weights",
    "vgg19_features",
]

logger = logging.getLogger(__name__)

#: torchvision's file name for the ImageNet VGG-19 weights (``VGG19_Weights.IMAGENET1K_V1``).
VGG19_WEIGHTS_FILENAME = "vgg19-dcbb9e9d.pth"

#: ImageNet channel statistics for RGB inputs in [0, 1] (torchvision / BasicSR convention).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# torchvision cfg "E": an int is a 3x3 conv (+ReLU) with that many output channels, "M" a 2x2 max-pool.
_CFG_E = (
    64,
    64,
    "M",
    128,
    128,
    "M",
    256,
    256,
    256,
    256,
    "M",
    512,
    512,
    512,
    512,
    "M",
    512,
    512,
    512,
    512,
    "M",
)


def _layer_names() -> tuple[str, ...]:
    names: list[str] = []
    block, conv = 1, 1
    for item in _CFG_E:
        if item == "M":
            names.append(f"pool{block}")
            block, conv = block + 1, 1
        else:
            names += [f"conv{block}_{conv}", f"relu{block}_{conv}"]
            conv += 1
    return tuple(names)


#: Name of each module of ``VGG19Features.features``, by index (37 entries, ``conv1_1`` .. ``pool5``).
VGG19_LAYER_NAMES: tuple[str, ...] = _layer_names()
_NAME_TO_INDEX = {name: i for i, name in enumerate(VGG19_LAYER_NAMES)}


class VGG19Features(nn.Module):
    """VGG-19 convolutional trunk with torchvision's ``features.N`` parameter names.

    ``forward(x, layers)`` takes ``(B, 3, H, W)`` float RGB; with ``normalize_input=True`` (default)
    ``x`` must be in [0, 1] and is normalised with the ImageNet mean/std first (these are
    non-persistent buffers, so the state dict holds exactly the 32 ``features.N.weight/bias`` keys).
    It returns ``{name: feature}`` for the requested layer names and stops after the deepest one.
    The weights start random (PyTorch default init); use :func:`vgg19_features` for ImageNet ones.
    """

    def __init__(self, *, normalize_input: bool = True) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 3
        for item in _CFG_E:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(in_ch, int(item), kernel_size=3, padding=1), nn.ReLU(inplace=False)]
                in_ch = int(item)
        self.features = nn.Sequential(*layers)
        self.normalize_input = normalize_input
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor, layers: Iterable[str] = ("relu5_4",)) -> dict[str, torch.Tensor]:
        wanted = tuple(layers)
        unknown = [name for name in wanted if name not in _NAME_TO_INDEX]
        if unknown or not wanted:
            raise ConfigError(
                f"unknown VGG-19 layer name(s) {unknown or '(none given)'}; valid: {', '.join(VGG19_LAYER_NAMES)}"
            )
        last = max(_NAME_TO_INDEX[name] for name in wanted)
        if self.normalize_input:
            x = (x - self.mean) / self.std
        out: dict[str, torch.Tensor] = {}
        for index in range(last + 1):
            x = self.features[index](x)
            name = VGG19_LAYER_NAMES[index]
            if name in wanted:
                out[name] = x
        return out


def default_vgg19_weights_path() -> Path:
    """Where torchvision caches the VGG-19 weights: ``torch.hub.get_dir()/checkpoints/vgg19-dcbb9e9d.pth``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG19_WEIGHTS_FILENAME


def _how_to_provide(where: Path) -> str:
    return (
        f"pass --vgg-weights PATH, place torchvision's {VGG19_WEIGHTS_FILENAME} in {where.parent}, "
        "or train with --perceptual-weight 0"
    )


def load_vgg19_weights(path: str | os.PathLike[str] | None = None) -> dict[str, torch.Tensor]:
    """Read ImageNet VGG-19 weights from disk (never from the network) as a ``features.N.*`` dict.

    ``path`` None means :func:`default_vgg19_weights_path`. The file may be torchvision's full
    ``vgg19`` state dict (``classifier.*`` entries are dropped) or a saved :class:`VGG19Features`
    state dict. Raises :class:`ConfigError` (one line, saying how to provide the file) when it does
    not exist and :class:`CheckpointError` when it cannot be read or lacks the expected tensors.
    """
    file = Path(path) if path is not None else default_vgg19_weights_path()
    if not file.is_file():
        raise ConfigError(
            f"VGG-19 ImageNet weights not found at {file} (no download is attempted); {_how_to_provide(file)}"
        )
    try:
        raw = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt / foreign / pickled-object file: one actionable line
        raise CheckpointError(
            f"{file}: cannot read VGG-19 weights ({type(exc).__name__}: {exc})".replace("\n", " ")
        ) from exc
    if isinstance(raw, Mapping) and isinstance(raw.get("state_dict"), Mapping):
        raw = raw["state_dict"]
    if not isinstance(raw, Mapping):
        raise CheckpointError(f"{file}: expected a state dict of VGG-19 tensors, got {type(raw).__name__}")
    expected = VGG19Features().state_dict()
    weights: dict[str, torch.Tensor] = {}
    for key, ref in expected.items():
        value = raw.get(key)
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != tuple(ref.shape):
            got = "missing" if value is None else f"shape {tuple(getattr(value, 'shape', ()))}"
            raise CheckpointError(
                f"{file}: not a torchvision VGG-19 state dict ({key}: {got}, expected {tuple(ref.shape)})"
            )
        weights[key] = value.float()
    return weights


def vgg19_features(
    *,
    pretrained: bool = True,
    weights_path: str | os.PathLike[str] | None = None,
    normalize_input: bool = True,
) -> VGG19Features:
    """Build a frozen (``requires_grad=False``, eval mode) :class:`VGG19Features`.

    ``pretrained=True`` loads ImageNet weights through :func:`load_vgg19_weights(weights_path)`
    and raises its :class:`ConfigError` when they are absent; ``pretrained=False`` keeps the random
    init (tests, or runs with the perceptual term switched off).
    """
    model = VGG19Features(normalize_input=normalize_input)
    if pretrained:
        model.load_state_dict(load_vgg19_weights(weights_path), strict=True)
        logger.info("loaded VGG-19 ImageNet weights from %s", weights_path or default_vgg19_weights_path())
    model.requires_grad_(False)
    return model.eval()
