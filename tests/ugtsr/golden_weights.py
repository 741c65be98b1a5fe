"""Synthetic FeMaSR weights from a state-dict manifest (the recipe of FeMaSR's golden outputs).

Our own implementation of the recipe the golden README (section 2) defines: one CPU generator per
key seeded from SHA-256(f"{seed}:{key}"), one uniform float64 draw scaled to a per-kind
(offset, std), cast to float32. ``state_dict_sha256`` must give the README's published hashes.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path

import torch

DATA = Path(__file__).resolve().parents[1] / "data" / "femasr"
PUBLISHED_SHA256 = {
    "hrp": "4b59bd34557a4a85604caa55e8f59b514375bd544a622bbe96742eaee8c98fbc",
    "x4": "48f1fd9221b64c8c6393e40be85b94835870492e4f41a9e0627bdc57e2ed068a",
    "x2": "116bf7f675f83735322c8040e8d36d61d22063ca0269287282d2aba0886950db",
}
_RESIDUAL_OUT = re.compile(r"(\.attn\.proj\.weight|\.mlp\.fc2\.weight|swin_blks\.\d+\.conv\.weight)$")


def manifest(name: str) -> dict[str, list[int]]:
    return json.loads((DATA / f"femasr_state_dict_{name}.json").read_text())["state_dict"]


def _offset_std(key: str, shape: tuple[int, ...]) -> tuple[float, float]:
    leaf = key.rsplit(".", 1)[-1]
    if key.endswith("embedding.weight"):
        return 0.0, 0.5
    if leaf in ("relative_position_bias_table", "bias"):
        return 0.0, 0.02
    if leaf == "weight" and len(shape) == 1:
        return 1.0, 0.1
    if leaf == "weight":
        gain = 0.3 if _RESIDUAL_OUT.search(key) else 1.0
        return 0.0, gain / math.sqrt(math.prod(shape[1:]))
    raise ValueError(f"no rule for {key}")


def make_state_dict(name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    out = {}
    for key, shape in sorted(manifest(name).items()):
        if key.endswith(("relative_position_index", "attn_mask")) or key.startswith(("conv_semantic.", "vgg_feat_extractor.")):
            continue
        shape = tuple(shape)
        offset, std = _offset_std(key, shape)
        g = torch.Generator().manual_seed(int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:4], "little"))
        u = torch.rand(shape, generator=g, dtype=torch.float64) * 2.0 - 1.0
        value = u * (std * math.sqrt(3.0))
        if offset:
            value = value + offset
        out[key] = value.to(torch.float32)
    return out


def state_dict_sha256(state: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().to("cpu", torch.float32).contiguous()
        h.update(key.encode())
        h.update(json.dumps(list(t.shape)).encode("ascii"))
        h.update(t.numpy().astype("<f4").tobytes())
    return h.hexdigest()
