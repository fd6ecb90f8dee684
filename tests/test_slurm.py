"""``grade --executor slurm`` on a real one-node Slurm cluster gives what local grading gives.

A one-node cluster (tests/slurm_cluster.py: Debian's slurm-wlm and munge, which ``make test``
installs, daemons on 127.0.0.1) grades a class of mixed submissions (correct, the released
FIXME, one that kills its kernel, a file that is not JSON, a hostile one that redefines
builtins, and two slow ones) as a job array, two tasks at a time. While it runs, one slow
student's task is cancelled once (it must be retried and graded) and the other's twice (it
must be recorded as a grader error, then graded by the next run of the same command). Every
result is compared with local grading of the same files (``--jobs 2``).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import nbformat
import pytest

from autograder import grade
from autograder.config import GradeConfig, SlurmOptions
from autograder.report import executed_copy
from autograder.slurm import task_config, task_gpus
from autograder.state import read_log

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures" / "grading"
SOURCE = FIXTURES / "source"
STUDENTS = FIXTURES / "students"
SLOW_S = 8       # the slow students' extra seconds in a graded cell
CANCELS = {"slow_retried": 1, "slow_lost": 2}  # student -> attempts cancelled


def _hostile(folder: Path, names: tuple[str, ...]) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("hostile", FIXTURES / "hostile.py")
    hostile = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hostile)
    every = folder / "all-hostile"
    every.mkdir()
    hostile.build(every, folder)
    for name in names:
        shutil.copy(every / f"{name}.ipynb", folder / f"{name}.ipynb")
    shutil.rmtree(every)


def _slow(path: Path) -> None:
    nb = nbformat.read(str(STUDENTS / "correct.ipynb"), as_version=4)
    cell = next(c for c in nb.cells if c.get("id") == "toy-kl")
    cell.source = f"import time\ntime.sleep({SLOW_S})\n" + cell.source
    path.write_text(nbformat.writes(nb))


@pytest.fixture(scope="module")
def klass(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("class")
    for name in ("correct", "fixme", "crash"):
        shutil.copy(STUDENTS / f"{name}.ipynb", folder / f"{name}.ipynb")
    (folder / "broken.ipynb").write_text("{ this is not json")
    _hostile(folder, ("builtins",))
    for name in CANCELS:
        _slow(folder / f"{name}.ipynb")
    return folder


def _argv(klass: Path, out: Path, *extra: str) -> list[str]:
    return ["--assignment", "toy", "--source", str(SOURCE), str(klass), "--out", str(out),
            "--device", "cpu", "--profile", "smoke", "--timeout", "60", "--no-progress",
            *extra]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from slurm_cluster import missing_programs, one_node_cluster

    missing = missing_programs()
    if missing and os.geteuid() != 0:
        pytest.skip(f"Slurm is not installed ({', '.join(missing)} missing) and this user is "
                    "not root, so neither `make slurm` nor this test can install it")
    assert not missing, (f"{', '.join(missing)} missing: `make slurm` (part of `make test`) "
                         "installs Debian's slurm-wlm and munge")
    with one_node_cluster(tmp_path_factory.mktemp("cluster"), cpus=2) as env:
        yield env


def _canceller(log: Path, stop: threading.Event, done: list) -> None:
    """Cancel the first ``CANCELS[student]`` attempts of each slow student's task, each
    mid-run: once its log says it is grading (its kernel starts; then it sleeps)."""
    cancelled: set[str] = set()
    while not stop.is_set():
        events = read_log(log) if log.exists() else []
        for ev in events:
            if (ev["event"] == "slurm_task" and ev["student"] in CANCELS
                    and ev["attempt"] <= CANCELS[ev["student"]]
                    and ev["job_id"] not in cancelled):
                out = Path(ev["stdout"])
                if out.exists() and "ready to grade" in out.read_text(errors="replace"):
                    time.sleep(2)
                    subprocess.run(["scancel", ev["job_id"]], check=True)
                    cancelled.add(ev["job_id"])
                    done.append((ev["student"], ev["job_id"]))
        time.sleep(0.5)


@pytest.fixture(scope="module")
def graded(cluster, klass, tmp_path_factory):
    """The class graded locally, on Slurm (with the cancellations), and on Slurm again."""
    base = tmp_path_factory.mktemp("grading")
    local, on_slurm = base / "local", base / "slurm"
    assert grade.main(_argv(klass, local, "--jobs", "2")) == 0
    slurm = ("--executor", "slurm", "--partition", "debug", "--array-parallelism", "2",
             "--cpus-per-task", "1", "--time", "5", "--mem-gb", "1")
    stop, cancelled = threading.Event(), []
    watcher = threading.Thread(target=_canceller,
                               args=(on_slurm / "grader.log.jsonl", stop, cancelled))
    watcher.start()
    try:
        assert grade.main(_argv(klass, on_slurm, *slurm)) == 0
    finally:
        stop.set()
        watcher.join()
    first = {s: json.loads((on_slurm / s / "results.json").read_text())
             for s in _students(local)}
    first_gradebook = (on_slurm / "gradebook.csv").read_text()
    log_first = read_log(on_slurm / "grader.log.jsonl")
    assert grade.main(_argv(klass, on_slurm, *slurm)) == 0  # resumes: grades slow_lost again
    return {"local": local, "slurm": on_slurm, "first": first, "cancelled": cancelled,
            "first_gradebook": first_gradebook, "log_first": log_first,
            "log": read_log(on_slurm / "grader.log.jsonl")}


def _students(out: Path) -> list[str]:
    return sorted(p.parent.name for p in out.glob("*/results.json"))


def _graded_part(data: dict) -> dict:
    """What a grade is, without timings: points, messages, notes, error."""
    extra = data["extra_data"]
    return {"score": data["score"], "max_score": data["max_score"], "output": data["output"],
            "tests": data["tests"], "error": extra.get("error"),
            "items": [{k: v for k, v in i.items()} for i in extra["items"]]}


def test_every_student_gets_the_grade_local_grading_gives(graded):
    local, on_slurm = graded["local"], graded["slurm"]
    students = _students(local)
    assert len(students) == 7 and _students(on_slurm) == students
    for student in students:
        want = json.loads((local / student / "results.json").read_text())
        got = json.loads((on_slurm / student / "results.json").read_text())
        assert _graded_part(got) == _graded_part(want), student
        assert ((on_slurm / student / "feedback.md").read_text()
                == (local / student / "feedback.md").read_text()), student
        assert (executed_copy(on_slurm / student).exists()
                == executed_copy(local / student).exists()), student
    assert (on_slurm / "gradebook.csv").read_text() == (local / "gradebook.csv").read_text()


def test_the_mixed_class_really_is_mixed(graded):
    """The comparison above means something: the local grades differ from student to student."""
    local = graded["local"]
    scores = {s: json.loads((local / s / "results.json").read_text())["score"]
              for s in _students(local)}
    assert scores["correct"] == 7.0 and scores["slow_retried"] == 7.0
    assert scores["fixme"] == 0.0 and scores["broken"] == 0.0
    assert scores["builtins"] == 4.0 and scores["crash"] == 5.0


def test_a_task_cancelled_once_is_retried_and_graded(graded):
    cancelled = [s for s, _ in graded["cancelled"]]
    assert cancelled.count("slow_retried") == 1
    events = [e for e in graded["log_first"] if e.get("student") == "slow_retried"]
    assert [e["attempt"] for e in events if e["event"] == "slurm_task"] == [1, 2]
    (failed,) = [e for e in events if e["event"] == "slurm_task_failed"]
    assert failed["state"] == "CANCELLED" and failed["attempt"] == 1
    assert graded["first"]["slow_retried"]["score"] == 7.0
    assert graded["first"]["slow_retried"]["extra_data"]["fingerprint"] is not None


def test_a_task_cancelled_twice_is_a_grader_error_never_a_missing_row(graded):
    assert [s for s, _ in graded["cancelled"]].count("slow_lost") == 2
    lost = graded["first"]["slow_lost"]
    assert lost["score"] == 0.0 and lost["max_score"] == 7.0
    assert "ended without a result 2 times (CANCELLED, then CANCELLED)" in lost["extra_data"]["error"]
    assert lost["extra_data"]["fingerprint"] is None  # graded again by the next run
    assert all("the grader failed" in t["output"] for t in lost["tests"])
    rows = {r["student"]: r for r in csv.DictReader(graded["first_gradebook"].splitlines())}
    assert rows["slow_lost"]["auto_score"] == "0" and len(rows) == 7


def test_the_same_command_again_grades_only_what_was_lost(graded):
    later = graded["log"][len(graded["log_first"]):]
    started = [e["student"] for e in later if e["event"] == "started"]
    skipped = {e["student"] for e in later if e["event"] == "skipped"}
    assert started == ["slow_lost"]
    assert skipped == set(_students(graded["local"])) - {"slow_lost"}


def test_the_run_log_names_each_tasks_log_files(graded):
    tasks = [e for e in graded["log_first"] if e["event"] == "slurm_task"]
    assert {e["student"] for e in tasks} == set(_students(graded["local"]))
    for ev in tasks:
        assert Path(ev["stdout"]).is_file(), ev
        assert str(graded["slurm"] / "slurm" / "tasks") in ev["stdout"]
    done = {e["student"]: e for e in graded["log_first"] if e["event"] == "slurm_task_done"}
    assert set(done) == set(_students(graded["local"])) - {"slow_lost"}
    assert all(0 < e["setup_s"] < e["task_s"] for e in done.values()), done
    graded_ok = next(e for e in tasks if e["student"] == "correct")
    assert "graded correct: 7/7" in Path(graded_ok["stdout"]).read_text()


# --- without a cluster ---------------------------------------------------------------------------

def test_a_task_binds_the_gpu_slurm_gave_it_not_a_renumbered_one():
    env = {"SLURM_JOB_GPUS": "3", "CUDA_VISIBLE_DEVICES": "0", "SLURM_CPUS_PER_TASK": "4"}
    assert task_gpus(env) == ("3",)
    assert task_gpus({"CUDA_VISIBLE_DEVICES": "1"}) == ("1",)
    cfg = GradeConfig(assignment="toy", submissions=("x",), out=Path("o"), device="cuda",
                      jobs=8, executor="slurm", slurm=SlurmOptions(gpus_per_job=1))
    task = task_config(cfg, env)
    assert task.gpus == ("3",) and task.jobs == 1 and task.threads == 4
    assert task.executor == "local"


def test_the_sandbox_of_a_gpu_task_holds_only_that_gpu(monkeypatch):
    from autograder import sandbox

    present = {f"/dev/nvidia{i}" for i in range(4)} | set(sandbox.NVIDIA_SHARED)
    monkeypatch.setattr(sandbox.os.path, "exists", lambda p: p in present or os.access(p, 0))
    argv = sandbox.bwrap_argv({"workdir": "/tmp/w", "device": "cuda",
                               "env": {"CUDA_VISIBLE_DEVICES": "3"}}, ["true"])
    bound = {argv[i + 1] for i, a in enumerate(argv) if a == "--dev-bind"}
    assert bound == {"/dev/nvidia3", *sandbox.NVIDIA_SHARED}


@pytest.mark.parametrize("changes, option", [
    ({"time_min": 0}, "--time"), ({"array_parallelism": 0}, "--array-parallelism"),
    ({"gpus_per_job": -1}, "--gpus-per-job"), ({"mem_gb": 0.0}, "--mem-gb"),
    ({"cpus_per_task": 1.5}, "--cpus-per-task"),
])
def test_a_bad_slurm_option_raises_a_value_error_naming_it(changes, option):
    with pytest.raises(ValueError, match=option):
        SlurmOptions(**changes)


def test_an_unknown_executor_is_refused_naming_the_allowed_ones():
    with pytest.raises(ValueError, match="local.*slurm"):
        GradeConfig(assignment="toy", submissions=("x",), out=Path("o"), executor="k8s")
