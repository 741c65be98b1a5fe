"""Start ``python -m runtime.serve`` as a child process and wait until it serves.

The server runs under the serving interpreter (``UGTSR_SERVE_PYTHON``: the Debian Python whose
libpython PyTriton's Triton Python backend links; see docs/SERVING.md), usually not the caller's,
so it is a subprocess: in its own session (process group, so that the whole tree -- tritonserver,
the Python-backend stubs -- can be signalled), on free ports, with its output in a log file whose
``ready`` line (printed by ``runtime.serve`` once Triton reports the models ready) ends the wait.
Used by ``benchmarks.serve`` and the serving tests; importable without PyTriton.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from ugtsr.errors import UGTSRError

__all__ = ["ServeProcess", "free_ports"]

REPO_ROOT = Path(__file__).resolve().parents[1]


def free_ports(n: int) -> list[int]:
    """``n`` TCP ports that were free a moment ago (bound to port 0 together, then released)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class ServeProcess:
    """``python -m runtime.serve ARGS --http-port P --grpc-port Q --metrics-port R`` until ready.

    Raises :class:`UGTSRError` (with the log's tail) if the server exits or is not ready within
    ``ready_timeout`` seconds; in the second case the process group is killed first.
    """

    def __init__(self, python: str, args: Sequence[str], *, log: str | os.PathLike,
                 ready_timeout: float = 300.0, cwd: str | os.PathLike = REPO_ROOT) -> None:
        self.http, self.grpc, self.metrics = free_ports(3)
        self.log = Path(log)
        cmd = [python, "-m", "runtime.serve", *args, "--http-port", str(self.http), "--grpc-port", str(self.grpc),
               "--metrics-port", str(self.metrics)]
        # the serving venv has its own packages: the caller's PYTHONPATH / VIRTUAL_ENV must not leak in
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        with open(self.log, "wb") as fh:
            self.proc = subprocess.Popen(cmd, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True)
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise UGTSRError(f"runtime.serve exited with {self.proc.returncode}; {self.log}:\n{self.tail()}")
            if b"\nready\n" in b"\n" + self.log.read_bytes():
                return
            time.sleep(0.5)
        self.kill()
        raise UGTSRError(f"runtime.serve was not ready after {ready_timeout:g} s; {self.log}:\n{self.tail()}")

    @property
    def ports(self) -> tuple[int, int, int]:
        return self.http, self.grpc, self.metrics

    def address(self, protocol: str = "grpc") -> str:
        return f"localhost:{self.grpc if protocol == 'grpc' else self.http}"

    def tail(self, n: int = 4000) -> str:
        return self.log.read_bytes()[-n:].decode("utf-8", "replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int | None:
        """Send ``sig`` to the server process (it shuts Triton down itself) and wait; returns its exit
        status. If it does not exit in ``timeout`` seconds, the whole group is killed."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL the whole process group: the machine serving the model goes away."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)
