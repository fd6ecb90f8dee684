"""What one ``python -m autograder grade`` run was asked to do: :class:`GradeConfig`.

Built once from the command line (:meth:`GradeConfig.from_args`), checked when it is made, and
never changed: every stage of the pipeline (:mod:`autograder.pipeline`) reads the same frozen
object. Values that depend on the machine (the device ``auto`` stands for, the GPUs there are)
are resolved when it is built.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from autograder.submissions import DEFAULT_MAX_MB
from dgm.config import PROFILES, check_choice, get_profile

ROOT = Path(__file__).resolve().parent.parent
Device = Literal["auto", "cpu", "cuda"]
Executor = Literal["local", "slurm"]
#: Per-cell timeout in seconds by profile: the homework contract allows 120 s per cell in
#: smoke on 2 cores; cpu and full runs train for minutes in one cell.
CELL_TIMEOUT: dict[str, float] = {"smoke": 120.0, "cpu": 900.0, "full": 900.0}
#: The whole notebook's time budget in seconds by profile (every cell, re-runs after a crash
#: included): about ten times what the reference solutions take under nbval (under 60 s in smoke,
#: under 5 min in cpu on 2 cores), so that a submission whose loops never end costs minutes, not
#: one cell timeout per cell. Cells the budget does not reach are not run, and say so.
NOTEBOOK_TIMEOUT: dict[str, float] = {"smoke": 600.0, "cpu": 2700.0, "full": 3600.0}


def resolve_device(device: str) -> str:
    """``cpu`` or ``cuda``: what ``device`` means on this machine (``auto``: cuda if present)."""
    check_choice(device, get_args(Device), "device")
    if device == "cpu":
        return "cpu"
    try:
        import torch

        available = torch.cuda.is_available()
    except ImportError:
        available = False
    if device == "cuda" and not available:
        raise ValueError("--device cuda was asked for but CUDA is not available; use auto or cpu")
    return "cuda" if available else "cpu"


def _gpu_ids() -> list[str]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g for g in visible.split(",") if g.strip()]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except ImportError:
        return []


@dataclass(frozen=True)
class SlurmOptions:
    """Where ``--executor slurm`` sends each submission: one task of a Slurm job array
    (:mod:`autograder.slurm`)."""

    partition: str | None = None     # None: the cluster's default partition
    gpus_per_job: int = 0            # GPUs per task (one submission); 1 with --device cuda
    time_min: int = 60               # per task; a task killed at it is retried once
    mem_gb: float | None = None      # per task; None: the partition's default
    cpus_per_task: int = 2           # cores per task; the kernel's threads
    array_parallelism: int = 64      # tasks of the array running at once
    retries: int = 1                 # a task that ended without a result runs again this often
    poll_s: float = 5.0              # how often the grader asks Slurm about its tasks

    def __post_init__(self):
        for name, value, low in (("--gpus-per-job", self.gpus_per_job, 0),
                                 ("--time", self.time_min, 1),
                                 ("--cpus-per-task", self.cpus_per_task, 1),
                                 ("--array-parallelism", self.array_parallelism, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be a whole number of at least {low}, got "
                                 f"{value!r}")
        if self.mem_gb is not None and not self.mem_gb > 0:
            raise ValueError(f"--mem-gb must be a positive number of GB, got {self.mem_gb!r}")
        if self.retries < 0 or not self.poll_s > 0:
            raise ValueError("retries must be 0 or more and poll_s positive")


@dataclass(frozen=True)
class GradeConfig:
    """One grading run's settings (the command line's options, resolved and checked)."""

    assignment: str
    submissions: tuple[str, ...]           # notebooks, folders or zip exports
    out: Path
    source_dir: Path = ROOT / "solutions"  # the instructor's notebooks, hidden checks included
    jobs: int = 1                          # submissions graded at once
    profile: str = "smoke"                 # what the students were told to run
    device: str = "cpu"                    # resolved: cpu or cuda, never auto
    timeout: float = CELL_TIMEOUT["smoke"]  # per cell, seconds
    notebook_timeout: float | None = None  # the whole notebook, seconds; None: NOTEBOOK_TIMEOUT
    kernel_name: str = "python3"           # the grader's kernel, whatever the notebook names
    keep_work: bool = False                # keep the per-submission folders (debugging)
    memory_mb: int | None = 6144           # per submission; None or 0: no limit
    max_procs: int | None = 512            # processes and threads per submission
    disk_mb: int | None = 2048             # files the kernel may write (its folder, /tmp, /dev/shm)
    sandbox: bool = True                   # False only with --insecure-no-sandbox
    require_full_marks: bool = False       # exit 1 unless everyone earns every point (CI)
    progress: bool = True                  # a progress bar on stderr
    max_bytes: int = int(DEFAULT_MAX_MB * 2**20)  # largest notebook graded
    regrade: bool = False                  # grade students already graded by an earlier run
    gpus: tuple[str, ...] = ()             # GPU ids handed out one per submission (cuda)
    executor: str = "local"                # local: this machine; slurm: a job array
    slurm: SlurmOptions = SlurmOptions()   # read with --executor slurm only
    cpus: int | None = None                # cores shared out between jobs; None: this machine's
    run_as: str | None = None              # a grader running as root: the kernels' user
    max_threads: int | None = None         # cap on threads per submission (a CPU quota)

    def __post_init__(self):
        check_choice(self.profile, PROFILES, "profile")
        check_choice(self.device, ("cpu", "cuda"), "device (resolved)")
        check_choice(self.executor, get_args(Executor), "executor")
        if not self.assignment:
            raise ValueError("--assignment must name a notebook of --source")
        if not self.submissions:
            raise ValueError("give at least one SUBMISSION (notebook, folder or zip)")
        if isinstance(self.jobs, bool) or not isinstance(self.jobs, int) or self.jobs < 1:
            raise ValueError(f"--jobs must be a whole number of at least 1, got {self.jobs!r}")
        if not self.timeout > 0:
            raise ValueError(f"--timeout must be a positive number of seconds, got "
                             f"{self.timeout!r}")
        if self.notebook_timeout is not None and not self.notebook_timeout > 0:
            raise ValueError(f"--notebook-timeout must be a positive number of seconds, got "
                             f"{self.notebook_timeout!r}")
        if not self.max_bytes > 0:
            raise ValueError("--max-size-mb must be positive")
        for name, value in (("--memory-mb", self.memory_mb), ("--max-procs", self.max_procs),
                            ("--disk-mb", self.disk_mb)):
            if value is not None and value < 0:
                raise ValueError(f"{name} must be 0 (no limit) or positive, got {value}")

    @property
    def source_path(self) -> Path:
        """The instructor's notebook of this assignment."""
        return Path(self.source_dir) / f"{self.assignment}.ipynb"

    @property
    def threads(self) -> int:
        """Threads per submission: the cores shared out between the submissions running."""
        running = min(self.jobs, len(self.gpus)) if self.gpus else self.jobs
        shared = max(1, (self.cpus or os.cpu_count() or 1) // running)
        return min(shared, self.max_threads) if self.max_threads else shared

    @property
    def slurm_folder(self) -> Path:
        """Where ``--executor slurm`` keeps its tasks (inputs, per-task logs, results): in
        ``out``, which compute nodes must see anyway."""
        return Path(self.out) / "slurm"

    @property
    def notebook_budget(self) -> float:
        """Seconds the whole notebook may run (``--notebook-timeout``, else the profile's)."""
        return self.notebook_timeout or NOTEBOOK_TIMEOUT[self.profile]

    @classmethod
    def from_args(cls, args) -> GradeConfig:
        """The configuration from ``grade``'s parsed arguments (:func:`autograder.grade.
        build_parser`); a bad value raises ValueError naming the option."""
        profile = args.profile or get_profile()  # unset: the book's rule (DGM_PROFILE, ...)
        check_choice(profile, PROFILES, "profile")
        slurm_gpu = getattr(args, "executor", "local") == "slurm" and args.device == "cuda"
        device = "cuda" if slurm_gpu else resolve_device(args.device)  # GPUs on compute nodes
        if not args.max_size_mb > 0:
            raise ValueError("--max-size-mb must be positive")
        return cls(
            assignment=args.assignment, submissions=tuple(map(str, args.submissions)),
            out=Path(args.out), source_dir=Path(args.source), jobs=args.jobs,
            profile=profile, device=device,
            timeout=CELL_TIMEOUT[profile] if args.timeout is None else args.timeout,
            notebook_timeout=getattr(args, "notebook_timeout", None),
            kernel_name=args.kernel_name, keep_work=args.keep_work, memory_mb=args.memory_mb,
            max_procs=args.max_procs, disk_mb=args.disk_mb, sandbox=not args.insecure_no_sandbox,
            require_full_marks=args.require_full_marks, progress=not args.no_progress,
            max_bytes=int(args.max_size_mb * 2**20), regrade=args.regrade,
            gpus=tuple(_gpu_ids()) if device == "cuda" and not slurm_gpu else (),
            **_executor_fields(args, device))


def _executor_fields(args, device: str) -> dict:
    """``executor`` and ``slurm`` from the ``--executor`` options (absent: local)."""
    executor = getattr(args, "executor", "local")
    check_choice(executor, get_args(Executor), "executor")
    if executor == "local":
        return {"executor": "local"}
    gpus = args.gpus_per_job if args.gpus_per_job is not None else int(device == "cuda")
    return {"executor": "slurm", "slurm": SlurmOptions(
        partition=args.partition, gpus_per_job=gpus, time_min=args.time, mem_gb=args.mem_gb,
        cpus_per_task=args.cpus_per_task, array_parallelism=args.array_parallelism)}
