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

import copy
import json
import shutil
from pathlib import Path

import nbformat
import pytest

from autograder import grade
from autograder.sandbox import _can_unshare

# The limits and the isolation these tests prove need Linux user namespaces (`make test` runs on
# such a machine; elsewhere the grader still runs, and says in the feedback what it could not do).
pytestmark = pytest.mark.skipif(not _can_unshare(), reason="needs Linux user namespaces")

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "grading"
SOURCE = FIXTURES / "source"
CORRECT = FIXTURES / "students" / "correct.ipynb"
ROOT = Path(__file__).resolve().parent.parent
SENTINEL = "HIDDEN-CHECK-SENTINEL-7f3a"

WRONG_KL = "return -0.5 * (mu**2 + math.exp(logvar) - logvar - 1.0)"
RIGHT_KL = "return 0.5 * (mu**2 + math.exp(logvar) - logvar - 1.0)"


def _attacks(out: Path) -> dict[str, tuple[dict[str, str], dict[str, float]]]:
    """student -> ({cell id: code put before the cell's own code}, expected scores)."""
    full = {"kl": 3.0, "train": 2.0, "alpha_bar": 2.0}
    return {
        # A wrong KL hidden behind redefined builtins that comparisons would use.
        "builtins": ({"toy-kl": (
            "import builtins\nbuiltins.abs = lambda x: 0.0\nbuiltins.min = lambda *a, **k: 1.0\n"
            "builtins.all = lambda *a: True\nbuiltins.round = lambda *a: 0\n"
            "builtins.print = lambda *a, **k: None\n"), "kl-wrong": ""}, {**full, "kl": 0.0}),
        # exp patched to 1 so that a KL written without it agrees with any in-kernel reference.
        "patched_math": ({"toy-kl": "math.exp = lambda x: 1.0\n",
                          "kl-replace": "return 0.5 * (mu**2 + 1.0 - logvar - 1.0)"},
                         {**full, "kl": 0.0}),
        # Prints what a passing check prints and shows a forged measurement outside a check.
        "fake_pass": ({"toy-alpha-bar": (
            "print('toy-alpha-bar-hidden: check passed, 2/2 points')\n"
            "from IPython.display import display\n"
            "display({'application/vnd.dgm.observation+json': {'values': {'__dict__': {'got': "
            "[0.9, 0.72, 0.504, 0.4788]}}}}, raw=True)\n"), "ab-wrong": ""},
            {**full, "alpha_bar": 0.0}),
        # Replaces what observe() sends with made-up numbers.
        "forged_observe": ({"toy-alpha-bar": (
            "import autograder.observe as _o\n"
            "_o.encode = lambda values: {'values': {'__dict__': {'got': [1.0, 1.0, 1.0, 1.0]}}}\n"
            ), "ab-wrong": ""}, {**full, "alpha_bar": 0.0}),
        # Swallows the exception a broken function raises inside the check.
        "swallowed": ({"toy-alpha-bar": (
            "import sys\nsys.excepthook = lambda *a: None\n"
            "get_ipython().set_custom_exc((BaseException,), lambda *a, **k: None)\n"),
            "ab-raise": ""}, {**full, "alpha_bar": 0.0}),
        # Deletes names before every later cell runs (here its own function: a check that
        # cannot find what it measures earns nothing).
        "deleted_names": ({"toy-alpha-bar": (
            "get_ipython().events.register('pre_run_cell', "
            "lambda info: globals().pop('alpha_bar_schedule', None))\n")},
            {**full, "alpha_bar": 0.0}),
        # Writes into the output folder and the repository; reads the hidden checks.
        "writes_and_reads": ({"toy-kl": (
            "import os, glob\nfound = []\n"
            f"for p in [{str(out)!r}, {str(out / 'correct')!r}, {str(ROOT / 'README.md')!r}]:\n"
            "    try:\n        open(os.path.join(p, 'x') if os.path.isdir(p) else p, 'a').write('x')\n"
            "        found.append('WROTE ' + p)\n    except OSError as e:\n"
            "        found.append('blocked ' + type(e).__name__)\n"
            f"for p in [{str(SOURCE / 'toy.ipynb')!r}, 'submission.ipynb']:\n"
            f"    found.append(('READ ' if os.path.exists(p) and {SENTINEL!r} in open(p).read() "
            "else 'unreadable ') + os.path.basename(p))\n"
            "found.append('ENV=' + ','.join(k for k in os.environ if k.startswith('DGM_GRADER')) + ';')\n"
            "found.append('PROCS ' + str(len([d for d in os.listdir('/proc') if d.isdigit()])))\n"
            "print('\\n'.join(found))\n")}, full),
        "network": ({"toy-kl": (
            "import socket\ntry:\n    socket.create_connection(('1.1.1.1', 80), timeout=3)\n"
            "    print('NETWORK OPEN')\nexcept OSError as e:\n    print('network blocked', e)\n")},
            full),
        # Faults: each costs its own item only.
        "sys_exit": ({"toy-kl": "import sys\nsys.exit(3)\n"}, {**full, "kl": 0.0}),
        "segfault": ({"toy-kl": "import ctypes\nctypes.string_at(0)\n"}, {**full, "kl": 0.0}),
        "memory_hog": ({"toy-train": "hog = [b'x' * 2**26 for _ in range(64)]\n"},
                       {**full, "train": 0.0}),
        "process_bomb": ({"toy-train": (
            "import subprocess\nprocs = [subprocess.Popen(['sleep', '30']) for _ in range(300)]\n")},
            {**full, "train": 0.0}),
        "huge_output": ({"toy-kl": "print('y' * 30_000_000)\n"}, full),
    }


README_BEFORE = (ROOT / "README.md").read_bytes()


def test_student_code_did_not_change_the_repository(hostile):
    assert (ROOT / "README.md").read_bytes() == README_BEFORE


def _build(folder: Path, out: Path) -> dict[str, dict[str, float]]:
    correct = nbformat.read(str(CORRECT), as_version=4)
    expected = {}
    for name, (edits, scores) in _attacks(out).items():
        nb = copy.deepcopy(correct)
        cells = {c.get("id"): c for c in nb.cells}
        for cid, code in edits.items():
            if cid == "kl-wrong":
                cells["toy-kl"].source = cells["toy-kl"].source.replace(RIGHT_KL, WRONG_KL)
            elif cid == "kl-replace":
                cells["toy-kl"].source = cells["toy-kl"].source.replace(RIGHT_KL, code)
            elif cid == "ab-wrong":
                cells["toy-alpha-bar"].source = cells["toy-alpha-bar"].source.replace(
                    "prod *= 1.0 - b", "prod *= 1.0 - 2 * b")
            elif cid == "ab-raise":
                cells["toy-alpha-bar"].source = cells["toy-alpha-bar"].source.replace(
                    "out, prod = [], 1.0", "raise ValueError('broken')")
            else:
                cells[cid].source = code + cells[cid].source
        (folder / f"{name}.ipynb").write_text(nbformat.writes(nb))
        expected[name] = scores
    shutil.copy(CORRECT, folder / "correct.ipynb")
    expected["correct"] = {"kl": 3.0, "train": 2.0, "alpha_bar": 2.0}
    return expected


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    folder, out = tmp_path_factory.mktemp("hostile"), tmp_path_factory.mktemp("hostile-out")
    expected = _build(folder, out)
    code = grade.main(["--assignment", "toy", "--source", str(SOURCE), str(folder),
                       "--out", str(out), "--jobs", "2", "--device", "cpu", "--profile", "smoke",
                       "--timeout", "60", "--memory-mb", "768", "--max-procs", "64",
                       "--no-progress"])
    assert code == 0
    return out, expected


def _result(out: Path, student: str) -> dict:
    return json.loads((out / student / "results.json").read_text())


def _outputs(out: Path, student: str) -> str:
    nb = nbformat.read(str(out / student / "executed.ipynb"), as_version=4)
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
    assert (out / "huge_output" / "executed.ipynb").stat().st_size < 3_000_000
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
