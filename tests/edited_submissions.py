"""Submissions made from a reference solution by replacing text in its cells, and the
auto-graded results the grader wrote for them: shared by the forgery tests."""

from __future__ import annotations

import json
import re
from pathlib import Path

from benchmarks.mutations import reference_submission


def edited_reference(name: str, edits: dict[str, tuple[str, str]]):
    """The reference solution of assignment ``name`` with, in each cell id of ``edits``, the
    text ``old`` replaced by ``new``; fails when the reference no longer contains ``old``."""
    nb = reference_submission(name)
    for cell in nb.cells:
        if cell.get("id") in edits:
            old, new = edits[cell.id]
            assert old in cell.source, f"{name}/{cell.id}: the reference solution changed: {old!r}"
            cell.source = cell.source.replace(old, new)
    return nb


def auto_tests(out: Path, student: str) -> list[dict]:
    """The auto-graded items of ``student``'s results.json in the grading folder ``out``."""
    data = json.loads((out / student / "results.json").read_text())
    return [t for t in data["tests"] if "(written)" not in t["name"] and t.get("max_score", 0) > 0]


#: A number with a decimal point or an exponent, as it would be written in a message.
_NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+\.\d*|\.\d+|\d+(?=[eE][-+]?\d))(?:[eE][-+]?\d+)?(?![\d.])")


def precise_numbers(text: str) -> list[str]:
    """The numbers in ``text`` written with more than two significant figures: no feedback may hold
    one (a number the student's code returned is echoed with two, a reference value never)."""
    found = []
    for token in _NUMBER.findall(text):
        mantissa = re.split(r"[eE]", token.lstrip("+-"))[0]
        digits = mantissa.replace(".", "").lstrip("0")
        if "." in mantissa:
            digits = digits if mantissa.split(".")[0].strip("0") else mantissa.split(".")[1].lstrip("0")
        if len(digits.rstrip("0") if "." not in mantissa else digits) > 2:
            found.append(token)
    return found


def numbers_near(text: str, values, rel: float = 0.01) -> list[str]:
    """The numbers with a decimal point in ``text`` within ``rel`` of one of ``values`` (a reference
    value given away, even rounded)."""
    return [t for t in _NUMBER.findall(text)
            if any(abs(float(t) - v) <= rel * abs(v) for v in values if v)]


def feedback_texts(out: Path) -> dict[str, str]:
    """What each student of the grading folder ``out`` is told about each auto-graded item (the
    ``output`` of results.json, which feedback.md lists too), by ``student/item``."""
    return {f"{d.name}/{t['name']}": t["output"] for d in sorted(out.iterdir()) if (d / "results.json").is_file()
            for t in json.loads((d / "results.json").read_text())["tests"]}
