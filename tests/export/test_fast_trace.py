"""export.fast_trace: the one-trace route through torch.onnx checks, per graph, that the passes it
skips would have been no-ops, runs them when they would not, and the export falls back to the plain
exporter when the route does not apply (issue 13: export time)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.export import Dim

from export import fast_trace

ort = pytest.importorskip("onnxruntime")


def _run(program, x: torch.Tensor) -> list[np.ndarray]:
    sess = ort.InferenceSession(program.model_proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x.numpy()})


def _export(module, *, example=(2, 4, 16, 16)):
    dyn = ({0: Dim("b", min=1, max=64), 2: 8 * Dim("hb", min=1, max=64), 3: 8 * Dim("wb", min=1, max=64)},)
    stats: dict = {}
    program = fast_trace.fast_onnx_program(module.eval(), (torch.rand(*example),), dynamic_shapes=dyn, opset=21,
                                           input_names=["x"], output_names=["y"], stats=stats)
    return program, stats


class _Plain(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        b, c, h, w = x.shape
        y = self.conv(x).to(torch.float32) * 0.5  # aten.to.dtype: rewritten, not decomposed
        return torch.where(y != 0.0, y, torch.zeros_like(y)).view(b, c, h, w)


class _NeedsPromotion(_Plain):
    def forward(self, x):
        y = self.conv(x)
        return torch.where(y > 0, y, y * 0.1)  # int scalar against float: torch.onnx inserts a cast


class _NeedsDecomposition(_Plain):
    def forward(self, x):
        return torch.rot90(self.conv(x), 2, (2, 3))  # no ONNX translation: decomposed


@pytest.mark.parametrize("module, ran", [
    (_Plain(), {"decomposition": False, "type_promotion": False}),
    (_NeedsPromotion(), {"decomposition": False, "type_promotion": True}),
    (_NeedsDecomposition(), {"decomposition": True, "type_promotion": True,
                             "untranslatable": ["aten.rot90.default"]}),
])
def test_skips_a_pass_only_when_it_would_change_nothing(module, ran):
    program, stats = _export(module)
    assert stats == ran
    for shape in [(1, 4, 24, 40), (3, 4, 8, 16)]:  # other batch sizes and shapes than the example
        x = torch.randn(*shape)
        with torch.no_grad():
            ref = module(x).numpy()
        np.testing.assert_allclose(_run(program, x)[0], ref, atol=1e-5)


def test_unavailable_internals_raise_the_fallback_signal(monkeypatch):
    def missing():
        raise fast_trace.FastPathUnavailable("torch.onnx internals not found (test)")
    monkeypatch.setattr(fast_trace, "_internals", missing)
    with pytest.raises(fast_trace.FastPathUnavailable):
        _export(_Plain())


def test_export_falls_back_to_the_plain_exporter(tmp_path, tiny_ckpt, monkeypatch):
    """Whatever breaks the fast route, torch.onnx.export decides; the result is verified the same."""
    import json

    from export.onnx import main as export_main

    def broken(*args, **kwargs):
        raise RuntimeError("simulated failure inside the fast route")
    monkeypatch.setattr(fast_trace, "fast_onnx_program", broken)
    out, rep = tmp_path / "plain.onnx", tmp_path / "plain.json"
    assert export_main([str(tiny_ckpt), "-o", str(out), "--json", str(rep), "-q"]) == 0
    report = json.loads(rep.read_text())
    assert report["verified"] is True and report["trace"]["route"] == "plain"
    assert "simulated failure" in report["trace"]["fast_route_failed"]


class _TwoSlices(_Plain):
    def forward(self, x):
        y = self.conv(x)
        return torch.cat([y[:, 2:], y[:, :2] * 2.0], dim=1)


@pytest.mark.parametrize("module", [_Plain(), _TwoSlices()])
def test_optimizer_without_the_quadratic_rule_gives_the_same_graph(module):
    from onnxscript import rewriter

    rules_before = rewriter._DEFAULT_REWRITE_RULES
    plain, _ = _export(module)
    plain.optimize()
    ours, _ = _export(module)
    assert fast_trace.optimize_program(ours) == {"rules_skipped": ["SlicesSplit"]}
    assert rewriter._DEFAULT_REWRITE_RULES is rules_before  # restored
    assert plain.model_proto.SerializeToString() == ours.model_proto.SerializeToString()
    x = torch.randn(1, 4, 16, 24)
    np.testing.assert_array_equal(_run(plain, x)[0], _run(ours, x)[0])


def test_optimizer_runs_onnxscripts_pipeline_with_one_rule_less():
    from onnxscript import rewriter

    seen = []

    class _Program:
        def optimize(self):
            seen.append([r.name for r in rewriter._DEFAULT_REWRITE_RULES])

    fast_trace.optimize_program(_Program())
    everything = [r.name for r in rewriter._DEFAULT_REWRITE_RULES]
    assert "SlicesSplit" in everything
    assert seen == [[n for n in everything if n != "SlicesSplit"]]


def test_the_shipped_models_take_the_one_trace_route(tmp_path):
    """issue 13: every operator of the shipped models' traced graphs has an ONNX translation, so the
    export skips torch.onnx's decomposition and type promotion (the third release's gate used
    ``aten.square``, which has none, and the decomposition pass made its export ~1.9x slower)."""
    from export.onnx import ExportOptions, onnx_from_checkpoint
    from runtime.models import SHIPPED_MODELS, models_folder

    for name, model in SHIPPED_MODELS.items():
        res = onnx_from_checkpoint(models_folder() / model.checkpoint, tmp_path / f"{name}.onnx",
                                   options=ExportOptions(verify=False))
        trace = res.report["trace"]
        assert trace["route"] == "fast" and trace["decomposition"] is False and trace["type_promotion"] is False, (name, trace)
