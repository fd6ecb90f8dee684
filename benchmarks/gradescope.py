"""Measure Gradescope packages: size, and run_autograder's time and memory within Gradescope's limits.

    python -m benchmarks.gradescope [--profile smoke|cpu] [--assignments vae ddpm ...]
        [--cpus 0.5] [--memory-mb 768]

For each assignment: build its package (``python -m autograder gradescope``), install it into a
folder laid out like Gradescope's ``/autograder`` (:func:`autograder.gradescope.install_locally`),
put the reference solution in ``submission/`` and run ``run_autograder`` in a cgroup (v1) that
holds it to ``--memory-mb`` of memory (swap included, where the kernel accounts it) and
``--cpus`` CPUs (a CFS quota, on one core), as Gradescope's container does (defaults: 768 MB,
half a CPU). Recorded per assignment: the package's size, the wall time, the peak of the
cgroup's anonymous memory (``total_rss`` + ``total_shmem``, sampled every 0.2 s: what cannot be
given back as page cache), its peak with the page cache, whether the limit was hit, the score. The build's fit check (:func:`autograder.gradescope.fit_problem`) reads the
result, ``benchmarks/results/gradescope.json``; runs of another profile already there are kept.
Needs root (cgroups, and the kernels' user ``nobody``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from autograder import gradescope
from autograder.release import ASSIGNMENTS
from benchmarks.common import RESULTS, write

CGROUP = Path("/sys/fs/cgroup")


def _own(controller: str) -> Path:
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, names, path = line.split(":", 2)
        if controller in names.split(","):
            return CGROUP / controller / path.lstrip("/")
    raise RuntimeError(f"no cgroup v1 {controller} controller here")


def limited_run(cmd: list[str], env: dict, memory_mb: int, cpus: float) -> dict:
    """Run ``cmd`` in fresh memory and cpu cgroups; wall time, peak memory, exit code."""
    name = f"dgm-gradescope-bench-{os.getpid()}"
    mem, cpu = _own("memory") / name, _own("cpu") / name
    mem.mkdir()
    cpu.mkdir()
    try:
        (mem / "memory.limit_in_bytes").write_text(str(memory_mb * 2**20))
        swap = mem / "memory.memsw.limit_in_bytes"
        if swap.exists():
            swap.write_text(str(memory_mb * 2**20))
        period = 100_000
        (cpu / "cpu.cfs_period_us").write_text(str(period))
        (cpu / "cpu.cfs_quota_us").write_text(str(int(cpus * period)))
        enter = (f'echo $$ > {mem}/cgroup.procs && echo $$ > {cpu}/cgroup.procs && '
                 f'exec taskset -c 0 "$@"')
        start = time.perf_counter()
        proc = subprocess.Popen(["sh", "-c", enter, "sh", *cmd], env=env, cwd="/",
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        rss = 0.0  # anonymous memory, sampled: what cannot be reclaimed as page cache can
        reader = threading.Thread(target=lambda: out.append(proc.stdout.read()), daemon=True)
        out: list[str] = []
        reader.start()
        while proc.poll() is None:
            stat = dict(line.split() for line in (mem / "memory.stat").read_text().splitlines())
            rss = max(rss, (int(stat["total_rss"]) + int(stat.get("total_shmem", 0))) / 2**20)
            time.sleep(0.2)
        reader.join(timeout=10)
        seconds = time.perf_counter() - start
        peak = int((mem / "memory.max_usage_in_bytes").read_text()) / 2**20
        failcnt = int((mem / "memory.failcnt").read_text())
        swap_fail = mem / "memory.memsw.failcnt"
        if swap_fail.exists():
            failcnt += int(swap_fail.read_text())
        return {"seconds": round(seconds, 1), "peak_mb": round(rss, 1),
                "peak_with_cache_mb": round(peak, 1), "hit_memory_limit": failcnt > 0,
                "returncode": proc.returncode, "log_tail": "".join(out)[-1500:]}
    finally:
        for group in (mem, cpu):
            for _ in range(50):
                try:
                    group.rmdir()
                    break
                except OSError:
                    time.sleep(0.2)


def measure(assignment: str, profile: str, memory_mb: int, cpus: float, work: Path) -> dict:
    package = gradescope.build(gradescope.PackageConfig(assignment, profile),
                               work / f"{assignment}-{profile}.zip", check_fit=False)
    root = work / f"{assignment}-{profile}"
    root.mkdir()
    root.chmod(0o755)
    gradescope.install_locally(package, root)
    (root / "submission").mkdir()
    shutil.copy(gradescope.ROOT / "solutions" / f"{assignment}.ipynb",
                root / "submission" / f"{assignment}.ipynb")
    env = dict(os.environ, DGM_AUTOGRADER_ROOT=str(root), DGM_GRADESCOPE_USER="nobody")
    run = limited_run([str(root / "run_autograder")], env, memory_mb, cpus)
    results = json.loads((root / "results" / "results.json").read_text())
    auto = [t for t in results["tests"] if not t.get("extra_data", {}).get("manual_grading")]
    top = sum(t["max_score"] for t in auto)
    return {"package_mb": round(package.stat().st_size / 2**20, 2), **run,
            "score": results["score"], "max_score": top,
            "full_marks": results["score"] >= top > 0,
            "isolation": next((line for line in results["output"].splitlines()
                               if "Isolation" in line), "")[:200]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="smoke", choices=gradescope.PROFILES)
    parser.add_argument("--assignments", nargs="+", default=list(ASSIGNMENTS))
    parser.add_argument("--cpus", type=float, default=gradescope.LIMIT_CPUS)
    parser.add_argument("--memory-mb", type=int, default=int(gradescope.LIMIT_MB))
    args = parser.parse_args()
    old = {}
    path = RESULTS / "gradescope.json"
    if path.exists():
        old = json.loads(path.read_text())
    runs = dict(old.get("runs", {}))
    runs[args.profile] = dict(runs.get(args.profile, {}))
    work = Path(tempfile.mkdtemp(prefix="dgm-bench-gradescope-"))
    work.chmod(0o755)
    try:
        for assignment in args.assignments:
            found = measure(assignment, args.profile, args.memory_mb, args.cpus, work)
            runs[args.profile][assignment] = found
            print(assignment, args.profile, {k: v for k, v in found.items() if k != "log_tail"},
                  flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write("gradescope", {
        "limits": {"memory_mb": args.memory_mb, "cpus": args.cpus,
                   "how": "cgroup v1: memory.limit_in_bytes (and memsw), cpu.cfs_quota_us, "
                          "on one core (taskset -c 0); run_autograder as root, kernels as "
                          "nobody, submission: the reference solution"},
        "runs": runs})


if __name__ == "__main__":
    main()
