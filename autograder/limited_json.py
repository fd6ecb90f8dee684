"""JSON that cannot exhaust the grader: limits on size, nesting, text length and containers.

Student code decides what reaches the grader as JSON (a hidden check's measurements, through the
pytest process and its pipe). Python's ``json`` module would build a 2 GB string or recurse into
a 100,000-deep list before anyone could refuse it. Here the limits are enforced first:

* :func:`loads` checks the raw length, then scans the text once, linearly and without
  recursion, for its nesting depth, its longest string and its number of containers, and only
  then hands it to ``json.loads`` (whose recursion is then bounded by ``max_depth``);
* :func:`refusal` checks an object already parsed (by Jupyter's own client, say) the same way,
  with an explicit stack, and says why it is refused (``None`` when it is within the limits).

Both raise or return :class:`LimitError` messages a student can act on.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

#: One JSON string (escapes included) or one bracket; strings are skipped in C, so the Python
#: loop below only visits brackets and strings, not every character.
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.S)
_TOKEN_BYTES = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.S)


class LimitError(ValueError):
    """A JSON document broke one of its limits; the message says which."""


@dataclass(frozen=True)
class JsonLimits:
    """What one JSON document may hold; ``what`` names it in messages."""

    max_bytes: int
    max_depth: int
    max_string: int
    max_containers: int = 1_000_000
    what: str = "the data"
    shown_mb: float | None = None    # the size named in messages, if not max_bytes
    shown_depth: int | None = None   # the depth named in messages, if not max_depth

    def _size(self) -> str:
        mb = self.shown_mb if self.shown_mb is not None else self.max_bytes / 2**20
        return f"{mb:g} MB" if mb >= 1 else f"{self.max_bytes} bytes"

    def too_large(self) -> LimitError:
        return LimitError(f"{self.what} are larger than {self._size()}")

    def too_deep(self) -> LimitError:
        return LimitError(f"{self.what} nest deeper than {self.shown_depth or self.max_depth} "
                          "levels")

    def too_long(self) -> LimitError:
        return LimitError(f"{self.what} hold a text longer than {self.max_string} characters")

    def too_many(self) -> LimitError:
        return LimitError(f"{self.what} hold more than {self.max_containers} lists and dicts")


def loads(text: str | bytes, limits: JsonLimits):
    """``json.loads(text)`` once ``text`` is known to be within ``limits`` (else LimitError;
    malformed JSON raises ``ValueError`` as usual)."""
    if len(text) > limits.max_bytes:
        raise limits.too_large()
    pattern = _TOKEN_BYTES if isinstance(text, (bytes, bytearray)) else _TOKEN
    opening = (b"[", b"{") if isinstance(text, (bytes, bytearray)) else ("[", "{")
    depth = containers = 0
    for match in pattern.finditer(text):
        token = match.group()
        if len(token) == 1:
            if token in opening:
                depth += 1
                containers += 1
                if depth > limits.max_depth:
                    raise limits.too_deep()
                if containers > limits.max_containers:
                    raise limits.too_many()
            else:
                depth -= 1
        elif len(token) - 2 > limits.max_string:
            raise limits.too_long()
    return json.loads(text)


def refusal(value, limits: JsonLimits) -> str | None:
    """Why ``value`` (parsed JSON: dicts, lists, strings, numbers) breaks ``limits``, or None.
    Its size is counted as its JSON text would be, roughly; the walk uses no recursion and
    stops at the first limit broken."""
    size = containers = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            containers += 1
            if depth > limits.max_depth:
                return str(limits.too_deep())
            if containers > limits.max_containers:
                return str(limits.too_many())
            size += 2
            if isinstance(item, dict):
                for key, val in item.items():
                    key = str(key)
                    if len(key) > limits.max_string:
                        return str(limits.too_long())
                    size += len(key) + 4
                    if size > limits.max_bytes:
                        return str(limits.too_large())
                    stack.append((val, depth + 1))
            else:
                size += len(item)
                if size > limits.max_bytes:
                    return str(limits.too_large())
                stack.extend((val, depth + 1) for val in item)
        elif isinstance(item, str):
            size += len(item) + 2
            if size > limits.max_bytes:
                return str(limits.too_large())
            if len(item) > limits.max_string:
                return str(limits.too_long())
        else:
            size += 8
        if size > limits.max_bytes:
            return str(limits.too_large())
    return None


#: What the pytest process may send back to the grader on its pipe (one submission's cell
#: records and executed notebook; the measurements in it were bounded on the pytest side).
RESULTS = JsonLimits(max_bytes=2 * 2**30, max_depth=64, max_string=2**30,
                     max_containers=10_000_000, what="the results of the notebook run")
