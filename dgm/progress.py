"""Progress bars for long loops: tqdm at a terminal or in JupyterLab, none in the built book.

The book build sets ``DGM_PROGRESS=0``: a static page cannot animate a bar, and a widget bar
would make the page load JavaScript from a CDN.
"""

from __future__ import annotations

import os

from tqdm.auto import tqdm


def progress_enabled(requested: bool = True) -> bool:
    """Whether to draw a bar: the caller asked for one and ``$DGM_PROGRESS`` is not ``0``."""
    return requested and os.environ.get("DGM_PROGRESS", "1").strip() != "0"


def progress_bar(iterable=None, *, enabled: bool = True, **kwargs) -> tqdm:
    """``tqdm(iterable, **kwargs)``, disabled unless :func:`progress_enabled` (``enabled``)."""
    return tqdm(iterable, disable=not progress_enabled(enabled), **kwargs)
