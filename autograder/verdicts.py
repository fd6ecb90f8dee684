"""Run one hidden check's verdict in its own short-lived, limited, killable process.

A verdict is the course's code, but it works on values the student's code chose: a SymPy
answer that takes ``simplify`` an hour, a tensor that asks for 50 GB. So each verdict runs in a
process of its own, forked from a warm *zygote* (``multiprocessing``'s fork server, which
imported torch, NumPy, SymPy and the course's evaluation harness, and loaded the evaluation
classifiers, once): starting one costs milliseconds, not the seconds of a fresh interpreter,
and the classifier a verdict uses is the copy loaded before any student kernel ran. The process
runs on the CPU with one torch thread and these limits (:class:`VerdictLimits`):

* ``cpu_s``: CPU seconds (``RLIMIT_CPU``; SIGXCPU ends it);
* ``memory_mb``: memory on top of what the zygote already maps (``RLIMIT_AS``);
* a wall-clock limit, after which the grader kills it;
* ``payload_mb``: the size of the measurements it reads (checked before it starts).

Nothing is shared between verdicts (no lock, no RNG state, no globals), so verdicts of several
students run at once, and one that overruns costs its own check only, with a message that says
which limit it hit.
"""

from __future__ import annotations

import io
import json
import math
import multiprocessing
import os
import re
import resource
import signal
import threading
from dataclasses import dataclass, fields, replace
from multiprocessing import forkserver, popen_forkserver, reduction, spawn, util
from multiprocessing.context import ForkServerProcess, set_spawning_popen

from autograder.limited_json import JsonLimits

#: Environment variable that tells the zygote which profiles' classifiers to load.
CLASSIFIERS_ENV = "DGM_GRADER_VERDICT_CLASSIFIERS"
_LIMITS_RE = re.compile(r"^[ \t]*#[ \t]*verdict-limits:(.*)$", re.M)
_RESULT_MAX = 64 * 1024


class LimitsFormatError(ValueError):
    """A ``# verdict-limits:`` line that cannot be read; the message says how to write it."""


@dataclass(frozen=True)
class VerdictLimits:
    """What one verdict process may use (defaults; a check may ask for more, up to CAPS)."""

    cpu_s: int = 60
    memory_mb: int = 3072
    payload_mb: int = 16

    def payload_json(self) -> JsonLimits:
        """Limits on the measurements, as JSON: base64 makes array data 4/3 larger."""
        return JsonLimits(max_bytes=self.payload_mb * 2**20 * 4 // 3 + 2**16,
                          max_depth=PAYLOAD_DEPTH, max_string=self.payload_mb * 2**20 * 4 // 3,
                          what="the measurements your code sent", shown_mb=self.payload_mb,
                          shown_depth=SHOWN_DEPTH)

    def wall_s(self) -> float:
        """Default wall-clock limit: CPU time may be slow to come on a loaded machine."""
        return 2.0 * self.cpu_s + 30.0


#: The most a check may ask for.
CAPS = VerdictLimits(cpu_s=900, memory_mb=8192, payload_mb=256)
#: Nesting of the encoded measurements (autograder.observe: 8 levels of Python values, each
#: dict two JSON levels, plus the payload's own) and the depth named in messages.
SHOWN_DEPTH = 8
PAYLOAD_DEPTH = 2 * SHOWN_DEPTH + 10


def parse_limits(verdict: str) -> VerdictLimits:
    """The limits a verdict section declares on one line of its own, e.g.
    ``# verdict-limits: cpu_s=300 memory_mb=4096 payload_mb=64`` (any subset of the keys,
    positive integers, each once); values above :data:`CAPS` are capped. No line: defaults."""
    lines = _LIMITS_RE.findall(verdict)
    if not lines:
        return VerdictLimits()
    if len(lines) > 1:
        raise LimitsFormatError("a verdict section may hold one '# verdict-limits:' line only")
    allowed = [f.name for f in fields(VerdictLimits)]
    values: dict[str, int] = {}
    for token in lines[0].split():
        key, sep, value = token.partition("=")
        if key not in allowed or not sep:
            raise LimitsFormatError(f"'# verdict-limits:' takes key=value with keys "
                                    f"{', '.join(allowed)}; got {token!r}")
        if key in values:
            raise LimitsFormatError(f"'# verdict-limits:' sets {key} twice")
        if not re.fullmatch(r"[1-9][0-9]{0,6}", value):
            raise LimitsFormatError(f"'# verdict-limits:' needs a positive whole number for "
                                    f"{key}, got {value!r}")
        values[key] = min(int(value), getattr(CAPS, key))
    if not values:
        raise LimitsFormatError("'# verdict-limits:' names no limit; write e.g. "
                                "'# verdict-limits: cpu_s=300 memory_mb=4096 payload_mb=64'")
    return replace(VerdictLimits(), **values)


# --- the zygote -------------------------------------------------------------------------------

_CONTEXT = None
_PROFILES: set[str] = set()
_START = threading.Lock()


_PENDING: threading.Thread | None = None


def start_in_background(classifier_profiles: tuple[str, ...] = ()) -> None:
    """:func:`start` in a thread of its own, so that the zygote's imports (torch, SymPy: seconds)
    overlap with the first student's notebook; :func:`judge` waits for it. Only where no student
    kernel can write the classifiers' cache while the zygote reads it (the sandbox binds it
    read-only), or where it loads none."""
    global _PENDING
    thread = threading.Thread(target=start, args=(classifier_profiles,), daemon=True,
                              name="dgm-verdict-zygote")
    _PENDING = thread
    thread.start()


def _wait_started() -> None:
    thread = _PENDING
    if thread is not None:
        thread.join()


def start(classifier_profiles: tuple[str, ...] = ()) -> None:
    """Start the zygote (once per grader process) and wait until it is warm; it loads the
    evaluation classifiers of ``classifier_profiles`` now, so call this before any student
    kernel runs. :func:`judge` starts it without classifiers if nobody did."""
    global _CONTEXT, _PROFILES
    if threading.current_thread() is not _PENDING:
        _wait_started()
    with _START:
        if _CONTEXT is not None and set(classifier_profiles) <= _PROFILES:
            return
        if _CONTEXT is not None:  # started without these classifiers: start a new zygote
            forkserver._forkserver._stop()
        _PROFILES = set(classifier_profiles)
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["autograder.verdict_zygote"])
        old = os.environ.get(CLASSIFIERS_ENV)
        os.environ[CLASSIFIERS_ENV] = ",".join(classifier_profiles)
        try:  # the fork server copies this environment when it starts
            forkserver.ensure_running()
        finally:
            if old is None:
                os.environ.pop(CLASSIFIERS_ENV, None)
            else:
                os.environ[CLASSIFIERS_ENV] = old
        _CONTEXT = ctx
    proc = _Process(target=_noop, daemon=True)  # returns once the preloading is done
    proc.start()
    proc.join()
    proc.close()


def _noop() -> None:
    pass


class _Popen(popen_forkserver.Popen):
    """The fork server's launcher, except that the verdict process does not run the grader's
    main module again (``multiprocessing`` would: a script, a benchmark, a test runner)."""

    def _launch(self, process_obj):
        prep_data = spawn.get_preparation_data(process_obj._name)
        prep_data.pop("init_main_from_path", None)
        prep_data.pop("init_main_from_name", None)
        buf = io.BytesIO()
        set_spawning_popen(self)
        try:
            reduction.dump(prep_data, buf)
            reduction.dump(process_obj, buf)
        finally:
            set_spawning_popen(None)
        self.sentinel, w = forkserver.connect_to_new_process(self._fds)
        _parent_w = os.dup(w)  # the child's sentinel of this process, as in the original
        self.finalizer = util.Finalize(self, util.close_fds, (_parent_w, self.sentinel))
        with open(w, "wb", closefd=True) as f:
            f.write(buf.getbuffer())
        self.pid = forkserver.read_signed(self.sentinel)


class _Process(ForkServerProcess):
    @staticmethod
    def _Popen(process_obj):
        return _Popen(process_obj)


# --- one verdict ------------------------------------------------------------------------------

def judge(setup: str, verdict: str, payloads: list, limits: VerdictLimits,
          wall_s: float | None = None) -> tuple[str, str, float]:
    """(status, message, fraction) of one verdict, decided in a process of its own."""
    _wait_started()
    if _CONTEXT is None:
        start()
    wall = float(wall_s) if wall_s is not None else limits.wall_s()
    env = {k: os.environ[k] for k in ("DGM_PROFILE", "DGM_DATA", "DGM_CACHE") if k in os.environ}
    receive, send = _CONTEXT.Pipe(duplex=False)
    proc = _Process(target=_child, args=(send, setup, verdict, payloads, limits, wall, env),
                    daemon=True, name="dgm-verdict")
    try:
        proc.start()
    except (OSError, EOFError) as exc:  # the zygote died; the next verdict starts a new one
        receive.close()
        return "error", (f"the grader could not start the process that judges this check "
                         f"({type(exc).__name__}); ask your instructor to grade it again"), 0.0
    finally:
        send.close()
    raw, timed_out = None, False
    try:
        if receive.poll(wall):
            raw = receive.recv_bytes(_RESULT_MAX)
        else:
            timed_out = True
    except (EOFError, OSError):  # it died without a word (killed, or a crash)
        raw = None
    finally:
        receive.close()
    proc.join(timeout=5.0 if raw is not None else 0.2)
    if proc.is_alive():
        proc.kill()
        proc.join()
    code = proc.exitcode
    proc.close()
    if raw is not None:
        try:
            status, message, fraction = json.loads(raw)
            return str(status), str(message), float(fraction)
        except (ValueError, TypeError):
            pass
    return "error", _death_message(code, limits, wall, timed_out), 0.0


def _death_message(code: int | None, limits: VerdictLimits, wall: float,
                   timed_out: bool) -> str:
    if timed_out or code == -signal.SIGALRM:
        return (f"judging what your code returned took longer than {wall:g} s and was stopped: "
                "an answer this slow to check cannot be graded (is it far larger or more "
                "complicated than it needs to be?)")
    if code == -signal.SIGXCPU:
        return (f"judging what your code returned used more than {limits.cpu_s} s of CPU time "
                "and was stopped: the value (or expression) your code returned is too large or "
                "too complicated to check; simplify it")
    if code == -signal.SIGKILL:
        return (f"judging what your code returned was stopped by the system: it probably needed "
                f"more than the {limits.memory_mb} MB of memory a check may use")
    return (f"the process judging what your code returned stopped abnormally (exit code {code}); "
            "if your answer looks right, ask your instructor to look at it")


def _memory_message(limits: VerdictLimits) -> str:
    return (f"judging what your code returned needed more than the {limits.memory_mb} MB of "
            "memory a check may use, and was stopped: is the value your code returned far "
            "larger than it needs to be?")


def _vm_size() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _limit_self(limits: VerdictLimits, wall: float) -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
    used = math.ceil(sum(os.times()[:2]))
    cpu = used + limits.cpu_s
    if hard != resource.RLIM_INFINITY:
        cpu = min(cpu, hard - 1)
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 2 if hard == resource.RLIM_INFINITY
                                             else hard))
    memory = _vm_size() + limits.memory_mb * 2**20
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        memory = min(memory, hard)
    resource.setrlimit(resource.RLIMIT_AS, (memory, hard))
    signal.alarm(max(1, math.ceil(wall) + 2))  # a backstop: the grader kills it at ``wall``


def _child(conn, setup: str, verdict: str, payloads: list, limits: VerdictLimits, wall: float,
           env: dict) -> None:
    """The verdict process: limit itself, decide, send (status, message, fraction)."""
    os.environ.update(env)
    try:
        _limit_self(limits, wall)
        result = _decide(setup, verdict, payloads, limits)
    except MemoryError:
        result = ("error", _memory_message(limits), 0.0)
    try:
        conn.send_bytes(json.dumps([result[0], result[1][:4000], result[2]]).encode())
    finally:
        conn.close()


def _decide(setup: str, verdict: str, payloads: list, limits: VerdictLimits):
    from autograder.observe import ObservationError, decode

    class Observations(dict):
        def __missing__(self, key):
            raise ObservationError(
                f"the check's measurement {key!r} did not reach the grader: the check stopped "
                "early in your kernel, or your code replaced what it sends")

    try:
        obs = Observations(decode(payloads, max_bytes=limits.payload_mb * 2**20))
    except MemoryError:
        raise
    except (ObservationError, ValueError, TypeError) as exc:
        return "error", f"the check's measurements could not be read ({exc})", 0.0
    if not obs:
        return ("error", "the check sent no measurements to the grader: something in your "
                "notebook stopped it or replaced how it reports", 0.0)
    credit: list[tuple[float, str]] = []

    def partial(fraction: float, message: str = "") -> None:
        credit.append((min(max(float(fraction), 0.0), 1.0), str(message)))

    namespace = {"__name__": "__dgm_verdict__"}
    try:
        exec(compile(setup, "<hidden check setup>", "exec"), namespace)
        namespace.update(obs=obs, partial=partial)  # after the setup's own imports
        exec(compile(verdict, "<hidden check verdict>", "exec"), namespace)
    except AssertionError as exc:
        return "failed", str(exc), 0.0
    except ObservationError as exc:
        return "error", str(exc), 0.0
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - malformed measurements break a verdict
        if "can't allocate memory" in str(exc) or "out of memory" in str(exc).lower():
            return "error", _memory_message(limits), 0.0
        # the type only: the message of an error inside the verdict may hold its internals
        # (reference values, names); a verdict's own words for students are its assertions
        return "error", (f"the check could not use what your code returned (the verdict "
                         f"raised {type(exc).__name__}): is it of the type and shape the "
                         "exercise asks for?"), 0.0
    if credit:
        fraction, message = credit[-1]
        return "passed", message, fraction
    return "passed", "", 1.0
