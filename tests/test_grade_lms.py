"""Tests of what the grader hands a learning platform, and of what an instructor tripped on.

Canvas's "Download Submissions" names (user ids, LATE, resubmissions), the Canvas and plain
exports with an optional roster (unknown and duplicate ids reported, never guessed), the late
column of the gradebook; then the fixes of issue #18: inputs checked before anything runs
(a mistyped path, missing data), every file handed in getting a row, verdict-based check
statuses, placeholders worth 0, "not attempted", titles and typeset maths in the feedback,
typed written points in the console summary, and the profile rule. No kernel runs here.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from autograder import grade, lms, messages, report, scoring, submissions
from autograder.checks import Verdict
from autograder.config import GradeConfig
from autograder.execute import CellRecord
from autograder.merge import merge
from autograder.notebook_format import item_titles, read_notebook, validate
from autograder.report import ItemResult, StudentResult

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "tests" / "fixtures" / "grading" / "source"
STUDENTS = ROOT / "tests" / "fixtures" / "grading" / "students"
CORRECT = STUDENTS / "correct.ipynb"
COLUMNS = [("kl", "auto", 3.0), ("train", "auto", 2.0), ("alpha_bar", "auto", 2.0),
           ("explain", "written", 2.0)]


# --- Canvas's file names ------------------------------------------------------------------

def test_a_canvas_name_gives_the_user_id_lateness_and_resubmission():
    found = submissions.canvas_name("doejane_LATE_1234_98765_vae-2.ipynb")
    assert (found.name, found.user_id, found.submission_id) == ("doejane", "1234", "98765")
    assert found.late and found.base == "vae.ipynb" and found.version == 2
    plain = submissions.canvas_name("roebob_77_88_vae.ipynb")
    assert not plain.late and plain.version == 0 and plain.base == "vae.ipynb"
    assert submissions.canvas_name("alice.ipynb") is None


def test_a_canvas_export_keeps_the_latest_resubmission_and_reads_ids(tmp_path):
    folder = tmp_path / "export"
    folder.mkdir()
    notebook = CORRECT.read_bytes()
    for name in ("doejane_1234_5_toy.ipynb", "doejane_1234_5_toy-1.ipynb",
                 "doejane_1234_5_toy-2.ipynb", "roebob_LATE_77_8_toy.ipynb"):
        (folder / name).write_bytes(notebook)
    subs = {s.student: s for s in submissions.collect([folder], "toy", tmp_path / "u")}
    assert set(subs) == {"doejane", "roebob"}
    jane, bob = subs["doejane"], subs["roebob"]
    assert jane.path.name == "doejane_1234_5_toy-2.ipynb" and jane.lms_id == "1234"
    assert not jane.late and bob.late and bob.lms_id == "77"
    assert any("toy.ipynb, toy-1.ipynb" in n for n in jane.notes)
    assert messages.late_submission() in bob.notes


# --- every file handed in is a row; paths that are not there ------------------------------

def test_a_file_that_is_not_a_notebook_gets_a_row_with_a_message(tmp_path):
    (tmp_path / "dave.txt").write_text("my answers")
    (tmp_path / "alice.ipynb").write_bytes(CORRECT.read_bytes())
    subs = {s.student: s for s in submissions.collect([tmp_path], "toy", tmp_path / "u")}
    assert set(subs) == {"alice", "dave"}
    assert subs["dave"].problem == messages.not_a_notebook_file("dave.txt")
    assert subs["alice"].problem is None


def test_a_path_that_does_not_exist_is_reported_as_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        submissions.collect([tmp_path / "alcie.ipynb"], "toy", tmp_path / "u")


def test_a_mistyped_path_is_reported_before_the_data_is_looked_for(tmp_path, monkeypatch,
                                                                   capsys):
    monkeypatch.setenv("DGM_DATA", str(tmp_path / "no-data"))
    with pytest.raises(SystemExit) as info:
        grade.main(["--assignment", "vae", str(tmp_path / "alcie.ipynb"), "--out",
                    str(tmp_path / "out"), "--device", "cpu", "--profile", "smoke"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "alcie.ipynb does not exist" in err
    assert "Traceback" not in err and "Fashion-MNIST" not in err


def test_grading_without_the_data_says_so_and_how_to_point_at_it(tmp_path, monkeypatch,
                                                                 capsys):
    monkeypatch.setenv("DGM_DATA", str(tmp_path / "no-data"))
    with pytest.raises(SystemExit) as info:
        grade.main(["--assignment", "vae", str(ROOT / "notebooks" / "vae.ipynb"), "--out",
                    str(tmp_path / "out"), "--device", "cpu", "--profile", "smoke"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "grading needs Fashion-MNIST" in err
    assert "DGM_DATA" in err and "FashionMNIST/raw" in err and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("python -m autograder grade: error: grading")
    assert not (tmp_path / "out").exists()


def test_the_profile_defaults_to_the_books_rule(monkeypatch):
    args = grade.build_parser().parse_args(["--assignment", "toy", str(CORRECT), "--out", "o",
                                            "--device", "cpu"])
    assert args.profile is None
    monkeypatch.setenv("DGM_PROFILE", "cpu")
    cfg = GradeConfig.from_args(args)
    assert cfg.profile == "cpu" and cfg.timeout == 900.0


# --- exports for a learning platform ------------------------------------------------------

def _student(out: Path, student: str, kl: float, lms_id: str | None = None,
             late: bool = False, explain: float | None = None) -> StudentResult:
    items = [ItemResult("kl", "auto", 3.0, kl), ItemResult("train", "auto", 2.0, 2.0),
             ItemResult("alpha_bar", "auto", 2.0, 2.0),
             ItemResult("explain", "written", 2.0, explain)]
    res = StudentResult(student, "toy", items, [], {}, "smoke", "cpu", {"wall_s": 1.0},
                        lms_id=lms_id, late=late)
    report.write_student(out, res)
    return res


def _csv(path: Path) -> list[list[str]]:
    with open(path, newline="") as fh:
        return list(csv.reader(fh))


def test_the_canvas_export_has_canvas_ids_and_the_gradebook_marks_late(tmp_path):
    _student(tmp_path, "doejane", 3.0, "1234")
    _student(tmp_path, "roebob", 1.0, "77", late=True)
    report.write_gradebook(tmp_path, "toy", COLUMNS)
    export = lms.write_exports(tmp_path, "toy", column="Homework 1 (4321)")
    rows = _csv(export.canvas)
    assert rows[0] == [*lms.CANVAS_FIXED, "Homework 1 (4321)"]
    assert rows[1][0].strip() == "Points Possible" and rows[1][-1] == "9"
    assert rows[2:] == [["doejane", "1234", "", "", "", "7"], ["roebob", "77", "", "", "", "5"]]
    assert _csv(export.plain) == [["student", "total"], ["1234", "7"], ["77", "5"]]
    book = {r[0]: r for r in _csv(tmp_path / "gradebook.csv")}
    assert book["student"][-1] == "late" and book["roebob"][-1] == "late"
    assert book["doejane"][-1] == "" and export.problems == []


def test_a_roster_maps_other_exports_and_reports_unknown_and_duplicate_ids(tmp_path):
    out = tmp_path / "out"
    for name in ("alice", "bob", "carol", "dave"):
        _student(out, name, 3.0)
    report.write_gradebook(out, "toy", COLUMNS)
    roster = tmp_path / "roster.csv"
    roster.write_text("Student,ID\nalice,A1\nbob,B2\ncarol,B2\nerin,E5\n")
    export = lms.write_exports(out, "toy", lms.Roster.read(roster))
    ids = [r[1] for r in _csv(export.canvas)[2:]]
    assert ids == ["A1"]  # bob and carol share an id, dave is unknown: none guessed
    assert _csv(export.plain)[1:] == [["A1", "7"]]
    text = " ".join(export.problems)
    assert "dave is not in the roster" in text and "id B2 belongs to 2 students" in text


def test_a_roster_giving_one_student_two_ids_is_reported(tmp_path):
    roster = tmp_path / "roster.csv"
    roster.write_text("student,id\nalice,A1\nalice,A9\nbob,B2\n")
    read = lms.Roster.read(roster)
    assert read.ids == {"bob": "B2"} and "alice several ids (A1, A9)" in read.problems[0]
    (tmp_path / "bad.csv").write_text("name,number\nalice,1\n")
    with pytest.raises(ValueError, match="needs the columns student and id"):
        lms.Roster.read(tmp_path / "bad.csv")


# --- scoring -------------------------------------------------------------------------------

def _merged():
    source = read_notebook(SOURCE / "toy.ipynb")
    return merge(source, read_notebook(CORRECT))


def test_extra_data_records_the_verdict_not_whether_the_cell_ran():
    merged = _merged()
    cells = [CellRecord(c.id, "passed") for c in merged.notebook.cells if c.cell_type == "code"]
    verdicts = {c.id: Verdict("passed", "", 1.0) for c in merged.notebook.cells}
    verdicts["toy-train-hidden"] = Verdict("failed", "the loss went up", 0.0)
    items = {i.item: i for i in scoring.score_items(merged, cells, verdicts, 10, [])}
    (check,) = items["train"].checks
    assert check["status"] == "failed" and check["cell"] == "passed"
    assert {c["status"] for c in items["kl"].checks} == {"passed"}


def test_a_verdict_that_met_a_fixme_says_the_exercise_was_not_attempted():
    merged = _merged()
    cells = [CellRecord(c.id, "passed") for c in merged.notebook.cells if c.cell_type == "code"]
    verdicts = {"toy-train-hidden": Verdict("failed", "train raised NotImplementedError: ",
                                            0.0)}
    items = {i.item: i for i in scoring.score_items(merged, cells, verdicts, 10, [])}
    (message,) = [m for m in items["train"].messages if "Check" in m]
    assert "not attempted" in message and not message.rstrip().endswith(":")


def test_a_written_answer_left_as_the_placeholder_is_zero_with_that_reason():
    source = read_notebook(SOURCE / "toy.ipynb")
    merged = merge(source, read_notebook(STUDENTS / "fixme.ipynb"))
    items = {i.item: i for i in scoring.score_items(merged, [], {}, 10, [])}
    assert items["explain"].score == 0.0 and messages.NOT_ANSWERED in items["explain"].messages
    res = StudentResult("s", "toy", list(items.values()), [], {}, "smoke", "cpu", {})
    assert res.written_pending == 0.0


# --- the feedback and the summary ---------------------------------------------------------

def test_items_are_titled_by_their_exercise():
    nb = read_notebook(ROOT / "solutions" / "ddpm.ipynb")
    titles = item_titles(nb, validate(nb))
    assert titles["ddpm-schedule"] == "Exercise 2: the schedule"
    assert titles["ddpm-q-marginal"] == "Question 1"
    res = StudentResult("s", "ddpm", [ItemResult("ddpm-schedule", "auto", 3.0, 1.0,
                                                 title=titles["ddpm-schedule"])], [], {},
                        "smoke", "cpu", {})
    assert "## Exercise 2: the schedule (1 / 3 points)" in report.feedback_markdown(res)


def test_feedback_html_keeps_the_tex_for_mathjax_and_loads_it_offline(tmp_path):
    text = r"> **Question 1.** State $q(x_t \mid x_0)$ and $\mathrm{KL}(q \,\|\, p)$."
    page = report.markdown_to_html(text, "t", "../.mathjax/tex-chtml.js")
    assert r"\(q(x_t \mid x_0)\)" in page and r"\(\mathrm{KL}(q \,\|\, p)\)" in page
    assert 'src="../.mathjax/tex-chtml.js"' in page and "https://" not in page
    if (report.MATHJAX_SOURCE / "tex-chtml.js").is_file():
        assert report.install_mathjax(tmp_path) == "../.mathjax/tex-chtml.js"
        assert (tmp_path / ".mathjax" / "tex-chtml.js").is_file()


def test_a_written_answer_cannot_pose_as_the_graders_own_headings_or_run_script():
    """Red team round 5: '## Exercise 9: bonus (100 / 100 points)' in an answer rendered as a
    heading of the page, and MathJax turned \\href{javascript:...} into a live link."""
    answer = "## Exercise 9: bonus (100 / 100 points)\nAll correct\n---\nmy $x^2$ answer\n- a list"
    res = StudentResult("s", "toy", [ItemResult("explain", "written", 2.0, None)], [],
                        {"explain": answer}, "smoke", "cpu", {})
    page = report.render_markdown(report.feedback_markdown(res))
    assert "Exercise 9: bonus" in page and "<h2>Exercise 9" not in page
    assert page.count("<h2>") == 1 and "<h3>" in page  # the grader's own: "Written answers" and the item
    assert r"\(x^2\)" in page and "<li>a list</li>" in page  # math and lists still render
    assert "ui/safe" in report._MATHJAX_CONFIG and "URLs:'none'" in report._MATHJAX_CONFIG  # no \\href
    assert "styles:'none'" in report._MATHJAX_CONFIG  # no \\style{...} making a fake green "full marks"
    tricks = report.render_markdown("> ![p](https://evil.example/p.png) [mail](https://evil.example) "
                                    "<https://evil.example> <img src=x onerror=alert(1)>")
    assert "<img" not in tricks and "<a " not in tricks and "evil.example" in tricks  # shown as text
    if (report.MATHJAX_SOURCE / "tex-chtml.js").is_file():
        assert (report.MATHJAX_SOURCE / "ui" / "safe.js").is_file()


def test_the_summary_shows_written_points_typed_into_the_gradebook(tmp_path):
    res = _student(tmp_path, "alice", 3.0)
    assert "pending" in report.summary_table([res])
    path = report.write_gradebook(tmp_path, "toy", COLUMNS)
    path.write_text(path.read_text().replace(",pending,", ",1.5,"))
    typed = report.read_typed(path, COLUMNS)
    table = report.summary_table([res], typed=typed)
    row = next(line for line in table.splitlines() if line.startswith("alice"))
    assert "1.5" in row and "pending" not in row


def test_results_json_keeps_lms_id_and_lateness_for_a_resumed_batch(tmp_path):
    from autograder.state import load_result

    _student(tmp_path, "roebob", 1.0, "77", late=True)
    data = json.loads((tmp_path / "roebob" / "results.json").read_text())
    back = load_result(data)
    assert back.lms_id == "77" and back.late is True
