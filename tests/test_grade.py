"""Tests of the grader (``python -m autograder grade``) on a tiny fixture homework.

The fixture (tests/fixtures/grading/, written by its make_fixtures.py) is a source notebook
in the homework format with three auto-graded items (kl: 3 points over two hidden checks,
train: 2, alpha_bar: 2) and a written item (explain: 2), and student notebooks: correct,
the released FIXME version, one typical mistake per item, ids and tags stripped, cells
reordered, a never-ending training loop and one that kills the kernel. Pure Python, no
torch: a submission costs a kernel start. The whole class is graded once per module (two
jobs), and a zip export of three of them a second time.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import shutil
import time
import zipfile
from pathlib import Path

import nbformat
import pytest

from autograder import config, execute, grade, merge, messages, report, scoring, submissions
from autograder.checks import Verdict
from autograder.execute import CellRecord
from autograder.notebook_format import read_notebook
from autograder.report import executed_copy

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "grading"
SOURCE = FIXTURES / "source"
STUDENTS = FIXTURES / "students"
FULL = {"kl": 3.0, "train": 2.0, "alpha_bar": 2.0}
CELL_TIMEOUT = 60  # seconds; generous: every fixture cell takes milliseconds
LOOP_TIMEOUT = 8   # for the student whose training loop never ends, graded on its own


def _load_fixture_module():
    spec = importlib.util.spec_from_file_location("make_fixtures", FIXTURES / "make_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FIXTURE_MODULE = _load_fixture_module()
SENTINEL = FIXTURE_MODULE.HIDDEN_SENTINEL


def _grade(subs: list[Path], out: Path, jobs: int = 2, timeout: float = CELL_TIMEOUT) -> int:
    return grade.main(["--assignment", "toy", "--source", str(SOURCE), *map(str, subs),
                       "--out", str(out), "--jobs", str(jobs), "--device", "cpu",
                       "--profile", "smoke", "--timeout", str(timeout), "--no-progress"])


def _scores(out: Path, student: str) -> dict[str, float]:
    data = json.loads((out / student / "results.json").read_text())
    scores = {t["name"]: t["score"] for t in data["tests"]}
    if scores != FULL:  # show why in a failing test's report
        print(student, json.dumps(data["tests"], indent=1))
    return scores


def _item_output(out: Path, student: str, item: str) -> str:
    data = json.loads((out / student / "results.json").read_text())
    return next(t["output"] for t in data["tests"] if t["name"] == item)


@pytest.fixture(scope="module")
def graded(tmp_path_factory) -> Path:
    """The whole fixture class plus an unreadable notebook, graded with two jobs."""
    folder = tmp_path_factory.mktemp("class")
    for nb in STUDENTS.glob("*.ipynb"):
        if nb.stem != "timeout":
            shutil.copy(nb, folder / nb.name)
    (folder / "broken.ipynb").write_text("{ this is not json")
    out = tmp_path_factory.mktemp("out")
    assert _grade([folder], out) == 0
    assert _grade([STUDENTS / "timeout.ipynb"], out, jobs=1, timeout=LOOP_TIMEOUT) == 0
    return out


@pytest.fixture(scope="module")
def regraded_zip(tmp_path_factory) -> Path:
    """Three of the same notebooks again, as an LMS zip export (one folder per student)."""
    tmp = tmp_path_factory.mktemp("zip")
    archive = tmp / "export.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(STUDENTS / "correct.ipynb", "correct/toy.ipynb")
        zf.write(STUDENTS / "mistake_kl.ipynb", "mistake_kl/homework.ipynb")
        zf.write(STUDENTS / "no_ids.ipynb", "no_ids.ipynb")
        zf.writestr("__MACOSX/correct/._toy.ipynb", "junk")
    out = tmp / "out"
    assert _grade([archive], out) == 0
    return out


# --- end to end on the fixture class --------------------------------------------------------

def test_correct_submission_scores_full_marks(graded):
    assert _scores(graded, "correct") == FULL


def test_released_notebook_scores_zero_on_every_item_without_crashing_the_batch(graded):
    assert _scores(graded, "fixme") == {k: 0.0 for k in FULL}
    assert "NotImplementedError" in _item_output(graded, "fixme", "kl")
    assert _scores(graded, "correct") == FULL  # graded in the same batch


@pytest.mark.parametrize("student, item, hint", [
    ("mistake_kl", "kl", "sign"),
    ("mistake_train", "train", "downhill"),
    ("mistake_alpha_bar", "alpha_bar", "alpha_bar_t"),
])
def test_one_typical_mistake_loses_exactly_its_item_with_a_helpful_message(graded, student,
                                                                           item, hint):
    assert _scores(graded, student) == {**FULL, item: 0.0}
    message = _item_output(graded, student, item)
    # it says what was wrong (how far off, or what was expected and found) and hints at the fix
    assert ("off by" in message or ("expected" in message and "got" in message)) and hint in message


def test_cells_without_ids_or_tags_are_matched_by_content_and_the_feedback_says_so(graded):
    # no_ids also names a kernel that does not exist: the grader's own kernel is used.
    assert _scores(graded, "no_ids") == FULL
    feedback = (graded / "no_ids" / "feedback.md").read_text()
    assert feedback.count("matched by position and content") == 4  # 3 graded + 1 written


def test_reordered_cells_are_matched_by_id(graded):
    assert _scores(graded, "reordered") == FULL
    assert "matched by" not in (graded / "reordered" / "feedback.md").read_text()


def test_a_timed_out_cell_scores_zero_for_its_item_only(graded):
    assert _scores(graded, "timeout") == {**FULL, "train": 0.0}
    assert f"did not finish within {LOOP_TIMEOUT} s" in _item_output(graded, "timeout", "train")


def test_a_cell_that_kills_the_kernel_scores_zero_for_its_item_only(graded):
    # The later item (alpha_bar) is graded in a re-run without the cell that killed the kernel.
    assert _scores(graded, "crash") == {**FULL, "train": 0.0}
    assert "stopped the Python kernel" in _item_output(graded, "crash", "train")


def test_an_unreadable_notebook_scores_zero_without_crashing_the_batch(graded):
    data = json.loads((graded / "broken" / "results.json").read_text())
    assert data["score"] == 0.0 and "could not be read" in data["output"]


def test_grading_the_same_submissions_twice_gives_the_same_scores(graded, regraded_zip):
    for student in ("correct", "mistake_kl", "no_ids"):
        assert _scores(regraded_zip, student) == _scores(graded, student)


def test_zip_export_is_graded_one_student_per_folder_or_file(regraded_zip):
    students = sorted(p.name for p in regraded_zip.iterdir()
                      if p.is_dir() and not p.name.startswith("."))  # .mathjax
    assert students == ["correct", "mistake_kl", "no_ids"]


def test_results_json_follows_gradescope_schema(graded):
    data = json.loads((graded / "mistake_kl" / "results.json").read_text())
    assert isinstance(data["score"], float) and isinstance(data["max_score"], float)
    assert isinstance(data["execution_time"], float) and isinstance(data["output"], str)
    assert data["visibility"] in ("visible", "hidden", "after_due_date", "after_published")
    for test in data["tests"]:
        assert {"name", "score", "max_score", "output", "visibility"} <= set(test)
        assert isinstance(test["name"], str) and isinstance(test["output"], str)
        assert isinstance(test["score"], float) and isinstance(test["max_score"], float)
        assert test["status"] in ("passed", "failed")
    assert data["score"] == sum(t["score"] for t in data["tests"])
    assert data["max_score"] == sum(FULL.values())


def test_feedback_never_contains_hidden_check_source(graded):
    student_files = [p for p in graded.glob("*/*") if p.name != "executed.ipynb" and p.is_file()]
    assert len(student_files) >= 3 * 9
    for path in student_files:
        text = path.read_text()
        assert SENTINEL not in text, path
        assert "_expected = 0.5 * (_mu**2" not in text, path
    assert SENTINEL in executed_copy(graded / "correct").read_text()  # instructor copy


def test_a_students_folder_holds_only_what_the_student_may_see(graded):
    """Red team rounds 6 and 7: the folder an instructor hands out held the executed notebook (the
    hidden checks) and the exact run times (a channel the student's code can choose)."""
    for folder in (p for p in graded.iterdir() if p.is_dir() and not p.name.startswith(".")):
        assert sorted(p.name for p in folder.iterdir()) == ["feedback.html", "feedback.md", "results.json"]
        shown = json.loads((folder / "results.json").read_text())
        times = [shown["execution_time"], *shown["extra_data"]["timings"].values()]
        assert all(t == 0 or t % 60 == 0 for t in times), times  # whole minutes
        if executed_copy(folder).is_file():  # it ran (a file that could not be read did not)
            exact = report.exact_timings(folder)  # the instructors' copy
            assert exact["wall_s"] > 0 and exact["wall_s"] % 60 != 0
    assert executed_copy(graded / "correct").is_file()


def test_executed_notebook_keeps_the_outputs(graded):
    nb = nbformat.read(str(executed_copy(graded / "correct")), as_version=4)
    printed = [o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert printed.count("self-check passed\n") == 2


def test_gradebook_has_one_row_per_student_one_column_per_item_and_pending_written(graded):
    with open(graded / "gradebook.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["student", "kl", "train", "alpha_bar", "explain", "auto_score",
                             "written_pending", "total", "max_score", "late"]
    assert len(rows) == len(list(STUDENTS.glob("*.ipynb"))) + 1  # + broken
    correct = next(r for r in rows if r["student"] == "correct")
    assert correct["explain"] == report.PENDING
    assert (correct["auto_score"], correct["written_pending"], correct["max_score"]) == (
        "7", "2", "9")


def test_written_answers_are_collected_into_the_feedback(graded):
    feedback = (graded / "correct" / "feedback.md").read_text()
    assert "Jensen's inequality bounds -KL" in feedback
    assert messages.NOT_ANSWERED in (graded / "fixme" / "feedback.md").read_text()


# --- units ----------------------------------------------------------------------------------

def test_fixtures_are_what_their_generator_writes():
    src = FIXTURE_MODULE.source_notebook()
    assert (SOURCE / "toy.ipynb").read_text() == FIXTURE_MODULE.render(src)
    for name, nb in FIXTURE_MODULE.student_variants(src).items():
        assert (STUDENTS / f"{name}.ipynb").read_text() == nbformat.writes(nb) + "\n", name


def test_student_ids_cannot_leave_the_output_folder():
    for raw in ("../../etc/passwd", "..", "a/b\\c", ".hidden", "", "gradebook.csv"):
        sid = submissions.sanitize_id(raw)
        assert sid and "/" not in sid and "\\" not in sid and ".." not in sid
        assert not sid.startswith(".") and sid != "gradebook.csv"


def test_zip_members_that_escape_the_archive_are_skipped(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../escaped.ipynb", "{}")
        zf.writestr("alice/hw.ipynb", "{}")
    subs = submissions.collect([archive], "toy", tmp_path / "unpacked")
    assert [s.student for s in subs] == ["alice"]
    assert not (tmp_path / "escaped.ipynb").exists()


def test_hidden_checks_follow_their_cell_and_a_seed_reset_precedes_each_graded_cell():
    source = read_notebook(SOURCE / "toy.ipynb")
    merged = merge.merge(source, read_notebook(STUDENTS / "correct.ipynb")).notebook
    ids = [c.get("id") for c in merged.cells]
    for cell in source.cells:
        meta = cell.metadata.get("dgm", {})
        if meta.get("role") == "hidden":
            after = ids.index(meta["after"])
            assert ids.index(cell.id) > after
            between = ids[after + 1:ids.index(cell.id)]
            assert all(i.startswith("grader-seed-") or i.startswith("toy-kl-hidden")
                       for i in between)
        if meta.get("role") in ("graded", "hidden"):
            assert ids[ids.index(cell.id) - 1] == f"grader-seed-{cell.id}"


def test_partial_credit_given_by_a_verdict_earns_its_fraction():
    source = read_notebook(SOURCE / "toy.ipynb")
    merged = merge.merge(source, read_notebook(STUDENTS / "correct.ipynb"))
    code = [c for c in merged.notebook.cells if c.cell_type == "code"]
    cells = [CellRecord(c.id, "passed") for c in code]
    verdicts = {c.id: Verdict("passed", "", 1.0) for c in code}
    verdicts["toy-kl-hidden"] = Verdict("passed", "one of four values right", 0.25)
    items = {i.item: i for i in scoring.score_items(merged, cells, verdicts, 10, [])}
    assert items["kl"].score == 0.25 * 2 + 1
    assert any("one of four values right" in m for m in items["kl"].messages)


def test_a_check_whose_kernel_part_passed_without_a_passing_verdict_earns_nothing():
    source = read_notebook(SOURCE / "toy.ipynb")
    merged = merge.merge(source, read_notebook(STUDENTS / "correct.ipynb"))
    cells = [CellRecord(c.id, "passed") for c in merged.notebook.cells if c.cell_type == "code"]
    items = {i.item: i for i in scoring.score_items(merged, cells, {}, 10, [])}
    assert all(items[name].score == 0 for name in ("kl", "train", "alpha_bar"))


def test_messages_never_repeat_a_hidden_source_line():
    secret = ["assert abs(_got - _expected) <= 1e-9"]
    text = "expected 1, got 'assert abs(_got - _expected) <= 1e-9 * x'"
    assert secret[0] not in messages.redact(text, secret)


def test_gradebook_keeps_written_points_typed_in_by_the_instructor(graded, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(graded / "correct", out / "correct")
    columns = [("kl", "auto", 3.0), ("train", "auto", 2.0), ("alpha_bar", "auto", 2.0),
               ("explain", "written", 2.0)]
    path = report.write_gradebook(out, "toy", columns)
    text = path.read_text().replace(",pending,7,2,7,9", ",1.5,7,2,7,9")
    path.write_text(text)
    report.write_gradebook(out, "toy", columns)
    row = next(csv.DictReader(path.open()))
    assert (row["explain"], row["written_pending"], row["total"]) == ("1.5", "0", "8.5")


def test_duplicate_student_ids_never_take_an_existing_students_id(tmp_path):
    """Two notebooks named alice and a real alice-2: three distinct ids, nobody overwritten."""
    from autograder.submissions import collect

    for folder, name in [("a", "alice"), ("b", "alice"), ("c", "alice-2")]:
        (tmp_path / folder).mkdir()
        (tmp_path / folder / f"{name}.ipynb").write_text("{}")
    subs = collect([tmp_path / f / n for f, n in [("a", "alice.ipynb"), ("b", "alice.ipynb"),
                                                   ("c", "alice-2.ipynb")]], "vae", tmp_path / "unpack")
    ids = [s.student for s in subs]
    assert len(set(ids)) == 3 and "alice" in ids and "alice-2" in ids
    real = next(s for s in subs if s.path.parent.name == "c")
    assert real.student == "alice-2"


def test_a_gpu_is_never_shared_by_two_submissions_at_once(tmp_path, monkeypatch):
    """With one GPU and two jobs, the second submission waits for the first to give it back."""
    import threading
    import time

    monkeypatch.setattr(config, "resolve_device", lambda device: "cuda")
    monkeypatch.setattr(config, "_gpu_ids", lambda: ["0"])
    spans, lock, real = [], threading.Lock(), execute.run_until_done

    def recorded(nb, workdir, args, env, *rest, **kw):
        start = time.monotonic()
        try:
            return real(nb, workdir, args, env, *rest, **kw)
        finally:
            with lock:
                spans.append((start, time.monotonic(), env.get("CUDA_VISIBLE_DEVICES")))

    monkeypatch.setattr(execute, "run_until_done", recorded)
    subs = []
    for name in ("first", "second"):
        shutil.copy(STUDENTS / "correct.ipynb", tmp_path / f"{name}.ipynb")
        subs.append(tmp_path / f"{name}.ipynb")
    out = tmp_path / "out"
    assert grade.main(["--assignment", "toy", "--source", str(SOURCE), *map(str, subs),
                       "--out", str(out), "--jobs", "2", "--device", "cuda", "--profile",
                       "smoke", "--timeout", str(CELL_TIMEOUT), "--no-progress"]) == 0
    (s1, e1, gpu1), (s2, e2, gpu2) = sorted(spans)
    assert gpu1 == gpu2 == "0"
    assert s2 >= e1, "two submissions ran on the one GPU at the same time"
    assert all(_scores(out, s) == FULL for s in ("first", "second"))


def test_without_the_sandbox_grading_still_works_and_the_feedback_says_so(tmp_path):
    out = tmp_path / "out"
    assert grade.main(["--assignment", "toy", "--source", str(SOURCE),
                       str(STUDENTS / "correct.ipynb"), "--out", str(out), "--device", "cpu",
                       "--profile", "smoke", "--timeout", str(CELL_TIMEOUT), "--no-progress",
                       "--insecure-no-sandbox"]) == 0
    assert _scores(out, "correct") == FULL
    assert "outside the grader's sandbox" in (out / "correct" / "feedback.md").read_text()


def test_the_summary_shows_written_points_typed_in_after_a_regrade(graded, tmp_path, capsys):
    """Once printed `pending` although the instructor had typed the points in."""
    out = tmp_path / "out"
    shutil.copytree(graded, out)
    book = out / "gradebook.csv"
    with open(book, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        if row["student"] == "correct":
            row["explain"] = "1.5"
    with open(book, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    capsys.readouterr()
    assert _grade([STUDENTS / "correct.ipynb"], out) == 0  # skipped: graded already
    printed = capsys.readouterr().out
    row = next(line for line in printed.splitlines() if line.split()[:1] == ["correct"])
    assert "1.5" in row.split() and "pending" not in row


def test_a_notebook_out_of_time_keeps_what_ran_and_says_what_did_not(tmp_path):
    """The whole notebook has a time budget (--notebook-timeout): the cell running when it runs
    out is stopped, the cells after it are not run, and what ran before keeps its score."""
    nb = nbformat.read(str(STUDENTS / "correct.ipynb"), as_version=4)
    cell = next(c for c in nb.cells if c.get("id") == "toy-alpha-bar")
    cell.source = "while True:\n    pass\n" + cell.source
    sub = tmp_path / "subs" / "endless.ipynb"
    sub.parent.mkdir()
    nbformat.write(nb, str(sub))
    out, budget = tmp_path / "out", 20
    started = time.perf_counter()
    assert grade.main(["--assignment", "toy", "--source", str(SOURCE), str(sub), "--out", str(out),
                       "--device", "cpu", "--profile", "smoke", "--timeout", str(CELL_TIMEOUT),
                       "--notebook-timeout", str(budget), "--no-progress"]) == 0
    took = time.perf_counter() - started
    assert _scores(out, "endless") == {**FULL, "alpha_bar": 0.0}
    message = _item_output(out, "endless", "alpha_bar")
    assert f"time budget of {budget:g} s ran out while this cell ran" in message, message
    assert f"not run: the notebook used up its time budget of {budget:g} s" in message, message
    assert took < budget + 60, f"grading took {took:.0f} s with a {budget} s budget"  # not the cell timeout


def test_the_notebook_timeout_must_be_positive(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        grade.main(["--assignment", "toy", "--source", str(SOURCE), str(STUDENTS / "correct.ipynb"),
                    "--out", str(tmp_path), "--notebook-timeout", "0", "--no-progress"])
    assert stop.value.code == 2
    assert "--notebook-timeout must be a positive number of seconds" in capsys.readouterr().err


def test_text_that_is_not_valid_unicode_is_graded_not_an_internal_error(tmp_path):
    """A lone surrogate (JSON's ``\\ud800``) pasted into a written answer cannot be written to a
    UTF-8 file; the grader replaces it and grades the notebook as usual."""
    nb = nbformat.read(str(STUDENTS / "correct.ipynb"), as_version=4)
    cell = next(c for c in nb.cells if c.get("id") == "toy-explain")
    cell.source = cell.source + "\n\npasted: \ud800 (a lone surrogate)"
    sub = tmp_path / "subs" / "pasted.ipynb"
    sub.parent.mkdir()
    sub.write_text(json.dumps(nb, ensure_ascii=True))  # how a browser would save it
    out = tmp_path / "out"
    assert _grade([sub], out) == 0
    assert _scores(out, "pasted") == FULL
    assert "pasted: ? (a lone surrogate)" in (out / "pasted" / "feedback.md").read_text(encoding="utf-8")
