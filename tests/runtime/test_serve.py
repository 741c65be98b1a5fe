"""``python -m runtime.serve``: a REAL Triton Inference Server (PyTriton), no mock.

The server runs in its own interpreter, ``$UGTSR_SERVE_PYTHON`` (a venv made with
``/usr/bin/python3.11`` holding ``.[serve]``; ``.ci/run`` builds it): PyTriton's Python-backend stub
links the system libpython3.11 and needs numpy<2, which the test venv does not have. The tests talk
to it with ``tritonclient`` from this venv, over gRPC and HTTP, on free ports.
"""
from __future__ import annotations

import concurrent.futures
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from runtime import RemoteUpscaler, Upscaler, default_model_path, read_image
from runtime.serve_process import ServeProcess, free_ports
from ugtsr.errors import UGTSRError, UnsupportedInputError

from .conftest import random_image

pytest.importorskip("tritonclient.grpc", reason="tritonclient is in the dev extra")
import tritonclient.grpc as grpcclient  # noqa: E402
import tritonclient.http as httpclient  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402

SERVE_PYTHON = os.environ.get("UGTSR_SERVE_PYTHON", "")
REPO_ROOT = Path(__file__).resolve().parents[2]
TILE = 32  # small tiles, so 40-60 px images go through the runtime's tiling on the server and here
MAX_PIXELS = 64 * 64

# set but wrong (CI) is an error, not a skip: the server start fails and says so
needs_server = pytest.mark.skipif(
    not SERVE_PYTHON,
    reason="UGTSR_SERVE_PYTHON is not set to the serve venv's python (built by .ci/run: "
           "/usr/bin/python3.11 -m venv .venv-serve && .venv-serve/bin/pip install -e '.[serve]')")


def _port_free(port: int, *, wait: float = 10.0) -> bool:
    """Whether a new server could listen on ``port`` (as Triton does: with SO_REUSEADDR, so the
    connections the stopped server closed, left in TIME_WAIT, do not count as holding it)."""
    deadline = time.monotonic() + wait
    while True:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("0.0.0.0", port))
                s.listen(1)
                return True
            except OSError:
                if time.monotonic() > deadline:
                    return False
        time.sleep(0.5)


def _group_pids(pgid: int) -> list[int]:
    """Live processes of a process group (the server, tritonserver, the Python-backend stubs)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                out.append(int(entry.name))
    return out


class Server(ServeProcess):
    """``python -m runtime.serve`` in its own session (process group), on free ports
    (``runtime.serve_process``), with the tests' tile and pixel limits."""

    _count = 0

    def __init__(self, tmp: Path, *extra: str) -> None:
        Server._count += 1
        super().__init__(SERVE_PYTHON, ["--tile", str(TILE), "--max-pixels", str(MAX_PIXELS), *extra],
                         log=tmp / f"serve-{os.getpid()}-{Server._count}.log", ready_timeout=240)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> list[int]:
        """Send ``sig`` to the server process only; return the group's processes still alive after it
        exits (a server that does not exit in ``timeout`` fails the test: TimeoutExpired)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=timeout)
        time.sleep(0.5)
        return _group_pids(self.proc.pid)


@pytest.fixture(scope="module")
def model_path() -> Path:
    path = default_model_path()
    if not path.is_file():
        pytest.skip(f"the shipped model {path} is missing")
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory, model_path):
    srv = Server(tmp_path_factory.mktemp("serve"), "--instances", "2")
    yield srv
    if srv.proc.poll() is None:
        left = srv.stop()
        if left:
            srv.kill()


@pytest.fixture(scope="module")
def local(model_path):
    with Upscaler(model_path, tile=TILE) as up:
        yield up


def _mixed_images() -> list[np.ndarray]:
    """16 images: sizes 16-60 px (some tiled at TILE=32), uint8/uint16, gray (H, W) / (H, W, 1), BGR, BGRA."""
    rng = np.random.default_rng(7)
    layouts = [None, 1, 3, 4]
    images = []
    for i in range(16):
        h, w = (int(v) for v in rng.integers(16, 61, size=2))
        dtype = np.uint16 if i % 2 else np.uint8
        images.append(random_image(h, w, layouts[(i // 2) % 4], dtype, seed=i))
    return images


@pytest.mark.slow
@needs_server
def test_health_and_metrics_come_from_triton(server):
    with urllib.request.urlopen(f"http://localhost:{server.http}/v2/health/ready", timeout=10) as r:
        assert r.status == 200
    with urllib.request.urlopen(f"http://localhost:{server.http}/v2/health/live", timeout=10) as r:
        assert r.status == 200
    with urllib.request.urlopen(f"http://localhost:{server.metrics}/metrics", timeout=10) as r:
        text = r.read().decode()
    assert "nv_inference_request_success" in text and 'model="ugtsr"' in text


@pytest.mark.slow
@needs_server
@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_16_concurrent_mixed_requests_equal_local(server, local, protocol):
    images = _mixed_images()
    assert {im.dtype for im in images} == {np.dtype(np.uint8), np.dtype(np.uint16)}
    assert {1 if im.ndim == 2 else im.shape[2] for im in images} == {1, 3, 4}

    def one(image: np.ndarray) -> np.ndarray:
        with RemoteUpscaler(server.address(protocol), protocol=protocol) as remote:
            return remote.upscale(image)

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        remote_out = list(pool.map(one, images))
    for image, got in zip(images, remote_out):
        want = local.upscale(image)
        assert got.shape == want.shape and got.dtype == want.dtype == image.dtype
        diff = np.abs(got.astype(np.int64) - want.astype(np.int64)).max()
        assert diff <= 1, (image.shape, image.dtype, diff)


@pytest.mark.slow
@needs_server
def test_uncertainty_and_file_model_equal_local(server, local, tmp_path):
    import cv2

    image = random_image(40, 52, 3, np.uint8, seed=3)
    with Upscaler(server=server.address("grpc")) as remote:
        assert isinstance(remote, RemoteUpscaler) and remote.scale == 4 and remote.info.has_uncertainty
        out, unc = remote.upscale_with_uncertainty(image)
        png = remote.upscale_file(cv2.imencode(".png", image)[1].tobytes())
    want, want_unc = local.upscale_with_uncertainty(image)
    assert np.abs(out.astype(int) - want.astype(int)).max() <= 1
    assert unc.shape == want_unc.shape == (160, 208) and np.allclose(unc, want_unc, atol=1e-4)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    decoded = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    assert np.abs(decoded.astype(int) - want.astype(int)).max() <= 1


def _raw_infer(server, protocol: str, model: str, name: str, array: np.ndarray, wire: str) -> np.ndarray:
    lib = grpcclient if protocol == "grpc" else httpclient
    with lib.InferenceServerClient(server.address(protocol)) as client:
        inp = lib.InferInput(name, list(array.shape), wire)
        inp.set_data_from_numpy(array)
        return client.infer(model, [inp]).as_numpy(name)


@pytest.mark.slow
@needs_server
@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_bad_requests_get_an_error_and_the_server_keeps_serving(server, protocol):
    cv2 = pytest.importorskip("cv2")
    png = cv2.imencode(".png", random_image(20, 20, 3, np.uint8))[1].tobytes()
    bad = [
        ("ugtsr", "image", np.zeros((20, 20, 3), np.float32), "FP32", "FP32"),            # wrong dtype
        ("ugtsr", "image", np.zeros((20, 20), np.uint8), "UINT8", "unexpected shape"),      # wrong rank
        ("ugtsr", "image", np.zeros((20, 20, 2), np.uint8), "UINT8", "C = 1"),              # 2 channels
        ("ugtsr", "image", np.zeros((1, 1, 3), np.uint8), "UINT8", "at least 2"),           # 1x1
        ("ugtsr_u16", "image", np.zeros((65, 64, 3), np.uint16), "UINT16", "over the server's limit"),
        ("ugtsr_file", "file", np.array([b"definitely not an image"], dtype=object), "BYTES", "not an image"),
        ("ugtsr_file", "file", np.array([png[: len(png) // 2]], dtype=object), "BYTES", "truncated"),
    ]
    for model, name, array, wire, words in bad:
        with pytest.raises(InferenceServerException) as info:
            _raw_infer(server, protocol, model, name, array, wire)
        assert words.lower() in info.value.message().lower(), (model, array.shape, info.value.message()[-300:])
        # and the server still answers a good request
        good = _raw_infer(server, protocol, "ugtsr", "image", np.full((16, 16, 3), 128, np.uint8), "UINT8")
        assert good.shape == (64, 64, 3)


@pytest.mark.slow
@needs_server
def test_remote_upscaler_errors_are_one_line(server):
    with RemoteUpscaler(server.address("http"), protocol="http") as remote:
        with pytest.raises(UnsupportedInputError) as info:
            remote.upscale(np.zeros((1, 9, 3), np.uint8))
        assert str(info.value) == "image: 9x1 pixels; both sides must be at least 2"
        with pytest.raises(UnsupportedInputError, match="pixel type float32"):
            remote.upscale(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(UGTSRError, match="cannot reach the Triton server"):
        RemoteUpscaler(f"localhost:{free_ports(1)[0]}")


def _remove_orphaned_shared_memory(pid: int, before: set[Path]) -> None:
    """A SIGKILLed server leaves PyTriton's shared memory in /dev/shm: its ``pytrtion<pid>-*`` blocks and
    the ``psm_*`` blocks that appeared since ``before`` and that no live process maps any more."""
    shm = Path("/dev/shm")
    mapped: set[str] = set()
    for maps in Path("/proc").glob("[0-9]*/maps"):
        try:
            mapped.update(line.split()[-1] for line in maps.read_text().splitlines() if "/dev/shm/" in line)
        except OSError:
            continue
    candidates = list(shm.glob(f"pytrtion{pid}-*")) + [p for p in shm.glob("psm_*") if p not in before]
    for path in candidates:
        if str(path) not in mapped:
            path.unlink(missing_ok=True)


def _write_inputs(folder: Path, n: int, size: int = 60) -> list[Path]:
    cv2 = pytest.importorskip("cv2")
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"img{i:02d}.png"
        cv2.imwrite(str(p), random_image(size, size, 3, np.uint8, seed=100 + i))
        paths.append(p)
    return paths


def _infer_cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "runtime.infer", *args], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
@needs_server
def test_infer_cli_through_the_server_equals_local(server, local, tmp_path):
    inputs = _write_inputs(tmp_path / "in", 3, size=36)
    proc = _infer_cli(str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--server", server.address("http"),
                      "--protocol", "http")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "3 processed" in out
    for src in inputs:
        got = read_image(tmp_path / "out" / src.name)
        want = local.upscale(read_image(src))
        assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


@pytest.mark.slow
@needs_server
def test_server_killed_mid_batch_then_rerun_completes(server, tmp_path, request):
    inputs = _write_inputs(tmp_path / "in", 12)
    out_dir = tmp_path / "out"
    # a SIGKILL leaves PyTriton's workspace behind: put it where the test removes it (a short path, as
    # it holds unix sockets, whose paths are limited to 107 bytes)
    workspace = Path(tempfile.mkdtemp(prefix="ugtsr-ws-"))
    request.addfinalizer(lambda: shutil.rmtree(workspace, ignore_errors=True))
    shm_before = set(Path("/dev/shm").glob("psm_*"))
    doomed = Server(tmp_path, "--workspace", str(workspace))
    proc = _infer_cli(str(tmp_path / "in"), "-o", str(out_dir), "--server", doomed.address("grpc"), "--quiet")
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not list(out_dir.glob("*.png")) and proc.poll() is None:
        time.sleep(0.05)
    doomed.kill()
    # SIGKILL reaches the whole group at once, but the kernel tears large processes (tritonserver)
    # down asynchronously: the group must be empty within seconds, not at the next instruction
    gone_by = time.monotonic() + 15
    while _group_pids(doomed.proc.pid) and time.monotonic() < gone_by:
        time.sleep(0.1)
    assert not _group_pids(doomed.proc.pid)
    _remove_orphaned_shared_memory(doomed.proc.pid, shm_before)
    out, err = proc.communicate(timeout=300)
    written = sorted(p.name for p in out_dir.iterdir())
    assert 1 <= len(written) < len(inputs), (written, err)
    assert all(name.endswith(".png") for name in written)  # no temporary or partial files
    for name in written:  # each written file is a whole image
        assert read_image(out_dir / name).shape == (240, 240, 3)
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    unfinished = {p.name for p in inputs} - set(written)
    assert len(errors) == len(unfinished), err
    for name in unfinished:
        assert sum(name in line for line in errors) == 1, (name, err)
    assert all(doomed.address("grpc") in line for line in errors), err
    assert proc.returncode == 1

    rerun = _infer_cli(str(tmp_path / "in"), "-o", str(out_dir), "--server", server.address("grpc"))
    out, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err
    assert f"{len(unfinished)} processed, {len(written)} skipped, 0 failed" in out
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(p.name for p in inputs)


@pytest.mark.slow
@needs_server
def test_sigterm_stops_cleanly(server):
    """Last: stops the module's server. No process of its group is left and the ports are free."""
    assert len(_group_pids(server.proc.pid)) >= 3  # server, tritonserver, stubs
    left = server.stop(signal.SIGTERM)
    assert left == [], left
    assert server.proc.returncode == 0, server.tail()
    for port in server.ports:
        assert _port_free(port), port


def test_error_message_takes_the_exception_line_of_a_pytriton_traceback():
    from runtime.serve import error_message

    text = ('Traceback (most recent call last):\n  File "/x/serve.py", line 9, in check_image\n'
            '    raise UnsupportedInputError(...)\nugtsr.errors.UnsupportedInputError: image: 5x1 pixels; both '
            'sides must be at least 2\n\n\n\nAt:\n  /tmp/folder/1/model.py(501): execute\n')
    assert error_message(text) == "image: 5x1 pixels; both sides must be at least 2"
    plain = "[request id: <id_unknown>] unexpected shape for input 'image' for model 'ugtsr'"
    assert error_message(plain) == plain


def test_check_image_names_each_problem():
    from runtime.serve import check_image

    ok = np.zeros((4, 5, 3), np.uint8)
    assert check_image(ok, dtype=np.uint8, max_pixels=20) is ok
    for image, dtype, limit, words in [
        (ok, np.uint16, None, "this model takes uint16"),
        (np.zeros((4, 5), np.uint8), np.uint8, None, "expected [H, W, C]"),
        (np.zeros((4, 5, 2), np.uint8), np.uint8, None, "C = 1 (gray)"),
        (np.zeros((1, 5, 3), np.uint8), np.uint8, None, "5x1 pixels"),
        (ok, np.uint8, 19, "over the server's limit of 19"),
    ]:
        with pytest.raises(UnsupportedInputError, match=re.escape(words)):
            check_image(image, dtype=dtype, max_pixels=limit)


def test_upscaler_server_argument_returns_a_client_and_refuses_local_options(capsys):
    from runtime.infer import main as infer_main

    with pytest.raises(UnsupportedInputError, match="takes no model or options"):
        Upscaler(server="localhost:8001", tile=64)
    port = free_ports(1)[0]
    for protocol in ("grpc", "http"):
        with pytest.raises(UGTSRError, match=f"localhost:{port}: cannot reach the Triton server over {protocol}"):
            Upscaler(server=f"localhost:{port}", protocol=protocol)
    assert infer_main(["x.png", "--server", f"localhost:{port}", "--outscale", "2"]) == 2
    assert "drop --model, --model-name and --outscale" in capsys.readouterr().err
    assert infer_main(["x.png", "--server", f"localhost:{port}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot reach the Triton server" in err[0]


class _Request:
    """What PyTriton hands an inference callable: ``request["image"]`` and the requested outputs."""

    def __init__(self, image: np.ndarray, outputs: tuple[str, ...] = ("image",)) -> None:
        self.data = {"image": image}
        self.requested_output_names = list(outputs)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.data[name]


def test_batched_image_model_equals_one_by_one(model_path):
    """--dynamic-batching: same-shape requests run as one (N, 3, H, W) call; others one by one."""
    from runtime.serve import ImageModel

    model = ImageModel(lambda: Upscaler(model_path, tile=0), dtype=np.uint8, max_pixels=None, batched=True)
    try:
        images = [random_image(24, 40, 3, np.uint8, seed=s) for s in range(3)] + \
                 [random_image(20, 20, 4, np.uint8, seed=9), random_image(24, 40, 3, np.uint8, seed=5)]
        wants = [("image",), ("image", "uncertainty"), ("image",), ("image",), ("image", "uncertainty")]
        outputs = model([_Request(im[None], w) for im, w in zip(images, wants)])
        with Upscaler(model_path, tile=0) as whole:
            for image, want, out in zip(images, wants, outputs):
                assert out["image"].shape[0] == 1  # the batch dimension goes back
                ref, ref_unc = whole.upscale_with_uncertainty(image)
                assert np.abs(out["image"][0].astype(int) - ref.astype(int)).max() <= 1
                assert ("uncertainty" in out) == ("uncertainty" in want)
                if "uncertainty" in out:
                    assert np.allclose(out["uncertainty"][0], ref_unc, atol=1e-4)
        with pytest.raises(UnsupportedInputError, match=r"this model takes \[1, H, W, C\]"):
            model([_Request(images[0])])
    finally:
        model.close()
