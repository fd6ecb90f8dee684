"""Hidden checks whose verdict is decided outside the student's kernel.

A hidden check cell has three sections, separated by two marker lines::

    # setup: imports and the inputs the check builds itself (fixed seeds); no student code
    import torch
    from autograder.observe import observe, partial
    g = torch.Generator().manual_seed(7)
    mu, logvar, eps = (torch.randn(6, 3, generator=g) for _ in range(3))
    # --- student ---
    # runs in the student's kernel only: call the student's code, send what it returned
    obs = observe(z=reparameterise(mu, logvar, eps))
    # --- verdict ---
    # runs in the grader only, with the measurements in ``obs`` and the setup re-run
    assert torch.allclose(obs["z"], mu + torch.exp(0.5 * logvar) * eps, atol=1e-5), "..."

The kernel runs *setup + student* (with :func:`autograder.observe.observe` imported); the
merged notebook on disk never holds a verdict. The grader then runs *setup + verdict* in its
own process (:func:`run_verdict`) with ``obs``, the decoded measurements, and ``partial``,
which a verdict calls to award a fraction of the points. Because the setup is re-run by the
grader, a student who monkey-patches ``torch.randn`` changes only the kernel's inputs, never
the reference the verdict compares with; because the verdict runs in the grader, patching
``torch.allclose``, builtins or IPython's exception hooks in the kernel changes nothing.

A check passes when its student section ran without an exception *and* its verdict passed.
Outside the grader (plain nbval, a solution run by hand) the cell runs top to bottom:
``observe`` returns what it was given, so the verdict reads the same ``obs``.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

from autograder.observe import ObservationError, decode

STUDENT_MARK = "# --- student ---"
VERDICT_MARK = "# --- verdict ---"
_MARK_RE = re.compile(r"^[ \t]*#\s*---\s*(student|verdict)\s*---\s*$", re.M)
KERNEL_PRELUDE = "from autograder.observe import observe\n"

#: Verdicts share the grader's process (torch's global RNG included): one at a time.
_LOCK = threading.Lock()


class CheckFormatError(ValueError):
    """A hidden check cell lacks its sections; the message says what to write."""


@dataclass(frozen=True)
class CheckParts:
    setup: str     # run by the kernel and by the grader
    student: str   # run by the kernel only
    verdict: str   # run by the grader only

    @property
    def kernel_source(self) -> str:
        """What the student's kernel executes."""
        return f"{KERNEL_PRELUDE}{self.setup.rstrip()}\n{self.student.strip()}\n"


def split_check(source: str) -> CheckParts:
    """Split a hidden check's source into its setup, student and verdict sections."""
    marks = [(m.group(1), m.start(), m.end()) for m in _MARK_RE.finditer(source)]
    names = [m[0] for m in marks]
    if names != ["student", "verdict"]:
        found = ", ".join(names) or "none"
        raise CheckFormatError(
            f"a hidden check needs the marker lines {STUDENT_MARK!r} and then {VERDICT_MARK!r}, "
            f"once each (found: {found}): the student section measures in the kernel, the "
            "verdict section decides in the grader")
    (_, s0, s1), (_, v0, v1) = marks
    parts = CheckParts(source[:s0], source[s1:v0], source[v1:])
    if "observe(" not in parts.student:
        raise CheckFormatError("the student section sends nothing: call observe(name=value)")
    if not parts.verdict.strip():
        raise CheckFormatError("the verdict section is empty")
    return parts


@dataclass
class Verdict:
    status: str            # "passed", "failed" (an assertion), "error" (bad measurements)
    message: str = ""
    fraction: float = 1.0


class _Observations(dict):
    def __missing__(self, key):
        raise ObservationError(
            f"the check's measurement {key!r} did not reach the grader: the check stopped "
            "early in your kernel, or your code replaced what it sends")


#: Seconds a verdict may take (it normally takes well under one).
VERDICT_TIMEOUT = 120.0


def run_verdict(parts: CheckParts, payloads: list, timeout: float = VERDICT_TIMEOUT) -> Verdict:
    """Decide one check from the payloads its student section published."""
    try:
        obs = _Observations(decode(payloads))
    except (ObservationError, ValueError, TypeError) as exc:
        return Verdict("error", f"the check's measurements could not be read ({exc})", 0.0)
    if not obs:
        return Verdict("error", "the check sent no measurements to the grader: something in "
                       "your notebook stopped it or replaced how it reports", 0.0)
    credit: list[tuple[float, str]] = []

    def partial(fraction: float, message: str = "") -> None:
        credit.append((min(max(float(fraction), 0.0), 1.0), str(message)))

    global _LOCK
    namespace = {"__name__": "__dgm_verdict__"}
    outcome: list[Verdict] = []
    lock = _LOCK

    def decide() -> None:
        try:
            exec(compile(parts.setup, "<hidden check setup>", "exec"), namespace)
            namespace.update(obs=obs, partial=partial)  # after the setup's own imports
            exec(compile(parts.verdict, "<hidden check verdict>", "exec"), namespace)
        except AssertionError as exc:
            outcome.append(Verdict("failed", str(exc), 0.0))
        except ObservationError as exc:
            outcome.append(Verdict("error", str(exc), 0.0))
        except Exception as exc:  # noqa: BLE001 - malformed measurements break a verdict
            outcome.append(Verdict("error", f"the check could not use what your code returned "
                                   f"({type(exc).__name__}: {str(exc)[:200]})", 0.0))
        finally:
            lock.release()

    # The verdict is the course's code, but it works on the student's values: a pathological
    # value (an enormous SymPy expression, say) must cost this check, not stop the batch.
    if not lock.acquire(timeout=2 * timeout):
        return Verdict("error", "the grader was too busy to judge this check; ask your "
                       "instructor to grade it again", 0.0)
    worker = threading.Thread(target=decide, daemon=True, name="dgm-verdict")
    worker.start()
    worker.join(timeout)
    if worker.is_alive():  # abandon it (a thread cannot be killed) with the lock it holds
        _LOCK = threading.Lock()
        return Verdict("error", f"judging what your code returned took longer than {timeout:g} "
                       "s", 0.0)
    if outcome:
        return outcome[0]
    if credit:
        fraction, message = credit[-1]
        return Verdict("passed", message, fraction)
    return Verdict("passed")
