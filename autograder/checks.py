"""Hidden checks whose verdict is decided outside the student's kernel.

A hidden check cell has three sections, separated by two marker lines::

    # setup: imports and the inputs the check builds itself (fixed seeds); no student code
    import torch
    from autograder.observe import observe, partial
    g = torch.Generator().manual_seed(7)
    mu, logvar, eps = (torch.randn(6, 3, generator=g) for _ in range(3))
    # --- student ---
    # runs in the student's kernel only: call the student's code, send what it returned
    obs = observe(z=reparameterize(mu, logvar, eps))
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

Each verdict runs in a short-lived process of its own, forked from a warm zygote, on the CPU
with one torch thread (:mod:`autograder.verdicts`), under limits: 60 s of CPU time, 3072 MB of
memory and 16 MB of measurements by default, and a wall-clock limit of twice the CPU limit plus
30 s. A verdict that needs more (one that loads weights and draws samples, say) declares it on a
line of its own in its verdict section::

    # verdict-limits: cpu_s=300 memory_mb=4096 payload_mb=64

with any subset of the three keys, each a positive whole number, given once; the grader caps
them at cpu_s=900, memory_mb=8192 and payload_mb=256 (a malformed line is a
:class:`CheckFormatError`). A verdict that goes past its limits, or measurements that nest
deeper than 8 levels or exceed ``payload_mb``, cost that check only, with a message saying
which limit was hit. Verdicts of different students run at the same time; nothing (no lock, no
random state) is shared between them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from autograder.limited_json import refusal
from autograder.verdicts import LimitsFormatError, judge, parse_limits

STUDENT_MARK = "# --- student ---"
VERDICT_MARK = "# --- verdict ---"
_MARK_RE = re.compile(r"^[ \t]*#\s*---\s*(student|verdict)\s*---\s*$", re.M)
KERNEL_PRELUDE = "from autograder.observe import forget_source, observe\nforget_source()\n"


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
    try:
        parse_limits(parts.verdict)
    except LimitsFormatError as exc:
        raise CheckFormatError(str(exc)) from None
    return parts


@dataclass
class Verdict:
    status: str            # "passed", "failed" (an assertion), "error" (bad measurements)
    message: str = ""
    fraction: float = 1.0
    #: Numbers the check's source writes, which its message may show (with two significant
    #: figures) rather than by their decade (:func:`autograder.messages.verdict_text`).
    keep: frozenset = field(default_factory=frozenset)


#: Key a refused payload carries instead of values (see :func:`refused_payload`).
REFUSED = "__refused__"


def refused_payload(reason: str) -> dict:
    """What stands for a payload too large or too deep to carry: the reason it was refused."""
    return {REFUSED: str(reason)[:500]}


def run_verdict(parts: CheckParts, payloads: list, timeout: float | None = None) -> Verdict:
    """Decide one check from the payloads its student section published, in a process of its
    own under the check's :class:`~autograder.verdicts.VerdictLimits`; ``timeout`` is its
    wall-clock limit in seconds (default: twice its CPU limit plus 30 s)."""
    limits = parse_limits(parts.verdict)
    if not isinstance(payloads, list):
        return Verdict("error", "the check's measurements could not be read (not a list)", 0.0)
    refused = [p[REFUSED] for p in payloads if isinstance(p, dict) and REFUSED in p]
    reason = refused[0] if refused else refusal(payloads, limits.payload_json())
    if reason:
        return Verdict("error", f"the check's measurements could not be read: {reason}; send "
                       "only what the check asks for", 0.0)
    if not payloads:
        return Verdict("error", "the check sent no measurements to the grader: something in "
                       "your notebook stopped it or replaced how it reports", 0.0)
    from autograder.messages import literals  # here: messages -> notebook_format -> checks

    status, message, fraction = judge(parts.setup, parts.verdict, payloads, limits, timeout)
    return Verdict(status, message, fraction, literals(parts.setup + parts.verdict))
