"""``python -m runtime.serve [MODEL]``: UGTSR behind a real NVIDIA Triton Inference Server (PyTriton).

PyTriton (``nvidia-pytriton``, ``pip install 'ugtsr[serve]'``) starts the ``tritonserver`` binary it
bundles and routes requests to plain Python callables through Triton's Python backend. Triton owns
HTTP/gRPC, scheduling, (dynamic) batching, health (``/v2/health/live``, ``/v2/health/ready``) and the
Prometheus metrics (``:8002/metrics``); this module only binds models:

- ``ugtsr``: input ``image`` UINT8 ``[H, W, C]`` (C in 1, 3, 4; BGR(A) like OpenCV) -> output ``image``
  UINT8 ``[H*s, W*s, C]``, and ``uncertainty`` FP32 ``[H*s, W*s]`` when the model has the head and the
  client asks for it.
- ``ugtsr_u16``: the same for UINT16 images (Triton gives every input one data type, so 8- and 16-bit
  images are two models with the same tensor names).
- ``ugtsr_file``: input ``file`` BYTES ``[1]`` (an encoded PNG/JPEG/WebP/TIFF/...) -> output ``file``
  BYTES ``[1]`` (PNG, same channels and bit depth).

Every model instance (``--instances N``: N inference callables bound to one model, which Triton
schedules as N instances) owns its own :class:`runtime.Upscaler` and so its own backend; padding and
tiling are the runtime's own (:func:`runtime.tile_process`), ``--max-batch-size`` is the number of
tiles the network runs per call. ``max_batch_size`` of the Triton models is 0 (one image a request:
images of different sizes cannot share a batch) unless ``--dynamic-batching`` is given, which lets
Triton's dynamic batcher group same-shape ``ugtsr`` requests (then sent as ``[1, H, W, C]``) into
one network call.

A bad request (wrong dtype or rank, a side below 2, over ``--max-pixels``, undecodable bytes) makes the
callable raise :class:`~ugtsr.errors.UnsupportedInputError`; PyTriton answers that request with the
error (its traceback text, whose last line is ``...UnsupportedInputError: <problem>``) and keeps
serving. SIGINT and SIGTERM stop Triton and its Python-backend stubs and free the ports.

Environment (checked): PyTriton 0.7.0's stub links the system ``libpython3.11``, so the serving
environment must be a venv made with that interpreter (``/usr/bin/python3.11 -m venv``), with
``numpy<2``; ``docs/SERVING.md`` has the commands.
"""
from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ugtsr.errors import UGTSRError, UnsupportedInputError, require

from .backends import BACKENDS
from .imageio import DEFAULT_MAX_PIXELS, MIN_IMAGE_SIDE, decode_image, float_to_image, image_to_float
from .padding import crop, pad_to_multiple
from .upscaler import Upscaler, default_model_path

__all__ = ["main", "serve", "ImageModel", "FileModel", "IMAGE_MODELS", "FILE_MODEL", "check_image",
           "error_message"]

logger = logging.getLogger(__name__)

#: Triton model name -> pixel dtype of its ``image`` input and output
IMAGE_MODELS = {"ugtsr": np.uint8, "ugtsr_u16": np.uint16}
FILE_MODEL = "ugtsr_file"
_START_ATTEMPTS = 5
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception): (.+)$")


def error_message(text: str) -> str:
    """The one-line problem in an error PyTriton sent back (a Python traceback, then Triton's ``At:``
    trailer): the message of the last ``module.SomethingError: message`` line, else the last line."""
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    for line in reversed(lines):
        match = _EXCEPTION_LINE.match(line)
        if match:
            return match.group(1)
    return lines[-1] if lines else "the server returned an empty error"


def check_image(image: Any, *, dtype: type, max_pixels: int | None, where: str = "image") -> np.ndarray:
    """Validate one request image ``[H, W, C]`` (C in 1, 3, 4) of ``dtype``; raise with the problem."""
    if not isinstance(image, np.ndarray):
        raise UnsupportedInputError(f"{where}: expected an array, got {type(image).__name__}")
    if image.dtype != np.dtype(dtype):
        raise UnsupportedInputError(f"{where}: pixel type {image.dtype}, this model takes {np.dtype(dtype)}")
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise UnsupportedInputError(
            f"{where}: shape {list(image.shape)}; expected [H, W, C] with C = 1 (gray), 3 (BGR) or 4 (BGRA)")
    h, w = image.shape[:2]
    if min(h, w) < MIN_IMAGE_SIDE:
        raise UnsupportedInputError(f"{where}: {w}x{h} pixels; both sides must be at least {MIN_IMAGE_SIDE}")
    if max_pixels and h * w > max_pixels:
        raise UnsupportedInputError(f"{where}: {w}x{h} = {h * w:,} pixels, over the server's limit "
                                    f"of {max_pixels:,} (--max-pixels)")
    return image


class ImageModel:
    """One Triton instance of an image model: ``requests -> responses`` around its own :class:`Upscaler`.

    ``batched`` = the model was bound with ``max_batch_size > 0``: every request carries ``[1, H, W, C]``
    and requests of one shape are run through the network together (no tiling, alpha or ``outscale``
    then: the batch is one padded ``(N, 3, H, W)`` backend call).
    """

    def __init__(self, make_upscaler: Callable[[], Upscaler], *, dtype: type, max_pixels: int | None,
                 batched: bool = False) -> None:
        self.upscaler = make_upscaler()
        self.dtype = dtype
        self.max_pixels = max_pixels
        self.batched = batched
        self.lock = threading.Lock()  # one backend, one call at a time

    def close(self) -> None:
        self.upscaler.close()

    def _image(self, request: Any) -> np.ndarray:
        image = request["image"]
        if self.batched:
            if image.ndim != 4 or image.shape[0] != 1:
                raise UnsupportedInputError(f"image: shape {list(image.shape)}; this model takes [1, H, W, C]")
            image = image[0]
        return check_image(image, dtype=self.dtype, max_pixels=self.max_pixels)

    def __call__(self, requests: Sequence[Any]) -> list[dict[str, np.ndarray]]:
        images = [self._image(r) for r in requests]  # any bad request fails before any work
        want_unc = [bool(r.requested_output_names) and "uncertainty" in r.requested_output_names
                    for r in requests]
        if any(want_unc) and not self.upscaler.info.has_uncertainty:
            raise UnsupportedInputError("uncertainty: this model has no uncertainty output")
        with self.lock:
            if self.batched and len(images) > 1:
                outputs = self._run_batched(images, want_unc)
            else:
                outputs = [self._run_one(img, unc) for img, unc in zip(images, want_unc)]
        if self.batched:
            outputs = [{k: v[None] for k, v in out.items()} for out in outputs]
        return outputs

    def _run_one(self, image: np.ndarray, uncertainty: bool) -> dict[str, np.ndarray]:
        if uncertainty:
            out, unc = self.upscaler.upscale_with_uncertainty(image)
            return {"image": out, "uncertainty": unc}
        return {"image": self.upscaler.upscale(image)}

    def _run_batched(self, images: list[np.ndarray], want_unc: list[bool]) -> list[dict[str, np.ndarray]]:
        """Same-shape 3-channel images without tiling in one backend call; anything else one by one."""
        up = self.upscaler
        results: list[dict[str, np.ndarray] | None] = [None] * len(images)
        groups: dict[tuple, list[int]] = {}
        for i, img in enumerate(images):
            h, w, c = img.shape
            if c == 3 and up.outscale is None and up.tile_for(h, w) == 0:
                groups.setdefault(img.shape, []).append(i)
            else:
                results[i] = self._run_one(img, want_unc[i])
        for shape, idx in groups.items():
            h, w = shape[:2]
            floats = []
            layout = None
            for i in idx:
                rgb, _, layout = image_to_float(images[i])
                floats.append(rgb.transpose(2, 0, 1))
            lq, _ = pad_to_multiple(np.stack(floats), up.info.multiple_of, min_size=up.info.min_size)
            out = up.backend.run(lq)  # the group is at most --max-request-batch images
            sr = crop(out["sr"], h * up.scale, w * up.scale)
            unc = crop(out["uncertainty"], h * up.scale, w * up.scale) if "uncertainty" in out else None
            for j, i in enumerate(idx):
                entry = {"image": float_to_image(np.ascontiguousarray(sr[j].transpose(1, 2, 0)), None, layout)}
                if want_unc[i] and unc is not None:
                    entry["uncertainty"] = np.ascontiguousarray(unc[j].mean(axis=0), dtype=np.float32)
                results[i] = entry
        return results  # type: ignore[return-value]


class FileModel:
    """One Triton instance of ``ugtsr_file``: encoded image bytes in, PNG bytes out."""

    def __init__(self, make_upscaler: Callable[[], Upscaler], *, max_pixels: int | None) -> None:
        self.upscaler = make_upscaler()
        self.max_pixels = max_pixels
        self.lock = threading.Lock()
        self.cv2 = require("cv2", extra="runtime", purpose="PNG encoding")

    def close(self) -> None:
        self.upscaler.close()

    def _decode(self, data: Any) -> np.ndarray:
        arr = np.asarray(data)
        if arr.dtype != object and arr.dtype.kind != "S":
            raise UnsupportedInputError(f"file: expected BYTES, got {arr.dtype}")
        if arr.size != 1:
            raise UnsupportedInputError(f"file: expected one encoded image (shape [1]), got shape {list(arr.shape)}")
        raw = arr.reshape(-1)[0]
        if not isinstance(raw, bytes | bytearray):
            raise UnsupportedInputError(f"file: expected bytes, got {type(raw).__name__}")
        # the runtime's own validation: format by content, pixel limit from the header, truncation, EXIF
        return decode_image(bytes(raw), source="file", max_pixels=self.max_pixels)

    def __call__(self, requests: Sequence[Any]) -> list[dict[str, np.ndarray]]:
        images = [self._decode(r["file"]) for r in requests]
        out = []
        with self.lock:
            for image in images:
                result = self.upscaler.upscale(image)
                ok, encoded = self.cv2.imencode(".png", result, [self.cv2.IMWRITE_PNG_COMPRESSION, 3])
                if not ok:
                    raise UGTSRError("file: OpenCV could not encode the result as PNG")
                out.append({"file": np.array([encoded.tobytes()], dtype=object)})
        return out


# ------------------------------------------------------------------------------------------ server
def _bind_models(triton: Any, make_upscaler: Callable[[], Upscaler], callables: list[Any], *, instances: int,
                 max_pixels: int | None, has_uncertainty: bool, dynamic_batching: bool, queue_delay_us: int,
                 max_request_batch: int) -> None:
    """Bind ``ugtsr``, ``ugtsr_u16`` and ``ugtsr_file``; every callable made is appended to ``callables``
    (so the caller closes them even when a bind fails)."""
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor

    for name, dtype in IMAGE_MODELS.items():
        batched = dynamic_batching and name == "ugtsr"
        funcs = [ImageModel(make_upscaler, dtype=dtype, max_pixels=max_pixels, batched=batched)
                 for _ in range(instances)]
        callables += funcs
        outputs = [Tensor(name="image", dtype=dtype, shape=(-1, -1, -1))]
        if has_uncertainty:
            outputs.append(Tensor(name="uncertainty", dtype=np.float32, shape=(-1, -1)))
        if batched:
            config = ModelConfig(batching=True, max_batch_size=max_request_batch, batcher=DynamicBatcher(
                max_queue_delay_microseconds=queue_delay_us,
                preferred_batch_size=[max_request_batch]))
        else:
            config = ModelConfig(batching=False)
        triton.bind(model_name=name, infer_func=funcs,
                    inputs=[Tensor(name="image", dtype=dtype, shape=(-1, -1, -1))], outputs=outputs, config=config)
    files = [FileModel(make_upscaler, max_pixels=max_pixels) for _ in range(instances)]
    callables += files
    triton.bind(model_name=FILE_MODEL, infer_func=files, inputs=[Tensor(name="file", dtype=bytes, shape=(1,))],
                outputs=[Tensor(name="file", dtype=bytes, shape=(1,))], config=ModelConfig(batching=False))


def serve(model: str | os.PathLike | None = None, *, http_port: int = 8000, grpc_port: int = 8001,
          metrics_port: int = 8002, instances: int = 1, max_batch_size: int = 1, tile: int | None = None,
          tile_pad: int = 32, backend: str = "auto", device: str | None = None, threads: int | None = None,
          max_pixels: int | None = DEFAULT_MAX_PIXELS, dynamic_batching: bool = False,
          queue_delay_us: int = 2000, max_request_batch: int = 8, log_verbose: int = 0,
          workspace: str | os.PathLike | None = None, ready: Callable[[], None] | None = None) -> None:
    """Start Triton with the UGTSR models and block until SIGINT/SIGTERM (or Triton dies)."""
    require("pytriton", extra="serve", purpose="serving with Triton Inference Server")
    from pytriton.triton import Triton, TritonConfig

    path = Path(model) if model is not None else default_model_path()
    if not path.is_file():
        raise UGTSRError(f"{path}: no such model file")

    def make_upscaler() -> Upscaler:
        return Upscaler(path, backend=backend, tile=tile, tile_pad=tile_pad, batch_size=max_batch_size,
                        device=device, threads=threads)

    with make_upscaler() as probe:  # fails here, with one line, for a model that cannot be opened
        info = probe.info
    config = TritonConfig(http_port=http_port, grpc_port=grpc_port, metrics_port=metrics_port,
                          log_verbose=log_verbose, exit_timeout_secs=5)

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # Triton.serve() stops the server on KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        for attempt in range(1, _START_ATTEMPTS + 1):
            callables: list[Any] = []
            started = False
            try:
                ws = None if workspace is None else Path(workspace) / f"attempt{attempt}"
                with Triton(config=config, workspace=ws) as triton:  # starts tritonserver; loads each model at bind
                    _bind_models(triton, make_upscaler, callables, instances=instances, max_pixels=max_pixels,
                                 has_uncertainty=info.has_uncertainty, dynamic_batching=dynamic_batching,
                                 queue_delay_us=queue_delay_us, max_request_batch=max_request_batch)
                    triton.run()
                    started = True
                    logger.info("serving %s (x%d) on http :%d, grpc :%d, metrics :%d", path, info.scale,
                                http_port, grpc_port, metrics_port)
                    if ready is not None:
                        ready()
                    triton.serve(monitoring_period_s=1.0)  # returns on SIGINT/SIGTERM (KeyboardInterrupt)
                    return
            except UGTSRError:
                raise
            except Exception as exc:  # Triton is stopped (left `with`); a failure while serving is a bug
                if started:
                    raise
                # PyTriton 0.7.0 gives the stubs' config handshake a fixed 1 s while Triton starts the
                # instances of a model in parallel: on a loaded machine instance 1 can miss instance 0's
                # socket, and a fresh start usually succeeds. A busy port fails every time.
                detail = " ".join(str(exc).split())
                if attempt == _START_ATTEMPTS:
                    raise UGTSRError(f"Triton did not start with the models after {attempt} attempts (are ports "
                                     f"{http_port}/{grpc_port}/{metrics_port} free?): {detail[:300]}") from None
                logger.warning("Triton did not start with the models (attempt %d of %d), restarting: %s",
                               attempt, _START_ATTEMPTS, detail[:200])
                time.sleep(attempt)  # let a load spike pass
            finally:
                for c in callables:
                    c.close()
    except KeyboardInterrupt:  # a signal during start-up: Triton was stopped on leaving `with`
        return
    finally:
        signal.signal(signal.SIGTERM, previous)


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m runtime.serve",
                                description="Serve a UGTSR model with NVIDIA Triton Inference Server (PyTriton).")
    p.add_argument("model", nargs="?", default=None, metavar="MODEL",
                   help="model: .onnx, .pt/.pth or .plan (default: the shipped model)")
    p.add_argument("--http-port", type=int, default=8000)
    p.add_argument("--grpc-port", type=int, default=8001)
    p.add_argument("--metrics-port", type=int, default=8002)
    p.add_argument("--instances", type=int, default=1, metavar="N", help="model instances (one backend each)")
    p.add_argument("--max-batch-size", type=int, default=1, metavar="B", help="tiles per network call (default 1)")
    p.add_argument("--tile", type=int, default=None, metavar="N",
                   help="tile size in input pixels; 0 = off; default: automatic")
    p.add_argument("--tile-pad", type=int, default=32, metavar="N")
    p.add_argument("--backend", default="auto", choices=("auto", *BACKENDS))
    p.add_argument("--device", default=None, metavar="DEV", help="cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, default=None, metavar="N", help="ONNX Runtime intra-op threads per instance")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, metavar="N",
                   help=f"refuse larger images (default {DEFAULT_MAX_PIXELS}; 0 = no limit)")
    p.add_argument("--dynamic-batching", action="store_true",
                   help="let Triton batch same-shape 'ugtsr' requests (clients then send [1, H, W, C])")
    p.add_argument("--max-queue-delay-us", type=int, default=2000, metavar="US",
                   help="dynamic batcher's max queue delay (default 2000)")
    p.add_argument("--max-request-batch", type=int, default=8, metavar="N",
                   help="largest batch of requests with --dynamic-batching (default 8)")
    p.add_argument("--log-verbose", type=int, default=0, metavar="N", help="Triton's verbose log level")
    p.add_argument("--workspace", default=None, metavar="DIR",
                   help="folder for PyTriton's sockets and model store (default: a new one in ~/.cache/pytriton; "
                        "removed on a clean stop)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the server; returns 0 after a clean stop, 2 for usage and model errors."""
    args = _build_parser().parse_args(argv)
    for name in ("instances", "max_batch_size", "max_request_batch"):
        if getattr(args, name) < 1:
            print(f"error: --{name.replace('_', '-')} must be >= 1", file=sys.stderr)
            return 2
    for name in ("tile_pad", "max_pixels", "max_queue_delay_us"):
        if getattr(args, name) < 0:
            print(f"error: --{name.replace('_', '-')} must be >= 0", file=sys.stderr)
            return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("pytriton", "tritonclient"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        serve(args.model, http_port=args.http_port, grpc_port=args.grpc_port, metrics_port=args.metrics_port,
              instances=args.instances, max_batch_size=args.max_batch_size, tile=args.tile, tile_pad=args.tile_pad,
              backend=args.backend, device=args.device, threads=args.threads, max_pixels=args.max_pixels or None,
              dynamic_batching=args.dynamic_batching, queue_delay_us=args.max_queue_delay_us,
              max_request_batch=args.max_request_batch, log_verbose=args.log_verbose, workspace=args.workspace,
              ready=lambda: print("ready", flush=True))
    except UGTSRError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
