"""A training function called by a hidden check cannot carry the check's names or inputs out.

The VAE homework's training check runs the student's ``train_vae`` on a tiny model of its own
(attack S2). A function can read its caller's frame there, so whatever the check shows of what the
function raised must not be its message, nor a name the notebook chose. Each submission is the
reference solution with the training function redefined after honest training, graded by the real
grader (``autograder grade``, smoke profile):

- ``frame_message``: raises ValueError whose message holds a marker and the caller's names and
  constants (``f_code.co_names``, ``co_consts``) and globals;
- ``frame_class``: raises an exception of a class the notebook defines, named with the marker and
  the caller's first names, which pretends to live in ``builtins``.

Neither the marker nor the check's own names reach feedback.md, feedback.html or results.json;
the training item is lost with a message that names only what may be shown.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from autograder import grade
from autograder.release import render
from autograder.report import executed_copy
from edited_submissions import auto_tests, edited_reference

CELL = "vae-train"
CALL = "vae_losses = train_vae(vae, train_loader, cfg.epochs, cfg.lr)"
MARKER = "LEAKMARKER"
#: names of the training check's kernel side that its feedback never needs
CHECK_NAMES = ("tiny_images", "_standin_objective", "_TinyVAE", "LOOP_BATCH", "tiny_weights")

_FRAME = ("    import sys\n    f = sys._getframe(1)\n"
          "    names = ','.join(f.f_code.co_names) + repr(f.f_code.co_consts) + ','.join(f.f_globals)\n")
ATTACKS = {
    "frame_message": CALL + "\n\n\ndef train_vae(model, loader, epochs, lr, loss_fn=None):  # leaks its caller\n"
                     + _FRAME + f"    raise ValueError('{MARKER} ' + names)\n",
    "frame_class": CALL + "\n\n\ndef train_vae(model, loader, epochs, lr, loss_fn=None):  # leaks its caller\n"
                   + _FRAME + f"    cls = type('{MARKER}_' + names.replace(',', '_')[:80], (AttributeError,),\n"
                   "               {'__module__': 'builtins'})\n    raise cls('x')\n",
}


@pytest.fixture(scope="module")
def graded(tmp_path_factory) -> Path:
    subs, out = tmp_path_factory.mktemp("leak-subs"), tmp_path_factory.mktemp("leak-out")
    for student, new in ATTACKS.items():
        (subs / f"{student}.ipynb").write_text(render(edited_reference("vae", {CELL: (CALL, new)})))
    code = grade.main(["--assignment", "vae", str(subs), "--out", str(out), "--profile", "smoke",
                       "--device", "cpu", "--jobs", "2", "--no-progress"])
    assert code == 0
    return out


@pytest.mark.parametrize("student", list(ATTACKS))
def test_the_attack_ran_and_read_its_callers_frame(graded, student):
    executed = executed_copy(graded / student).read_text()
    assert MARKER in executed and "tiny_images" in executed  # the kernel did see the check's names


@pytest.mark.parametrize("student", list(ATTACKS))
def test_nothing_the_function_raised_reaches_the_feedback(graded, student):
    for name in ("feedback.md", "feedback.html", "results.json"):
        text = (graded / student / name).read_text()
        found = [w for w in (MARKER, *CHECK_NAMES) if w in text]
        assert not found, f"{name} shows {found}"


@pytest.mark.parametrize("student", ["frame_message", "frame_class"])
def test_the_training_item_is_lost_and_says_an_exception_was_raised_not_which(graded, student):
    """The type is not told either: the function chose it after reading the check's frame (red
    team round 6 chose one of 64 exception types from hidden source, 6 bits each)."""
    train = {t["name"]: t for t in auto_tests(graded, student)}["vae-train"]
    assert train["score"] == 0 and "it raised an exception" in train["output"], train
    assert "ValueError" not in train["output"] and "class the notebook defined" not in train["output"]
