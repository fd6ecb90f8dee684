"""Start a student's kernel in a bubblewrap sandbox whose view of the machine is built from nothing.

The grader's pytest process (trusted) starts the kernel through this launcher::

    python -m autograder.sandbox SPEC.json -- python -m ipykernel_launcher -f CONNECTION.json

SPEC.json (written by :mod:`autograder.runner`, outside the kernel's folder) says what to do:

``memory_mb``   a memory limit: a cgroup (v1 or v2) when this process may create one, else
                ``RLIMIT_AS`` (address space; only on CPU, since CUDA reserves address space);
``cpus``        a CPU quota in cores (a cgroup's CFS bandwidth, where one can be made): the
                kernel's thread share, so that nothing it starts slows other submissions down;
``nproc``       a process/thread limit: the cgroup's ``pids.max``, else ``RLIMIT_NPROC`` set
                inside the kernel's user namespace (:func:`limit_processes`);
``isolate``     whether to run the kernel under bubblewrap (false only when the instructor
                passed ``--insecure-no-sandbox``);
``workdir``     the kernel's folder: its connection file, its sockets, HOME; the one writable
                place besides a private /tmp and /dev/shm;
``readonly``    folders the kernel may read (:func:`readonly_paths`);
``env``         the kernel's whole environment (an allow-list, see :func:`autograder.runner.kernel_env`);
``device``      ``cpu`` or ``cuda``; with ``cuda`` the GPU named by ``env["CUDA_VISIBLE_DEVICES"]``;
``status``      where to write what was applied (the grader puts it in the feedback);
``user``        (a grader running as root) the unprivileged user the kernel runs as: the
                launcher gives it the kernel's folder and drops to it before bubblewrap, so
                that even where bubblewrap cannot run (a container without user namespaces)
                the kernel cannot read what only root may (the instructor's source, the
                results), nor reach the grader's processes.

The launcher applies the limits to itself, then execs ``bwrap`` (Debian's ``bubblewrap``),
which runs the kernel in new user, PID, network, IPC, UTS and cgroup namespaces, in a new
session, with no capability, dying with its parent, with the environment of the spec only, and
with a file system that holds only (:func:`bwrap_argv`): /usr and the /bin, /lib symlinks, the
dynamic linker's cache, the Python installation and the kernel's copy of the course packages
(read-only; see :data:`KERNEL_MODULES`: the modules holding reference answers are not in it, and
neither is the repository), the data and the model cache (read-only), the kernel's own folder
(writable), a private /tmp, a fresh /proc, and a minimal /dev with a private /dev/shm, plus,
with CUDA, the one GPU the kernel was given. Nothing else exists: not other kernels' folders or
sockets, not .git, not the solutions, not the output, not anyone's home.
"""

from __future__ import annotations

import functools
import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

CGROUP_ROOTS = ("/sys/fs/cgroup",)
CPU_PERIOD_US = 100_000  # the CFS period a CPU quota is a share of
INSTALL_HINT = ("install Debian's bubblewrap (`apt-get install bubblewrap`, or `make test`, "
                "which installs it)")
#: What every kernel gets of the system: programs and libraries, and the linker's cache.
SYSTEM_RO = ("/usr", "/etc/ld.so.cache")
SYSTEM_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
NAMESPACES = ("--unshare-user", "--unshare-pid", "--unshare-net", "--unshare-ipc",
              "--unshare-uts", "--unshare-cgroup-try")
NVIDIA_SHARED = ("/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools")
NVIDIA_DRIVER = "/usr/local/nvidia"


class SandboxUnavailable(RuntimeError):
    """bubblewrap cannot run on this machine: grading must not start unsandboxed."""


def _system_args() -> list[str]:
    args: list[str] = []
    for path in SYSTEM_RO:
        if os.path.exists(path):
            args += ["--ro-bind", path, path]
    for path in SYSTEM_LINKS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    return args


def _base_args(disk_mb: int | None = None) -> list[str]:
    size = ["--size", str(disk_mb * 2**20)] if disk_mb else []  # tmpfs is memory: bound it
    return ["--die-with-parent", "--new-session", "--cap-drop", "ALL", *NAMESPACES,
            "--hostname", "kernel", "--clearenv", *_system_args(),
            "--proc", "/proc", "--dev", "/dev", *size, "--tmpfs", "/dev/shm",
            *size, "--tmpfs", "/tmp"]


@functools.lru_cache(maxsize=None)
def bwrap_problem(user: str | None = None) -> str | None:
    """None when bubblewrap can build the kernels' sandbox here (as ``user``, when given),
    else what is wrong and what to do (asked once per process and user: the probe starts
    ``true`` in the same namespaces)."""
    if sys.platform != "linux":
        return f"the grader's sandbox (bubblewrap) needs Linux, not {sys.platform}"
    exe = shutil.which("bwrap")
    if exe is None:
        return f"bubblewrap (`bwrap`) is not installed: {INSTALL_HINT}"
    try:
        ids = _user_ids(user) if user else None
        probe = subprocess.run([exe, *_base_args(), "--remount-ro", "/", "--", "true"],
                               capture_output=True, text=True, timeout=30, cwd="/",
                               **({"user": ids[0], "group": ids[1], "extra_groups": []}
                                  if ids else {}))
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap ({exe}) could not be started ({exc}): {INSTALL_HINT}"
    if probe.returncode != 0:
        why = (probe.stderr.strip().splitlines() or [f"exit code {probe.returncode}"])[-1]
        return (f"bubblewrap ({exe}) cannot make the sandbox's namespaces here ({why}); allow "
                "unprivileged user namespaces (e.g. `sysctl kernel.unprivileged_userns_clone=1`, "
                "or `kernel.apparmor_restrict_unprivileged_userns=0` on Ubuntu) or "
                f"{INSTALL_HINT}")
    return None


def _user_ids(user: str) -> tuple[int, int]:
    """``(uid, gid)`` of ``user``; ValueError naming it when there is no such user."""
    import pwd

    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise ValueError(f"there is no user {user!r} to run the kernels as") from None
    return entry.pw_uid, entry.pw_gid


def require(insecure: bool = False, user: str | None = None) -> None:
    """Raise :class:`SandboxUnavailable` (its message says what to install) when bubblewrap
    cannot run here (as ``user``), unless the instructor turned isolation off (``insecure``)."""
    problem = None if insecure else bwrap_problem(user) if user else bwrap_problem()
    if problem:
        raise SandboxUnavailable(
            f"grading refuses to start: {problem}. To grade without isolation anyway (student "
            "code could then read this machine's files and reach the network), pass "
            "--insecure-no-sandbox.")


def package_dirs() -> list[Path]:
    """The folders of the course packages (``dgm``, ``autograder``) as installed here."""
    import autograder
    import dgm

    return [Path(m.__file__).resolve().parent for m in (dgm, autograder)]


#: The course modules a grading kernel may import, per package: what the homework notebooks
#: import (settings, data, plots, the evaluation harness, results, the pieces the homework hands
#: out in :mod:`dgm.handout`), what those import, and the kernel's side of the hidden checks and
#: of the sandbox (``observe``; ``sandbox``, which sets the process limit inside the namespace).
#: Everything else is default-denied: the rest of ``dgm`` is the chapters' code and the
#: grader's reference models, which implement what the homework asks students to write.
KERNEL_MODULES = {"dgm": ("__init__", "config", "data", "evaluate", "handout", "paths",
                          "plotting", "progress", "kernel_progress", "results", "selfcheck"),
                  "autograder": ("__init__", "observe", "sandbox")}
DENIED_MODULE = "raise ImportError({message!r})\n"


def _denied_message(package: str, module: str) -> str:
    allowed = ", ".join(f"{package}.{m}" for m in KERNEL_MODULES[package] if m != "__init__")
    if package == "dgm":
        return (f"dgm.{module} cannot be imported while a homework is graded: it holds the course's "
                "own code for what the homework asks you to write. Write that part yourself in the "
                f"notebook (torch is available); a graded notebook may import {allowed}.")
    return f"{package}.{module} is the grader's own code; a graded notebook may import {allowed}."


@functools.lru_cache(maxsize=1)
def denied_messages() -> frozenset[str]:
    """Every message a denied module raises: a fixed, finite set, so the feedback may show one of
    them even after a hidden check (it can carry nothing the student's code chose, beyond which)."""
    return frozenset(_denied_message(folder.name, source.stem) for folder in package_dirs()
                     for source in folder.glob("*.py") if source.stem not in KERNEL_MODULES[folder.name])


def write_kernel_packages(dest: Path) -> Path:
    """Write into ``dest`` (new or empty) the copy of the course packages a grading kernel sees:
    the modules of :data:`KERNEL_MODULES` as they are, and in place of every other module of
    the package one that raises ImportError saying why. No ``__pycache__`` is copied (compiled
    code of a denied module would give it away). Everything is readable by all (a kernel may
    run as another user); ``dest`` is returned, to be the kernel's ``PYTHONPATH``."""
    dest.mkdir(parents=True, exist_ok=True)
    for folder in package_dirs():
        allowed = KERNEL_MODULES[folder.name]
        target = dest / folder.name
        target.mkdir()
        for source in sorted(folder.glob("*.py")):
            text = (source.read_text(encoding="utf-8") if source.stem in allowed else
                    DENIED_MODULE.format(message=_denied_message(folder.name, source.stem)))
            (target / source.name).write_text(text, encoding="utf-8")
            (target / source.name).chmod(0o644)
        target.chmod(0o755)
    dest.chmod(0o755)
    return dest


@functools.cache
def kernel_packages() -> Path:
    """This process's copy of the kernel's course packages (:func:`write_kernel_packages`), in a
    temporary folder removed when the process exits."""
    import atexit
    import tempfile

    dest = Path(tempfile.mkdtemp(prefix="dgm-kernel-packages-"))
    atexit.register(shutil.rmtree, dest, ignore_errors=True)
    return write_kernel_packages(dest)


def readonly_paths(env: dict[str, str]) -> list[str]:
    """What a kernel may read besides the system: the Python installation (``sys.prefix`` and
    ``sys.base_prefix``, and site-packages folders elsewhere on ``sys.path``), the folders on
    its ``PYTHONPATH`` (for a grading kernel, :func:`kernel_packages`: never the repository or
    the packages' own folders), the data and the model cache."""
    paths: list[Path] = []
    for prefix in {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}:
        paths += [Path(prefix), Path(prefix).resolve()]
    # site-packages folders outside the prefixes (a .pth file or --system-site-packages)
    paths += [Path(p) for p in sys.path if p and Path(p).name in ("site-packages",
                                                                  "dist-packages")]
    paths += [Path(p) for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    paths += [Path(env[k]) for k in ("DGM_DATA", "DGM_CACHE") if env.get(k)]
    found = {str(p) for p in paths if p.exists()}
    return sorted(found, key=lambda p: (p.count("/"), p))  # parents before children


def gpu_devices(visible: str | None) -> list[str]:
    """The device files of the one GPU ``visible`` (``CUDA_VISIBLE_DEVICES``) names, and the
    driver's shared ones, where they exist."""
    if visible is None or not visible.strip().isdigit():
        return []
    wanted = [f"/dev/nvidia{int(visible)}", *NVIDIA_SHARED]
    return [d for d in wanted if os.path.exists(d)]


def bwrap_argv(spec: dict, cmd: list[str]) -> list[str]:
    """The ``bwrap`` command line that runs ``cmd`` in the sandbox ``spec`` describes."""
    workdir = str(spec["workdir"])
    env = dict(spec.get("env") or {})
    argv = [shutil.which("bwrap") or "bwrap", *_base_args(spec.get("disk_mb"))]
    for path in spec.get("readonly", []):
        argv += ["--ro-bind", path, path]
    if spec.get("device") == "cuda":
        for dev in gpu_devices(env.get("CUDA_VISIBLE_DEVICES")):
            argv += ["--dev-bind", dev, dev]
        if os.path.isdir(NVIDIA_DRIVER):
            argv += ["--ro-bind", NVIDIA_DRIVER, NVIDIA_DRIVER]
    argv += ["--bind", workdir, workdir, "--remount-ro", "/", "--chdir", workdir]
    for key, value in sorted(env.items()):
        argv += ["--setenv", key, value]
    return [*argv, "--", *cmd]


def _cgroup(name: str, memory_mb: int | None, nproc: int | None,
            created: list[str], cpus: float | None = None) -> list[str]:
    """Put this process into new memory, pids and cpu cgroups (their folders appended to
    ``created``, for the grader to remove); return what was applied. ``cpus``: a CPU quota
    (CFS bandwidth), so that processes a kernel starts, in sessions of their own or not, cannot
    take other submissions' cores."""
    quota = int(cpus * CPU_PERIOD_US) if cpus else None
    applied: list[str] = []
    root = Path(CGROUP_ROOTS[0])
    if (root / "cgroup.controllers").exists():  # cgroup v2, needs a delegated subtree
        own = Path("/proc/self/cgroup").read_text().strip().split("::")[-1]
        group = root / own.lstrip("/") / name
        try:
            group.mkdir()
            created.append(str(group))
            if not (group / "memory.max").exists() or not (group / "pids.max").exists():
                # the controllers are not enabled below our cgroup: enable them (allowed where
                # the parent holds no process of its own, e.g. the root of a VM's hierarchy)
                (group.parent / "cgroup.subtree_control").write_text("+memory +pids")
            if quota and not (group / "cpu.max").exists():
                try:
                    (group.parent / "cgroup.subtree_control").write_text("+cpu")
                except OSError:
                    pass
            if memory_mb:
                (group / "memory.max").write_text(str(memory_mb * 2**20))
                (group / "memory.swap.max").write_text("0")
                applied.append("memory")
            if nproc:
                (group / "pids.max").write_text(str(nproc))
                applied.append("pids")
            if quota and (group / "cpu.max").exists():
                (group / "cpu.max").write_text(f"{quota} {CPU_PERIOD_US}")
                applied.append("cpu")
            (group / "cgroup.procs").write_text(str(os.getpid()))
        except OSError:
            return []
        return applied
    for controller, files in (("memory", {"memory.limit_in_bytes": memory_mb and memory_mb * 2**20}),
                              ("pids", {"pids.max": nproc}),
                              ("cpu", {"cpu.cfs_period_us": quota and CPU_PERIOD_US,
                                       "cpu.cfs_quota_us": quota})):
        if not any(v for v in files.values()):
            continue
        base = root / controller
        try:
            own = next(line.split(":", 2)[2] for line in
                       Path("/proc/self/cgroup").read_text().splitlines()
                       if line.split(":", 2)[1] == controller)
            group = base / own.lstrip("/") / name
            group.mkdir(exist_ok=True)
            created.append(str(group))
            for fname, value in files.items():
                if value:
                    (group / fname).write_text(str(value))
            (group / "cgroup.procs").write_text(str(os.getpid()))
            applied.append(controller)
        except (OSError, StopIteration, IndexError):
            continue
    return applied


def _setrlimit(which: int, value: int) -> bool:
    try:
        resource.setrlimit(which, (value, value))
    except (ValueError, OSError):
        return False
    return True


def launch(spec_path: str, cmd: list[str]) -> None:
    """Apply the limits to this process, write what was applied, exec the sandboxed kernel."""
    spec = json.loads(Path(spec_path).read_text())
    isolate = bool(spec.get("isolate"))
    status: dict = {"sandbox": "bubblewrap" if isolate else "off", "network": not isolate,
                    "limits": [], "cgroups": []}
    memory_mb, nproc = spec.get("memory_mb"), spec.get("nproc")
    status["limits"] = _cgroup(spec.get("cgroup_name", f"dgm-{os.getpid()}"), memory_mb, nproc,
                               status["cgroups"], spec.get("cpus"))
    if memory_mb and "memory" not in status["limits"] and spec.get("device") == "cpu":
        if _setrlimit(resource.RLIMIT_AS, memory_mb * 2**20):
            status["limits"].append("memory (address space)")
    inner = list(cmd)
    user = spec.get("user")
    if user:
        status["user"] = user
    # Linux never applies RLIMIT_NPROC to root (user id 0 outside, whatever the namespace): a
    # grader running as root needs the pids cgroup for this limit, or a user to drop to.
    if nproc and "pids" not in status["limits"] and (os.geteuid() != 0 or user):
        if isolate:  # set inside the kernel's user namespace: it counts that namespace's processes
            inner = [sys.executable, "-m", "autograder.sandbox", "--nproc", str(int(nproc)), "--",
                     *cmd]
            status["limits"].append("processes (rlimit)")
        elif _setrlimit(resource.RLIMIT_NPROC, nproc):
            status["limits"].append("processes (rlimit)")
    if spec.get("status"):
        Path(spec["status"]).write_text(json.dumps(status))
    argv = bwrap_argv(spec, inner) if isolate else inner
    if user:
        drop_to(user, Path(spec["workdir"]))
    if isolate or not spec.get("env"):
        os.execvp(argv[0], argv)
    # unsandboxed (--insecure-no-sandbox): still the kernel's own environment, hence its own
    # copy of the course packages, not the grader's
    os.execvpe(argv[0], argv, dict(spec["env"]))


def drop_to(user: str, workdir: Path) -> None:
    """Give ``user`` the kernel's folder (and a way through its parents, execute only), then
    become ``user``, with no supplementary group: from here on nothing root-only is readable."""
    uid, gid = _user_ids(user)
    for top, dirs, files in os.walk(workdir):
        for name in [top, *(os.path.join(top, f) for f in dirs + files)]:
            os.lchown(name, uid, gid)
    for parent in workdir.parents:
        if parent == Path("/"):
            break
        mode = parent.stat().st_mode
        if not mode & 0o001:
            os.chmod(parent, (mode | 0o001) & 0o7777)
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)


def limit_processes(nproc: int, cmd: list[str]) -> None:
    """In the sandbox: limit this user namespace's processes and threads, exec the kernel.

    Set here rather than before bubblewrap, ``RLIMIT_NPROC`` counts the processes of the
    kernel's own user namespace only, not every process of the grader's user (root is exempt
    from it: see :func:`launch`)."""
    _setrlimit(resource.RLIMIT_NPROC, nproc)
    os.execvp(cmd[0], cmd)


def main(argv: list[str]) -> None:
    if argv[:1] == ["--nproc"] and argv[2:3] == ["--"]:
        limit_processes(int(argv[1]), argv[3:])
    if "--" not in argv or argv.index("--") != 1:
        raise SystemExit("usage: python -m autograder.sandbox SPEC.json -- KERNEL COMMAND...")
    launch(argv[0], argv[2:])


if __name__ == "__main__":
    main(sys.argv[1:])
