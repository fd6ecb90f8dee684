"""The kernel's sandbox (bubblewrap): what a hostile submission can reach, and the refusal.

Two batches of the toy fixture (tests/fixtures/grading) are graded: an earlier one (one honest
notebook) and, into another output folder, an honest notebook beside a hostile one, two jobs at
once. The honest one sleeps in its first graded cell, so that its kernel is alive while the
hostile one looks for other kernels' connection files and sockets, and, for each one it finds,
connects and registers a hook that deletes the honest student's graded functions. The hostile
notebook also tries to read the repository's .git, another copy of the course, the earlier
batch's executed notebook and the instructor's home; dumps its environment and that of every
process it can see (the grader's process holds a secret variable); and writes /dev/shm and
/tmp. Each test checks one of these attacks.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import nbformat
import pytest

from autograder import grade, sandbox
from autograder.report import executed_copy
from autograder.runner import kernel_env

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "grading"
sys.path.insert(0, str(FIXTURES))
from hostile import CORRECT, FULL, ROOT, SENTINEL, SOURCE  # noqa: E402

TOKEN = uuid.uuid4().hex[:12]
SECRET = f"grader-secret-{TOKEN}"
SHM_FILE = Path("/dev/shm") / f"dgm-sandbox-test-{TOKEN}"
TMP_FILE = Path("/tmp") / f"dgm-sandbox-test-{TOKEN}"
GRADED = ("kl_std_normal", "train_line", "alpha_bar_schedule")

# `make test` installs bubblewrap; where it cannot run, only the refusal can be tested.
needs_bwrap = pytest.mark.skipif(sandbox.bwrap_problem() is not None,
                                 reason=f"bubblewrap cannot run here: {sandbox.bwrap_problem()}")

SNOOP = '''
import glob, json, os, stat, time
def _scan():
    conn, socks = [], []
    here = os.path.realpath(os.getcwd())
    roots = [os.path.dirname(os.path.dirname(here)), *glob.glob("/tmp/dgm-grade-*")]
    for root in dict.fromkeys(roots):
        for folder, _, files in os.walk(root):
            for name in files:
                path = os.path.realpath(os.path.join(folder, name))
                if path.startswith(here + os.sep):
                    continue  # its own folder
                try:
                    mode = os.lstat(path).st_mode
                except OSError:
                    continue
                if stat.S_ISSOCK(mode):
                    socks.append(path)
                elif name.endswith(".json"):
                    try:
                        info = json.load(open(path))
                    except (OSError, ValueError):
                        continue
                    if isinstance(info, dict) and "shell_port" in info and "key" in info:
                        conn.append(path)  # a kernel's connection file, with its signing key
    return sorted(set(conn)), sorted(set(socks))
deadline = time.time() + 8
conn, socks = _scan()
while not conn and time.time() < deadline:
    time.sleep(0.2)
    conn, socks = _scan()
attacked = 0
for path in conn:
    try:
        from jupyter_client import BlockingKernelClient
        kc = BlockingKernelClient(connection_file=path)
        kc.load_connection_file()
        kc.start_channels()
        kc.execute("get_ipython().events.register('pre_run_cell', lambda info: "
                   "[globals().pop(n, None) for n in %r])")
        time.sleep(0.5)
        kc.stop_channels()
        attacked += 1
    except Exception as exc:
        print("connect failed", type(exc).__name__)
print(f"SIBLINGS connection_files={len(conn)} sockets={len(socks)} attacked={attacked}")
''' % (GRADED,)

READ = '''
import os, subprocess
def _read(name, path):
    try:
        data = " ".join(os.listdir(path)) if os.path.isdir(path) else open(path, errors="replace").read()
        print(f"READ {name} {len(data)} chars" + (" SENTINEL" if %(sentinel)r in data else ""))
    except OSError as exc:
        print(f"unreadable {name} {type(exc).__name__}")
for name, path in %(targets)r.items():
    _read(name, path)
try:
    git = subprocess.run(["git", "-C", %(root)r, "log", "-1", "--format=%%H"], capture_output=True, text=True)
    print("GIT LOG", git.returncode, git.stdout.strip())
except OSError as exc:
    print("git unavailable", type(exc).__name__)
print("HOME LISTING", sorted(os.listdir(%(home)r)) if os.path.isdir(%(home)r) else "none")
'''

LEAK = '''
import os
seen = dict(os.environ)
for pid in [d for d in os.listdir("/proc") if d.isdigit()]:
    try:
        for entry in open(f"/proc/{pid}/environ", "rb").read().split(b"\\0"):
            key, _, value = entry.decode(errors="replace").partition("=")
            seen[f"{pid}:{key}"] = value
    except OSError:
        pass
print("ENVIRONMENT", seen)
leak = ";".join(f"{k}={v}" for k, v in seen.items() if "SECRET" in k.upper())
for path in (%(shm)r, %(tmp)r):
    try:
        open(path, "w").write("x")
        print("WROTE", path)
    except OSError as exc:
        print("could not write", path, type(exc).__name__)
assert False, "leak: " + (leak or "nothing")
'''


def _notebook(edits: dict[str, str]) -> str:
    nb = nbformat.read(str(CORRECT), as_version=4)
    for cell in nb.cells:
        if cell.get("id") in edits:
            cell.source = edits[cell["id"]] + cell.source
    return nbformat.writes(nb)


def _git_dir() -> str:
    """The repository's git folder (in a worktree, .git is a file naming it elsewhere)."""
    try:
        found = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--path-format=absolute",
                                "--git-common-dir"], capture_output=True, text=True)
    except OSError:
        return str(ROOT / ".git")
    return found.stdout.strip() if found.returncode == 0 else str(ROOT / ".git")


def _grade(subs, out: Path, *extra: str) -> int:
    return grade.main(["--assignment", "toy", "--source", str(SOURCE), *map(str, subs),
                       "--out", str(out), "--jobs", "2", "--device", "cpu", "--profile",
                       "smoke", "--timeout", "60", "--no-progress", *extra])


@pytest.fixture(scope="module")
def attacked(tmp_path_factory):
    """Grade the earlier batch, then the honest and the hostile notebooks side by side."""
    earlier = tmp_path_factory.mktemp("earlier-batch")
    assert _grade([CORRECT], earlier) == 0
    clone = tmp_path_factory.mktemp("other-clone")
    shutil.copytree(SOURCE, clone / "solutions")
    targets = {"git": _git_dir(), "clone": str(clone / "solutions" / "toy.ipynb"),
               "earlier": str(executed_copy(earlier / "correct"))}
    home = str(Path.home())
    folder, out = tmp_path_factory.mktemp("attack"), tmp_path_factory.mktemp("attack-out")
    (folder / "honest.ipynb").write_text(_notebook({"toy-kl": "import time\ntime.sleep(12)\n"}))
    (folder / "hostile.ipynb").write_text(_notebook({
        "toy-kl": SNOOP,
        "toy-train": READ % {"sentinel": SENTINEL, "targets": targets, "root": str(ROOT),
                             "home": home},
        "toy-alpha-bar": LEAK % {"shm": str(SHM_FILE), "tmp": str(TMP_FILE)}}))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DGM_TEST_SECRET", SECRET)
        assert _grade([folder], out) == 0
    host_files = {p: p.exists() for p in (SHM_FILE, TMP_FILE)}
    for path in host_files:
        path.unlink(missing_ok=True)
    return out, host_files


def _outputs(out: Path, student: str) -> str:
    nb = nbformat.read(str(executed_copy(out / student)), as_version=4)
    return "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                     for o in c.get("outputs", []))


def _scores(out: Path, student: str) -> dict[str, float]:
    data = json.loads((out / student / "results.json").read_text())
    return {t["name"]: t["score"] for t in data["tests"]}


@needs_bwrap
def test_a_kernel_finds_no_other_kernel_and_the_honest_student_keeps_full_marks(attacked):
    out, _ = attacked
    text = _outputs(out, "hostile")
    assert "SIBLINGS connection_files=0 sockets=0 attacked=0" in text, text[-3000:]
    assert _scores(out, "honest") == FULL


@needs_bwrap
def test_a_kernel_reads_no_git_no_other_clone_no_earlier_batch(attacked):
    out, _ = attacked
    text = _outputs(out, "hostile")
    for name in ("git", "clone", "earlier"):
        assert f"unreadable {name}" in text, text[-3000:]
    assert "READ " not in text and "SENTINEL" not in text
    assert "GIT LOG 0" not in text
    # Of the instructor's home, the kernel sees at most the folders leading to what it was
    # given (a Python installation, the data or model cache living there).
    home = Path.home()
    given = [Path(p) for p in sandbox.readonly_paths(kernel_env("smoke", "cpu"))]
    allowed = {p.relative_to(home).parts[0] for p in given if home in p.parents}
    listing = text.split("HOME LISTING ")[1].splitlines()[0]
    shown = set() if listing == "none" else set(eval(listing))  # noqa: S307 - a printed list
    assert shown <= allowed, shown - allowed


@needs_bwrap
def test_a_kernel_sees_nothing_of_the_graders_environment(attacked):
    out, _ = attacked
    # The probe's verdict is in the instructors' executed copy; its cell ran after a hidden check,
    # so the student's own results name only the exception's type.
    nb = nbformat.read(str(executed_copy(out / "hostile")), as_version=4)
    probe = "\n".join(o.get("evalue", "") for c in nb.cells if c.cell_type == "code"
                      for o in c.get("outputs", []))
    assert "leak: nothing" in probe, probe[-2000:]
    assert "leak:" not in (out / "hostile" / "results.json").read_text()
    for path in out.rglob("*"):
        if path.is_file():
            assert SECRET not in path.read_text(errors="replace"), path


@needs_bwrap
def test_a_kernels_dev_shm_and_tmp_are_private(attacked):
    out, host_files = attacked
    text = _outputs(out, "hostile")
    assert f"WROTE {SHM_FILE}" in text  # it could write its own /dev/shm ...
    assert host_files == {SHM_FILE: False, TMP_FILE: False}  # ... which is not the host's


def test_grading_refuses_to_start_without_bubblewrap_unless_told(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sandbox, "bwrap_problem", lambda: "bubblewrap (`bwrap`) is not "
                        f"installed: {sandbox.INSTALL_HINT}")
    with pytest.raises(SystemExit) as stop:
        _grade([CORRECT], tmp_path / "refused")
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "apt-get install bubblewrap" in err and "--insecure-no-sandbox" in err
    assert not (tmp_path / "refused" / "correct").exists()
    out = tmp_path / "insecure"
    assert _grade([CORRECT], out, "--insecure-no-sandbox") == 0
    assert _scores(out, "correct") == FULL
    assert "--insecure-no-sandbox" in (out / "correct" / "feedback.md").read_text()


def test_the_probe_names_what_to_install_when_bwrap_is_missing(monkeypatch):
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)
    problem = sandbox.bwrap_problem.__wrapped__()
    assert "apt-get install bubblewrap" in problem


def test_a_cuda_kernel_gets_only_the_gpu_it_was_given(monkeypatch):
    present = {"/dev/nvidia0", "/dev/nvidia1", "/dev/nvidiactl", "/dev/nvidia-uvm"}
    monkeypatch.setattr(sandbox.os.path, "exists", lambda p: p in present)
    assert sandbox.gpu_devices("1") == ["/dev/nvidia1", "/dev/nvidiactl", "/dev/nvidia-uvm"]
    assert sandbox.gpu_devices(None) == [] and sandbox.gpu_devices("GPU-abc") == []
    argv = sandbox.bwrap_argv({"workdir": "/tmp/w", "device": "cpu",
                               "env": {"CUDA_VISIBLE_DEVICES": "1"}}, ["true"])
    assert not any(a.startswith("/dev/nvidia") for a in argv)  # no GPU on cpu


def _launch(tmp_path: Path, code: str, **limits) -> tuple[subprocess.CompletedProcess, dict]:
    """Run ``python -c code`` through the sandbox launcher with the spec's ``limits`` (keys of
    the spec: nproc, memory_mb, cpus, cgroup_name); return the run and the status it wrote."""
    work, status = tmp_path / "work", tmp_path / "status.json"
    work.mkdir()
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": os.pathsep.join(
        str(p.parent) for p in sandbox.package_dirs())}
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"workdir": str(work), "isolate": True, "memory_mb": None, "env": env,
                                "readonly": sandbox.readonly_paths(env), "status": str(status),
                                "device": "cpu", **limits}))
    done = subprocess.run([sys.executable, "-m", "autograder.sandbox", str(spec), "--",
                           sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, PYTHONPATH=env["PYTHONPATH"]))
    return done, json.loads(status.read_text())


@needs_bwrap
def test_without_a_cgroup_the_process_limit_still_holds_in_the_sandbox(tmp_path):
    """Where no cgroup can be made, ``RLIMIT_NPROC`` is set inside the kernel's user namespace
    and caps its processes; Linux exempts root from it, and then the sandbox must not claim it."""
    spawn = ("import subprocess\nstarted = []\nfor _ in range(40):\n    try:\n"
             "        started.append(subprocess.Popen(['sleep', '5']))\n    except OSError:\n"
             "        break\nprint('STARTED', len(started))\nfor p in started:\n    p.kill()\n")
    done, status = _launch(tmp_path, spawn, nproc=16,
                           cgroup_name="no-such-parent/none")  # cannot be created: no cgroup
    claimed = "processes (rlimit)" in status["limits"]
    started = int(done.stdout.split("STARTED ")[1].split()[0])
    assert claimed == (os.geteuid() != 0)
    assert (0 < started < 16) == claimed, done.stdout + done.stderr


@needs_bwrap
def test_a_kernels_processes_share_its_cpu_quota_even_in_sessions_of_their_own(tmp_path):
    """The red team's CPU hog: processes that call setsid() and spin. The kernel's cgroup caps
    the CPU time of everything it starts at its quota (here half a core)."""
    hog = ("import os, resource, time\nkids = []\nfor _ in range(4):\n    pid = os.fork()\n"
           "    if pid == 0:\n        os.setsid()\n        end = time.time() + 3\n"
           "        while time.time() < end:\n            pass\n        os._exit(0)\n"
           "    kids.append(pid)\nfor pid in kids:\n    os.waitpid(pid, 0)\n"
           "u = resource.getrusage(resource.RUSAGE_CHILDREN)\nprint('CPU', u.ru_utime + u.ru_stime)\n")
    done, status = _launch(tmp_path, hog, nproc=64, cpus=0.5, cgroup_name=f"dgm-test-cpu-{os.getpid()}")
    for group in status["cgroups"]:
        try:
            os.rmdir(group)  # empty: its processes are gone
        except OSError:
            pass
    if "cpu" not in status["limits"]:
        pytest.skip(f"no cpu cgroup can be made here (applied: {status['limits']})")
    used = float(done.stdout.split("CPU ")[1].split()[0])
    # 4 spinning processes for 3 s would use up to 12 s of CPU (6 s on 2 cores) without a quota
    assert used < 0.5 * 3 * 1.5 + 0.5, (used, done.stderr[-2000:])
