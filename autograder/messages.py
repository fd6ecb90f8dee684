"""Every sentence the grader writes into a student's feedback, and the redaction it passes.

Scoring (:mod:`autograder.scoring`), merging (:mod:`autograder.merge`) and the pipeline
(:mod:`autograder.pipeline`) decide *what* happened; the words for it are here, so that the
feedback's tone and promises can be read, reviewed and changed in one file. Texts about a file
that cannot be graded at all (not JSON, too large, ...) stay with the checks that find them,
in :mod:`autograder.submissions`; a verdict's own message comes from the hidden check.

Nothing a student sees may hold a hidden check's source: every text that comes from the kernel
or a verdict goes through :func:`redact`.
"""

from __future__ import annotations

import re

from autograder.notebook_format import cell_meta, source_text

#: Longest message taken from an exception or a verdict, in characters.
MESSAGE_LIMIT = 600
#: Hidden-check lines shorter than this are too common to redact (``return x``).
SECRET_MIN_CHARS = 12

NOT_DONE = ("Not done yet: your code raises NotImplementedError, so the FIXME is still there; "
            "replace it with your implementation.")
NOT_JUDGED = "the check was not judged"
GRADER_FAILED = ("Not graded: the grader failed on this submission; your instructor has been "
                 "told.")
REJECTED = "Not graded: the submitted file could not be graded (see the message above)."
PENDING = "Pending: graded by hand."
PENDING_SHORT = "Pending."
NO_ANSWER = "No answer found (the placeholder is still there)."
OUTSIDE_SANDBOX = ("The notebook ran outside the grader's sandbox (this machine has no Linux "
                   "user namespaces, or the instructor turned it off): it had network access "
                   "and no read-only file system. Your grade is not affected.")


# --- redaction --------------------------------------------------------------------------------

def hidden_lines(source) -> list[str]:
    """Distinctive lines of the hidden checks of ``source``, longest first: they must never
    reach a student."""
    lines = set()
    for cell in source.cells:
        if cell_meta(cell).get("role") == "hidden":
            for line in source_text(cell).splitlines():
                line = line.strip()
                if len(line) >= SECRET_MIN_CHARS:
                    lines.add(line)
    return sorted(lines, key=len, reverse=True)


def redact(text: str, secret_lines: list[str]) -> str:
    """``text`` without any hidden-check source line, one line, at most MESSAGE_LIMIT chars."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", text or "")
    for line in secret_lines:
        if line in text:
            text = text.replace(line, "[hidden check]")
    text = " ".join(text.split())
    return text if len(text) <= MESSAGE_LIMIT else text[:MESSAGE_LIMIT - 3] + "..."


# --- what a cell did --------------------------------------------------------------------------

def describe_cell(rec, what: str, timeout: float, secret: list[str]) -> str | None:
    """A sentence about a cell (:class:`autograder.execute.CellRecord`, None: it never ran)
    that did not pass; None when it passed. ``what`` names the cell ("Your cell `x`")."""
    if rec is None:
        return f"{what} did not run (the notebook stopped before reaching it)."
    if rec.status == "passed":
        return None
    if rec.status == "timeout":
        return (f"{what} did not finish within {timeout:g} s and was stopped: is a loop not "
                "ending, or is it too slow for this profile?")
    if rec.status == "crashed":
        return (f"{what} stopped the Python kernel (a crash, or it ran out of memory); the "
                "cells after it were run again without it.")
    if rec.status == "skipped":
        return f"{what} was skipped."
    if rec.status == "error":
        return (f"{what} could not run: the Python kernel had stopped (it crashed, ran out of "
                "memory, or did not recover from an earlier timeout).")
    ename, evalue = rec.ename or "Error", redact(rec.evalue or "", secret)
    if ename == "NotImplementedError":
        return f"{what} raised NotImplementedError. {NOT_DONE}"
    if ename == "AssertionError":
        return f"{what} failed: {evalue}" if evalue else f"{what} failed (no message)."
    if ename == "NameError":
        return (f"{what} raised NameError: {evalue}. Did the cell that defines it run without "
                "errors, and does it keep the name the notebook asks for?")
    return f"{what} raised {ename}: {evalue}"


def graded_cell(cid: str) -> str:
    return f"Your cell `{cid}`"


def selfcheck_cell(cid: str) -> str:
    return f"Self-check `{cid}`"


def check_label(n: int, total: int, points: float) -> str:
    return f"Check {n} of {total} ({points:g} point{'s' * (points != 1)})"


def check_not_run(label: str, error: str) -> str:
    return f"{label} did not run: {error}."


def check_blocked_by(label: str, cid: str) -> str:
    return (f"{label} could not run: your cell `{cid}` did not complete, so a name it defines "
            "is missing (see above).")


def check_not_done(label: str) -> str:
    return f"{label}: 0 points (NotImplementedError, see above)."


def check_failed(label: str, verdict_message: str) -> str:
    return f"{label} failed: {verdict_message}"


def check_not_judged(label: str, verdict_message: str) -> str:
    return f"{label} could not be judged: {verdict_message}"


def check_partial(label: str, verdict_message: str) -> str:
    return f"{label}: partial credit. {verdict_message}"


# --- the whole submission ---------------------------------------------------------------------

def grading_stopped(error: str) -> str:
    return f"Grading stopped early: {error}"


def internal_error(exc: BaseException) -> str:
    return f"Internal grader error ({type(exc).__name__})."


# --- merging the student's cells (autograder.merge) -------------------------------------------

def cell_not_found(cid: str, role: str) -> str:
    what = "code" if role == "graded" else "answer"
    return (f"Your {what} for cell `{cid}` was not found in the submitted notebook, so it was "
            "graded as left undone.")


def matched_by_content(cid: str, student_index: int) -> str:
    return (f"Cell `{cid}` had lost its id and tags (some editors, e.g. Colab or VS Code, drop "
            f"them), so your cell {student_index + 1} was matched by position and content.")


def matched_by_tag(cid: str) -> str:
    return f"Cell `{cid}` was found by its item tag, not its id."


def added_definitions(cells: list[int]) -> str:
    return ("Cells you added (" + ", ".join(map(str, cells)) + ") define functions or classes "
            "but are not run by the grader: helper code belongs inside the graded cell that "
            "uses it.")
