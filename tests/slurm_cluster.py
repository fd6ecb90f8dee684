"""A throw-away one-node Slurm cluster on this machine, for the tests and the benchmark.

:func:`one_node_cluster` writes a ``slurm.conf`` for this host in a folder of its own (the
controller and the node both on 127.0.0.1, ``proctrack/linuxproc``, ``task/none``,
``select/cons_tres``, no accounting database), starts a private ``munged`` (its own key and
socket, so a system munge is neither needed nor touched), ``slurmctld`` and ``slurmd``, waits
until the node is idle, sets ``SLURM_CONF`` for the client commands (``sbatch``, ``squeue``,
``scancel``) and stops everything on exit. Debian's ``slurm-wlm`` and ``munge`` provide the
programs (``make slurm`` installs them); the daemons run as the current user, which must be
root for ``slurmd`` to start jobs the usual way.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

PROGRAMS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo")
NODE = "dgmnode"
PARTITION = "debug"


def missing_programs() -> list[str]:
    """The programs of slurm-wlm and munge that are not installed here."""
    found = {p: shutil.which(p) or next((f"{d}/{p}" for d in ("/usr/sbin", "/usr/bin")
                                        if os.access(f"{d}/{p}", os.X_OK)), None)
             for p in PROGRAMS}
    return [p for p, path in found.items() if path is None]


def _exe(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


def _memory_mb() -> int:
    with open("/proc/meminfo") as fh:
        kb = int(next(line for line in fh if line.startswith("MemTotal")).split()[1])
    return max(256, kb // 1024 - 512)


def slurm_conf(root: Path, cpus: int, socket: Path, user: str) -> str:
    """The configuration of the one-node cluster kept under ``root``."""
    return "\n".join([
        "ClusterName=dgmtest",
        "SlurmctldHost=localhost(127.0.0.1)",
        f"SlurmUser={user}", f"SlurmdUser={user}",
        "SlurmctldPort=16817", "SlurmdPort=16818",
        "AuthType=auth/munge", "CredType=cred/munge", f"AuthInfo=socket={socket}",
        f"StateSaveLocation={root}/state", f"SlurmdSpoolDir={root}/spool",
        f"SlurmctldPidFile={root}/slurmctld.pid", f"SlurmdPidFile={root}/slurmd.pid",
        f"SlurmctldLogFile={root}/slurmctld.log", f"SlurmdLogFile={root}/slurmd.log",
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
        "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core",
        "SchedulerType=sched/backfill", "MpiDefault=none", "ReturnToService=2",
        "JobAcctGatherType=jobacct_gather/none", "AccountingStorageType=accounting_storage/none",
        "MinJobAge=600",        # finished jobs stay visible to squeue for ten minutes
        "SlurmctldTimeout=30", "SlurmdTimeout=60", "InactiveLimit=0", "KillWait=5",
        f"NodeName={NODE} NodeAddr=127.0.0.1 NodeHostname={NODE} CPUs={cpus} "
        f"RealMemory={_memory_mb()} State=UNKNOWN",
        f"PartitionName={PARTITION} Nodes={NODE} Default=YES MaxTime=INFINITE State=UP",
        "",
    ])


def _wait(predicate, seconds: float, what: str, logs: list[Path]) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.5)
    tails = "\n".join(f"--- {p}\n" + (p.read_text(errors="replace")[-3000:] if p.exists()
                                       else "(missing)") for p in logs)
    raise RuntimeError(f"the one-node Slurm cluster did not come up: {what}\n{tails}")


def _node_state(env: dict) -> str:
    out = subprocess.run([_exe("sinfo"), "-h", "-n", NODE, "-o", "%T"], env=env,
                         capture_output=True, text=True)
    return out.stdout.strip()


@contextlib.contextmanager
def one_node_cluster(root: Path, cpus: int = 2) -> Iterator[dict]:
    """Run the cluster while the ``with`` block runs; yield the environment (``SLURM_CONF``
    set) that client commands need. ``os.environ`` gets ``SLURM_CONF`` too, for the block."""
    root.mkdir(parents=True, exist_ok=True)
    for sub in ("state", "spool", "munge"):
        (root / sub).mkdir(exist_ok=True)
    os.chmod(root / "munge", 0o700)
    socket, key = root / "munge" / "munge.sock", root / "munge" / "munge.key"
    subprocess.run([_exe("mungekey"), "--create", "--keyfile", str(key), "--force"],
                   check=True, capture_output=True)
    conf = root / "slurm.conf"
    user = subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout.strip()
    conf.write_text(slurm_conf(root, cpus, socket, user))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    logs = [root / "munged.log", root / "slurmctld.log", root / "slurmd.log"]
    started: list[Path] = []
    previous = os.environ.get("SLURM_CONF")
    try:
        subprocess.run([_exe("munged"), "--force", f"--socket={socket}", f"--key-file={key}",
                        f"--pid-file={root}/munge/munged.pid", f"--log-file={logs[0]}",
                        f"--seed-file={root}/munge/munged.seed"], check=True, env=env,
                       capture_output=True)
        started.append(root / "munge" / "munged.pid")
        subprocess.run([_exe("slurmctld"), "-f", str(conf), "-i"], check=True, env=env,
                       capture_output=True)
        started.append(root / "slurmctld.pid")
        subprocess.run([_exe("slurmd"), "-f", str(conf), "-N", NODE], check=True, env=env,
                       capture_output=True)
        started.append(root / "slurmd.pid")
        _wait(lambda: _node_state(env) == "idle", 90, "node not idle", logs)
        os.environ["SLURM_CONF"] = str(conf)
        yield env
    finally:
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous
        subprocess.run([_exe("scancel"), "--full", "--user", user], env=env,
                       capture_output=True)
        for pidfile in reversed(started):
            _stop(pidfile)


def _stop(pidfile: Path, seconds: float = 15.0) -> None:
    """Stop the daemon whose pid ``pidfile`` holds (TERM, then KILL)."""
    try:
        pid = int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            os.kill(pid, 0)
            time.sleep(0.2)
        os.kill(pid, signal.SIGKILL)
