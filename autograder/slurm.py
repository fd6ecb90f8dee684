"""Grade each submission in one task of a Slurm job array: ``grade --executor slurm``.

The ``grade`` process (on a login node, say) collects and plans the batch as it does locally
(:func:`autograder.pipeline.grade_batch`), then sends the submissions to grade as one job array
through submitit (``executor.map_array``; ``--array-parallelism`` tasks at a time). Each task
runs :func:`grade_task`: the same :func:`autograder.pipeline.assess` that local grading runs
(inspect, merge, run in the bubblewrap sandbox, judge, score), on the cores and the GPU Slurm
gave it, and hands back the student's result and executed notebook. The ``grade`` process then
reports and records each result as local grading does (:func:`autograder.pipeline.
report_and_record`): same ``results.json``, feedback, gradebook, fingerprints and run log.

**Faults.** A task that ends without a result (killed at ``--time``, on a node failure, by
preemption or ``scancel``, or whose Python died) runs once more as a job of its own; if that
one ends without a result too, the student gets a grader error (every auto-graded item 0 with
"the grader failed", no fingerprint), so the row is never missing and the next run of the same
command grades that student again. submitit requeues a preempted task itself (Slurm sends
``USR2`` first). Which task graded whom, the state Slurm gave a failed one, and the paths of
every task's logs (``DIR/slurm/tasks/<job>_<task>_0_log.out``, ``.err``) are in the run log, ``DIR/grader.log.jsonl``
(events ``slurm_array``, ``slurm_task``, ``slurm_task_done`` with the task's seconds,
``slurm_task_failed`` with the state Slurm gave).

**Ctrl-C** cancels the tasks that have not started (logged ``not_started``) and waits for the
running ones; a second Ctrl-C, or any exit of the ``grade`` process, cancels every task of the
batch still in Slurm. The same command resumes: students recorded with a fingerprint are
skipped.

Slurm's state comes from ``squeue`` (no accounting database needed): finished tasks must stay
listed for a while (``MinJobAge``, 300 s by default), else a task gone from the list without a
result counts as failed.
"""

from __future__ import annotations

import math
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from autograder.config import ROOT, GradeConfig

#: Slurm job states in which a task may still produce its result.
ACTIVE = frozenset({"PENDING", "RUNNING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESIZING",
                    "SUSPENDED", "COMPLETING", "CONFIGURING", "SIGNALING", "STAGE_OUT",
                    "STOPPED", "RESV_DEL_HOLD"})


@dataclass(frozen=True)
class TaskOutcome:
    """What a task hands back: the result, the executed notebook as JSON text (instructor
    only), whether the file was rejected, and whether the grader itself failed."""

    result: object                 # autograder.report.StudentResult
    executed: str | None
    rejected: bool
    crashed: bool = False
    setup_s: float = 0.0           # the task's start: imports, sandbox probe, verdict process
    task_s: float = 0.0            # the task's function, start to end


# --- in the task, on a compute node -----------------------------------------------------------

def task_gpus(env: Mapping[str, str]) -> tuple[str, ...]:
    """The GPUs Slurm gave this task, as ids of ``/dev/nvidiaN`` for the sandbox's device
    binding: ``SLURM_STEP_GPUS`` or ``SLURM_JOB_GPUS`` (the node's own GPU numbers, whatever
    ``CUDA_VISIBLE_DEVICES`` was renumbered to), else ``CUDA_VISIBLE_DEVICES``."""
    for var in ("SLURM_STEP_GPUS", "SLURM_JOB_GPUS", "CUDA_VISIBLE_DEVICES"):
        value = env.get(var, "").strip()
        if value:
            return tuple(g.strip() for g in value.split(",") if g.strip())
    return ()


def task_config(cfg: GradeConfig, env: Mapping[str, str]) -> GradeConfig:
    """The configuration a task grades with: the batch's, for one submission at a time, on
    the cores (``SLURM_CPUS_PER_TASK``) and GPUs of the task."""
    cpus = env.get("SLURM_CPUS_PER_TASK", "")
    return replace(cfg, executor="local", jobs=1, progress=False,
                   cpus=int(cpus) if cpus.isdigit() else cfg.slurm.cpus_per_task,
                   gpus=task_gpus(env) if cfg.device == "cuda" else ())


def grade_task(sub, cfg: GradeConfig, source_sha: str) -> TaskOutcome:
    """What one array task runs: :func:`autograder.pipeline.assess` for ``sub``, in a work
    folder on the node's own disk. A grader failure is handed back as a crashed result, as
    local grading records it; submitit's timeout signal is not caught (the task is retried)."""
    import nbformat
    from submitit.core.utils import UncompletedJobError

    from autograder import pipeline, sandbox
    from autograder.execute import Workspace

    start = time.perf_counter()
    stopping = _watch_sigterm()
    tcfg = task_config(cfg, os.environ)
    print(f"grading {sub.student} ({sub.origin}) on {socket.gethostname()}, "
          f"{tcfg.cpus} cores, GPUs {list(tcfg.gpus)}", flush=True)
    assignment = pipeline.load_assignment(tcfg)
    if assignment.sha256 != source_sha:
        raise RuntimeError(f"{assignment.path} changed after the batch started; grade again")
    try:
        sandbox.require(insecure=not tcfg.sandbox)
        pipeline.prepare_verdicts(tcfg, assignment)
        setup_s = time.perf_counter() - start
        print(f"ready to grade after {setup_s:.1f} s", flush=True)
        root = Path(tempfile.mkdtemp(prefix="dgm-grade-work-"))
        try:
            work = Workspace(root, tcfg.slurm_folder, pipeline._gpu_queue(tcfg))
            graded = pipeline.assess(sub, tcfg, assignment, work)
        finally:
            if not tcfg.keep_work:
                shutil.rmtree(root, ignore_errors=True)
    except UncompletedJobError:
        raise
    except Exception as exc:  # noqa: BLE001 - recorded for this student, as locally
        _refuse_if_stopping(stopping)
        traceback.print_exc()
        return TaskOutcome(pipeline._crashed(sub, tcfg, assignment, exc), None, False, True,
                           task_s=time.perf_counter() - start)
    _refuse_if_stopping(stopping)
    executed = nbformat.writes(graded.executed) if graded.executed is not None else None
    print(f"graded {sub.student}: {graded.result.auto_score:g}/{graded.result.auto_max:g}",
          flush=True)
    return TaskOutcome(graded.result, executed, graded.rejected, False, setup_s,
                       time.perf_counter() - start)


def _watch_sigterm() -> list[int]:
    """Note SIGTERM (Slurm's first word when it cancels, times out or preempts a task; the
    kernel and the notebook runner get it too) in the list returned."""
    import signal

    seen: list[int] = []

    def note(signum, frame):
        seen.append(signum)
        print("SIGTERM: Slurm is stopping this task; its result will not be used", flush=True)

    signal.signal(signal.SIGTERM, note)
    return seen


def _refuse_if_stopping(stopping: list[int]) -> None:
    """A grading that Slurm began to stop is no result (its runner may have died of the
    signal, which reads like the student's fault): fail the task, so that it is retried."""
    if stopping:
        raise RuntimeError("Slurm stopped this task (SIGTERM) while it graded; not a result")


# --- in the grade process ---------------------------------------------------------------------

def make_executor(cfg: GradeConfig):
    """A submitit executor for the batch's tasks; their inputs, results and logs go to
    ``DIR/slurm/tasks/`` (one folder, made before submitting: Slurm cannot open a log in a
    folder that does not exist yet when a task starts at once)."""
    import submitit

    s = cfg.slurm
    executor = submitit.SlurmExecutor(folder=cfg.slurm_folder / "tasks")
    params = {"job_name": f"dgm-grade-{cfg.assignment}", "time": s.time_min, "nodes": 1,
              "ntasks_per_node": 1, "cpus_per_task": s.cpus_per_task,
              "array_parallelism": s.array_parallelism,
              "signal_delay_s": min(90, s.time_min * 15),  # USR2 before the time limit
              # the task imports the grader this process runs, whatever else is installed
              "setup": [f"export PYTHONPATH={shlex.quote(str(ROOT))}${{PYTHONPATH:+:$PYTHONPATH}}"]}
    if s.partition:
        params["partition"] = s.partition
    if s.mem_gb:
        params["mem"] = f"{math.ceil(s.mem_gb * 1024)}M"
    if s.gpus_per_job:
        params["gres"] = f"gpu:{s.gpus_per_job}"
    executor.update_parameters(**params)
    return executor


def slurm_states(job_ids: list[str]) -> dict[str, str] | None:
    """``{job id: state}`` of the tasks Slurm still lists (``squeue``); None when Slurm
    could not be asked (try again later)."""
    bases = sorted({j.split("_")[0] for j in job_ids})
    if not bases:
        return {}
    try:
        out = subprocess.run([shutil.which("squeue") or "squeue", "-h", "-r", "-t", "all",
                              "-o", "%i|%T", "-j", ",".join(bases)],
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return {} if "Invalid job id" in out.stderr else None
    states = {}
    for line in out.stdout.splitlines():
        jid, _, state = line.strip().partition("|")
        states[jid] = state.split()[0] if state else "UNKNOWN"
    return states


@dataclass
class _Task:
    sub: object                    # autograder.submissions.Submission
    job: object                    # submitit.Job
    attempt: int
    states: list[str] = field(default_factory=list)   # how earlier attempts ended
    ended_at: float | None = None  # when Slurm first said it ended without a result

    def logs(self) -> dict[str, str]:
        return {"stdout": str(self.job.paths.stdout), "stderr": str(self.job.paths.stderr)}


def run_array(todo: list, cfg: GradeConfig, assignment, batch, work) -> list:
    """Grade ``todo`` as a Slurm job array; report and record each result as it comes back.
    Returns what :func:`autograder.pipeline._run_jobs` returns (None: not started)."""
    from autograder import pipeline

    subs = [s for s in todo if batch.start(s)]
    if not subs:
        return []
    executor = make_executor(cfg)
    jobs = executor.map_array(grade_task, subs, [cfg] * len(subs),
                              [assignment.sha256] * len(subs))
    tasks = [_Task(s, j, 1) for s, j in zip(subs, jobs)]
    array_id = jobs[0].job_id.split("_")[0]
    batch.log.event("slurm_array", job_id=array_id, tasks=len(tasks),
                    folder=str(cfg.slurm_folder / "tasks"), parameters=_parameters(cfg))
    print(f"submitted {len(tasks)} submissions as Slurm job array {array_id}; per-task logs "
          f"under {cfg.slurm_folder / 'tasks'}", file=sys.stderr)
    for task in tasks:
        _log_task(batch, task)
    results: list = []
    bar = _bar(cfg, len(todo))
    grace = 3 * cfg.slurm.poll_s + 5.0
    pending = list(tasks)
    cancelled_waiting = False
    try:
        while pending:
            states = slurm_states([t.job.job_id for t in pending])
            for task in list(pending):
                outcome = _outcome(task, states, grace)
                if outcome is None:
                    continue
                pending.remove(task)
                if isinstance(outcome, str):  # ended without a result
                    batch.log.event("slurm_task_failed", student=task.sub.student,
                                    job_id=task.job.job_id, attempt=task.attempt,
                                    state=outcome, **task.logs())
                    task.states.append(outcome)
                    if task.attempt <= cfg.slurm.retries and not batch.interrupted:
                        again = _Task(task.sub, executor.submit(grade_task, task.sub, cfg,
                                                                assignment.sha256),
                                      task.attempt + 1, task.states)
                        _log_task(batch, again)
                        pending.append(again)
                        continue
                    result = _lost(task, cfg, assignment)
                    batch.record(result, complete=False)
                else:
                    batch.log.event("slurm_task_done", student=task.sub.student,
                                    job_id=task.job.job_id, attempt=task.attempt,
                                    setup_s=round(outcome.setup_s, 3),
                                    task_s=round(outcome.task_s, 3))
                    result = _record(outcome, cfg, batch, pipeline)
                results.append(result)
                if bar is not None:
                    bar.set_postfix_str(task.sub.student)
                    bar.update(1)
            if batch.interrupted and not cancelled_waiting:
                cancelled_waiting = True
                pending = _cancel_waiting(pending, states or {}, batch)
            if pending:
                time.sleep(cfg.slurm.poll_s)
    finally:
        if pending:  # a second Ctrl-C or an error: leave nothing running for nobody
            _cancel([t.job.job_id for t in pending])
        if bar is not None:
            bar.close()
    return results


def _outcome(task: _Task, states: dict[str, str] | None, grace: float):
    """The task's :class:`TaskOutcome`, the state it ended in without one (a string), or
    None while it may still produce one."""
    job = task.job
    if states is None:  # Slurm not reachable just now
        return None
    state = states.get(job.job_id, "UNKNOWN (no longer listed by squeue)")
    if job.paths.result_pickle.exists():
        error = job.exception()
        if error is None:
            return job.result()
        if state in ACTIVE:  # ending: say how Slurm ended it (CANCELLED, TIMEOUT, ...)
            return None
        if state.split()[0] not in ("COMPLETED", "FAILED", "UNKNOWN"):
            return state
        first = next((line for line in str(error).splitlines() if "Error" in line), "")
        return f"FAILED ({first.strip()[:200] or type(error).__name__})"
    if state in ACTIVE:
        task.ended_at = None
        return None
    now = time.monotonic()
    if task.ended_at is None:  # give a shared file system time to show the result
        task.ended_at = now
    return state if now - task.ended_at >= grace else None


def _record(outcome: TaskOutcome, cfg: GradeConfig, batch, pipeline):
    """Report and record a task's outcome as local grading does."""
    if outcome.crashed:
        batch.record(outcome.result, complete=False)
        return outcome.result
    executed = None
    if outcome.executed is not None:
        import nbformat

        executed = nbformat.reads(outcome.executed, as_version=4)
    return pipeline.report_and_record(pipeline.Graded(outcome.result, executed,
                                                      outcome.rejected), cfg, batch)


def _lost(task: _Task, cfg: GradeConfig, assignment):
    """The grader error recorded for a student whose every task ended without a result."""
    from autograder.report import StudentResult
    from autograder.scoring import crashed_items

    how = ", then ".join(task.states)
    return StudentResult(task.sub.student, cfg.assignment, crashed_items(assignment.items), [],
                         {}, cfg.profile, cfg.device, {"wall_s": 0.0},
                         f"Internal grader error: the Slurm task grading this submission ended "
                         f"without a result {len(task.states)} times ({how}).")


def _cancel_waiting(pending: list[_Task], states: dict[str, str], batch) -> list[_Task]:
    """After Ctrl-C: cancel the tasks that have not started; keep the running ones."""
    waiting = [t for t in pending if states.get(t.job.job_id) == "PENDING"]
    _cancel([t.job.job_id for t in waiting])
    for task in waiting:
        batch.not_started.append(task.sub.student)
        batch.log.event("not_started", student=task.sub.student, reason="interrupted",
                        job_id=task.job.job_id)
    return [t for t in pending if t not in waiting]


def _cancel(job_ids: list[str]) -> None:
    if job_ids:
        subprocess.run([shutil.which("scancel") or "scancel", *job_ids], capture_output=True)


def _log_task(batch, task: _Task) -> None:
    batch.log.event("slurm_task", student=task.sub.student, job_id=task.job.job_id,
                    attempt=task.attempt, **task.logs())


def _parameters(cfg: GradeConfig) -> dict:
    s = cfg.slurm
    return {"partition": s.partition, "time_min": s.time_min, "mem_gb": s.mem_gb,
            "cpus_per_task": s.cpus_per_task, "gpus_per_job": s.gpus_per_job,
            "array_parallelism": s.array_parallelism}


def _bar(cfg: GradeConfig, total: int):
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover
        return None
    return tqdm(total=total, desc=f"grading {cfg.assignment} on Slurm", unit="nb",
                file=sys.stderr, disable=not cfg.progress)
