"""No notebook handed in is dropped without a word (autograder/submissions.py, red team: H1).

Every ``.ipynb`` under a class folder or zip is graded, or listed as not graded with its reason:
at the end of the batch (what ``grade`` prints, and ``not_graded`` events in the run log) and, when
it lies in a student's submission, in that student's feedback. Two paths that give one student id
never write over each other's results.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import zipfile
from pathlib import Path

import pytest

from autograder import grade, submissions

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "grading"
sys.path.insert(0, str(FIXTURES))
from hostile import SOURCE  # noqa: E402

CORRECT = FIXTURES / "students" / "correct.ipynb"
FIXME = FIXTURES / "students" / "fixme.ipynb"


def _collect(paths, tmp_path):
    warnings, passed = [], []
    subs = submissions.collect(paths, "toy", tmp_path / "unpacked", warnings=warnings,
                               passed_over=passed)
    return {s.student: s for s in subs}, passed, warnings


def _notebooks_under(folder: Path) -> set[str]:
    return {str(p) for p in folder.rglob("*") if p.name.lower().endswith(".ipynb")}


def test_a_file_and_a_folder_of_one_student_grade_one_and_name_the_other(tmp_path):
    """The red team's case: ``bob.ipynb`` and ``bob/sub.ipynb`` both belong to bob."""
    folder = tmp_path / "class"
    (folder / "bob").mkdir(parents=True)
    shutil.copy(FIXME, folder / "bob.ipynb")
    shutil.copy(CORRECT, folder / "bob" / "sub.ipynb")
    os.utime(folder / "bob.ipynb", (1e9, 1e9))  # older: sub.ipynb is the newest
    subs, passed, _ = _collect([folder], tmp_path)
    assert list(subs) == ["bob"] and subs["bob"].path == folder / "bob" / "sub.ipynb"
    [item] = passed
    assert item.path == f"{folder}/bob.ipynb" and item.student == "bob"
    assert "second notebook" in item.reason and "bob/sub.ipynb was graded instead" in item.reason
    assert any("graded bob/sub.ipynb" in n and "ignored bob.ipynb" in n for n in subs["bob"].notes)


@pytest.mark.parametrize("rel, why", [
    (".mathjax.ipynb", "hidden file"),
    (".hidden/alice.ipynb", "hidden folder"),
    ("__MACOSX/._alice.ipynb", "__MACOSX"),
    ("alice/.ipynb_checkpoints/toy-checkpoint.ipynb", "checkpoint"),
    ("alice/.draft.ipynb", "hidden file"),
])
def test_every_notebook_in_a_class_folder_is_graded_or_listed_with_its_reason(tmp_path, rel, why):
    folder = tmp_path / "class"
    (folder / "alice").mkdir(parents=True)
    shutil.copy(CORRECT, folder / "alice" / "toy.ipynb")
    (folder / rel).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(CORRECT, folder / rel)
    subs, passed, _ = _collect([folder], tmp_path)
    graded = {str(s.path) for s in subs.values()}
    listed = {p.path for p in passed}
    assert graded | listed == _notebooks_under(folder) and not graded & listed
    [item] = passed
    assert why in item.reason
    if rel.startswith("alice/"):  # inside alice's submission: she is told too
        assert item.student == "alice"
        assert any(rel.split("/", 1)[1] in n and why in n for n in subs["alice"].notes)
    else:
        assert item.student is None


def test_a_student_folder_with_only_a_checkpoint_copy_still_gets_a_row(tmp_path):
    folder = tmp_path / "class"
    (folder / "carol" / ".ipynb_checkpoints").mkdir(parents=True)
    shutil.copy(CORRECT, folder / "carol" / ".ipynb_checkpoints" / "toy-checkpoint.ipynb")
    subs, passed, _ = _collect([folder], tmp_path)
    assert "checkpoint" in subs["carol"].problem and "toy-checkpoint.ipynb" in subs["carol"].problem
    assert [p.student for p in passed] == ["carol"]


def test_hidden_and_checkpoint_notebooks_in_a_zip_are_listed(tmp_path):
    archive = tmp_path / "export.zip"
    notebook = CORRECT.read_bytes()
    with zipfile.ZipFile(archive, "w") as zf:
        for name in ["export/alice/toy.ipynb", "export/bob/toy.ipynb",
                     "export/bob/.ipynb_checkpoints/toy-checkpoint.ipynb",
                     "__MACOSX/export/alice/._toy.ipynb"]:
            zf.writestr(name, notebook)
    subs, passed, _ = _collect([archive], tmp_path)
    assert set(subs) == {"alice", "bob"}
    assert {(p.path, p.student) for p in passed} == {
        (f"{archive}/export/bob/.ipynb_checkpoints/toy-checkpoint.ipynb", "bob"),
        (f"{archive}/__MACOSX/export/alice/._toy.ipynb", None)}


def test_an_unreadable_student_folder_is_listed_not_dropped(tmp_path, monkeypatch):
    """os.walk skips a folder it cannot list unless told; the grader says so (the test runs as
    root too, so the failing listing is simulated the way os.walk reports it)."""
    folder = tmp_path / "class"
    (folder / "dan").mkdir(parents=True)
    shutil.copy(CORRECT, folder / "dan" / "toy.ipynb")
    walk = os.walk

    def walk_without_dan(top, onerror=None, **kwargs):
        for here, dirs, files in walk(top, onerror=onerror, **kwargs):
            if Path(here).name == "dan":
                onerror(PermissionError(13, "Permission denied", here))
                continue
            yield here, dirs, files

    monkeypatch.setattr(submissions.os, "walk", walk_without_dan)
    subs, passed, _ = _collect([folder], tmp_path)
    assert "dan" in subs and "could not read" in subs["dan"].problem
    assert [p.student for p in passed] == ["dan"]


def test_two_paths_with_one_id_are_both_graded_and_the_instructor_is_warned(tmp_path):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        shutil.copy(CORRECT, tmp_path / sub / "bob.ipynb")
    subs, passed, warnings = _collect([tmp_path / "a", tmp_path / "b"], tmp_path)
    assert set(subs) == {"bob", "bob-2"} and not passed
    assert {subs["bob"].path, subs["bob-2"].path} == {tmp_path / "a" / "bob.ipynb",
                                                       tmp_path / "b" / "bob.ipynb"}
    assert any("graded as bob-2" in w for w in warnings)


def test_the_end_of_the_batch_lists_what_was_not_graded(tmp_path, capsys):
    """The real command on a tiny class: the summary, the run log and bob's feedback say it."""
    folder, out = tmp_path / "class", tmp_path / "out"
    (folder / "bob").mkdir(parents=True)
    shutil.copy(CORRECT, folder / "bob.ipynb")
    shutil.copy(CORRECT, folder / "bob" / "sub.ipynb")
    os.utime(folder / "bob.ipynb", (1e9, 1e9))
    shutil.copy(CORRECT, folder / ".mathjax.ipynb")
    code = grade.main(["--assignment", "toy", "--source", str(SOURCE), str(folder), "--out", str(out),
                       "--device", "cpu", "--profile", "smoke", "--timeout", "60", "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    end = printed[printed.index("Not graded (2 notebooks"):]
    assert f"{folder}/.mathjax.ipynb: a hidden file" in end
    assert f"{folder}/bob.ipynb: a second notebook" in end and "[student bob" in end
    assert "2 more notebooks found and not graded" in end
    events = [json.loads(line) for line in (out / "grader.log.jsonl").read_text().splitlines()]
    assert {e["path"] for e in events if e["event"] == "not_graded"} == {
        f"{folder}/.mathjax.ipynb", f"{folder}/bob.ipynb"}
    assert "ignored bob.ipynb" in (out / "bob" / "feedback.md").read_text()
    assert [p.name for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")] == ["bob"]


def test_gradescope_single_submission_names_the_notebooks_it_does_not_read(tmp_path):
    # Gradescope's one-student folder (collect_single) follows the same rule as a class folder:
    # a hidden notebook or a checkpoint copy is named in the notes, never dropped silently.
    sub = tmp_path / "submission"
    (sub / ".ipynb_checkpoints").mkdir(parents=True)
    shutil.copy(CORRECT, sub / "toy.ipynb")
    shutil.copy(CORRECT, sub / ".ipynb_checkpoints" / "toy-checkpoint.ipynb")
    shutil.copy(FIXME, sub / ".draft.ipynb")
    got = submissions.collect_single(sub, "toy")
    assert got.path == sub / "toy.ipynb" and got.problem is None
    notes = " ".join(got.notes)
    assert ".ipynb_checkpoints/toy-checkpoint.ipynb" in notes and ".draft.ipynb" in notes

    only_hidden = tmp_path / "only_hidden"
    only_hidden.mkdir()
    shutil.copy(CORRECT, only_hidden / ".toy.ipynb")
    got = submissions.collect_single(only_hidden, "toy")
    assert got.problem is not None and ".toy.ipynb" in got.problem
