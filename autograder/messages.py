"""Every sentence the grader writes into a student's feedback, and the redaction it passes.

Collecting and inspecting files (:mod:`autograder.submissions`), merging
(:mod:`autograder.merge`), scoring (:mod:`autograder.scoring`) and the pipeline
(:mod:`autograder.pipeline`) decide *what* happened; the words for it are here, so that the
feedback's tone and promises can be read, reviewed and changed in one file. Only a verdict's
own message comes from elsewhere: the hidden check that failed (:mod:`autograder.checks`).

Nothing a student sees may hold a hidden check's source: every text that comes from the kernel
or a verdict goes through :func:`redact`. Nor may it hold what the student's code could have read
from a hidden check (its inputs, names, constants): text from the kernel reaches the feedback
only here, in :func:`describe_cell`, which once any hidden check has run says only that an
exception was raised, never its type or message (the code may have kept what it read in a global
and chosen either from it in a later cell of its own); a cell's printed output and warnings never
reach it. A verdict's message goes
through :func:`verdict_text`, which tells every number in it that the check did not write or mark
as its own by its sign and decade only (:func:`decade`), so that a number the student's code
returned carries at most 6 bits back.
"""

from __future__ import annotations

import builtins
import math
import re

from autograder.notebook_format import cell_meta, source_text
from autograder.observe import LIBRARY_EXCEPTIONS

#: Longest message taken from an exception or a verdict, in characters.
MESSAGE_LIMIT = 600
#: Hidden-check lines shorter than this are too common to redact (``return x``).
SECRET_MIN_CHARS = 12
#: Longest exception message shown from the student's own cells (graded cells, self-checks).
EXCEPTION_LIMIT = 300
_EXCEPTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]{0,79}")
_BUILTIN_EXCEPTIONS = frozenset(n for n, o in vars(builtins).items()
                                if isinstance(o, type) and issubclass(o, BaseException))
#: Where a traceback starts inside an exception's text (Python's, IPython's, a frame line):
#: nothing from there on is shown.
_FRAME = re.compile(r"Traceback \(most recent call last\)|File \"[^\"]*\", line \d+|"
                    r"Cell In ?\[\d*\],? line \d+|-{2,}> ?\d+|Input In ?\[\d*\]")

NOT_DONE = ("Not done yet: your code raises NotImplementedError, so the FIXME is still there; "
            "replace it with your implementation.")
NOT_JUDGED = "the check was not judged"
GRADER_FAILED = ("Not graded: the grader failed on this submission; your instructor has been "
                 "told.")
REJECTED = "Not graded: the submitted file could not be graded (see the message above)."
PENDING = "Pending: graded by hand."
PENDING_SHORT = "Pending."
NO_ANSWER = "No answer found (the placeholder is still there)."
NOT_ANSWERED = ("0 points: not answered (the template's placeholder `YOUR ANSWER HERE` is "
                "still there).")
OUTSIDE_SANDBOX = ("The notebook ran outside the grader's sandbox: the instructor turned "
                   "isolation off (--insecure-no-sandbox), so it could read this machine's "
                   "files and reach the network. Your grade is not affected.")


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


#: A number in a message: its mantissa (with a decimal point or an exponent, or both) and exponent.
_NUMBER = re.compile(r"(?<![\w.])([-+]?)(\d+\.\d*|\.\d+|\d+(?=[eE][-+]?\d))([eE][-+]?\d+)?(?![\d.])")
#: Significant figures of a number a verdict's message shows.
FIGURES = 2


def figures(x) -> str:
    """``x`` with at most two significant figures, as a student's feedback may show a number the
    student's code returned or the grader measured from it: ``1105.243`` is ``1100``, ``0.012345``
    is ``0.012``, ``-3.2e-07`` stays so; nan and infinities as Python writes them. Magnitudes
    beyond 1e-12 and 1e+12 are named by that bound (``-1.2e-200`` is ``a negative number smaller
    than 1.0e-12 in size``): a free exponent is 9 bits a student's code could choose, this one 5.
    Its output is a fixed point: ``figures`` of any number in it gives that number back."""
    x = float(x)
    if not math.isfinite(x) or x == 0:
        return repr(x) if not math.isfinite(x) else "0"
    exp = math.floor(math.log10(abs(float(f"{x:.{FIGURES - 1}e}"))))
    if exp < -12:
        return f"a {'negative' if x < 0 else 'positive'} number smaller than 1.0e-12 in size"
    if abs(float(f"{x:.{FIGURES - 1}e}")) > 1e12:  # 1.0e+12 itself is written as such, so that
        # verdict_text, which writes every number of a message again, leaves this text as it is
        return f"a {'negative' if x < 0 else 'positive'} number larger than 1.0e+12 in size"
    if not -4 <= exp < 6:
        return f"{x:.{FIGURES - 1}e}"
    decimals = FIGURES - 1 - exp
    text = f"{round(x, decimals):.{max(decimals, 0)}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


#: The marks around text a verdict tells as it is (:func:`told`): a constant of the check, never a
#: value the student's code chose. Private-use characters: no observation can carry them
#: (:func:`autograder.observe.decode` removes them from every string it reads).
TOLD_OPEN, TOLD_CLOSE = "\ue000", "\ue001"
_TOLD = re.compile(f"{TOLD_OPEN}([^{TOLD_OPEN}{TOLD_CLOSE}]*){TOLD_CLOSE}")
#: Any number in a message: integers too (a student's code can choose 784 as well as 0.784).
_ANY_NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?(?![\w]|\.\d)")
#: Whole numbers up to this size are shown as they are (dimensions, counts, steps): 5 bits.
SMALL_INT = 16
#: Magnitudes a message tells by their decade; beyond them only which bound they pass.
ECHO_LOW, ECHO_HIGH = 1e-6, 1e6


def told(x) -> str:
    """``x`` (a number, or a text such as a shape) marked as one of the check's own constants, which
    a verdict's message may show as it is (a threshold read from a results file, an expected shape).
    Never mark a value computed from what the student's code returned."""
    return f"{TOLD_OPEN}{x}{TOLD_CLOSE}"


def decade(x) -> str:
    """A number the feedback was not told it may show, as it shows it: its sign and decade
    (``0.37`` is ``between 0.1 and 1``), 0, a power of ten, or which of the bounds 1e-06 and
    1e+06 its size passes; nan and infinities as Python writes them. About 30 texts in all, so a
    number carries at most 6 bits, whatever the student's code made it. A fixed point: the
    numbers in its output are powers of ten, written as :func:`figures` writes them."""
    x = float(x)
    if not math.isfinite(x) or x == 0:
        return repr(x) if not math.isfinite(x) else "0"
    size, sign = abs(x), "-" if x < 0 else ""
    if size < ECHO_LOW:
        return f"{'a negative' if x < 0 else 'a'} number less than {figures(ECHO_LOW)} in size"
    if size > ECHO_HIGH:
        return f"{'a negative' if x < 0 else 'a'} number more than {figures(ECHO_HIGH)} in size"
    low = 10.0 ** math.floor(math.log10(size))
    if low * 10 <= size:  # log10 rounding at an exact power of ten
        low *= 10
    if size == low:
        return f"{sign}{figures(low)}"
    ends = (figures(low), figures(low * 10)) if x > 0 else (f"-{figures(low * 10)}", f"-{figures(low)}")
    return f"between {ends[0]} and {ends[1]}"


def _kept(token: str, keep: frozenset[float]) -> bool:
    try:
        x = float(token)
    except ValueError:
        return False
    if x in keep or (x == int(x) and abs(x) <= SMALL_INT and "e" not in token.lower()):
        return True
    size = abs(x)
    return ECHO_LOW <= size <= ECHO_HIGH and 10.0 ** round(math.log10(size)) == size


def literals(source: str) -> frozenset[float]:
    """The numbers written in a check's source (its setup and verdict): what its messages may
    show as they are, besides what it marks with :func:`told`."""
    out = set()
    for m in _ANY_NUMBER.finditer(source):
        try:
            out.add(float(m.group(0).lstrip("+-")))
        except ValueError:
            pass
    return frozenset(out | {-x for x in out})


def verdict_text(text: str, secret: list[str], keep: frozenset[float] = frozenset()) -> str:
    """A verdict's message as the feedback shows it: redacted (:func:`redact`), with every number
    in it that the check did not write in its source (``keep``, :func:`literals`) or mark with
    :func:`told`, and that is not a whole number up to :data:`SMALL_INT` or a power of ten,
    told by its decade (:func:`decade`); the check's own numbers with two significant figures
    (:func:`figures`: a threshold is told, not its last digits). Default-deny: a verdict echoes
    what the student's code returned, which may carry what that code read from the check (red
    team round 5 read a hidden check's source back through echoed numbers at two significant
    figures, 11 bits each), and must not give away the check's reference values."""
    def written(token: str) -> str:  # a constant: with two significant figures, as ever
        return figures(token) if _NUMBER.fullmatch(token) else token

    def shown(m: re.Match) -> str:
        token = m.group(0)
        try:
            return written(token) if _kept(token, keep) else decade(float(token))
        except (ValueError, OverflowError):
            return token

    parts = _TOLD.split(redact(text, secret))  # even: free text, odd: told constants
    return "".join(_NUMBER.sub(lambda m: written(m.group(0)), p) if i % 2
                   else _ANY_NUMBER.sub(shown, p.replace(TOLD_OPEN, "").replace(TOLD_CLOSE, ""))
                   for i, p in enumerate(parts))


#: The step a time a student sees is rounded up to, in seconds: a notebook's run time is a channel
#: too (red team round 5 slept after a hidden check to tell 8 bits by Gradescope's execution time).
TIME_STEP = 60


def coarse_seconds(seconds: float) -> float:
    """A run's wall time as a student's results show it: rounded up to whole minutes (at most 6
    bits for the longest notebook budget). The exact times stay in the instructor's log."""
    return float(TIME_STEP * max(1, math.ceil(float(seconds) / TIME_STEP)))


def exception_name(ename: str | None) -> str:
    """The exception's type as the kernel named it, when the notebook cannot have chosen that name:
    one of Python's built-in exceptions, or one of torch's and NumPy's on a fixed list
    (``autograder.observe.LIBRARY_EXCEPTIONS``), dotted or not. Any other name, which a class the
    notebook made could carry (with text read from a hidden check's frame), is "an exception"."""
    if not ename or not _EXCEPTION_NAME.fullmatch(ename):
        return "an exception"
    package, _, name = ename.rpartition(".")
    if package in ("", "builtins") and name in _BUILTIN_EXCEPTIONS:
        return name
    if package.split(".")[0] in ("", "torch", "numpy") and name in LIBRARY_EXCEPTIONS:
        return ename
    return "an exception"


def exception_message(evalue: str | None, secret: list[str],
                      limit: int = EXCEPTION_LIMIT) -> str:
    """What a student's own cell's exception says, for the feedback: its message without any
    traceback in it (a frame names a file, a cell and its source), without any hidden-check
    source line, on one line, at most ``limit`` characters."""
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", evalue or "")
    frame = _FRAME.search(text)
    if frame:
        text = text[:frame.start()] + " [traceback not shown]"
    text = redact(text, secret)
    return text if len(text) <= limit else text[:limit - 3] + "..."


# --- what a cell did --------------------------------------------------------------------------

def describe_cell(rec, what: str, timeout: float, secret: list[str],
                  hidden: bool = False, after_hidden: bool = False) -> str | None:
    """A sentence about a cell (:class:`autograder.execute.CellRecord`, None: it never ran)
    that did not pass; None when it passed. ``what`` names the cell ("Your cell `x`").

    This is the one place where text from the kernel reaches the feedback. An exception is shown
    by its type and message (:func:`exception_message`), except in a ``hidden`` check's cell:
    there the student's code ran on the check's own inputs, so what it raised could carry them
    (or anything else its callers' frames hold) out to the student, so only the fact that it
    raised is told: neither message nor type (one of about 64 names the code can choose, 6 bits).
    The same holds for a cell of the student's own that ran ``after_hidden``, after the first
    hidden check: the code could have kept what it read there and raise it now."""
    if rec is None:
        return f"{what} did not run (the notebook stopped before reaching it)."
    if rec.status == "passed":
        return None
    if rec.status == "timeout":
        if rec.evalue:  # cut short by the notebook's time budget
            return (f"{what} was stopped: {rec.evalue}. Is a loop not ending, or is the "
                    "notebook too slow for this profile?")
        return (f"{what} did not finish within {timeout:g} s and was stopped: is a loop not "
                "ending, or is it too slow for this profile?")
    if rec.status == "crashed":
        return (f"{what} stopped the Python kernel (a crash, or it ran out of memory); the "
                "cells after it were run again without it.")
    if rec.status == "skipped":
        return f"{what} was {rec.evalue}." if rec.evalue else f"{what} was skipped."
    if rec.status == "error":
        return (f"{what} could not run: the Python kernel had stopped (it crashed, ran out of "
                "memory, or did not recover from an earlier timeout).")
    ename = exception_name(rec.ename)
    if ename == "NotImplementedError":
        return f"{what} raised NotImplementedError. {NOT_DONE}"
    if hidden:
        return hidden_exception(what)
    if after_hidden:
        from autograder.sandbox import denied_messages

        if rec.ename == "ImportError" and rec.evalue in denied_messages():  # which import: not told
            return IMPORT_REFUSED_AFTER_HIDDEN.format(what=what)
        return own_exception_after_hidden(what)
    evalue = exception_message(rec.evalue, secret)
    if ename == "AssertionError":
        return f"{what} failed: {evalue}" if evalue else f"{what} failed (no message)."
    if ename == "NameError":
        return f"{what} raised NameError: {evalue}. {NAME_HINT}"
    return f"{what} raised {ename}: {evalue}"


NAME_HINT = ("Did the cell that defines it run without errors, and does it keep the name the "
             "notebook asks for?")


#: Once a hidden check has run, the student's code may hold what it read there (its inputs, or
#: the check's source through an IPython hook): an exception's type (one of about 64 names, 6
#: bits; red team round 6 sent 66 bits out per submission that way at full marks) and message are
#: chosen by that code, so the feedback says only that one was raised.
NOT_SHOWN_AFTER_HIDDEN = ("Its type and message are not shown: the cell ran after a hidden check, "
                          "and from then on your code could choose them from what it saw there")


def hidden_exception(what: str) -> str:
    return (f"{what}: your code raised an exception when the check called it. Its type and message "
            "are not shown, since your code could choose them from the check's hidden inputs: call "
            "your code on inputs of your own (the self-check's, say) to see it.")


def own_exception_after_hidden(what: str) -> str:
    return (f"{what} raised an exception. {NOT_SHOWN_AFTER_HIDDEN} (run the cell in your own "
            "notebook to read them).")


IMPORT_REFUSED_AFTER_HIDDEN = (
    "{what} imported a module the grader refuses (a graded notebook may import only the course "
    "package's helpers, not the modules that implement what the homework asks for). Which one is "
    "not shown: the cell ran after a hidden check (run the cell in your own notebook to read the "
    "message).")


def graded_cell(cid: str) -> str:
    return f"Your cell `{cid}`"


def selfcheck_cell(cid: str, first_line: str = "") -> str:
    """A self-check as the student finds it in the notebook: by its first line (the course's
    text, e.g. "# Self-check: for x = 0.5 ..."), since Jupyter does not show a cell's id."""
    line = " ".join(first_line.split()).strip("#\"' ")
    if not line:
        return f"Self-check `{cid}`"
    return f"The self-check \"{line if len(line) <= 60 else line[:57] + '...'}\""


def check_label(n: int, total: int, points: float) -> str:
    return f"Check {n} of {total} ({points:g} point{'s' * (points != 1)})"


def check_not_run(label: str, error: str) -> str:
    return f"{label} did not run: {error}."


def check_blocked_by(label: str, cid: str) -> str:
    return (f"{label} could not run: your cell `{cid}` did not complete, so a name it defines "
            "is missing (see above).")


def check_not_done(label: str) -> str:
    return f"{label}: 0 points (NotImplementedError, see above)."


def check_not_attempted(label: str) -> str:
    """A check whose verdict found the student's code still raising NotImplementedError."""
    return (f"{label}: 0 points: the exercise was not attempted (your code still raises "
            "NotImplementedError: replace the FIXME with your implementation).")


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


# --- collecting and inspecting the submitted files (autograder.submissions) -------------------

UNREADABLE = "Your notebook could not be read: "
DOWNLOAD = "(Jupyter: File > Download; Colab: File > Download > Download .ipynb)"
RESUBMIT = (" Nothing was graded. Open your notebook in Jupyter (or Colab), check that your "
            "work is there, save it, and submit the .ipynb file again " + DOWNLOAD + ".")
#: What a file that starts with these bytes is.
FILE_SIGNATURES = [(b"%PDF", "a PDF document"),
                   (b"PK\x03\x04", "a zip archive (a zipped notebook, or a Word or other "
                    "Office file?)"),
                   (b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image")]


def not_a_notebook_file(name: str) -> str:
    return (f"{name} is not a notebook (.ipynb file), so nothing was graded: submit the "
            f".ipynb file you worked in {DOWNLOAD}.")


def late_submission() -> str:
    return "This submission was handed in late (the learning platform marked it LATE)."


def older_resubmissions(kept: str, older: str) -> str:
    return f"Graded your latest resubmission, {kept}; earlier versions ignored: {older}."


def graded_notebook(name: str) -> str:
    return f"Graded {name}, the one notebook submitted."


def several_notebooks(chosen: str, why: str, ignored: str) -> str:
    return (f"Several notebooks were submitted; graded {chosen} ({why}); ignored {ignored}. "
            "Submit a single notebook to choose it yourself.")


def second_notebook(chosen: str, why: str) -> str:
    """Why a notebook is passed over, for the instructor: its student has another one."""
    return f"a second notebook of the same student; not graded: {chosen} was graded instead ({why})"


def earlier_upload(latest: str) -> str:
    return f"an earlier upload; not graded: the latest, {latest}, was graded instead"


def notebooks_not_read(listed: str) -> str:
    return (f"Notebooks not graded: {listed}. Only the notebook you submitted is graded; if "
            "one of these is your work, submit it as a visible .ipynb file (not a copy inside "
            ".ipynb_checkpoints, not a name that starts with a dot).")


def not_notebooks(listed: str) -> str:
    return f"Ignored, not notebooks: {listed}."


def no_notebook(listed: str) -> str:
    return (f"No gradable notebook (.ipynb file) was found in your submission, only: {listed}. Nothing "
            f"was graded: submit the .ipynb file you worked in {DOWNLOAD}.")


def renamed(student: str, name: str) -> str:
    return f"Another submission had the id {student!r}; this one is graded as {name}."


def _mb(n: float) -> str:
    return f"{n / 2**20:.1f} MB"


def too_large(size: int, max_bytes: int | None) -> str:
    return (f"Your notebook is too large: {_mb(size)}, over the grader's limit of "
            f"{_mb(max_bytes or 0)}, so it was not graded. Outputs (images, long printouts) "
            "are usually what makes a notebook big: clear them (Jupyter: Edit > Clear Outputs "
            "of All Cells; Colab: Edit > Clear all outputs), save, and submit it again.")


def unreadable(reason: str) -> str:
    """A file the grader cannot read: ``reason`` says what it found, then what to do."""
    return f"{UNREADABLE}{reason}{RESUBMIT}"


def cannot_open(strerror: str) -> str:
    return unreadable(f"the file could not be opened ({strerror}).")


def empty_file(size: int) -> str:
    return unreadable(f"the file is empty ({size} bytes): was it saved before it was "
                      "uploaded?")


def other_file_type(what: str) -> str:
    return unreadable(f"the file is {what}, not a notebook.")


def byte_order_mark() -> str:
    return unreadable("the file starts with a byte-order mark, which some text editors (e.g. "
                      "Notepad) add and Jupyter cannot read: do not edit the notebook in a "
                      "text editor.")


def not_utf8(byte: int, position: int) -> str:
    return unreadable(f"the file is not UTF-8 text (byte 0x{byte:02x} at position {position}), "
                      "so it is not a notebook Jupyter saved; it may be another kind of file "
                      "renamed .ipynb.")


def not_json(line: int, column: int, msg: str, web_page: bool) -> str:
    hint = (" It is a web page (saved from the browser?), not the notebook file." if web_page
            else " The file is damaged or was edited as text.")
    return unreadable(f"it is not valid JSON (line {line}, column {column}: {msg}), and every "
                      f"notebook file is JSON.{hint}")


def json_not_object(kind: str) -> str:
    return unreadable(f"it is JSON but not a notebook: it holds a {kind}, not an object with "
                      "\"cells\", \"metadata\" and \"nbformat\".")


def json_without_cells(keys: str) -> str:
    return unreadable(f"it is JSON but not a notebook: it has no \"cells\" (its keys: {keys}).")


def no_nbformat() -> str:
    return unreadable("it has no \"nbformat\" version number, so the grader cannot tell how "
                      "to read it (Jupyter always writes one).")


def unknown_nbformat(version) -> str:
    return unreadable(f"it is in nbformat {version!r}, a version the grader cannot read: it "
                      "reads nbformat 4 (what current Jupyter, JupyterLab, Colab and VS Code "
                      "write) and converts nbformat 3.")


NBFORMAT3_CONVERTED = ("Your notebook was saved in the old nbformat 3 format; the grader "
                       "converted it to nbformat 4. Save it with a current Jupyter next time.")


def nbformat3_without_worksheets() -> str:
    return unreadable("it says nbformat 3 but has no \"worksheets\" list.")


def cells_not_a_list(kind: str) -> str:
    return unreadable(f"its \"cells\" is not a list of cells (it is {kind}).")


def not_a_cell(n: int) -> str:
    return unreadable(f"cell {n} is not a notebook cell (a cell has a \"cell_type\" of code, "
                      "markdown or raw and a \"source\"); was the file edited as text?")


def no_cells() -> str:
    return ("Your notebook has no cells: it is empty (what a new notebook looks like), so there "
            "was nothing to grade. Check that you submitted the file you worked in." + RESUBMIT)


def rejected_by_nbformat(ename: str, text: str) -> str:
    return unreadable(f"{ename}: {text}.")


def other_assignment(other: str, assignment: str, wanted: str, why: str) -> str:
    return (f"This looks like the {other} notebook, not the {assignment} one: it has none of "
            f"the {assignment} notebook's graded cells ({wanted}, ...) and {why}. Nothing was "
            f"graded: submit your {assignment} notebook ({assignment}.ipynb) instead.")
