"""Find the submissions to grade: notebooks, folders of notebooks, or an LMS zip export.

A SUBMISSION argument of ``python -m autograder grade`` is

* a notebook ``alice.ipynb``: student ``alice``;
* a folder: every notebook in it; a notebook directly inside is a student named after the
  file stem, a notebook in a sub-folder belongs to the student named after that sub-folder
  (``bob/vae.ipynb`` -> ``bob``);
* a ``.zip`` export from an LMS: unpacked into a private folder, then read like a folder.

One notebook per student: when a student folder holds several, the one named after the
assignment wins (``vae.ipynb``, then any name containing ``vae``), else the first by name, and
the choice is noted in the feedback. Student ids are sanitised: letters, digits, ``.``, ``_``
and ``-`` only, no leading dot, so an id can never climb out of the output folder.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_IGNORED_PARTS = {"__MACOSX", ".ipynb_checkpoints"}
_RESERVED = {"gradebook.csv"}


@dataclass
class Submission:
    """One student's notebook and where it came from."""

    student: str
    path: Path
    origin: str                      # what the instructor passed (file, folder or zip member)
    notes: list[str] = field(default_factory=list)  # said to the student in the feedback


def sanitize_id(name: str) -> str:
    """A student id safe to use as a folder name: no separators, no ``..``, never empty, never
    the name of a file the grader writes beside the students' folders."""
    cleaned = _UNSAFE.sub("_", name).strip("._-")
    cleaned = re.sub(r"\.{2,}", ".", cleaned) or "student"
    return f"student-{cleaned}" if cleaned.lower() in _RESERVED else cleaned


def _ignored(rel: PurePosixPath) -> bool:
    return any(part in _IGNORED_PARTS or part.startswith(".") for part in rel.parts)


def _pick(notebooks: list[Path], assignment: str) -> tuple[Path, list[str]]:
    notebooks = sorted(notebooks)
    if len(notebooks) == 1:
        return notebooks[0], []
    exact = [p for p in notebooks if p.stem == assignment]
    similar = [p for p in notebooks if assignment in p.stem.lower()]
    chosen = (exact or similar or notebooks)[0]
    others = ", ".join(p.name for p in notebooks if p != chosen)
    return chosen, [f"Several notebooks were submitted; graded {chosen.name} (not {others})."]


def _from_folder(folder: Path, assignment: str, origin: str) -> list[Submission]:
    groups: dict[str, list[Path]] = {}
    for path in sorted(folder.rglob("*.ipynb")):
        rel = PurePosixPath(path.relative_to(folder).as_posix())
        if _ignored(rel):
            continue
        key = rel.parts[0] if len(rel.parts) > 1 else path.stem
        groups.setdefault(key, []).append(path)
    subs = []
    for key, paths in groups.items():
        chosen, notes = _pick(paths, assignment)
        subs.append(Submission(sanitize_id(key), chosen,
                               f"{origin}/{chosen.relative_to(folder).as_posix()}", notes))
    return subs


def _safe_extract(archive: Path, dest: Path) -> None:
    """Unpack ``archive`` into ``dest``, skipping members that would land outside it."""
    dest = dest.resolve()
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            rel = PurePosixPath(info.filename.replace("\\", "/"))
            if info.is_dir() or rel.is_absolute() or ".." in rel.parts or not rel.parts:
                continue
            target = (dest / Path(*rel.parts)).resolve()
            if not target.is_relative_to(dest):
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as out:
                out.write(src.read())


def collect(paths: list[str | Path], assignment: str, unpack_dir: Path) -> list[Submission]:
    """All submissions named by ``paths``, one per student, sorted by student id.

    Zip files are unpacked under ``unpack_dir``. Two submissions that sanitise to the same id
    get ``-2``, ``-3``, ... suffixes (and a note), so nobody's results overwrite another's.
    """
    subs: list[Submission] = []
    for n, raw in enumerate(paths):
        path = Path(raw)
        if path.is_dir():
            subs += _from_folder(path, assignment, str(path))
        elif path.suffix.lower() == ".zip" and path.is_file():
            dest = unpack_dir / f"zip{n}-{sanitize_id(path.stem)}"
            _safe_extract(path, dest)
            subs += _from_folder(dest, assignment, str(path))
        elif path.suffix.lower() == ".ipynb" and path.is_file():
            subs.append(Submission(sanitize_id(path.stem), path, str(path)))
        else:
            raise FileNotFoundError(f"{raw}: not a notebook, a folder or a .zip file")
    original = {sub.student for sub in subs}  # ids students really have are never handed out again
    taken: set[str] = set()
    for sub in sorted(subs, key=lambda s: (s.student, s.origin)):
        name, count = sub.student, 1
        while name in taken or (count > 1 and name in original):
            count += 1
            name = f"{sub.student}-{count}"
        if name != sub.student:
            sub.notes.append(f"Another submission had the id {sub.student!r}; this one is "
                             f"graded as {name}.")
            sub.student = name
        taken.add(name)
    return sorted(subs, key=lambda s: s.student)
