"""Tests of what the grader does with bad input, and of resuming a batch.

Every kind of bad file is graded in ONE batch together with the toy fixture's correct
notebook (tests/fixtures/grading/): the good student still gets full marks, each bad one
gets a message saying what is wrong, in results.json and in the summary table, and none of
them starts a kernel. An LMS zip export with nested folders, several notebooks per student,
files that are not notebooks, a notebook over the size limit, a symbolic link and members
that try to leave the archive is part of the same batch. Resuming is checked through the
run log ``grader.log.jsonl``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import signal
import stat
import time
import zipfile
from pathlib import Path

import nbformat
import pytest

from autograder import execute, grade, pipeline, state, submissions
from autograder.report import executed_copy

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "grading"
SOURCE = FIXTURES / "source"
STUDENTS = FIXTURES / "students"
CORRECT = STUDENTS / "correct.ipynb"
FULL = {"kl": 3.0, "train": 2.0, "alpha_bar": 2.0}
MAX_MB = 0.1  # the limit the batch runs with: the toy notebooks are about 4 KB


def _grade(subs: list[Path], out: Path, *extra: str, jobs: int = 2) -> tuple[int, str]:
    """``grade.main`` in-process; its exit code and what it printed."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = grade.main(["--assignment", "toy", "--source", str(SOURCE), *map(str, subs),
                           "--out", str(out), "--jobs", str(jobs), "--device", "cpu",
                           "--profile", "smoke", "--timeout", "60", "--no-progress",
                           "--max-size-mb", str(MAX_MB), *extra])
    return code, buf.getvalue()


def _results(out: Path, student: str) -> dict:
    return json.loads((out / student / "results.json").read_text())


def _scores(out: Path, student: str) -> dict[str, float]:
    return {t["name"]: t["score"] for t in _results(out, student)["tests"]}


def _table_row(printed: str, student: str) -> str:
    return next(line for line in printed.splitlines() if line.split()[:1] == [student])


def _events(out: Path, start: int = 0) -> list[dict]:
    return state.read_log(out / state.LOG_NAME)[start:]


def _last_batch(out: Path) -> list[dict]:
    events = _events(out)
    begin = max(n for n, e in enumerate(events) if e["event"] == "batch_start")
    return events[begin:]


def _students(events: list[dict], kind: str) -> set[str]:
    return {e["student"] for e in events if e["event"] == kind}


def _notebook_json(**changes) -> dict:
    data = json.loads(CORRECT.read_text())
    data.update(changes)
    return data


class _RawNameInfo(zipfile.ZipInfo):
    """A zip member whose name is stored as the given bytes, without the UTF-8 flag (what
    older Windows tools write)."""

    def __init__(self, raw: bytes):
        super().__init__(raw.decode("cp437"))
        self.raw = raw

    def _encodeFilenameFlags(self):
        return self.raw, self.flag_bits & ~0x800


# --- the bad files -------------------------------------------------------------------------

#: student -> (file content, what its message must say)
BAD_FILES = {
    "not_json": (b'{"cells": [ this is not json', "not valid JSON (line 1, column 13"),
    "empty_file": (b"", "the file is empty"),
    "json_list": (b"[1, 2, 3]", "JSON but not a notebook: it holds a list"),
    "json_object": (b'{"name": "my homework"}', 'JSON but not a notebook: it has no "cells"'),
    "nbformat5": (json.dumps(_notebook_json(nbformat=5)).encode(), "nbformat 5"),
    "no_nbformat": (json.dumps({k: v for k, v in _notebook_json().items()
                                if k != "nbformat"}).encode(), 'no "nbformat" version number'),
    "no_cells": (nbformat.writes(nbformat.v4.new_notebook()).encode(), "no cells"),
    "bad_cell": (json.dumps(_notebook_json(cells=["print(1)"])).encode(),
                 "cell 1 is not a notebook cell"),
    "not_utf8": (b'{"cells": [], "note": "caf\xe9"}', "not UTF-8 text (byte 0xe9"),
    "pdf": (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3 ...", "a PDF document"),
    "wrong_assignment": ((ROOT / "notebooks" / "ddpm.ipynb").read_bytes(),
                         "This looks like the ddpm notebook, not the toy one"),
    "too_large": (json.dumps(_notebook_json(cells=json.loads(CORRECT.read_text())["cells"] + [
        nbformat.v4.new_markdown_cell("x" * int(0.2 * 2**20), id="padding")])).encode(),
                  "too large: 0.2 MB, over the grader's limit of 0.1 MB"),
}


def _zip_export(path: Path) -> None:
    """An LMS export: one wrapping folder, a folder per student, junk and attacks."""
    correct, empty = CORRECT.read_bytes(), BAD_FILES["no_cells"][0]
    old, new = (2020, 1, 1, 0, 0, 0), (2024, 6, 1, 12, 0, 0)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(zipfile.ZipInfo("export/alice/hw/toy.ipynb", new), correct)
        zf.writestr(zipfile.ZipInfo("export/alice/hw/scratch.ipynb", new), empty)
        zf.writestr("export/alice/data.csv", "x,y\n1,2\n")
        zf.writestr("export/alice/.ipynb_checkpoints/toy-checkpoint.ipynb", empty)
        zf.writestr(zipfile.ZipInfo("export/bob/draft.ipynb", old), correct)
        zf.writestr(zipfile.ZipInfo("export/bob/final.ipynb", new), empty)
        zf.writestr("export/carol/report.pdf", b"%PDF-1.4")
        zf.writestr("export/dave/toy.ipynb", BAD_FILES["too_large"][0])
        link = zipfile.ZipInfo("export/eve/toy.ipynb")
        link.create_system, link.external_attr = 3, (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "../../../../etc/passwd")
        zf.writestr("__MACOSX/export/alice/._toy.ipynb", "junk")
        for evil in ("../escaped.ipynb", "/tmp/absolute-escape.ipynb",
                     "export/../../escaped2.ipynb", "C:\\escaped3.ipynb"):
            zf.writestr(evil, correct)


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """Every bad file, the correct notebook, the same notebook saved as nbformat 3 and the
    zip export, graded in one batch. Returns the output folder and what grade printed."""
    tmp = tmp_path_factory.mktemp("inputs")
    folder = tmp / "class"
    folder.mkdir()
    shutil.copy(CORRECT, folder / "correct.ipynb")
    for student, (content, _) in BAD_FILES.items():
        (folder / f"{student}.ipynb").write_bytes(content)
    v3 = nbformat.convert(nbformat.read(str(CORRECT), as_version=4), 3)
    (folder / "nbformat3.ipynb").write_text(nbformat.writes(v3))
    archive = tmp / "export.zip"
    _zip_export(archive)
    out = tmp / "out"
    code, printed = _grade([folder, archive], out)
    assert code == 0, printed
    return out, printed, tmp


def test_a_good_submission_graded_with_every_kind_of_bad_one_gets_full_marks(batch):
    out, _, _ = batch
    assert _scores(out, "correct") == FULL
    assert _results(out, "correct")["extra_data"]["error"] is None


@pytest.mark.parametrize("student", sorted(BAD_FILES))
def test_a_bad_file_scores_zero_and_its_message_says_what_is_wrong(batch, student):
    out, printed, _ = batch
    expected = BAD_FILES[student][1]
    data = _results(out, student)
    assert data["score"] == 0.0 and data["max_score"] == sum(FULL.values())
    assert expected in data["output"], data["output"]
    assert expected in (out / student / "feedback.md").read_text()
    assert all(t["score"] == 0.0 and "Not graded" in t["output"] for t in data["tests"])
    assert not executed_copy(out / student).exists()  # never run
    note = _table_row(printed, student)
    assert (expected.split(":")[0] if student == "too_large" else expected[:40]) in note


def test_a_bad_file_message_says_what_to_do(batch):
    out, _, _ = batch
    for student in BAD_FILES:
        output = _results(out, student)["output"]
        assert "submit" in output, (student, output)


def test_an_nbformat_3_notebook_is_converted_and_graded(batch):
    out, _, _ = batch
    assert _scores(out, "nbformat3") == FULL
    assert "old nbformat 3 format" in _results(out, "nbformat3")["output"]


def test_every_student_of_the_batch_is_in_the_gradebook(batch):
    out, _, _ = batch
    with open(out / "gradebook.csv", newline="") as fh:
        rows = {r["student"]: r for r in csv.DictReader(fh)}
    expected = {"correct", "nbformat3", *BAD_FILES, "alice", "bob", "carol", "dave", "eve"}
    assert set(rows) == expected
    assert rows["correct"]["auto_score"] == "7" and rows["not_json"]["auto_score"] == "0"


# --- the zip export ------------------------------------------------------------------------

def test_a_zip_export_is_looked_through_its_wrapping_folder(batch):
    out, _, _ = batch
    assert _scores(out, "alice") == FULL  # export/alice/hw/toy.ipynb
    assert not (out / "export").exists()


def test_of_several_notebooks_the_one_named_after_the_assignment_is_graded(batch):
    out, _, _ = batch
    output = _results(out, "alice")["output"]
    assert "graded toy.ipynb (named after the assignment); ignored scratch.ipynb" in output
    assert "graded toy-checkpoint" not in output  # listed as not graded, never graded
    assert ".ipynb_checkpoints/toy-checkpoint.ipynb (a Jupyter checkpoint copy" in output


def test_of_several_notebooks_without_the_assignment_name_the_newest_is_graded(batch):
    out, _, _ = batch
    output = _results(out, "bob")["output"]
    assert "graded final.ipynb (the newest); ignored draft.ipynb" in output
    assert "no cells" in output  # final.ipynb is the empty one


def test_files_that_are_not_notebooks_are_ignored_and_listed(batch):
    out, _, _ = batch
    assert "Ignored, not notebooks: data.csv." in _results(out, "alice")["output"]


def test_a_student_folder_without_a_notebook_is_told_so(batch):
    out, printed, _ = batch
    output = _results(out, "carol")["output"]
    assert "No gradable notebook (.ipynb file) was found in your submission, only: report.pdf" in output
    assert "No gradable notebook" in _table_row(printed, "carol")


def test_a_zipped_notebook_over_the_size_limit_is_not_unpacked(batch):
    out, _, _ = batch
    assert "too large: 0.2 MB" in _results(out, "dave")["output"]


def test_a_symbolic_link_in_the_zip_is_never_followed(batch):
    out, _, _ = batch
    output = _results(out, "eve")["output"]
    assert "toy.ipynb (a symbolic link, not followed)" in output
    assert "root:" not in json.dumps(_results(out, "eve"))


def test_zip_members_that_leave_the_archive_are_never_written_and_logged(batch):
    out, _, tmp = batch
    warnings = [e["message"] for e in _events(out) if e["event"] == "warning"]
    assert len(warnings) == 4 and all("leaves the archive" in w for w in warnings)
    for name in ("escaped.ipynb", "escaped2.ipynb", "escaped3.ipynb"):
        assert not list(tmp.parent.rglob(name))
    assert not Path("/tmp/absolute-escape.ipynb").exists()


def test_the_run_log_has_one_start_and_one_finish_per_student(batch):
    out, _, _ = batch
    events = _events(out)
    assert events[0]["event"] == "batch_start" and "--assignment" in events[0]["argv"]
    assert events[-1]["event"] == "batch_end" and events[-1]["skipped"] == 0
    started = [e["student"] for e in events if e["event"] == "started"]
    finished = [e["student"] for e in events if e["event"] == "finished"]
    assert sorted(started) == sorted(finished) and len(set(started)) == len(started)
    assert next(e for e in events if e.get("student") == "correct"
                and e["event"] == "finished")["score"] == 7.0


# --- names, unit level ---------------------------------------------------------------------

def test_zip_names_without_the_utf8_flag_become_distinct_safe_ascii_ids(tmp_path):
    archive = tmp_path / "names.zip"
    notebook = CORRECT.read_bytes()
    raw_names = ["José".encode("utf-8"),        # UTF-8 bytes, flag not set (most tools)
                 "Zoë".encode("cp1252"),        # Windows code page: read as cp437
                 "Zoé".encode("cp1252"),
                 "王芳".encode("gbk"),
                 "Müller".encode("cp437")]
    with zipfile.ZipFile(archive, "w") as zf:
        for raw in raw_names:
            zf.writestr(_RawNameInfo(raw + b"/toy.ipynb"), notebook)
    subs = submissions.collect([archive], "toy", tmp_path / "unpacked")
    ids = [s.student for s in subs]
    assert len(set(ids)) == len(raw_names)
    assert all(i.isascii() and submissions.sanitize_id(i) == i for i in ids)
    assert "Jose" in ids and "Muller" in ids
    for sub in subs:
        assert sub.path.resolve().is_relative_to((tmp_path / "unpacked").resolve())


def test_a_symbolic_link_in_a_submitted_folder_is_never_followed(tmp_path):
    """``unzip`` restores links: one to the instructor's source must not be graded."""
    folder = tmp_path / "class"
    (folder / "mallory").mkdir(parents=True)
    (folder / "mallory" / "toy.ipynb").symlink_to(SOURCE / "toy.ipynb")
    shutil.copy(CORRECT, folder / "correct.ipynb")
    subs = {s.student: s for s in submissions.collect([folder], "toy", tmp_path / "unpacked")}
    assert subs["correct"].problem is None
    assert "toy.ipynb (a symbolic link, not followed)" in subs["mallory"].problem


def test_student_ids_that_lose_characters_stay_distinct_and_short():
    names = ["王芳", "王伟", "Łukasz", "Zoδ", "ZoΘ", "a" * 300, "a" * 301]
    ids = [submissions.sanitize_id(n) for n in names]
    assert len(set(ids)) == len(ids)
    assert all(0 < len(i) <= submissions.MAX_ID and i.isascii() for i in ids)
    assert submissions.sanitize_id("Łukasz").startswith("Lukasz")


def test_a_notebook_of_another_assignment_is_recognised_by_its_graded_cells(tmp_path):
    """No metadata naming the assignment: the other source notebooks' graded cells tell."""
    sources = tmp_path / "sources"
    sources.mkdir()
    shutil.copy(SOURCE / "toy.ipynb", sources)
    shutil.copy(ROOT / "solutions" / "ddpm.ipynb", sources)
    ddpm = json.loads((ROOT / "notebooks" / "ddpm.ipynb").read_text())
    ddpm["metadata"].pop("dgm")
    (tmp_path / "hw.ipynb").write_text(json.dumps(ddpm))
    source = nbformat.read(str(SOURCE / "toy.ipynb"), as_version=4)
    expected = submissions.Expected.from_source(source, "toy", sources)
    problem = submissions.inspect_notebook(tmp_path / "hw.ipynb", expected).problem
    assert problem.startswith("This looks like the ddpm notebook, not the toy one")
    assert submissions.inspect_notebook(CORRECT, expected).problem is None


def test_a_notebook_without_ids_or_metadata_is_not_taken_for_another_assignment():
    expected = submissions.Expected.from_source(
        nbformat.read(str(SOURCE / "toy.ipynb"), as_version=4), "toy", ROOT / "solutions")
    assert submissions.inspect_notebook(STUDENTS / "no_ids.ipynb", expected).problem is None


# --- resume --------------------------------------------------------------------------------

def test_resume_skips_finished_students_and_regrades_the_rest(tmp_path, monkeypatch):
    folder, out = tmp_path / "class", tmp_path / "out"
    folder.mkdir()
    shutil.copy(CORRECT, folder / "correct.ipynb")
    (folder / "a_empty.ipynb").write_text(nbformat.writes(nbformat.v4.new_notebook()))

    real = pipeline.run

    def tampering(nb, student, *args, **kwargs):
        """Run, then do what student code could: overwrite another student's results and
        plant a student who was never graded."""
        result = real(nb, student, *args, **kwargs)
        forged = _results(out, "a_empty")
        forged["score"] = 99.0
        for item in forged["extra_data"]["items"]:
            item["score"] = item["max_score"]
        (out / "a_empty" / "results.json").write_text(json.dumps(forged))
        (out / "zz_ghost").mkdir(exist_ok=True)
        (out / "zz_ghost" / "results.json").write_text(json.dumps(
            {**forged, "extra_data": {**forged["extra_data"], "student": "zz_ghost"}}))
        return result

    monkeypatch.setattr(pipeline, "run", tampering)
    assert _grade([folder], out, jobs=1)[0] == 0
    monkeypatch.undo()
    # The gradebook and the files come from memory, not from what the student wrote.
    assert _results(out, "a_empty")["score"] == 0.0
    with open(out / "gradebook.csv", newline="") as fh:
        rows = {r["student"]: r for r in csv.DictReader(fh)}
    assert set(rows) == {"a_empty", "correct"} and rows["a_empty"]["auto_score"] == "0"
    assert _students(_last_batch(out), "restored") == {"a_empty"}
    shutil.rmtree(out / "zz_ghost")

    # Interrupted after one student: delete the other's results; only that one is graded.
    (out / "a_empty" / "results.json").unlink()
    code, printed = _grade([folder], out)
    events = _last_batch(out)
    assert code == 0
    assert _students(events, "skipped") == {"correct"}
    assert _students(events, "started") == {"a_empty"}
    assert "1 skipped" in printed and "skipped: graded by an earlier run" in _table_row(
        printed, "correct")
    assert _scores(out, "correct") == FULL
    with open(out / "gradebook.csv", newline="") as fh:
        assert {r["student"]: r["auto_score"] for r in csv.DictReader(fh)} == {
            "a_empty": "0", "correct": "7"}

    # A results.json without a fingerprint (the grader was killed before it was rewritten
    # at the end of that student) is graded again.
    data = _results(out, "a_empty")
    data["extra_data"].pop("fingerprint")
    (out / "a_empty" / "results.json").write_text(json.dumps(data))
    _grade([folder], out)
    assert _students(_last_batch(out), "started") == {"a_empty"}

    # --regrade grades everyone again.
    _grade([folder], out, "--regrade")
    events = _last_batch(out)
    assert _students(events, "started") == {"a_empty", "correct"}
    assert not _students(events, "skipped")


def test_a_changed_submission_is_regraded_and_an_unchanged_one_is_not(batch, tmp_path):
    """Fingerprints are of the files' contents: the batch's results, resumed from another
    folder holding one changed and one unchanged submission."""
    graded, _, inputs = batch
    out = tmp_path / "out"
    shutil.copytree(graded, out)
    folder = tmp_path / "class"
    folder.mkdir()
    shutil.copy(STUDENTS / "mistake_kl.ipynb", folder / "correct.ipynb")
    shutil.copy(inputs / "class" / "not_json.ipynb", folder)
    _grade([folder], out)
    events = _last_batch(out)
    assert _students(events, "skipped") == {"not_json"}
    assert [(e["student"], e["reason"]) for e in events if e["event"] == "started"] == [
        ("correct", "submission changed")]
    assert _scores(out, "correct") == {**FULL, "kl": 0.0}


def test_ctrl_c_starts_nothing_new_and_the_next_run_resumes(tmp_path, monkeypatch):
    folder, out = tmp_path / "class", tmp_path / "out"
    folder.mkdir()
    (folder / "a_bad.ipynb").write_text("[]")
    shutil.copy(CORRECT, folder / "b_correct.ipynb")
    (folder / "c_bad.ipynb").write_text("{}")
    def interrupted(nb, student, *rest):
        os.kill(os.getpid(), signal.SIGINT)  # the instructor presses Ctrl-C
        time.sleep(0.2)  # the kernel got the interrupt too: its grading stops early
        return execute.Execution((), None, 0.2, "interrupted")

    monkeypatch.setattr(pipeline, "run", interrupted)
    handler = signal.getsignal(signal.SIGINT)
    code, printed = _grade([folder], out, jobs=1)
    monkeypatch.undo()
    events = _last_batch(out)
    assert code == 130 and "interrupted" in printed
    assert _students(events, "not_started") == {"c_bad"}
    finished = {e["student"]: e["complete"] for e in events if e["event"] == "finished"}
    assert finished == {"a_bad": True, "b_correct": False}
    assert signal.getsignal(signal.SIGINT) is handler  # put back

    code, _ = _grade([folder], out, jobs=1)
    events = _last_batch(out)
    assert code == 0
    assert _students(events, "skipped") == {"a_bad"}
    assert _students(events, "started") == {"b_correct", "c_bad"}
    assert _scores(out, "b_correct") == FULL
