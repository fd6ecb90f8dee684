"""Grades for a learning platform: a Canvas gradebook import and a plain ``student,total``.

``grade`` writes, beside ``gradebook.csv`` (unchanged, the instructor's working copy):

``canvas_gradebook.csv``  Canvas's gradebook-import format: ``Student``, ``ID`` (the Canvas
                          user id), ``SIS User ID``, ``SIS Login ID``, ``Section``, then one
                          column of points (named by ``--lms-column``, by default the
                          assignment), after a ``Points Possible`` row. Canvas matches rows
                          on ``ID``.
``grades.csv``            ``student,total`` for any other platform: ``student`` is the
                          platform's id where one is known, else the grader's student id.

A student's platform id comes from the roster when one is given (``--roster``: a CSV with the
columns ``student``, the grader's id, and ``id``, the platform's), else from Canvas's file
names (:func:`autograder.submissions.canvas_name`). Totals are ``gradebook.csv``'s: auto-graded
points plus the written points typed in so far. Nothing is guessed: a student without an id
(when ids are needed), a student the roster lists twice, or an id given to two students is
left out of the files that need the id and reported (:attr:`Export.problems`).
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from autograder.report import atomic_write

CANVAS_FILE = "canvas_gradebook.csv"
PLAIN_FILE = "grades.csv"
CANVAS_FIXED = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]


@dataclass(frozen=True)
class Roster:
    """The grader's student ids mapped to the platform's, read from a CSV."""

    ids: dict[str, str]
    problems: tuple[str, ...] = ()

    @classmethod
    def read(cls, path: str | Path) -> Roster:
        """Read ``path`` (columns ``student`` and ``id``, any order, header case ignored);
        ValueError when it cannot be used at all. A student listed twice with different ids
        is left out and reported."""
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"--roster {path} does not exist")
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = {h.strip().lower(): h for h in reader.fieldnames or []}
            if "student" not in header or "id" not in header:
                raise ValueError(f"--roster {path} needs the columns student and id (the "
                                 f"grader's student id and the platform's); it has "
                                 f"{', '.join(reader.fieldnames or []) or 'no header'}")
            pairs = [(row[header["student"]].strip(), row[header["id"]].strip())
                     for row in reader if (row.get(header["student"]) or "").strip()]
        ids: dict[str, str] = {}
        problems, clashing = [], set()
        for student, lms_id in pairs:
            if student in ids and ids[student] != lms_id:
                clashing.add(student)
            ids.setdefault(student, lms_id)
        for student in sorted(clashing):
            problems.append(f"the roster gives {student} several ids "
                            f"({', '.join(sorted({i for s, i in pairs if s == student}))}): "
                            "left out")
            ids.pop(student)
        return cls({s: i for s, i in ids.items() if i}, tuple(problems))


@dataclass(frozen=True)
class Export:
    """What :func:`write_exports` wrote and what it could not place."""

    canvas: Path
    plain: Path
    problems: list[str] = field(default_factory=list)


def _platform_ids(out: Path, assignment: str) -> dict[str, str]:
    ids = {}
    for path in sorted(out.glob("*/results.json")):
        try:
            extra = json.loads(path.read_text(encoding="utf-8")).get("extra_data", {})
        except (OSError, ValueError, AttributeError):
            continue
        if extra.get("assignment") == assignment and extra.get("lms_id"):
            ids[extra["student"]] = str(extra["lms_id"])
    return ids


def write_exports(out: Path, assignment: str, roster: Roster | None = None,
                  column: str | None = None) -> Export:
    """Write ``out/canvas_gradebook.csv`` and ``out/grades.csv`` from ``out/gradebook.csv``
    and the students' results."""
    with open(out / "gradebook.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    found = _platform_ids(out, assignment)
    problems = list(roster.problems) if roster else []
    ids: dict[str, str | None] = {}
    for row in rows:
        student = row["student"]
        if roster is not None:
            ids[student] = roster.ids.get(student)
            if ids[student] is None:
                problems.append(f"{student} is not in the roster: left out")
            elif student in found and found[student] != ids[student]:
                problems.append(f"{student}: the roster says id {ids[student]}, the Canvas "
                                f"file names {found[student]}: left out")
                ids[student] = None
        else:
            ids[student] = found.get(student)
    counts = Counter(i for i in ids.values() if i)
    for lms_id, n in sorted(counts.items()):
        if n > 1:
            owners = sorted(s for s, i in ids.items() if i == lms_id)
            problems.append(f"id {lms_id} belongs to {n} students ({', '.join(owners)}): "
                            "they are left out")
            for owner in owners:
                ids[owner] = None
    max_score = rows[0]["max_score"] if rows else ""

    canvas = io.StringIO()
    writer = csv.writer(canvas, lineterminator="\n")
    writer.writerow([*CANVAS_FIXED, column or assignment])
    writer.writerow(["    Points Possible", "", "", "", "", max_score])
    missing = []
    for row in rows:
        if ids.get(row["student"]):
            writer.writerow([row["student"], ids[row["student"]], "", "", "", row["total"]])
        elif roster is None:
            missing.append(row["student"])
    if missing and found:
        problems.append("no Canvas user id for " + ", ".join(missing) + " (their files were "
                        "not named by Canvas; give a --roster): left out of " + CANVAS_FILE)
    plain = io.StringIO()
    writer = csv.writer(plain, lineterminator="\n")
    writer.writerow(["student", "total"])
    for row in rows:
        student = row["student"]
        if roster is not None or student in found:
            if ids.get(student):
                writer.writerow([ids[student], row["total"]])
        else:
            writer.writerow([student, row["total"]])
    atomic_write(out / CANVAS_FILE, canvas.getvalue())
    atomic_write(out / PLAIN_FILE, plain.getvalue())
    return Export(out / CANVAS_FILE, out / PLAIN_FILE, problems)
