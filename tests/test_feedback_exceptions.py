"""What an exception raised by student code shows in the feedback.

The student's own cells (graded cells, self-checks) show the exception's type and message, cut
short, without any traceback and without hidden-check source. In a hidden check's cell the
student's code ran on the check's inputs, and a function can read its callers' frames: there
only the type is shown, so that no message can carry the check's inputs or names out. A function
can also keep what it read (in a global) and let a later cell of the student's own raise it: so a
student's own cell that runs after the first hidden check shows its exception's type only, too.
The last tests grade submissions that try exactly that.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest

from autograder import grade, merge, messages, scoring
from autograder.checks import Verdict
from autograder.execute import CellRecord
from autograder.notebook_format import read_notebook
from autograder.report import executed_copy

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "grading"
sys.path.insert(0, str(FIXTURES))
from hostile import CORRECT, RIGHT_KL, SOURCE  # noqa: E402

SECRET_LINE = "_inputs = [(0.5, -1.0), (-1.2, 0.7), (2.0, 0.0)]"
TRACEBACK = ("\nTraceback (most recent call last):\n  Cell In[9], line 4\n    "
             f"{SECRET_LINE}\n----> 5 obs = observe(got=kl_std_normal(_mu, _logvar))\n")


def _scored(records: dict[str, CellRecord]):
    source = read_notebook(SOURCE / "toy.ipynb")
    merged = merge.merge(source, read_notebook(CORRECT))
    code = [c for c in merged.notebook.cells if c.cell_type == "code"]
    cells = [records.get(c.id, CellRecord(c.id, "passed")) for c in code]
    verdicts = {c.id: Verdict("passed", "", 1.0) for c in code}
    items = scoring.score_items(merged, cells, verdicts, 10, messages.hidden_lines(source))
    return {i.item: i for i in items}


def test_a_graded_cells_exception_shows_its_type_and_message_without_traceback_or_secret():
    message = "shapes (3, 4) and (5,) do not match " + SECRET_LINE + " " + "x" * 2000
    items = _scored({"toy-kl": CellRecord("toy-kl", "failed", ename="ValueError",
                                          evalue=message + TRACEBACK)})
    text = " ".join(items["kl"].messages)
    assert "raised ValueError: shapes (3, 4) and (5,) do not match" in text
    assert SECRET_LINE not in text and "Cell In" not in text and "----> 5" not in text
    shown = text.split("raised ValueError: ")[1]
    assert len(shown) <= messages.EXCEPTION_LIMIT


def test_a_hidden_checks_exception_shows_only_its_type():
    leak = "(0.5, -1.0), (-1.2, 0.7), (2.0, 0.0) _inputs kl_std_normal"
    items = _scored({"toy-kl-hidden": CellRecord("toy-kl-hidden", "failed", ename="ValueError",
                                                 evalue=leak)})
    text = " ".join(items["kl"].messages)
    assert "raised an exception when the check called it" in text and "ValueError" not in text
    assert "0.5, -1.0" not in text and "_inputs" not in text
    assert items["kl"].score == 1.0  # the other check of the item still counts


def test_an_own_cell_after_a_hidden_check_shows_neither_type_nor_message():
    # toy-alpha-bar and its self-check come after the kl item's hidden checks: what they raise could
    # be what kl_std_normal kept from a check's frame; red team round 6 chose the exception's type
    # (one of 64) from the hidden source read by an IPython hook, 6 bits per cell
    leak = "LEAK (0.5, -1.0), (-1.2, 0.7), (2.0, 0.0) _inputs"
    items = _scored({"toy-alpha-bar": CellRecord("toy-alpha-bar", "failed", ename="ValueError", evalue=leak),
                     "toy-alpha-bar-check": CellRecord("toy-alpha-bar-check", "failed",
                                                       ename="AssertionError", evalue=leak)})
    text = " ".join(items["alpha_bar"].messages)
    assert "Your cell `toy-alpha-bar` raised an exception" in text and "ValueError" not in text
    # named by its first line, which the student sees (Jupyter does not show a cell's id)
    assert 'The self-check "Claim: the schedule has one entry per step' in text and "AssertionError" not in text
    for ename in ("DeprecationWarning", "BlockingIOError", "torch.OutOfMemoryError", "KeyError"):
        other = _scored({"toy-alpha-bar": CellRecord("toy-alpha-bar", "failed", ename=ename, evalue=leak)})
        assert other["alpha_bar"].messages == items["alpha_bar"].messages[:len(other["alpha_bar"].messages)]
    assert "LEAK" not in text and "0.5, -1.0" not in text and "_inputs" not in text


def test_after_a_hidden_check_an_import_refusal_is_told_but_not_which():
    from autograder.sandbox import denied_messages

    refusal = sorted(denied_messages())[0]
    forged = "LEAK 0.5 " + refusal
    items = _scored({"toy-alpha-bar": CellRecord("toy-alpha-bar", "failed", ename="ImportError",
                                                 evalue=refusal)})
    text = " ".join(items["alpha_bar"].messages)
    assert "imported a module the grader refuses" in text and refusal not in text  # which: not told
    items = _scored({"toy-alpha-bar": CellRecord("toy-alpha-bar", "failed", ename="ImportError",
                                                 evalue=forged)})
    text = " ".join(items["alpha_bar"].messages)
    assert "raised an exception" in text and "ImportError" not in text and "LEAK" not in text


def test_an_own_cell_before_any_hidden_check_keeps_its_message():
    items = _scored({"toy-kl": CellRecord("toy-kl", "failed", ename="KeyError", evalue="'beta needs a key'")})
    assert "raised KeyError: 'beta needs a key'" in " ".join(items["kl"].messages)


def test_an_exception_name_that_is_not_a_python_name_is_not_shown():
    assert messages.exception_name("<b>ValueError</b> 0.5, -1.0") == "an exception"
    assert messages.exception_name("torch.OutOfMemoryError") == "torch.OutOfMemoryError"


def test_an_exception_name_the_notebook_could_have_chosen_is_not_shown():
    # a class made with type(), named with what the student's code read from a hidden check's frame,
    # can claim __module__ = "builtins" or "torch": only the names of Python's, torch's and NumPy's
    # own exceptions are shown
    for forged in ("LEAKMARK_16x1x28x28_Decoder", "builtins.LEAKMARK_tiny_images", "torch.cuda.LEAK_mu",
                   "numpy.LEAKMARK"):
        assert messages.exception_name(forged) == "an exception", forged
    for real in ("ValueError", "RuntimeError", "KeyError", "OutOfMemoryError", "numpy.linalg.LinAlgError"):
        assert messages.exception_name(real) == real


#: kl_std_normal passes its self-check (mu = logvar = 0), then, called by a hidden check,
#: raises with what its caller's frame holds: the check's inputs, names and constants.
EXFILTRATE = ("if mu == 0 and logvar == 0:\n        return 0.0\n"
              "    f = __import__('sys')._getframe(1)\n"
              "    raise ValueError('LEAK ' + repr(f.f_globals.get('_inputs')) + ' '\n"
              "                     + repr(f.f_code.co_consts) + repr(f.f_code.co_names))")
OWN_ERROR = "raise KeyError('my own message: beta needs a key')\n"
#: kl_std_normal returns the right values, and keeps what its caller's frame holds when a hidden
#: check calls it; a later graded cell of the student's own prints it, warns with it and raises it.
STASH = ("if not (mu == 0 and logvar == 0):\n"
         "        f = __import__('sys')._getframe(1)\n"
         "        globals()['_STASH'] = 'LEAK ' + repr(f.f_globals.get('_inputs')) + repr(f.f_code.co_names)\n"
         "    " + RIGHT_KL)
SPILL = ("\nprint(_STASH)\nimport warnings\nwarnings.warn(_STASH)\n"
         "raise ValueError(_STASH)\n")


@pytest.fixture(scope="module")
def graded_leak(tmp_path_factory):
    folder, out = tmp_path_factory.mktemp("leak"), tmp_path_factory.mktemp("leak-out")
    nb = nbformat.read(str(CORRECT), as_version=4)
    for cell in nb.cells:
        if cell.get("id") == "toy-kl":  # before any hidden check: its own message is shown
            cell.source = cell.source.replace(RIGHT_KL, EXFILTRATE) + "\n" + OWN_ERROR
    (folder / "leaky.ipynb").write_text(nbformat.writes(nb))
    nb = nbformat.read(str(CORRECT), as_version=4)
    for cell in nb.cells:
        if cell.get("id") == "toy-kl":
            cell.source = cell.source.replace(RIGHT_KL, STASH)
        if cell.get("id") == "toy-alpha-bar":  # after the kl item's hidden checks
            cell.source += SPILL
    (folder / "stasher.ipynb").write_text(nbformat.writes(nb))
    code = grade.main(["--assignment", "toy", "--source", str(SOURCE), str(folder), "--out",
                       str(out), "--device", "cpu", "--profile", "smoke", "--timeout", "60",
                       "--no-progress"])
    assert code == 0
    return out


def test_student_code_cannot_carry_a_hidden_checks_inputs_out_in_its_exception(graded_leak):
    graded_leak = graded_leak / "leaky"
    executed = executed_copy(graded_leak).read_text()
    assert "LEAK [(0.5, -1.0)" in executed  # the attack did read them, in the kernel
    for name in ("feedback.md", "results.json"):
        text = (graded_leak / name).read_text()
        assert "LEAK" not in text and "0.5, -1.0" not in text and "_inputs" not in text
    kl = next(t for t in json.loads((graded_leak / "results.json").read_text())["tests"]
              if t["name"] == "kl")
    assert "raised an exception when the check called it" in kl["output"]


def test_the_students_own_error_message_reaches_the_feedback(graded_leak):
    feedback = (graded_leak / "leaky" / "feedback.md").read_text()
    assert "KeyError: 'my own message: beta needs a key'" in feedback


def test_what_student_code_kept_from_a_hidden_check_does_not_reach_the_feedback(graded_leak):
    out = graded_leak / "stasher"
    executed = executed_copy(out).read_text()
    assert "LEAK [(0.5, -1.0)" in executed  # the attack kept them, and printed and raised them
    for name in ("feedback.md", "results.json"):
        text = (out / name).read_text()
        assert "LEAK" not in text and "0.5, -1.0" not in text and "_inputs" not in text, name
    feedback = (out / "feedback.md").read_text()
    assert "`toy-alpha-bar` raised an exception" in feedback and "ValueError" not in feedback  # the cell only
    results = {t["name"]: t["score"] for t in json.loads((out / "results.json").read_text())["tests"]}
    assert results["kl"] == 3.0 and results["alpha_bar"] == 2.0
