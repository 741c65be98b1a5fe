"""ONNX export: parity with PyTorch at sizes other than the example, FP16, opsets, metadata,
TensorRT op check and one-line errors for bad input."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import ugtsr
from export.check import check_model
from export.check import main as check_main
from export.onnx import ExportOptions, onnx_from_checkpoint
from export.onnx import main as export_main

from .conftest import tiny_model, ugtsr_x4_model


@pytest.fixture(scope="module")
def tiny_export(tiny_ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    res = onnx_from_checkpoint(tiny_ckpt, out, options=ExportOptions(outputs=("sr", "indices", "uncertainty")))
    return res


def _run(path, x):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, {"lq": x})))


def test_tiny_fp32_parity_at_unseen_sizes_and_batch2(tiny_export, tiny_ckpt):
    rep = tiny_export.report
    assert rep["passed"], rep["failure"]
    shapes = {tuple(c["shape"]) for c in rep["cases"]}
    assert (2, 3, 32, 96) in shapes and (1, 3, 48, 80) in shapes  # example size is 64x64, batch 2
    for case in rep["cases"]:
        assert case["max_abs"] <= 1e-4 and case["index_agreement"] >= 0.999
    # independent check of the written file at yet another size, against the checkpoint's model
    model = ugtsr.load_model(tiny_ckpt)
    x = np.random.default_rng(5).random((2, 3, 16, 112), dtype=np.float32)
    got = _run(tiny_export.path, x)
    with torch.no_grad():
        ref = model.forward_unpadded(torch.from_numpy(x))
    assert got["sr"].shape == (2, 3, 64, 448)
    assert np.abs(got["sr"] - ref.sr.numpy()).max() <= 1e-4
    assert np.mean(got["indices"] == ref.indices.numpy()) >= 0.999
    assert np.abs(got["uncertainty"] - ref.uncertainty.numpy()).max() <= 1e-4


def test_metadata_and_self_contained(tiny_export):
    path = tiny_export.path
    assert not list(path.parent.glob("*.data"))  # no external data file
    proto = onnx.load(str(path))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["scale"] == "4" and meta["multiple_of"] == "16" and meta["precision"] == "fp32"
    assert meta["matching"] == "topk" and meta["outputs"] == "sr,indices,uncertainty"
    assert ugtsr.UGTSRConfig.from_json(meta["config"]) == ugtsr.PRESETS["tiny_x4"]
    assert [i.name for i in proto.graph.input] == ["lq"]
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert all(d.dim_param for i, d in enumerate(dims) if i != 1)  # N, H, W symbolic
    ops = {n.op_type for n in proto.graph.node}
    assert {"TopK", "ArgMin", "MatMul", "Gather"} <= ops
    assert not any("cdist" in n.name.lower() for n in proto.graph.node)


def test_default_outputs_prune_indices(tiny_ckpt, tmp_path):
    res = onnx_from_checkpoint(tiny_ckpt, tmp_path / "m.onnx", options=ExportOptions(verify=False))
    assert res.outputs == ("sr", "uncertainty")
    proto = onnx.load(str(res.path))
    assert [o.name for o in proto.graph.output] == ["sr", "uncertainty"]
    onnx.checker.check_model(proto)


def test_fp16_psnr(tiny_ckpt, tmp_path):
    res = onnx_from_checkpoint(tiny_ckpt, tmp_path / "m16.onnx", options=ExportOptions(precision="fp16"))
    assert res.report["passed"], res.report["failure"]
    assert all(c["psnr_db"] >= 40 for c in res.report["cases"])
    proto = onnx.load(str(res.path))
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # fp32 I/O
    conv_w = [i for i in proto.graph.initializer if i.data_type == onnx.TensorProto.FLOAT16]
    assert conv_w, "weights should be stored in FP16"
    # the distance island stays FP32: the codebook initializer is float32
    cb = [i for i in proto.graph.initializer if "codebook" in i.name]
    assert cb and all(i.data_type == onnx.TensorProto.FLOAT for i in cb)


def test_opset17(tiny_ckpt, tmp_path):
    res = onnx_from_checkpoint(tiny_ckpt, tmp_path / "m17.onnx", options=ExportOptions(opset=17))
    assert res.report["passed"], res.report["failure"]
    assert "GroupNormalization" not in {n.op_type for n in onnx.load(str(res.path)).graph.node}


@pytest.mark.slow
def test_ugtsr_x4_fp32_parity(tmp_path):
    model = ugtsr_x4_model()
    res = onnx_from_checkpoint(tmp_path / "x.pt", tmp_path / "ugtsr_x4.onnx", model=model)
    assert res.report["passed"], res.report["failure"]
    assert all(c["max_abs"] <= 1e-4 and c["index_agreement"] >= 0.999 for c in res.report["cases"])
    assert any(c["shape"][0] == 2 for c in res.report["cases"])


@pytest.mark.slow
def test_ugtsr_x4_fp16_psnr(tmp_path):
    """FP16 with the float32 encoder/matcher islands: no flipped codes, >= 40 dB (here ~65 dB)."""
    res = onnx_from_checkpoint(tmp_path / "x.pt", tmp_path / "ugtsr_x4_fp16.onnx", model=ugtsr_x4_model(),
                               options=ExportOptions(precision="fp16"))
    assert res.report["passed"], res.report["failure"]
    assert all(c["psnr_db"] >= 40 and c["index_agreement"] >= 0.999 for c in res.report["cases"])


def test_check_flags_planted_unsupported_op(tiny_export, tmp_path, capsys):
    proto = onnx.load(str(tiny_export.path))
    assert check_model(proto).ok
    x = proto.graph.output[0].name
    proto.graph.node.append(onnx.helper.make_node("Unique", [x], ["u"], name="planted_unique"))
    k = onnx.helper.make_tensor("bigk", onnx.TensorProto.INT64, [1], [5000])
    proto.graph.initializer.append(k)
    proto.graph.node.append(onnx.helper.make_node("TopK", ["u", "bigk"], ["tv", "ti"], name="planted_topk"))
    rep = check_model(proto)
    msgs = " ".join(str(f) for f in rep.errors)
    assert not rep.ok and "planted_unique" in msgs and "5000" in msgs
    bad = tmp_path / "bad.onnx"
    onnx.save(proto, str(bad))
    assert check_main([str(bad)]) == 1
    assert "blocking issue" in capsys.readouterr().out


def test_bad_inputs_one_line_no_file(tmp_path, capsys, tiny_ckpt):
    (tmp_path / "corrupt.pt").write_bytes(b"\x00garbage")
    torch.save({"params": {}}, tmp_path / "foreign.pt")
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    cases = [
        ([str(tmp_path / "missing.pt")], "no such file"),
        ([str(tmp_path / "corrupt.pt")], "corrupt"),
        ([str(tmp_path / "foreign.pt")], "not a UGTSR checkpoint"),
        ([str(tiny_ckpt), "-o", str(blocker / "x.onnx")], "cannot write"),
        ([str(tiny_ckpt), "--opset", "12", "-o", str(tmp_path / "o12.onnx")], "unsupported opset"),
    ]
    for argv, needle in cases:
        assert export_main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert needle in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not list(tmp_path.glob("*.onnx")) and not list(tmp_path.glob(".*tmp"))


def test_failed_verification_writes_nothing(tmp_path, monkeypatch):
    import export.verify as verify

    def fake(*a, **k):
        return {"passed": False, "failure": "planted", "cases": []}
    monkeypatch.setattr(verify, "verify_onnx", fake)
    from ugtsr.errors import ExportError
    with pytest.raises(ExportError, match="planted"):
        onnx_from_checkpoint(tmp_path / "x.pt", tmp_path / "m.onnx", model=tiny_model())
    assert not (tmp_path / "m.onnx").exists()


def test_color_fix_and_gate_export_verified_fp32_and_fp16(tmp_path):
    """The colour fix and the fidelity gate travel in the graph (bilinear Resize, depthwise Conv,
    bicubic as Conv + DepthToSpace, Sigmoid): FP32 and FP16 verified against PyTorch, nothing
    TensorRT's parser lacks."""
    model = tiny_model()
    fixed = ugtsr.build_model(model.config.replace(color_fix_sigma=4.0, fidelity_gate=True)).eval()
    missing = fixed.load_state_dict(model.state_dict(), strict=False)
    assert all(k.startswith("fidelity_gate.") for k in missing.missing_keys)
    with torch.no_grad():  # a gate that actually mixes
        fixed.fidelity_gate.body[-1].weight.normal_(0, 0.3, generator=torch.Generator().manual_seed(1))
        fixed.fidelity_gate.body[-1].bias.fill_(-0.5)
    ckpt = tmp_path / "cf.pt"
    ugtsr.save_checkpoint(ckpt, fixed)
    res = onnx_from_checkpoint(ckpt, tmp_path / "cf.onnx", options=ExportOptions())
    assert res.report["passed"], res.report["failure"]
    assert all(c["max_abs"] <= 1e-4 for c in res.report["cases"])
    proto = onnx.load(str(res.path))
    meta = {p.key: p.value for p in proto.metadata_props}
    cfg = ugtsr.UGTSRConfig.from_json(meta["config"])
    assert cfg.color_fix_sigma == 4.0 and cfg.fidelity_gate
    assert {"DepthToSpace", "Sigmoid"} <= {n.op_type for n in proto.graph.node}
    resize = [n for n in proto.graph.node if n.op_type == "Resize"]
    assert any(a.name == "mode" and a.s == b"linear" for n in resize for a in n.attribute)
    assert not [f for f in check_model(proto).findings if f.severity == "error"]
    # the graph differs from the model without the fix (the fix is not a no-op in ONNX)
    x = np.random.default_rng(2).random((1, 3, 32, 48), dtype=np.float32)
    with torch.no_grad():
        plain = model.forward_unpadded(torch.from_numpy(x)).sr.numpy()
    assert np.abs(_run(res.path, x)["sr"] - plain).max() > 1e-3
    res16 = onnx_from_checkpoint(ckpt, tmp_path / "cf16.onnx", options=ExportOptions(precision="fp16"))
    assert res16.report["passed"], res16.report["failure"]
    assert all(c["psnr_db"] >= 40 for c in res16.report["cases"])
