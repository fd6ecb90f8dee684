"""Progress bars for long loops: tqdm at a terminal or in JupyterLab, none in the built book.

The book build sets ``DGM_PROGRESS=0``: a static page cannot animate a bar, and a widget bar
would make the page load JavaScript from a CDN. It also sets ``DGM_PROGRESS_LOG``: then a bar
that was asked for is written, as a line every ``LOG_EVERY_S`` seconds and one at the end, to
the build's event file (dgm/kernel_progress.py), which ``make book`` prints on its terminal.
Nothing reaches the page either way.
"""

from __future__ import annotations

import math
import os
import time

from tqdm.auto import tqdm
from tqdm.std import tqdm as plain_tqdm

from dgm.kernel_progress import log_event, log_path

LOG_EVERY_S = 20.0  # a training step block per line: often enough to show life, few lines


class _BarEvents:
    """File-like target of a text bar: its first state, one redraw per ``LOG_EVERY_S`` seconds
    and its final state become ``bar`` events of the build log. Training loops that update the
    bar's postfix every step redraw it every step; the rest are dropped here."""

    def __init__(self) -> None:
        self.last_sent = -math.inf
        self.pending: str | None = None  # the latest redraw not sent

    def _send(self, line: str) -> None:
        log_event("bar", text=line)
        self.last_sent, self.pending = time.monotonic(), None

    def write(self, text: str) -> None:
        line = text.replace("\r", "").strip()  # tqdm redraws as "\r<bar>"
        if line:
            self.pending = line
            if time.monotonic() - self.last_sent >= LOG_EVERY_S:
                self._send(line)
        elif "\n" in text and self.pending:  # closing: tqdm ends the final redraw with a newline
            self._send(self.pending)

    def flush(self) -> None:
        pass


def progress_enabled(requested: bool = True) -> bool:
    """Whether to draw a bar: the caller asked for one and ``$DGM_PROGRESS`` is not ``0``."""
    return requested and os.environ.get("DGM_PROGRESS", "1").strip() != "0"


def progress_bar(iterable=None, *, enabled: bool = True, **kwargs) -> tqdm:
    """``tqdm(iterable, **kwargs)``, disabled unless :func:`progress_enabled` (``enabled``).

    During a book build a requested bar goes to the build's event file instead (see above).
    """
    if enabled and log_path() is not None:
        kwargs.update(file=_BarEvents(), mininterval=LOG_EVERY_S, ascii=True, leave=True,
                      dynamic_ncols=False, ncols=72)
        return plain_tqdm(iterable, **kwargs)
    return tqdm(iterable, disable=not progress_enabled(enabled), **kwargs)
