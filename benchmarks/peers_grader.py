"""Grade one small assignment and 20 submissions with this course's grader, otter-grader and
nbgrader, on the same machine: wall time, overhead and what each catches.

    python -m benchmarks.peers_grader [--peers-venv .peersvenv] [--timeout 10] [--only NAME...]

The assignment and the class are in :mod:`benchmarks.peers_assignment` (three cheap NumPy
functions, one hidden test each; 8 correct submissions and 12 that plant one known mistake:
a wrong formula, a wrong shape, an exception, a never-ending loop, an edited test cell,
tampering code in the solution cell, and two attempts to read the hidden tests). The peers
run from their own virtual environment (``--peers-venv``, pinned in
``benchmarks/requirements-peers.txt``), each with its own Jupyter kernel:

* ours: ``python -m autograder grade`` once per submission (and once for the whole class,
  ``--jobs 1``), with the bubblewrap sandbox and with ``--insecure-no-sandbox``;
* otter-grader: ``otter run`` once per submission (its non-container path; ``otter grade``
  needs Docker). ``otter run`` has no execution timeout, so the benchmark kills a run after
  ``--harness-timeout`` seconds, as ``otter grade --timeout`` would kill the container;
* nbgrader: ``nbgrader autograde ps1 --student S`` once per submission (and once for the
  class) in a temporary course directory, ``Execute.timeout`` = ``--timeout``.

Per submission it records the command's wall time, the time of the student's own code (its
cells and the calls the tests make, executed in-process in a fresh interpreter of the
grader's environment, each cell cut at ``--timeout``) and the overhead (the difference), the
points per item, and whether the planted mistake was caught: the item lost its points (a
scoring mistake), or the hidden tests' text reached neither a file the submission could write
outside the grader's folder nor the feedback the student gets (a leak attempt). Writes
``benchmarks/results/peers_grader.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from autograder.release import make_student
from autograder.report import exact_timings
from benchmarks import peers_assignment as A
from benchmarks.common import previous, stamped, write

ROOT = Path(__file__).resolve().parent.parent
GRADERS = ("ours_sandbox", "ours_no_sandbox", "otter_run", "nbgrader_autograde")

#: Runs the student's cells in-process, each cut at argv[1] seconds; prints the time taken.
STUDENT_TIMER = r'''
import contextlib, io, json, signal, sys, time
cells, timeout = json.load(sys.stdin), float(sys.argv[1])
def stop(*args):
    raise TimeoutError
signal.signal(signal.SIGALRM, stop)
ns = {"__name__": "__main__"}
start = time.perf_counter()
for cell in cells:
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            exec(compile(cell, "<cell>", "exec"), ns)
    except BaseException:
        pass
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
print(json.dumps({"student_s": time.perf_counter() - start}))
'''


def run(argv: list[str], *, cwd: Path | None = None, env: dict | None = None,
        limit: float = 600.0, stdin: str | None = None) -> dict:
    """Run a command in a session of its own; kill the whole session after ``limit`` s."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.PIPE if stdin else None,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(stdin, timeout=limit)
        killed = False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        killed = True
    try:  # kernels a grader left behind in its session
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    return {"wall_s": time.perf_counter() - start, "rc": proc.returncode, "killed": killed,
            "out": out[-4000:]}


def parse_otter(results: dict) -> dict[str, float]:
    """Points per item from otter's results.json (tests named ``item`` or ``item - N``)."""
    scores: dict[str, float] = {}
    for test in results.get("tests", []):
        item = str(test.get("name", "")).split(" - ")[0].strip()
        scores[item] = scores.get(item, 0.0) + float(test.get("score") or 0.0)
    return scores


def contains(paths, needle: str) -> bool:
    for path in paths:
        try:
            if needle in Path(path).read_text(errors="replace"):
                return True
        except OSError:
            pass
    return False


class Bench:
    def __init__(self, tmp: Path, peers: Path, timeout: float, harness: float,
                 only: list[str] | None):
        self.tmp, self.peers, self.timeout, self.harness = tmp, peers, timeout, harness
        self.drop = tmp / "drop"
        self.drop.mkdir()
        self.subs = {n: s for n, s in A.submissions(str(self.drop)).items()
                     if not only or n in only}
        self.ours_py = sys.executable
        self.peers_py = str(peers / "bin" / "python")
        data = os.environ.get("DGM_DATA", str(ROOT.parent.parent / "shared" / "data"))
        self.ours_env = {**os.environ, "PYTHONPATH": str(ROOT), "DGM_PROFILE": "smoke",
                         "DGM_DATA": data, "OMP_NUM_THREADS": "1"}
        self.peers_env = {k: v for k, v in os.environ.items()
                          if k not in ("PYTHONPATH", "VIRTUAL_ENV", "JUPYTER_PATH")}
        self.peers_env.update({"PATH": f"{peers / 'bin'}:{os.environ.get('PATH', '')}",
                               "OMP_NUM_THREADS": "1"})

    # --- building ------------------------------------------------------------------------
    def build(self) -> None:
        t = self.tmp
        src = A.ours_source()
        A.write(src, t / "ours" / "source" / "peers.ipynb")
        released = make_student(src, "peers", "peers.ipynb")
        for name, sub in self.subs.items():
            A.write(A.ours_submission(released, sub), t / "ours" / "subs" / f"{name}.ipynb")

        A.write(A.otter_master(), t / "otter" / "master" / "peers.ipynb")
        r = run([str(self.peers / "bin" / "otter"), "assign", "master/peers.ipynb", "dist"],
                cwd=t / "otter", env=self.peers_env)
        zips = glob.glob(str(t / "otter" / "dist" / "autograder" / "*.zip"))
        if r["rc"] != 0 or not zips:
            raise SystemExit(f"otter assign failed:\n{r['out']}")
        self.otter_zip = zips[0]
        released = A.read(t / "otter" / "dist" / "student" / "peers.ipynb")
        for name, sub in self.subs.items():
            A.write(A.otter_submission(released, sub), t / "otter" / "subs" / name / "peers.ipynb")

        course = t / "nbgrader" / "course"
        (course / "source" / "ps1").mkdir(parents=True)
        (course / "nbgrader_config.py").write_text(
            "c = get_config()\nc.CourseDirectory.course_id = 'peers'\n"
            f"c.CourseDirectory.root = {str(course)!r}\n"
            f"c.Execute.timeout = {int(self.timeout)}\n")
        A.write(A.nbgrader_source(), course / "source" / "ps1" / "ps1.ipynb")
        r = run([str(self.peers / "bin" / "nbgrader"), "generate_assignment", "ps1", "--force"],
                cwd=course, env=self.peers_env)
        if r["rc"] != 0:
            raise SystemExit(f"nbgrader generate_assignment failed:\n{r['out']}")
        released = A.read(course / "release" / "ps1" / "ps1.ipynb")
        for name, sub in self.subs.items():
            A.write(A.nbgrader_submission(released, sub),
                    course / "submitted" / name / "ps1" / "ps1.ipynb")
        batch = t / "nbgrader" / "course_batch"
        shutil.copytree(course, batch)
        (batch / "nbgrader_config.py").write_text(
            (course / "nbgrader_config.py").read_text().replace(str(course), str(batch)))

    # --- the student's own time ----------------------------------------------------------
    def student_time(self, python: str, sub: A.Submission) -> float:
        cells = A.student_cells(sub) + list(A.VISIBLE.values()) + [A.hidden_calls()]
        scratch = self.tmp / "scratch"
        scratch.mkdir(exist_ok=True)
        r = run([python, "-c", STUDENT_TIMER, str(self.timeout)], cwd=scratch,
                env={**self.ours_env, "PYTHONPATH": ""}, stdin=json.dumps(cells))
        self.clear_drop()
        return json.loads(r["out"].strip().splitlines()[-1])["student_s"]

    def clear_drop(self) -> None:
        for f in self.drop.iterdir():
            f.unlink()

    def dropped(self, tag: str) -> bool:
        found = contains(self.drop.iterdir(), f"{A.SENTINEL}-{tag}")
        self.clear_drop()
        return found

    # --- one grader, one submission ------------------------------------------------------
    def ours(self, name: str, sandbox: bool) -> dict:
        mode = "sandbox" if sandbox else "no_sandbox"
        out = self.tmp / "ours" / f"out_{mode}" / name
        argv = [self.ours_py, "-m", "autograder", "grade", "--assignment", "peers",
                "--source", str(self.tmp / "ours" / "source"),
                str(self.tmp / "ours" / "subs" / f"{name}.ipynb"), "--out", str(out),
                "--profile", "smoke", "--device", "cpu", "--timeout", str(self.timeout),
                "--no-progress", "--jobs", "1"] + ([] if sandbox else ["--insecure-no-sandbox"])
        r = run(argv, cwd=ROOT, env=self.ours_env, limit=self.harness)
        row = {"wall_s": r["wall_s"], "rc": r["rc"], "killed": r["killed"],
               "leaked_to_drop": self.dropped("ours")}
        res = out / name / "results.json"
        if res.exists():
            data = json.loads(res.read_text())
            row["scores"] = {t["name"]: t["score"] for t in data["tests"]}
            row["own_timings"] = {k: round(v, 2) for k, v in
                                  exact_timings(out / name).items()
                                  if isinstance(v, (int, float))}
            row["in_feedback"] = contains([res, out / name / "feedback.md",
                                           out / name / "feedback.html"], f"{A.SENTINEL}-ours")
        else:
            row["error"] = r["out"][-1500:]
        return row

    def otter(self, name: str) -> dict:
        out = self.tmp / "otter" / "out" / name
        out.mkdir(parents=True)
        argv = [str(self.peers / "bin" / "otter"), "run", "-a", self.otter_zip,
                str(self.tmp / "otter" / "subs" / name / "peers.ipynb"), "-o", str(out),
                "--no-logo"]
        r = run(argv, cwd=self.tmp / "otter", env=self.peers_env, limit=self.harness)
        row = {"wall_s": r["wall_s"], "rc": r["rc"], "killed": r["killed"],
               "leaked_to_drop": self.dropped("otter")}
        res = out / "results.json"
        if res.exists():
            data = json.loads(res.read_text())
            row["scores"] = parse_otter(data)
            shown = [t.get("visibility", "visible") for t in data.get("tests", [])
                     if f"{A.SENTINEL}-otter" in json.dumps(t)]
            row["in_feedback"] = bool(shown)
            if shown:  # Gradescope shows "after_published" tests once grades are published
                row["in_feedback_visibility"] = sorted(set(shown))
        else:
            row["error"] = r["out"][-1500:]
        return row

    def nbgrader(self, name: str, course: Path | None = None) -> dict:
        course = course or self.tmp / "nbgrader" / "course"
        argv = [str(self.peers / "bin" / "nbgrader"), "autograde", "ps1", "--student", name]
        r = run(argv, cwd=course, env=self.peers_env, limit=self.harness)
        row = {"wall_s": r["wall_s"], "rc": r["rc"], "killed": r["killed"],
               "leaked_to_drop": self.dropped("nbgrader")}
        if r["rc"] != 0:
            row["error"] = r["out"][-1500:]
        return row

    def nbgrader_scores(self, course: Path) -> dict[str, dict[str, float]]:
        """Points per item and student from the course's gradebook."""
        code = ("import json, sys\nfrom nbgrader.api import Gradebook\nout = {}\n"
                f"with Gradebook('sqlite:///{course}/gradebook.db') as gb:\n"
                "    for s in json.loads(sys.argv[1]):\n"
                "        try:\n"
                "            nb = gb.find_submission_notebook('ps1', 'ps1', s)\n"
                "        except Exception:\n"
                "            continue\n"
                "        out[s] = {g.name[5:]: g.score for g in nb.grades if g.name.startswith('test_')}\n"
                "print(json.dumps(out))\n")
        r = run([self.peers_py, "-c", code, json.dumps(list(self.subs))], cwd=course,
                env=self.peers_env)
        return json.loads(r["out"].strip().splitlines()[-1])

    def nbgrader_feedback_leaks(self, course: Path) -> dict[str, bool]:
        run([str(self.peers / "bin" / "nbgrader"), "generate_feedback", "ps1", "--force"],
            cwd=course, env=self.peers_env)
        return {name: contains(glob.glob(str(course / "feedback" / name / "ps1" / "*.html")),
                               f"{A.SENTINEL}-nbgrader") for name in self.subs}


def verdict(sub: A.Submission, row: dict) -> dict:
    """Compare a grader's result for one submission with what the submission deserves."""
    expected = A.expected_scores(sub)
    scores = row.get("scores")
    if scores is None:
        return {"result": "no result", "caught": False if sub.mistake else None,
                "collateral": None, "false_alarm": None if sub.mistake else True}
    got = {i: float(scores.get(i, 0.0) or 0.0) for i in A.ITEMS}
    others = [i for i in A.ITEMS if i != sub.item]
    collateral = any(got[i] < expected[i] for i in others) if sub.mistake else None
    if sub.mistake is None:
        return {"result": "graded", "caught": None, "collateral": None,
                "false_alarm": got != expected}
    if sub.mistake == "print_hidden":  # caught: its code found no hidden test to copy out
        caught = not row.get("leaked_to_drop")
    else:
        caught = got[sub.item] < A.POINTS
    return {"result": "graded", "caught": bool(caught), "collateral": collateral,
            "false_alarm": None}


def summary(rows: dict, subs: dict) -> dict:
    finished = [n for n, s in subs.items() if s.mistake != "infinite_loop"]
    walls = [rows[n]["wall_s"] for n in subs]
    over = [rows[n]["overhead_s"] for n in finished]
    return {"mean_wall_s": round(statistics.mean(walls), 2),
            "mean_wall_s_without_loop": round(statistics.mean(rows[n]["wall_s"] for n in finished), 2),
            "mean_overhead_s": round(statistics.mean(over), 2),
            "median_overhead_s": round(statistics.median(over), 2),
            "caught": sum(1 for n in subs if rows[n].get("caught")),
            "wrong_submissions": sum(1 for s in subs.values() if s.mistake),
            "false_alarms": sum(1 for n in subs if rows[n].get("false_alarm")),
            "collateral": sum(1 for n in subs if rows[n].get("collateral")),
            "hidden_tests_in_feedback": sum(1 for n in subs if rows[n].get("in_feedback"))}


def merged(old: dict | None, rows: dict, new: dict) -> dict:
    """``old`` with the rows graded in this run put in place of its rows, each stamped with
    this run's date and load, and the summary computed again over the whole class."""
    if old is None:
        raise SystemExit("--merge-into: no such results file to merge into")
    subs = A.submissions("/unused")
    for grader, graded in rows.items():
        for name, row in graded.items():
            old["per_submission"][grader][name] = stamped(row)
    old["summary"] = {g: summary(old["per_submission"][g], subs) for g in GRADERS}
    old["remeasured"] = sorted({*old.get("remeasured", []), *next(iter(rows.values()))})
    return old  # its machine, date and command stay those of the first run


def versions(python: str, names: list[str]) -> dict:
    code = ("import importlib.metadata as m, json, sys\n"
            "print(json.dumps({n: m.version(n) for n in sys.argv[1:]}))")
    out = subprocess.run([python, "-c", code, *names], capture_output=True, text=True)
    return json.loads(out.stdout)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--peers-venv", type=Path, default=ROOT / ".peersvenv")
    p.add_argument("--timeout", type=float, default=10.0, help="per-cell timeout, seconds")
    p.add_argument("--harness-timeout", type=float, default=120.0,
                   help="the benchmark kills a grading command after this many seconds")
    p.add_argument("--only", nargs="+", default=None, metavar="NAME",
                   help="grade these submissions only (a trial run)")
    p.add_argument("--no-batch", action="store_true", help="skip the whole-class runs")
    p.add_argument("--name", default="peers_grader", help="results file name")
    p.add_argument("--merge-into", metavar="NAME",
                   help="grade --only these again and replace their rows in "
                        "benchmarks/results/NAME.json (e.g. after a run a load spike killed)")
    p.add_argument("--keep", type=Path, default=None,
                   help="build and grade in this folder and keep it (default: a temporary one)")
    args = p.parse_args(argv)
    if not (args.peers_venv / "bin" / "otter").exists():
        raise SystemExit(f"no otter in {args.peers_venv}: python3 -m venv {args.peers_venv} && "
                         f"{args.peers_venv}/bin/pip install -r benchmarks/requirements-peers.txt")
    load_start = os.getloadavg()
    if args.keep:
        args.keep.mkdir(parents=True)
    with (contextlib.nullcontext(str(args.keep)) if args.keep
          else tempfile.TemporaryDirectory(prefix="dgm-peers-")) as tmp:
        b = Bench(Path(tmp), args.peers_venv, args.timeout, args.harness_timeout, args.only)
        b.build()
        rows: dict[str, dict] = {g: {} for g in GRADERS}
        for name, sub in b.subs.items():  # graders interleaved: load drift hits all alike
            ours_s = b.student_time(b.ours_py, sub)
            peers_s = b.student_time(b.peers_py, sub)
            results = {"ours_sandbox": (b.ours(name, True), ours_s),
                       "ours_no_sandbox": (b.ours(name, False), ours_s),
                       "otter_run": (b.otter(name), peers_s),
                       "nbgrader_autograde": (b.nbgrader(name), peers_s)}
            for grader, (row, student_s) in results.items():
                row["student_s"] = round(student_s, 3)
                row["overhead_s"] = round(row["wall_s"] - student_s, 2)
                row["wall_s"] = round(row["wall_s"], 2)
                rows[grader][name] = row
            print(name, {g: (r[0]["wall_s"], r[0].get("scores")) for g, r in results.items()},
                  flush=True)
        course = b.tmp / "nbgrader" / "course"
        scores = b.nbgrader_scores(course)
        leaks = b.nbgrader_feedback_leaks(course)
        for name in b.subs:
            row = rows["nbgrader_autograde"][name]
            if name in scores:
                row["scores"] = scores[name]
            row["in_feedback"] = leaks.get(name, False)
        for grader in GRADERS:
            for name, sub in b.subs.items():
                rows[grader][name].update(verdict(sub, rows[grader][name]))
                rows[grader][name].update({"mistake": sub.mistake, "item": sub.item,
                                           "expected": A.expected_scores(sub)})

        batch = {}
        if not args.no_batch:
            for sandbox in (True, False):
                out = b.tmp / "ours" / f"batch_{sandbox}"
                r = run([b.ours_py, "-m", "autograder", "grade", "--assignment", "peers",
                         "--source", str(b.tmp / "ours" / "source"), str(b.tmp / "ours" / "subs"),
                         "--out", str(out), "--profile", "smoke", "--device", "cpu",
                         "--timeout", str(args.timeout), "--no-progress", "--jobs", "1"]
                        + ([] if sandbox else ["--insecure-no-sandbox"]),
                        cwd=ROOT, env=b.ours_env, limit=600)
                batch["ours_sandbox" if sandbox else "ours_no_sandbox"] = {
                    "wall_s": round(r["wall_s"], 1), "rc": r["rc"],
                    "per_submission_s": round(r["wall_s"] / len(b.subs), 2)}
            nb_batch = b.tmp / "nbgrader" / "course_batch"
            r = run([str(b.peers / "bin" / "nbgrader"), "autograde", "ps1"], cwd=nb_batch,
                    env=b.peers_env, limit=600)
            batch["nbgrader_autograde"] = {"wall_s": round(r["wall_s"], 1), "rc": r["rc"],
                                           "per_submission_s": round(r["wall_s"] / len(b.subs), 2)}
            b.clear_drop()
        subs = b.subs

    result = {
        "load_average_start": [round(v, 2) for v in load_start],
        "load_average_end": [round(v, 2) for v in os.getloadavg()],
        "note": "machine shared with other jobs; the three graders run one after another, "
                "interleaved per submission",
        "settings": {"cell_timeout_s": args.timeout, "harness_timeout_s": args.harness_timeout,
                     "submissions": len(subs)},
        "commands": {
            "ours_sandbox": "python -m autograder grade --assignment peers --source SRC SUB.ipynb "
                            f"--out OUT --profile smoke --device cpu --timeout {args.timeout:g} --jobs 1",
            "ours_no_sandbox": "the same with --insecure-no-sandbox",
            "otter_run": "otter run -a autograder.zip SUB/peers.ipynb -o OUT --no-logo "
                         f"(killed by the benchmark after {args.harness_timeout:g} s)",
            "nbgrader_autograde": f"nbgrader autograde ps1 --student S (Execute.timeout={args.timeout:g})"},
        "versions": {"peers": versions(str(args.peers_venv / "bin" / "python"),
                                       ["otter-grader", "nbgrader", "nbclient", "nbconvert",
                                        "ipykernel", "jupyter_client", "numpy"]),
                     "ours": versions(sys.executable, ["nbval", "pytest", "ipykernel",
                                                       "jupyter_client", "numpy"])},
        "summary": {g: summary(rows[g], subs) for g in GRADERS},
        "mistakes": {n: {"mistake": s.mistake, "item": s.item} for n, s in subs.items() if s.mistake},
        "per_submission": rows,
        "batch": batch,
    }
    if args.merge_into:
        result = merged(previous(args.merge_into), rows, result)
    path = write(args.merge_into or args.name, result)
    print(json.dumps(result["summary"], indent=1))
    print("wrote", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
