"""``RemoteUpscaler``: the :class:`runtime.Upscaler` API over a Triton Inference Server (``tritonclient``).

    >>> from runtime import Upscaler
    >>> with Upscaler(server="localhost:8001") as up:          # gRPC; protocol="http" for :8000
    ...     out = up.upscale(cv2.imread("in.png", cv2.IMREAD_UNCHANGED))

It talks to the models that ``python -m runtime.serve`` binds (``ugtsr`` for uint8 images,
``ugtsr_u16`` for uint16; see :mod:`runtime.serve`): gray ``(H, W)`` / ``(H, W, 1)``, BGR and BGRA
images go out as ``[H, W, C]`` and come back in the same layout and dtype, ``scale`` x the size.
Padding, tiling and the network run on the server with the server's settings.

Errors are one line, like the local runtime's: a request the server refuses raises
:class:`~ugtsr.errors.UnsupportedInputError` with the server's message; a server that cannot be reached
(or dies during a request) raises :class:`~ugtsr.errors.UGTSRError` naming the address.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from ugtsr.errors import UGTSRError, UnsupportedInputError, require

from .backends import ModelInfo
from .imageio import MIN_IMAGE_SIDE

__all__ = ["RemoteUpscaler", "PROTOCOLS", "DEFAULT_PORTS"]

PROTOCOLS = ("grpc", "http")
#: Triton's default ports per protocol, used when ``server`` has no ``:PORT``
DEFAULT_PORTS = {"grpc": 8001, "http": 8000}
_MODELS = {np.dtype(np.uint8): ("ugtsr", "UINT8"), np.dtype(np.uint16): ("ugtsr_u16", "UINT16")}


class RemoteUpscaler:
    """Upscale through ``python -m runtime.serve`` (or any Triton serving the same models).

    Args:
        server: ``HOST:PORT`` (``HOST`` alone takes Triton's default port of the protocol).
        protocol: ``"grpc"`` (port 8001) or ``"http"`` (port 8000).
        timeout: seconds one request may take (``None`` = no limit).
        model: name of the uint8 model (the uint16 one is ``<model>_u16``).

    Thread safety: one client per thread is safest; calls on one instance are serialised by a lock.
    """

    def __init__(self, server: str = "localhost", *, protocol: str = "grpc", timeout: float | None = None,
                 model: str = "ugtsr") -> None:
        if protocol not in PROTOCOLS:
            raise UnsupportedInputError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
        server = str(server).strip()
        for scheme in ("http://", "https://", "grpc://"):
            if server.startswith(scheme):
                server = server[len(scheme):]
        if not server:
            raise UnsupportedInputError("server must be HOST:PORT, got an empty string")
        if ":" not in server.rsplit("]", 1)[-1]:
            server = f"{server}:{DEFAULT_PORTS[protocol]}"
        self.server = server
        self.protocol = protocol
        self.timeout = timeout
        self._models = {dt: (model if name == "ugtsr" else f"{model}_u16", wire) for dt, (name, wire) in
                        _MODELS.items()}
        self._lib = require(f"tritonclient.{protocol}", extra="serve", purpose="talking to a Triton server")
        self._lock = threading.Lock()
        self._info: ModelInfo | None = None
        self._batched: dict[str, bool] = {}
        try:
            self._client = self._lib.InferenceServerClient(url=server)
        except Exception as exc:  # tritonclient raises several types for a bad address
            raise UGTSRError(f"{server}: cannot create a {protocol} client ({_one_line(exc)})") from None
        self._check_ready()

    # ---- lifetime -----------------------------------------------------------------------------------
    def close(self) -> None:
        client, self._client = getattr(self, "_client", None), None
        if client is not None:
            try:
                client.close()
            except Exception:  # closing a client of a dead server must not mask the caller's error
                pass

    def __enter__(self) -> RemoteUpscaler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RemoteUpscaler({self.server!r}, protocol={self.protocol!r})"

    # ---- what the server runs -----------------------------------------------------------------------
    @property
    def info(self) -> ModelInfo:
        """``scale`` (probed once with a 16x16 request), ``outputs`` (from the model config),
        ``source`` = ``triton://HOST:PORT/<model>``. ``multiple_of`` is 1: the server pads."""
        if self._info is None:
            name = self._models[np.dtype(np.uint8)][0]
            outputs = self._output_names(name)
            probe = self._infer(np.zeros((16, 16, 3), np.uint8), want_uncertainty=False)[0]
            self._info = ModelInfo(scale=int(probe.shape[0]) // 16, multiple_of=1, min_size=MIN_IMAGE_SIDE,
                                   outputs=("sr", "uncertainty") if "uncertainty" in outputs else ("sr",),
                                   source=f"triton://{self.server}/{name}")
        return self._info

    @property
    def scale(self) -> int:
        return self.info.scale

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        return height * self.scale, width * self.scale

    # ---- public API (as runtime.Upscaler) ----------------------------------------------------------
    def upscale(self, image: np.ndarray, *, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """Super-resolve an OpenCV image on the server; same layout and dtype, ``scale`` x the size."""
        out, _ = self._infer(image, want_uncertainty=False)
        if progress is not None:
            progress(1, 1)
        return out

    def upscale_with_uncertainty(
        self, image: np.ndarray, *, progress: Callable[[int, int], None] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Like :meth:`upscale`, plus the uncertainty map ``(H', W')`` float32 (mean ``s = ln theta``)."""
        if not self.info.has_uncertainty:
            raise UnsupportedInputError(f"{self.info.source}: this model has no uncertainty output")
        out, unc = self._infer(image, want_uncertainty=True)
        if unc is None:
            raise UGTSRError(f"{self.info.source}: the server returned no uncertainty output")
        if progress is not None:
            progress(1, 1)
        return out, unc

    def upscale_file(self, data: bytes) -> bytes:
        """Encoded image bytes (PNG/JPEG/WebP/TIFF/...) -> PNG bytes, through the ``ugtsr_file`` model."""
        lib = self._lib
        inp = lib.InferInput("file", [1], "BYTES")
        inp.set_data_from_numpy(np.array([bytes(data)], dtype=object))
        result = self._call("ugtsr_file", [inp], [lib.InferRequestedOutput("file")])
        return bytes(result.as_numpy("file").reshape(-1)[0])

    # ---- internals ---------------------------------------------------------------------------------------
    def _check_ready(self) -> None:
        try:
            ready = self._client.is_server_ready()
        except Exception as exc:
            raise UGTSRError(f"{self.server}: cannot reach the Triton server over {self.protocol} "
                             f"({_one_line(exc)}); is `python -m runtime.serve` running there?") from None
        if not ready:
            raise UGTSRError(f"{self.server}: the Triton server is not ready")

    def _output_names(self, model: str) -> set[str]:
        config = self._model_config(model)
        return {o["name"] for o in config.get("output", [])}

    def _model_config(self, model: str) -> dict[str, Any]:
        try:
            if self.protocol == "grpc":
                config = self._client.get_model_config(model, as_json=True)["config"]
            else:
                config = self._client.get_model_config(model)
        except Exception as exc:
            raise UGTSRError(f"{self.server}: model {model!r} is not served there ({_one_line(exc)})") from None
        self._batched[model] = int(config.get("max_batch_size", 0) or 0) > 0
        return config

    def _infer(self, image: Any, *, want_uncertainty: bool) -> tuple[np.ndarray, np.ndarray | None]:
        if not isinstance(image, np.ndarray):
            raise UnsupportedInputError(f"image: expected a numpy array, got {type(image).__name__}")
        if np.dtype(image.dtype) not in self._models:
            raise UnsupportedInputError(f"image: unsupported pixel type {image.dtype} (only 8-bit and 16-bit "
                                        "unsigned integer images are supported)")
        if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
            raise UnsupportedInputError(f"image: unsupported image shape {image.shape} (expected (H, W), "
                                        "(H, W, 1), (H, W, 3) or (H, W, 4))")
        model, wire = self._models[np.dtype(image.dtype)]
        if model not in self._batched:
            self._model_config(model)
        sent = np.ascontiguousarray(image if image.ndim == 3 else image[:, :, None])
        if self._batched[model]:
            sent = sent[None]
        lib = self._lib
        inp = lib.InferInput("image", list(sent.shape), wire)
        inp.set_data_from_numpy(sent)
        outputs = [lib.InferRequestedOutput("image")]
        if want_uncertainty:
            outputs.append(lib.InferRequestedOutput("uncertainty"))
        result = self._call(model, [inp], outputs)
        out = result.as_numpy("image")
        unc = result.as_numpy("uncertainty") if want_uncertainty else None
        if out is None:
            raise UGTSRError(f"{self.server}: the server returned no 'image' output")
        if self._batched[model]:
            out = out[0]
            unc = unc[0] if unc is not None else None
        if image.ndim == 2:
            out = out.reshape(out.shape[:2])
        return out, (np.ascontiguousarray(unc, dtype=np.float32) if unc is not None else None)

    def _call(self, model: str, inputs: list[Any], outputs: list[Any]) -> Any:
        from tritonclient.utils import InferenceServerException

        from .serve import error_message

        if self._client is None:
            raise UGTSRError(f"{self.server}: the client is closed")
        kwargs: dict[str, Any] = {}
        if self.timeout is not None:
            if self.protocol == "grpc":
                kwargs["client_timeout"] = float(self.timeout)
            else:
                kwargs["timeout"] = int(self.timeout * 1e6)  # microseconds
        with self._lock:
            try:
                return self._client.infer(model, inputs, outputs=outputs, **kwargs)
            except InferenceServerException as exc:
                status = str(exc.status() or "")
                message = error_message(exc.message() or str(exc))
                if "UnsupportedInputError" in (exc.message() or "") or "INVALID_ARGUMENT" in status or \
                        status == "400":
                    raise UnsupportedInputError(message) from None
                if "UNAVAILABLE" in status:  # gRPC: connection refused or lost mid-request
                    raise UGTSRError(f"{self.server}: request failed, the server is unreachable ({message})") from None
                raise UGTSRError(f"{self.server}: {message}") from None
            except Exception as exc:  # connection refused/reset: the server went away
                raise UGTSRError(f"{self.server}: request failed, the server is unreachable "
                                 f"({_one_line(exc)})") from None


def _one_line(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
