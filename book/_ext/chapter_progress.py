"""Sphinx extension of the course: tells ``make book`` which chapter the build is reading.

When Sphinx starts reading a page that has code cells, and the build was started by
``dgm.build`` (``$DGM_PROGRESS_LOG`` is set), this appends a ``chapter`` event, with the number
of code cells the page will run, to the build's event file (dgm/kernel_progress.py). myst-nb
executes (or takes from the cache) the page right after, so the cell events that follow come
from this chapter. Without ``$DGM_PROGRESS_LOG`` (a bare ``jupyter-book build``) it does nothing.
"""

from __future__ import annotations

import jupytext

from dgm.kernel_progress import log_event, log_path


def code_cells(text: str) -> int:
    """The number of code cells with code in a MyST-markdown notebook (nbclient skips empty ones)."""
    nb = jupytext.reads(text, fmt="md:myst")
    return sum(1 for cell in nb.cells if cell.cell_type == "code" and cell.source.strip())


def _on_source_read(app, docname: str, source: list[str]) -> None:
    if log_path() is None or "```{code-cell}" not in source[0]:
        return
    log_event("chapter", name=docname, cells=code_cells(source[0]))


def setup(app):
    app.connect("source-read", _on_source_read)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
