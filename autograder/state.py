"""Keep a batch's state on disk so that nothing is lost: resume, run log, bad submissions.

**Resume.** When a student's grading ends, ``DIR/<student>/results.json`` is rewritten (one
atomic replace) with a *fingerprint* in its ``extra_data``: the sha256 of the submitted file,
the sha256 of the instructor's source notebook, the assignment, the profile, whether the
file was over the size limit, and :data:`FORMAT`. ``grade`` on the same ``--out`` skips a
student whose results.json carries the fingerprint this run would write (same file, same
source, same profile), and takes that student's results from the file; anything else (no
results, a results.json without a fingerprint because the grader was killed before the end of
that student, a changed submission or source, another profile) is graded again, and so is
everyone with ``--regrade``. Results of internal grader errors and of students who finished
after Ctrl-C carry no fingerprint, so they are graded again on the next run.

**Ctrl-C.** The first Ctrl-C starts no new submission; the grader waits for the running ones
(recorded without a fingerprint: their kernels may have got the interrupt too), writes the
summary and gradebook for what is done, and exits with 130. A second Ctrl-C raises
KeyboardInterrupt as usual (no summary). Either way, running the same command again resumes.

**Run log.** ``DIR/grader.log.jsonl`` gets one JSON object per line, appended with a single
``write`` on a file opened in append mode: ``batch_start`` (argv, assignment, profile, source
hash), ``warning``, ``not_graded`` (a notebook handed in and passed over: path, reason,
student; :class:`autograder.submissions.PassedOver`), per student ``skipped`` / ``started`` /
``finished`` (score, max_score, error, complete) / ``not_started`` (after Ctrl-C) / ``restored``, then ``batch_end`` with the
counts. Every object has ``time`` (UTC, ISO 8601) and ``event``.

**Results from memory.** Student code runs while the batch runs, so files in ``DIR`` are
read once, before the first submission starts (:func:`read_snapshot`): the results of
students skipped or graded in earlier batches come from that snapshot, those graded now from
memory. At the end of the batch every results.json of this batch is compared with what the
grader holds and written again if it differs (event ``restored``), and the gradebook is
built from memory (:meth:`Batch.gradebook_rows`).

**Bad submissions.** Before a notebook runs, :func:`autograder.submissions.inspect_notebook`
says what is wrong with it, if anything; such a submission is not run, its results say why
(:func:`autograder.scoring.rejected_items`), and it is counted as rejected here.

The pipeline (:mod:`autograder.pipeline`) calls :meth:`Batch.plan` once, then per submission
:meth:`Batch.start` and, at the end of its grading, :meth:`Batch.record` (the *record* stage),
then :meth:`Batch.finish`.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from autograder.config import GradeConfig
from autograder.report import (
    ItemResult,
    StudentResult,
    atomic_write,
    gradescope_json,
    results_json_text,
    write_student,
)
from autograder.submissions import PassedOver, Submission

#: Part of every fingerprint: raise it when the grader changes what a grade means, so that
#: results of older graders are graded again.
FORMAT = 1
LOG_NAME = "grader.log.jsonl"


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class RunLog:
    """``DIR/grader.log.jsonl``: one JSON object per event, each line one ``write`` in
    append mode (lines of parallel jobs never interleave)."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()

    def event(self, event: str, **fields) -> None:
        record = {"time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                  "event": event, **fields}
        data = (json.dumps(record, default=str, ensure_ascii=False) + "\n").encode("utf-8")
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                while data:
                    data = data[os.write(fd, data):]
            finally:
                os.close(fd)


def read_log(path: Path) -> list[dict]:
    """The events of a run log (a torn last line, from a killed grader, is left out)."""
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    return events


def read_snapshot(out: Path) -> dict[str, tuple[str, dict]]:
    """``{student folder: (text, data)}`` of every readable ``out/*/results.json``."""
    found = {}
    for path in sorted(out.glob("*/results.json")):
        try:
            text = path.read_text(encoding="utf-8")
            data = json.loads(text)
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("extra_data"), dict):
            found[path.parent.name] = (text, data)
    return found


def load_result(data: dict) -> StudentResult:
    """A :class:`StudentResult` back from results.json (written answers and notes stay in
    the files)."""
    extra = data["extra_data"]
    outputs = {t.get("name"): t.get("output", "") for t in data.get("tests", [])}
    items = [ItemResult(i["item"], i["kind"], float(i["max_score"]), i["score"],
                        outputs.get(i["item"], "").splitlines() if i["kind"] == "auto" else [],
                        list(i.get("checks", [])), i.get("title", "")) for i in extra["items"]]
    return StudentResult(extra["student"], extra["assignment"], items, [], {},
                         extra.get("profile", ""), extra.get("device", ""),
                         dict(extra.get("timings", {})), extra.get("error"),
                         extra.get("lms_id"), bool(extra.get("late")))


class Batch:
    """One run of ``grade``: what to skip, what to reject, what to log and write."""

    def __init__(self, cfg: GradeConfig, source_sha: str, argv: list[str] | None = None,
                 warnings: list[str] = (), passed_over: list[PassedOver] = ()):
        self.cfg, self.out = cfg, cfg.out
        self.started = time.perf_counter()
        self.source_sha = source_sha
        self.log = RunLog(self.out / LOG_NAME)
        self.snapshot = read_snapshot(self.out)  # before any student code runs
        self.fingerprints: dict[str, dict] = {}
        self.extras: dict[str, dict] = {}
        self.reasons: dict[str, str] = {}
        self.planned: set[str] = set()
        self.skipped: list[StudentResult] = []
        self.rejected: set[str] = set()
        self.not_started: list[str] = []
        self.interrupted = False
        self._running = False
        self._previous_sigint = None
        self.log.event("batch_start", argv=list(sys.argv[1:] if argv is None else argv),
                       assignment=cfg.assignment, profile=cfg.profile,
                       source=str(cfg.source_path), source_sha256=self.source_sha,
                       regrade=cfg.regrade, pid=os.getpid())
        for text in warnings:
            print(f"warning: {text}", file=sys.stderr)
            self.log.event("warning", message=text)
        self.passed_over = list(passed_over)
        for item in self.passed_over:
            self.log.event("not_graded", path=item.path, reason=item.reason,
                           student=item.student)

    # --- what to grade ---------------------------------------------------------------------

    def fingerprint(self, sub: Submission) -> dict:
        path = Path(sub.path)
        if sub.problem is None and path.is_file():
            digest, size = sha256_file(path), path.stat().st_size
        else:  # nothing on disk to hash: the problem found while collecting stands for it
            digest = hashlib.sha256(f"{sub.origin}\n{sub.problem}".encode()).hexdigest()
            size = 0
        return {"format": FORMAT, "assignment": self.cfg.assignment,
                "profile": self.cfg.profile, "source_sha256": self.source_sha,
                "submission_sha256": digest, "over_size_limit": size > self.cfg.max_bytes}

    def plan(self, subs: list[Submission]) -> list[Submission]:
        """The submissions to grade; those graded already by an earlier run (same
        fingerprint) are kept aside as results, unless ``--regrade``."""
        todo = []
        for sub in subs:
            self.planned.add(sub.student)
            fp = self.fingerprints[sub.student] = self.fingerprint(sub)
            text, data = self.snapshot.get(sub.student, ("", {}))
            extra = data.get("extra_data", {})
            old = extra.get("fingerprint")
            if old == fp and extra.get("student") == sub.student and not self.cfg.regrade:
                try:
                    self.skipped.append(load_result(data))
                except (KeyError, TypeError, ValueError):
                    pass
                else:
                    self.log.event("skipped", student=sub.student, origin=sub.origin,
                                   reason="graded already: same submission, source and "
                                          "profile")
                    continue
            self.reasons[sub.student] = (
                "--regrade" if data and self.cfg.regrade else
                "not graded before" if not data else
                "earlier grading did not complete" if not old else
                "submission changed" if old.get("submission_sha256") != fp["submission_sha256"]
                else "source, profile or grader changed")
            todo.append(sub)
        if threading.current_thread() is threading.main_thread():
            self._previous_sigint = signal.signal(signal.SIGINT, self._on_sigint)
        self._running = True
        return todo

    def _on_sigint(self, signum, frame):
        if self._running and not self.interrupted:
            self.interrupted = True
            print("\ninterrupted: no new submission starts; waiting for the running ones. Run "
                  "the same command again to resume (Ctrl-C again: no summary).",
                  file=sys.stderr)
            self.log.event("interrupted")
            return
        previous = self._previous_sigint
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:
            raise KeyboardInterrupt

    # --- grading one submission ------------------------------------------------------------

    def start(self, sub: Submission) -> bool:
        """Log that ``sub`` starts; False (logged as not started) once the batch was
        interrupted."""
        if self.interrupted:
            self.not_started.append(sub.student)
            self.log.event("not_started", student=sub.student, reason="interrupted")
            return False
        self.log.event("started", student=sub.student, origin=sub.origin,
                       reason=self.reasons.get(sub.student))
        return True

    def record(self, result: StudentResult, complete: bool = True,
               rejected: bool = False) -> None:
        """The *record* stage: write ``result`` with its fingerprint (none when not
        ``complete`` or when the batch was interrupted: graded again next time) and log it.
        ``rejected``: the file could not be graded."""
        complete = complete and not self.interrupted
        fp = self.fingerprints.get(result.student) if complete else None
        extra = {"fingerprint": fp, "error": result.error}
        self.extras[result.student] = extra
        if rejected:
            self.rejected.add(result.student)
        write_student(self.out, result, None, extra)
        self.log.event("finished", student=result.student, score=result.auto_score,
                       max_score=result.auto_max, error=result.error, complete=fp is not None,
                       seconds=round(result.timings.get("wall_s", 0.0), 3))

    # --- end of the batch ------------------------------------------------------------------

    def finish(self, results: list[StudentResult | None]) -> list[StudentResult]:
        """Every result of this batch (graded now or skipped), sorted; the files of this batch
        written again where they differ from memory; the end of the batch logged."""
        self._running = False
        if self._previous_sigint is not None:
            signal.signal(signal.SIGINT, self._previous_sigint)
            self._previous_sigint = None
        done = [r for r in results if r is not None]
        for res in done:
            path = self.out / res.student / "results.json"
            extra = self.extras.setdefault(res.student, {"fingerprint": None,
                                                         "error": res.error})
            if _read(path) != results_json_text(res, extra):
                write_student(self.out, res, None, extra)
                self.log.event("restored", student=res.student)
        for res in self.skipped:
            path, text = self.out / res.student / "results.json", self.snapshot[res.student][0]
            if _read(path) != text:
                atomic_write(path, text)
                self.log.event("restored", student=res.student)
        self.counts = {"graded": len(done) - len(self.rejected), "rejected": len(self.rejected),
                       "skipped": len(self.skipped), "not_started": len(self.not_started)}
        self.log.event("batch_end", **self.counts, interrupted=self.interrupted,
                       seconds=round(time.perf_counter() - self.started, 3))
        return sorted(done + self.skipped, key=lambda r: r.student)

    def gradebook_rows(self, results: list[StudentResult]) -> list[dict]:
        """``extra_data`` per student for the gradebook: this batch's from memory, other
        students' of the same assignment from the snapshot taken before anything ran."""
        rows = {}
        for student, (_, data) in self.snapshot.items():
            extra = data["extra_data"]
            if (student not in self.planned and extra.get("student") == student
                    and extra.get("assignment") == self.cfg.assignment):
                rows[student] = extra
        skipped = {r.student for r in self.skipped}
        for res in results:
            rows[res.student] = (self.snapshot[res.student][1]["extra_data"]
                                 if res.student in skipped else gradescope_json(res)["extra_data"])
        return [rows[s] for s in sorted(rows)]

    @property
    def skipped_ids(self) -> set[str]:
        return {r.student for r in self.skipped}

    def summary(self) -> str:
        c = self.counts
        parts = [f"{c['graded']} graded"]
        if c["rejected"]:
            parts.append(f"{c['rejected']} could not be graded (see the note column)")
        if c["skipped"]:
            parts.append(f"{c['skipped']} skipped (graded already with the same submission, "
                         "source and profile; --regrade grades them again)")
        if c["not_started"]:
            parts.append(f"{c['not_started']} not graded (interrupted: run the same command "
                         "again to resume)")
        text = f"{sum(c.values())} submissions: " + ", ".join(parts)
        if self.passed_over:
            n = len(self.passed_over)
            text += f"; {n} more notebook{'s' * (n != 1)} found and not graded, listed above"
        return text

    def passed_over_text(self) -> str:
        """The notebooks found and not graded, one line each with its reason and student, for
        the end of the batch ("" when there are none)."""
        if not self.passed_over:
            return ""
        lines = [f"\nNot graded ({len(self.passed_over)} notebook"
                 f"{'s' * (len(self.passed_over) != 1)} handed in; also in {LOG_NAME}):"]
        for item in self.passed_over:
            whose = f" [student {item.student}, told in the feedback]" if item.student else ""
            lines.append(f"  {item.path}: {item.reason}{whose}")
        return "\n".join(lines)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, ValueError):
        return None
