"""Hostile and faulty submissions: the batch finishes, nobody gains a point they did not earn.

Each submission here is the toy fixture's correct notebook (tests/fixtures/grading) with one
attack or fault typed into a graded cell, usually together with a wrong answer the attack tries
to hide. They are graded in one batch, two at a time, with a small memory and process limit,
and every score must equal the score the honest work behind it deserves. The attacks follow the
list of issue #7: builtins and library functions redefined, printed "passed" lines, forged
measurements, swallowed exceptions, variables deleted, the grader's files written or read, the
network; the faults: sys.exit, a segfault, a memory hog, a process bomb, huge outputs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest

from autograder import grade
from autograder.report import executed_copy
from autograder.sandbox import bwrap_problem

# The limits and the isolation these tests prove need bubblewrap, which `make test` installs
# (elsewhere grading refuses to start: see tests/test_sandbox.py).
pytestmark = pytest.mark.skipif(bwrap_problem() is not None,
                                reason=f"bubblewrap cannot run here: {bwrap_problem()}")

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "grading"
sys.path.insert(0, str(FIXTURES))
from hostile import ROOT, SENTINEL, SOURCE, build  # noqa: E402

README_BEFORE = (ROOT / "README.md").read_bytes()


def test_student_code_did_not_change_the_repository(hostile):
    assert (ROOT / "README.md").read_bytes() == README_BEFORE


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    folder, out = tmp_path_factory.mktemp("hostile"), tmp_path_factory.mktemp("hostile-out")
    expected = build(folder, out)
    code = grade.main(["--assignment", "toy", "--source", str(SOURCE), str(folder),
                       "--out", str(out), "--jobs", "2", "--device", "cpu", "--profile", "smoke",
                       "--timeout", "60", "--memory-mb", "768", "--max-procs", "64",
                       "--no-progress"])
    assert code == 0
    return out, expected


def _result(out: Path, student: str) -> dict:
    return json.loads((out / student / "results.json").read_text())


def _outputs(out: Path, student: str) -> str:
    nb = nbformat.read(str(executed_copy(out / student)), as_version=4)
    return "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                     for o in c.get("outputs", []))




def test_every_hostile_or_faulty_submission_gets_exactly_the_score_its_work_deserves(hostile):
    out, expected = hostile
    got = {s: {t["name"]: t["score"] for t in _result(out, s)["tests"]} for s in expected}
    wrong = {s: (got[s], expected[s]) for s in expected if got[s] != expected[s]}
    assert not wrong, json.dumps(wrong, indent=1)


def test_the_grader_writes_one_result_per_student_and_a_full_gradebook(hostile):
    out, expected = hostile
    rows = (out / "gradebook.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + len(expected)


def test_student_code_cannot_write_outside_its_folder_nor_read_the_hidden_checks(hostile):
    out, _ = hostile
    text = _outputs(out, "writes_and_reads")
    assert "WROTE" not in text and text.count("blocked") == 3, text
    assert "READ " not in text and "unreadable toy.ipynb" in text, text
    assert "unreadable submission.ipynb" in text, text
    assert "ENV=;" in text, text
    procs = int(text.split("PROCS ")[1].split()[0])
    assert procs < 10, f"the kernel sees {procs} processes: it is not in its own PID namespace"
    assert not (out / "x").exists() and not (out / "correct" / "x").exists()


def test_student_code_has_no_network(hostile):
    out, _ = hostile
    text = _outputs(out, "network")
    assert "NETWORK OPEN" not in text and "network blocked" in text


def test_huge_outputs_are_cut_in_the_executed_copy(hostile):
    out, _ = hostile
    assert executed_copy(out / "huge_output").stat().st_size < 3_000_000
    assert "characters cut by the grader" in _outputs(out, "huge_output")


def test_faults_are_explained_to_the_student(hostile):
    out, _ = hostile
    for student in ("segfault", "memory_hog"):
        text = json.dumps(_result(out, student))
        assert "stopped the Python kernel" in text, (student, text[:2000])
    assert "SystemExit" in json.dumps(_result(out, "sys_exit"))


def test_feedback_of_hostile_students_never_shows_hidden_source(hostile):
    out, expected = hostile
    for student in expected:
        for name in ("feedback.md", "results.json"):
            assert SENTINEL not in (out / student / name).read_text()


def test_no_hidden_source_is_left_in_the_kernel_for_student_code_to_carry_out(hostile):
    """The probe found no hidden source: not through its callers' frames while a check ran, nor
    in the kernel's memory afterwards (its message, LEAK-NONE, is in the instructors' executed
    copy). Its cell ran after a hidden check, so the student's feedback says only that it raised."""
    out, _ = hostile
    nb = nbformat.read(str(executed_copy(out / "leaks_source")), as_version=4)
    probe = "\n".join(o.get("evalue", "") + o.get("text", "") for c in nb.cells
                      if c.cell_type == "code" for o in c.get("outputs", []))
    assert "LEAK-NONE" in probe and "LEAK-FOUND" not in probe, probe[-2000:]
    feedback = json.dumps(_result(out, "leaks_source"))
    assert "LEAK-" not in feedback and "raised an exception" in feedback, feedback[:2000]
