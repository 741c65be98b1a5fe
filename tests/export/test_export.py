"""ONNX export: parity with PyTorch at sizes other than the example, FP16, opsets, metadata,
TensorRT op check and one-line errors for bad input."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import ugtsr
from export.attention import window_attention_nodes
from export.check import check_model
from export.check import main as check_main
from export.onnx import ExportOptions, onnx_from_checkpoint
from export.onnx import main as export_main
from ugtsr.checkpoint import load_matching
from ugtsr.errors import UnsupportedInputError

from .conftest import tiny_model, ugtsr_x4_model

SHIPPED_ONNX = Path(__file__).resolve().parents[2] / "runtime" / "models" / "ugtsr_tiny_x4.onnx"


@pytest.fixture(scope="module")
def tiny_export(tiny_ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    res = onnx_from_checkpoint(tiny_ckpt, out, options=ExportOptions(outputs=("sr", "indices", "uncertainty")))
    return res


def _run(path, x):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, {"lq": x})))


def _torch_ref(model, x):
    with torch.no_grad():
        o = model(torch.from_numpy(x))  # UGTSRNet.forward pads (reflect) and crops, like the graph
    return {"sr": o.sr.numpy(), "indices": o.indices.numpy(), "uncertainty": o.uncertainty.numpy()}


def _assert_parity(got, ref, *, indices=True):
    assert got["sr"].shape == ref["sr"].shape
    assert np.abs(np.clip(got["sr"], 0, 1) - np.clip(ref["sr"], 0, 1)).max() <= 1e-4
    assert np.abs(got["uncertainty"] - ref["uncertainty"]).max() <= 1e-4
    if indices:
        assert np.array_equal(got["indices"], ref["indices"])


def test_tiny_fp32_parity_at_odd_sizes_and_batch2(tiny_export, tiny_ckpt):
    """issue 10: the graph takes any H, W >= min_size (it pads itself) and matches PyTorch's
    forward (which pads the same way) to 1e-4 with identical code indices."""
    rep = tiny_export.report
    assert rep["passed"], rep["failure"]
    shapes = [tuple(c["shape"]) for c in rep["cases"]]
    assert any(n == 2 for n, _, _, _ in shapes)
    assert all(h % 16 and w % 16 for _, _, h, w in shapes)  # the export verified odd sizes only
    for case in rep["cases"]:
        assert case["max_abs"] <= 1e-4 and case["index_agreement"] == 1.0
    # independent check of the written file at other sizes, against the checkpoint's model:
    # odd non-square, the minimum size (no padding at all), batch 2 with a pad on one axis only
    model = ugtsr.load_model(tiny_ckpt)
    for shape in [(1, 3, 61, 100), (1, 3, 16, 16), (2, 3, 37, 32)]:
        x = np.random.default_rng(sum(shape)).random(shape, dtype=np.float32)
        got = _run(tiny_export.path, x)
        assert got["sr"].shape == (shape[0], 3, shape[2] * 4, shape[3] * 4)
        _assert_parity(got, _torch_ref(model, x))


def test_metadata_and_self_contained(tiny_export):
    path = tiny_export.path
    assert not list(path.parent.glob("*.data"))  # no external data file
    proto = onnx.load(str(path))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["scale"] == "4" and meta["multiple_of"] == "16" and meta["precision"] == "fp32"
    assert meta["min_size"] == "16" and meta["pads_input"] == "1"
    assert meta["matching"] == "topk" and meta["outputs"] == "sr,indices,uncertainty"
    assert ugtsr.UGTSRConfig.from_json(meta["config"]) == ugtsr.PRESETS["tiny_x4"]
    assert [i.name for i in proto.graph.input] == ["lq"]
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert all(d.dim_param for i, d in enumerate(dims) if i != 1)  # N, H, W symbolic
    ops = {n.op_type for n in proto.graph.node}
    assert {"TopK", "ArgMin", "MatMul", "Gather"} <= ops
    assert not any("cdist" in n.name.lower() for n in proto.graph.node)


def test_padding_is_computed_from_the_runtime_shape_with_tensorrt_ops(tiny_export):
    """The pad amounts come from Shape/Mod at run time (no size of the example baked in); the
    Pad is reflect with a run-time pads tensor and no axes input, which onnx-tensorrt's importer
    maps to ISliceLayer(kREFLECT); the crop is a Slice with constant axes."""
    from export.padding import graph_pads_input

    proto = onnx.load(str(tiny_export.path))
    assert graph_pads_input(proto)
    inits = {i.name for i in proto.graph.initializer}
    pads = [n for n in proto.graph.node if n.op_type == "Pad" and n.input[0] == "lq"]
    assert len(pads) == 1
    pad = pads[0]
    assert onnx.helper.get_attribute_value(pad.attribute[0]) == b"reflect"
    assert pad.input[1] not in inits and len(pad.input) == 2  # run-time pads, no axes
    producers = {o: n for n in proto.graph.node for o in n.output}
    chain, todo = set(), [pad.input[1]]
    while todo:  # walk the pads back to the input: Shape/Mod/Sub/Concat over lq only
        name = todo.pop()
        if name in inits or name == "lq":
            continue
        node = producers[name]
        chain.add(node.op_type)
        todo.extend(i for i in node.input if i != "lq")
    assert chain == {"Shape", "Mod", "Sub", "Concat"}
    crops = [n for n in proto.graph.node if n.op_type == "Slice" and n.output[0] in ("sr", "uncertainty", "indices")]
    assert sorted(n.output[0] for n in crops) == ["sr", "uncertainty"]  # indices keep the padded grid
    assert all(n.input[3] in inits for n in crops)
    report = check_model(proto)
    assert report.ok, report.format()


def test_runtime_reads_pads_input_and_old_exports_keep_the_caller_padding():
    from runtime.backends.base import check_lq, model_info_from_metadata

    base = {"scale": "4", "multiple_of": "16", "min_size": "16", "outputs": "sr"}
    new = model_info_from_metadata({**base, "pads_input": "1"}, source="new.onnx")
    old = model_info_from_metadata(base, source="old.onnx")
    assert new.pads_input and not old.pads_input
    odd = np.zeros((1, 3, 37, 45), np.float32)
    check_lq(odd, new)  # the self-padding graph takes it as is
    with pytest.raises(UnsupportedInputError, match="multiples of 16"):
        check_lq(odd, old)
    with pytest.raises(UnsupportedInputError, match="at least 16"):
        check_lq(np.zeros((1, 3, 15, 45), np.float32), new)  # below min_size the caller still pads
    with pytest.raises(UnsupportedInputError, match="pads_input"):
        model_info_from_metadata({**base, "pads_input": "yes"}, source="forged.onnx")


def test_cli_no_verify_json_progress_and_a_legacy_graph_in_the_runtime(tiny_ckpt, tiny_export, tmp_path, capsys):
    """--no-verify --json writes the report; progress lines go to stderr; indices are pruned by
    default; a legacy graph (--no-graph-padding: the caller pads) still runs in the runtime and
    gives the self-padding graph's output."""
    import json

    from runtime import Upscaler

    out, rep = tmp_path / "legacy.onnx", tmp_path / "legacy.json"
    assert export_main([str(tiny_ckpt), "-o", str(out), "--no-verify", "--json", str(rep),
                        "--no-graph-padding"]) == 0
    err = capsys.readouterr().err
    assert "tracing" in err and "optimising" in err and "writing" in err and "Traceback" not in err
    report = json.loads(rep.read_text())
    assert report["verified"] is False and report["model_bytes"] == out.stat().st_size
    assert report["outputs"] == ["sr", "uncertainty"] and "pads_input" not in report["metadata"]
    assert set(report["timings_s"]) >= {"trace", "optimize", "total"}
    # export.fast_trace ran and found torch.onnx's decomposition and type promotion unneeded
    trace = dict(report["trace"])
    assert trace.pop("attention_nodes") >= 1  # Align-Attention as WindowAttention nodes (export.attention)
    assert trace.pop("value_info_dropped") > 100  # torch.onnx's symbolic intermediate shapes (export.value_info)
    assert trace == {"route": "fast", "decomposition": False, "type_promotion": False,
                     "rules_skipped": ["SlicesSplit"]}
    proto = onnx.load(str(out))
    assert not [v for v in proto.graph.value_info if any(d.HasField("dim_param") for d in v.type.tensor_type.shape.dim)]
    assert [o.name for o in proto.graph.output] == ["sr", "uncertainty"]
    onnx.checker.check_model(proto)
    img = (np.random.default_rng(4).random((37, 45, 3)) * 255).astype(np.uint8)
    with Upscaler(model=str(out), tile=0) as legacy, Upscaler(model=str(tiny_export.path), tile=0) as padded:
        assert not legacy.info.pads_input and padded.info.pads_input
        a, b = legacy.upscale(img), padded.upscale(img)
    assert a.shape == (148, 180, 3) and np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_cli_refuses_to_overwrite_before_any_work(tmp_path, capsys):
    """An existing output (model or --json) is replaced only with --overwrite; the refusal comes
    before the checkpoint is even read (the checkpoint here does not exist)."""
    out = tmp_path / "m.onnx"
    out.write_bytes(b"precious")
    ghost = str(tmp_path / "ghost.pt")
    assert export_main([ghost, "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--overwrite" in err and str(out) in err
    assert out.read_bytes() == b"precious"
    rep = tmp_path / "r.json"
    rep.write_text("{}")
    assert export_main([ghost, "-o", str(tmp_path / "new.onnx"), "--json", str(rep)]) == 2
    assert "--overwrite" in capsys.readouterr().err and rep.read_text() == "{}"
    # with --overwrite the checks pass and the (missing) checkpoint is what fails
    assert export_main([ghost, "-o", str(out), "--overwrite", "-q"]) == 2
    assert "no such file" in capsys.readouterr().err and out.read_bytes() == b"precious"


def test_default_output_never_replaces_the_shipped_onnx(tmp_path, capsys):
    """`python -m export.onnx runtime/models/ugtsr_tiny_x4.pt` (default output next to it) must not
    overwrite the shipped ONNX (issue 11 item 5). Run on a copy of the shipped pair."""
    import shutil

    shipped = SHIPPED_ONNX
    for src in (shipped, shipped.with_suffix(".pt")):
        shutil.copy(src, tmp_path / src.name)
    before = (tmp_path / shipped.name).read_bytes()
    assert export_main([str(tmp_path / shipped.with_suffix(".pt").name)]) == 2
    err = capsys.readouterr().err.strip()
    assert "exists" in err and "--overwrite" in err and len(err.splitlines()) == 1
    assert (tmp_path / shipped.name).read_bytes() == before


@pytest.mark.parametrize("where", ["under_a_file", "same_as_model"])
def test_cli_unwritable_json_is_one_line_before_work(tmp_path, capsys, tiny_ckpt, where):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    out = tmp_path / "m.onnx"
    json_path = blocker / "r.json" if where == "under_a_file" else out
    assert export_main([str(tmp_path / "ghost.pt"), "-o", str(out), "--json", str(json_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err and str(json_path) in err
    assert not out.exists() and not list(tmp_path.glob(".*"))


def test_write_failure_at_the_end_leaves_nothing_partial(tiny_export, tmp_path):
    """A real write failure (the file-size limit of the process: EFBIG, as a full disk gives
    ENOSPC) while writing the model or the report: one-line ExportError, no partial model or
    report, no temporary file, and an existing model that was being replaced stays intact."""
    import resource
    import signal

    from export.onnx import _write_outputs
    from ugtsr.errors import ExportError

    data = tiny_export.path.read_bytes()
    out, rep = tmp_path / "m.onnx", tmp_path / "r.json"
    old = tmp_path / "old.onnx"
    old.write_bytes(b"the previous model")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a signal
    try:
        resource.setrlimit(resource.RLIMIT_FSIZE, (len(data) // 2, hard))
        with pytest.raises(ExportError) as exc:
            _write_outputs(out, data, rep, {"passed": True})
        assert "nothing was written" in str(exc.value) and "\n" not in str(exc.value)
        with pytest.raises(ExportError):
            _write_outputs(old, data, None, {})
        resource.setrlimit(resource.RLIMIT_FSIZE, (len(data) + 100, hard))  # model fits, then the report fails
        with pytest.raises(ExportError):
            _write_outputs(out, data, rep, {"x": "y" * (len(data) + 200)})
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert not out.exists() and not rep.exists()
    assert old.read_bytes() == b"the previous model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.onnx"]  # no temporary files


def test_shipped_model_parity_at_odd_sizes_and_batch2():
    """The shipped ONNX (re-exported with in-graph padding) against its checkpoint in PyTorch."""
    path = SHIPPED_ONNX
    proto = onnx.load(str(path))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["pads_input"] == "1" and meta["multiple_of"] == "16" and meta["min_size"] == "16"
    assert check_model(proto).ok
    model = ugtsr.load_model(path.with_suffix(".pt"))
    for shape in [(1, 3, 37, 45), (2, 3, 16, 16)]:
        x = np.random.default_rng(sum(shape)).random(shape, dtype=np.float32)
        _assert_parity(_run(path, x), _torch_ref(model, x), indices=False)


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
    """ugtsr_x4 with FeMaSR's golden weights (a non-degenerate codebook): odd sizes, batch 2."""
    model = ugtsr_x4_model()
    res = onnx_from_checkpoint(tmp_path / "x.pt", tmp_path / "ugtsr_x4.onnx", model=model,
                               options=ExportOptions(outputs=("sr", "indices", "uncertainty")))
    assert res.report["passed"], res.report["failure"]
    assert all(c["max_abs"] <= 1e-4 and c["index_agreement"] == 1.0 for c in res.report["cases"])
    assert any(c["shape"][0] == 2 for c in res.report["cases"])
    x = np.random.default_rng(61).random((1, 3, 61, 100), dtype=np.float32)
    _assert_parity(_run(res.path, x), _torch_ref(model, x))


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
    fixed = ugtsr.build_model(model.config.replace(color_fix_sigma=4.0, fidelity_gate=True,
                                                   fidelity_gate_context=True, fidelity_gate_global=True)).eval()
    missing = fixed.load_state_dict(model.state_dict(), strict=False)
    assert all(k.startswith("fidelity_gate.") for k in missing.missing_keys)
    with torch.no_grad():  # a gate that actually mixes, with its LR context (dilated convs, bilinear Resize)
        fixed.fidelity_gate.body[-1].weight.normal_(0, 0.3, generator=torch.Generator().manual_seed(1))
        fixed.fidelity_gate.body[-1].bias.fill_(-0.5)
        fixed.fidelity_gate.context[-1].weight.normal_(0, 0.3, generator=torch.Generator().manual_seed(2))
        fixed.fidelity_gate.global_head[-1].weight.normal_(0, 0.3, generator=torch.Generator().manual_seed(3))
    ckpt = tmp_path / "cf.pt"
    ugtsr.save_checkpoint(ckpt, fixed)
    res = onnx_from_checkpoint(ckpt, tmp_path / "cf.onnx", options=ExportOptions())
    assert res.report["passed"], res.report["failure"]
    assert all(c["max_abs"] <= 1e-4 for c in res.report["cases"])
    proto = onnx.load(str(res.path))
    meta = {p.key: p.value for p in proto.metadata_props}
    cfg = ugtsr.UGTSRConfig.from_json(meta["config"])
    assert cfg.color_fix_sigma == 4.0 and cfg.fidelity_gate and cfg.fidelity_gate_context and cfg.fidelity_gate_global
    assert {"DepthToSpace", "Sigmoid"} <= {n.op_type for n in proto.graph.node}
    assert {"ReduceMean", "GlobalAveragePool"} & {n.op_type for n in proto.graph.node}  # the image-level estimate
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


def test_subpixel_skip_exports_verified(tmp_path):
    """issue 13: ``subpixel_skips 1`` (the last skip a sub-pixel convolution, added) exports with the
    parity checks, one Align-Attention fewer, at odd sizes through the in-graph padding."""
    base = tiny_model()
    cfg = base.config.replace(subpixel_stages=1, plain_stages=1, subpixel_skips=1)
    model = ugtsr.build_model(cfg).eval()
    load_matching(model, base.state_dict())
    ckpt = tmp_path / "sk.pt"
    ugtsr.save_checkpoint(ckpt, model)
    res = onnx_from_checkpoint(ckpt, tmp_path / "sk.onnx", options=ExportOptions(outputs=("sr", "indices", "uncertainty")))
    assert res.report["passed"], res.report["failure"]
    ref = ugtsr.build_model(cfg.replace(subpixel_skips=0)).eval()
    ugtsr.save_checkpoint(tmp_path / "ref.pt", ref)
    ref_res = onnx_from_checkpoint(tmp_path / "ref.pt", tmp_path / "ref.onnx", options=ExportOptions(verify=False))
    n_att, n_ref = (len(window_attention_nodes(onnx.load(str(p)).graph)) for p in (res.path, ref_res.path))
    assert n_att == n_ref - 1 >= 1  # the last skip's Align-Attention is gone
    x = np.random.default_rng(6).random((1, 3, 37, 45), dtype=np.float32)
    _assert_parity(_run(res.path, x), _torch_ref(model, x))


def test_bicubic_residual_exports_verified(tmp_path):
    """issue 14: ``bicubic_residual`` (the output a residual on bicubic(LR), the LR into the last
    stage) exports with the parity checks, at odd sizes through the in-graph padding."""
    base = tiny_model()
    cfg = base.config.replace(subpixel_stages=1, plain_stages=1, subpixel_skips=1, bicubic_residual=True,
                              color_fix_sigma=4.0, fidelity_gate=True)
    model = ugtsr.build_model(cfg).eval()
    load_matching(model, base.state_dict())
    torch.manual_seed(3)
    with torch.no_grad():
        model.lr_tail.conv.weight.normal_(0, 0.05)
    ckpt = tmp_path / "res.pt"
    ugtsr.save_checkpoint(ckpt, model)
    res = onnx_from_checkpoint(ckpt, tmp_path / "res.onnx", options=ExportOptions(outputs=("sr", "indices", "uncertainty")))
    assert res.report["passed"], res.report["failure"]
    x = np.random.default_rng(7).random((1, 3, 37, 45), dtype=np.float32)
    _assert_parity(_run(res.path, x), _torch_ref(model, x))


def test_subpixel_tail_exports_verified(tmp_path):
    """issue 13: a model with the sub-pixel, norm-free last stage (``subpixel_stages 1``) exports
    with the same parity checks, at odd sizes through the in-graph padding."""
    base = tiny_model()
    cfg = base.config.replace(subpixel_stages=1, plain_stages=1, color_fix_sigma=4.0, fidelity_gate=True)
    model = ugtsr.build_model(cfg).eval()
    load_matching(model, base.state_dict())  # the new stage and output convolutions keep their random init
    ckpt = tmp_path / "sp.pt"
    ugtsr.save_checkpoint(ckpt, model)
    res = onnx_from_checkpoint(ckpt, tmp_path / "sp.onnx", options=ExportOptions(outputs=("sr", "indices", "uncertainty")))
    assert res.report["passed"], res.report["failure"]
    assert sum(n.op_type == "DepthToSpace" for n in onnx.load(str(res.path)).graph.node) >= 3  # sr, head, bicubic
    # the fresh gate's body ends in zero weights: traced as its bias, verified against the branch
    assert res.report["trace"]["gate_constant_body"] is True
    x = np.random.default_rng(5).random((1, 3, 37, 45), dtype=np.float32)
    _assert_parity(_run(res.path, x), _torch_ref(model, x))
