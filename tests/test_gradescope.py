"""Tests of the Gradescope package (``python -m autograder gradescope``) run as Gradescope runs it.

The toy fixture's package is built, unpacked into a folder laid out like Gradescope's
``/autograder`` (``$DGM_AUTOGRADER_ROOT``), installed by its own ``setup.sh`` once per session,
and its ``run_autograder`` grades a good submission (in a folder with other files), a broken
one and a hostile one; each results.json is validated against a JSON schema of Gradescope's
format (tests/fixtures/gradescope/results.schema.json). To stay fast and offline, the venv
setup.sh installs into is made beforehand with a ``.pth`` file that points at this
environment's site-packages: setup.sh's own ``pip install -r requirements.txt`` then runs and
finds every pinned requirement satisfied (and fails if a pin does not match). Run as root
(Gradescope's case), the kernels run as ``nobody``; the hostile notebook is graded a second
time with the sandbox off, to check that the user alone keeps the source and the results out
of reach.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import jsonschema
import nbformat
import pytest

from autograder import gradescope, gradescope_run, messages

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
SOURCE = FIXTURES / "grading" / "source"
STUDENTS = FIXTURES / "grading" / "students"
SCHEMA = json.loads((FIXTURES / "gradescope" / "results.schema.json").read_text())
FULL = {"kl": 3.0, "train": 2.0, "alpha_bar": 2.0}
KERNEL_USER = "nobody"
AS_ROOT = os.geteuid() == 0
SENTINEL = "FOUND-BY-THE-KERNEL"


@pytest.fixture(scope="session")
def gradescope_root(tmp_path_factory):
    """The toy package, built, unpacked as Gradescope does and installed by its setup.sh.
    Not under pytest's own temporary folder, which the kernel's user cannot enter."""
    tmp = tmp_path_factory.mktemp("gradescope")
    package = gradescope.build(gradescope.PackageConfig("toy", source_dir=SOURCE,
                                                        allow_unmeasured=True),
                               tmp / "autograder.zip")
    root = Path(tempfile.mkdtemp(prefix="dgm-test-autograder-"))
    os.chmod(root, 0o755)
    try:
        with zipfile.ZipFile(package) as zf:
            assert {"setup.sh", "run_autograder"} <= set(zf.namelist())  # at the top
        gradescope.install_locally(package, root, KERNEL_USER)
        assert "Requirement already satisfied: torch==" in (root / "setup.log").read_text()
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run_autograder(root: Path, files: dict[str, bytes], **env) -> dict:
    """Put ``files`` in ``root/submission``, run ``run_autograder``, return results.json."""
    shutil.rmtree(root / "submission", ignore_errors=True)
    shutil.rmtree(root / "results", ignore_errors=True)
    for name, content in files.items():
        (root / "submission" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "submission" / name).write_bytes(content)
    proc = subprocess.run([str(root / "run_autograder")], cwd="/", capture_output=True,
                          text=True, timeout=600,
                          env=dict(os.environ, DGM_AUTOGRADER_ROOT=str(root),
                                   DGM_GRADESCOPE_USER=KERNEL_USER, **env))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads((root / "results" / "results.json").read_text())
    jsonschema.validate(data, SCHEMA)
    return data


def _auto(data: dict) -> dict[str, float]:
    return {t["name"]: t["score"] for t in data["tests"]
            if not t.get("extra_data", {}).get("manual_grading")}


def _hostile_notebook(root: Path) -> bytes:
    """The correct notebook whose first graded cell looks for the source, the results and the
    grader's files, tries to forge results.json, and fails loudly with whatever it found."""
    nb = nbformat.read(str(STUDENTS / "correct.ipynb"), as_version=4)
    cell = next(c for c in nb.cells if c.get("id") == "toy-kl")
    attack = f'''
import glob as _glob, os as _os
_found = []
for _pattern in ["{root}/source/**", "{root}/results/**", "/tmp/dgm-gradescope-*/**"]:
    _found += [p for p in _glob.glob(_pattern, recursive=True) if _os.path.isfile(p)]
for _path in ["{root}/source/solutions/toy.ipynb", "{root}/results/results.json",
              "{root}/source/gradescope.json"]:
    try:
        _found.append(open(_path).read()[:80])
    except OSError:
        pass
try:
    with open("{root}/results/results.json", "w") as _fh:
        _fh.write('{{"score": 1000, "tests": []}}')
    _found.append("wrote results.json")
except OSError:
    pass
if _found:
    raise RuntimeError("{SENTINEL}: " + repr(_found)[:300])
'''
    cell.source = attack + "\n" + cell.source
    return nbformat.writes(nb).encode()


# --- run_autograder, for real ----------------------------------------------------------------

def test_a_good_submission_in_a_folder_gets_full_marks_and_is_named(gradescope_root):
    correct = (STUDENTS / "correct.ipynb").read_bytes()
    data = run_autograder(gradescope_root, {
        "work/toy.ipynb": correct,
        "work/scratch.ipynb": (STUDENTS / "fixme.ipynb").read_bytes(),
        "notes.txt": b"my notes"})
    assert _auto(data) == FULL and data["score"] == 7.0
    assert "graded toy.ipynb (named after the assignment); ignored scratch.ipynb" in data["output"]
    assert "notes.txt" in data["output"]
    (written,) = [t for t in data["tests"] if t.get("extra_data", {}).get("manual_grading")]
    assert written["max_score"] == 0.0 and "graded by hand" in written["name"]
    assert data["output_format"] == "md"
    assert all(t["visibility"] == "visible" for t in data["tests"])


def test_a_broken_submission_scores_zero_and_says_why(gradescope_root):
    data = run_autograder(gradescope_root, {"toy.ipynb": b"{ this is not json"})
    assert data["score"] == 0.0 and set(_auto(data).values()) == {0.0}
    assert "not valid JSON" in data["output"]


def test_a_submission_without_a_notebook_is_told_so(gradescope_root):
    data = run_autograder(gradescope_root, {"toy.pdf": b"%PDF-1.4"})
    assert data["score"] == 0.0 and "No gradable notebook (.ipynb file) was found" in data["output"]
    assert all(t["status"] == "failed" for t in data["tests"])


def test_a_hostile_submission_finds_and_forges_nothing(gradescope_root):
    data = run_autograder(gradescope_root, {"toy.ipynb": _hostile_notebook(gradescope_root)})
    text = json.dumps(data)
    assert SENTINEL not in text and data["score"] == 7.0, text[:2000]
    assert "inside the bubblewrap sandbox" in data["output"]
    if AS_ROOT:
        assert f"unprivileged user `{KERNEL_USER}`" in data["output"]


@pytest.mark.skipif(not AS_ROOT, reason="the kernel's own user needs a grader running as root")
def test_the_unprivileged_user_alone_keeps_the_source_and_results_out_of_reach(
        gradescope_root):
    data = run_autograder(gradescope_root, {"toy.ipynb": _hostile_notebook(gradescope_root)},
                          DGM_GRADESCOPE_SANDBOX="off")
    assert SENTINEL not in json.dumps(data) and data["score"] == 7.0, json.dumps(data)[:2000]
    assert "sandbox could not run" in data["output"]


# --- building: what fits Gradescope ----------------------------------------------------------

MEASURED = {"machine": {"date": "then"}, "limits": {"cpus": 1.0},
            "runs": {"smoke": {"toy": {"seconds": 40.0, "peak_mb": 500.0, "full_marks": True}},
                     "cpu": {"toy": {"seconds": 250.0, "peak_mb": 500.0,
                                     "full_marks": True}}}}


def test_a_profile_measured_to_fit_is_built():
    assert gradescope.fit_problem("toy", "smoke", MEASURED) is None


def test_a_profile_too_slow_for_half_a_cpu_is_refused_with_the_numbers():
    problem = gradescope.fit_problem("toy", "cpu", MEASURED)
    assert "does not fit" in problem and "250 s on 1 CPU" in problem and "500 s" in problem


def test_a_profile_over_the_memory_limit_is_refused():
    measured = json.loads(json.dumps(MEASURED))
    measured["runs"]["smoke"]["toy"].update(peak_mb=768.0, hit_memory_limit=True)
    assert "hit Gradescope's 768 MB" in gradescope.fit_problem("toy", "smoke", measured)


def test_an_unmeasured_assignment_is_refused_unless_allowed(tmp_path, capsys):
    code = gradescope.main(["--assignment", "toy", "--source", str(SOURCE), "--out",
                            str(tmp_path / "a.zip")])
    assert code == 2 and "has not been measured" in capsys.readouterr().err
    assert not (tmp_path / "a.zip").exists()
    code = gradescope.main(["--assignment", "toy", "--source", str(SOURCE), "--out",
                            str(tmp_path / "a.zip"), "--allow-unmeasured"])
    assert code == 0 and (tmp_path / "a.zip").is_file()
    assert "warning: " in capsys.readouterr().err


def test_the_full_profile_is_refused_by_name():
    with pytest.raises(ValueError, match="full needs a GPU"):
        gradescope.PackageConfig("toy", profile="full")


# --- the results' format, unit level ---------------------------------------------------------

def _graded(score: float | None = 2.0) -> dict:
    return {"score": 2.0, "output": "Auto-graded: 2/3 points.\nA note.",
            "tests": [{"name": "kl", "output": "Check 1 failed"}],
            "extra_data": {"assignment": "toy", "profile": "smoke", "error": None,
                           "items": [{"item": "kl", "kind": "auto", "max_score": 3.0,
                                      "score": 2.0, "title": "Exercise 1: the KL"},
                                     {"item": "explain", "kind": "written", "max_score": 2.0,
                                      "score": score, "title": "Question 1"}]}}


def test_after_published_hides_the_auto_graded_items_and_the_summary_score():
    data = gradescope_run.gradescope_results(_graded(), ["Isolation: ..."], "after_published",
                                             1.0)
    jsonschema.validate(data, SCHEMA)
    auto = [t for t in data["tests"] if not t.get("extra_data")]
    assert [t["visibility"] for t in auto] == ["after_published"]
    assert "2/3" not in data["output"] and "A note." in data["output"]
    assert auto[0]["name"] == "Exercise 1: the KL"


def test_a_written_answer_left_as_the_placeholder_is_failed_with_its_reason():
    data = gradescope_run.gradescope_results(_graded(score=0.0), [], "visible", 1.0)
    written = data["tests"][-1]
    assert written["status"] == "failed" and written["output"] == messages.NOT_ANSWERED
