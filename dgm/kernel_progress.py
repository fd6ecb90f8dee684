"""Progress events of a book build: written by chapter kernels, read by ``dgm.build``.

A chapter kernel cannot reach the terminal of ``make book``: ipykernel forwards everything
written to its standard output and error (Python's and the file descriptors') into the
notebook, that is onto the page. So during a build (``$DGM_PROGRESS_LOG`` set by
``dgm.build``) kernels append one JSON line per event to that file, and the build process
prints them. Outside a build nothing here does anything.

Three writers: the IPython extension below (one event before and after every cell), the
training bars of :mod:`dgm.progress` (one line per step block), and the Sphinx extension
book/_ext/chapter_progress.py (one event when Sphinx starts reading a chapter).
"""

from __future__ import annotations

import json
import logging
import os
import time

LOG_VAR = "DGM_PROGRESS_LOG"
# Set by dgm/preexecute.py in each kernel it starts: chapters run side by side then, and their
# events say which chapter they come from.
CHAPTER_VAR = "DGM_BUILD_CHAPTER"
# ipykernel >= 7.4 warns at start-up, once per chapter, that its sockets are not encrypted.
# dgm.build filters exactly this message (see TcpNotice); every other kernel message passes.
TCP_NOTICE = "Kernel is running over TCP without encryption"


def log_path() -> str | None:
    """The event file of the running build, or None outside a build."""
    return os.environ.get(LOG_VAR, "").strip() or None


def log_event(event: str, **fields) -> None:
    """Append ``{"event": event, "time": <epoch s>, **fields}`` to the build's event file.

    In a kernel started by dgm/preexecute.py the event also names its ``chapter``.
    """
    path = log_path()
    if path is None:
        return
    chapter = os.environ.get(CHAPTER_VAR, "").strip()
    if chapter and "chapter" not in fields:
        fields["chapter"] = chapter
    write_event(path, event, **fields)


def write_event(path: str, event: str, **fields) -> None:
    """Append one event line to the event file at ``path`` (the build process's own events)."""
    line = json.dumps({"event": event, "time": time.time(), **fields})
    with open(path, "a", encoding="utf-8") as f:  # one short write per line: no interleaving
        f.write(line + "\n")


class TcpNotice(logging.Filter):
    """Drops the kernel's "running over TCP without encryption" warning and nothing else.

    Harmless for a book build: the kernel's sockets listen on 127.0.0.1 only, every request
    that runs code must carry an HMAC signature made with the key of a connection file only
    the build's user can read, and what travels in plain text is the chapter's own code and
    output, which the built page publishes anyway.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return TCP_NOTICE not in record.getMessage()


def kernel_config() -> str:
    """The ``ipython_kernel_config.py`` of the build's kernels (``dgm.build`` writes it)."""
    return (
        "# Written by dgm.build for the book build's chapter kernels.\n"
        "c = get_config()  # noqa: F821\n"
        "c.InteractiveShellApp.extensions = ['dgm.kernel_progress']\n"
        "c.IPKernelApp.logging_config = {\n"
        "    'filters': {'tcp_notice': {'()': 'dgm.kernel_progress.TcpNotice'}},\n"
        "    'handlers': {'console': {'filters': ['tcp_notice']}},\n"
        "}\n"
    )


def load_ipython_extension(ipython) -> None:
    """IPython extension: log an event before and after every cell the kernel runs."""
    counter = {"cell": 0, "start": 0.0}

    def before(info) -> None:
        counter["cell"] += 1
        counter["start"] = time.perf_counter()
        log_event("cell_start", cell=counter["cell"])

    def after(result) -> None:
        log_event("cell_end", cell=counter["cell"],
                  seconds=round(time.perf_counter() - counter["start"], 2),
                  error=not result.success)

    ipython.events.register("pre_run_cell", before)
    ipython.events.register("post_run_cell", after)
