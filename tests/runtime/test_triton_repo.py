"""``python -m runtime.triton``: model repositories for stock Triton, parsed back with Triton's schema.

Every written ``config.pbtxt`` is read with ``tritonclient.grpc.model_config_pb2.ModelConfig`` and
protobuf's text format (unknown fields or enum values fail the parse). Loading the repository in a stock
Triton needs its ONNX Runtime / TensorRT backends, which cannot be installed here (docs/SERVING.md).
"""
from __future__ import annotations

from pathlib import Path

import pytest

pb = pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="tritonclient is in the dev/serve extras")
text_format = pytest.importorskip("google.protobuf.text_format")

from runtime.backends.ort_graph import cpu_model  # noqa: E402
from runtime.engine_meta import EngineMeta, ShapeProfile, write_sidecar  # noqa: E402
from runtime.triton import main, read_config, write_repository  # noqa: E402
from runtime.upscaler import default_model_path  # noqa: E402


def _parse(folder: Path):
    return text_format.Parse((folder / "config.pbtxt").read_text(), pb.ModelConfig())


@pytest.fixture(scope="module")
def shipped() -> Path:
    path = default_model_path()
    if not path.is_file():
        pytest.skip(f"the shipped model {path} is missing")
    return path


def test_cpu_repository_layout_and_config(shipped, tmp_path):
    folder = write_repository(shipped, tmp_path / "repo", max_batch_size=4, instances=3)
    assert folder == tmp_path / "repo" / "ugtsr"
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == \
        ["1/model.onnx", "config.pbtxt"]
    # on CPU: the shipped graph with its WindowAttention nodes as ONNX Runtime's fused kernel
    written = (folder / "1" / "model.onnx").read_bytes()
    assert written == cpu_model(shipped) and written != shipped.read_bytes()
    import onnx

    ops = {(n.domain, n.op_type) for n in onnx.load_from_string(written).graph.node}
    assert ("com.microsoft", "MultiHeadAttention") in ops and ("ugtsr", "WindowAttention") not in ops
    cfg = _parse(folder)
    assert cfg.name == "ugtsr" and cfg.platform == "onnxruntime_onnx" and cfg.max_batch_size == 4
    assert [(i.name, i.data_type, list(i.dims)) for i in cfg.input] == [("lq", pb.TYPE_FP32, [3, -1, -1])]
    # the shipped model has sr + uncertainty (its metadata says so)
    assert [(o.name, list(o.dims)) for o in cfg.output] == [("sr", [3, -1, -1]), ("uncertainty", [3, -1, -1])]
    assert list(cfg.dynamic_batching.preferred_batch_size) == [4]
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 2000
    assert [(g.kind, g.count) for g in cfg.instance_group] == [(pb.ModelInstanceGroup.KIND_CPU, 3)]
    assert not cfg.optimization.execution_accelerators.gpu_execution_accelerator
    assert cfg.parameters["ugtsr_scale"].string_value == "4"
    assert read_config(folder / "config.pbtxt") == cfg


@pytest.mark.parametrize("accelerator", ["tensorrt", "cuda"])
def test_gpu_onnx_accelerators(shipped, tmp_path, accelerator):
    folder = write_repository(shipped, tmp_path, name="sr_gpu", device="gpu", accelerator=accelerator,
                              instances=2, gpus=[0, 1], preferred_batch_sizes=[2, 8], max_queue_delay_us=500)
    cfg = _parse(folder)
    assert cfg.name == "sr_gpu"
    group = cfg.instance_group[0]
    assert (group.kind, group.count, list(group.gpus)) == (pb.ModelInstanceGroup.KIND_GPU, 2, [0, 1])
    assert list(cfg.dynamic_batching.preferred_batch_size) == [2, 8]
    (acc,) = cfg.optimization.execution_accelerators.gpu_execution_accelerator
    assert acc.name == accelerator
    if accelerator == "tensorrt":
        assert acc.parameters["precision_mode"] == "FP16"
        assert int(acc.parameters["max_workspace_size_bytes"]) > 0
    else:
        assert "precision_mode" not in acc.parameters


def _fake_engine(tmp_path: Path, *, max_batch: int = 4) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    engine = tmp_path / "model.plan"
    engine.write_bytes(b"not a real engine: the repository writer copies it unchanged")
    profile = ShapeProfile(min=(1, 3, 16, 16), opt=(max_batch, 3, 256, 256), max=(max_batch, 3, 1024, 1024))
    write_sidecar(engine, EngineMeta(scale=4, multiple_of=16, min_size=16, outputs=("sr",), precision="fp16",
                                     config=None, source="m.onnx", onnx_path="m.onnx", onnx_sha256="0",
                                     engine_sha256="0", profiles=(profile,)))
    return engine


def test_tensorrt_plan_repository(tmp_path):
    engine = _fake_engine(tmp_path)
    folder = write_repository(engine, tmp_path / "repo", device="gpu", max_batch_size=4)
    assert (folder / "1" / "model.plan").read_bytes() == engine.read_bytes()
    cfg = _parse(folder)
    assert cfg.platform == "tensorrt_plan" and cfg.max_batch_size == 4
    assert [o.name for o in cfg.output] == ["sr"]
    assert cfg.instance_group[0].kind == pb.ModelInstanceGroup.KIND_GPU
    assert not cfg.optimization.execution_accelerators.gpu_execution_accelerator  # precision is in the engine


def test_cli_errors_are_one_line_and_write_nothing(shipped, tmp_path, capsys):
    engine = _fake_engine(tmp_path / "e", max_batch=2)
    cases = [
        ([str(engine), "-o", str(tmp_path / "r1"), "--device", "gpu", "--max-batch-size", "8"], "exceeds the engine"),
        ([str(engine), "-o", str(tmp_path / "r2")], "GPU only"),
        ([str(tmp_path / "missing.onnx"), "-o", str(tmp_path / "r3")], "no such model file"),
        ([str(shipped), "-o", str(tmp_path / "r4"), "--preferred-batch-sizes", "16"], "preferred batch sizes"),
        ([str(shipped), "-o", str(tmp_path / "r5"), "--max-batch-size", "0"], "max_batch_size must be >= 1"),
        ([str(shipped), "-o", str(tmp_path / "r6"), "--name", "a/b"], "no slashes"),
    ]
    for argv, words in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("error: ") and words in err, (argv, err)
        assert not Path(argv[2]).exists(), argv


def test_cli_refuses_existing_folder_unless_overwrite(shipped, tmp_path, capsys):
    repo = tmp_path / "repo"
    assert main([str(shipped), "-o", str(repo)]) == 0
    capsys.readouterr()
    before = (repo / "ugtsr" / "config.pbtxt").read_text()
    assert main([str(shipped), "-o", str(repo), "--instances", "2"]) == 2
    assert "exists already" in capsys.readouterr().err
    assert (repo / "ugtsr" / "config.pbtxt").read_text() == before
    assert main([str(shipped), "-o", str(repo), "--instances", "2", "--overwrite"]) == 0
    assert _parse(repo / "ugtsr").instance_group[0].count == 2
    assert not [p for p in repo.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".")]


def test_read_config_rejects_fields_outside_the_schema(tmp_path):
    bad = tmp_path / "config.pbtxt"
    bad.write_text('name: "x"\nplatform: "onnxruntime_onnx"\nmax_batch: 4\n')  # the field is max_batch_size
    from ugtsr.errors import UGTSRError

    with pytest.raises(UGTSRError, match="not a valid Triton model config"):
        read_config(bad)
