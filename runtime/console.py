"""One-line console messages for the runtime's command-line front ends (``runtime.infer``,
``runtime.batch``): printed through tqdm while a progress bar is shown, so bars and messages do not
interleave, and escaped with :func:`runtime.files.display`, so a file name with a newline in it
cannot split a message."""
from __future__ import annotations

import sys

from .files import display

__all__ = ["Console"]


class Console:
    """Writes one-line messages to stderr (or stdout with ``err=False``); ``tqdm`` is the tqdm class
    for progress bars, or ``None`` when tqdm is not installed (it is in the runtime extra)."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        try:
            from tqdm import tqdm
        except ImportError:  # no bars without tqdm; the messages are the same
            tqdm = None
        self.tqdm = tqdm

    def write(self, msg: str, *, err: bool = True) -> None:
        stream = sys.stderr if err else sys.stdout
        line = display(msg)
        if self.tqdm is not None:
            self.tqdm.write(line, file=stream)
        else:
            print(line, file=stream)
        stream.flush()
