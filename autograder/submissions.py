"""Find the submissions to grade, and say what is wrong with a file that cannot be graded.

A SUBMISSION argument of ``python -m autograder grade`` is

* a notebook ``alice.ipynb``: student ``alice``;
* a folder: every notebook in it; a notebook directly inside is a student named after the
  file stem, a notebook in a sub-folder (at any depth) belongs to the student named after the
  first sub-folder (``bob/hw/vae.ipynb`` -> ``bob``). Symbolic links are never followed (an
  unzipped export may hold links to any file the grader can read): they are listed in the
  student's feedback;
* a ``.zip`` export from an LMS: its notebooks are unpacked into a private folder, then read
  like a folder. A single folder wrapping the whole export (``export/alice/...``,
  ``export/bob/...``) is looked through. A member whose path would leave the unpack folder
  (``../x``, ``/etc/x``, ``C:\\x``) is never written (the instructor is warned); symbolic
  links are never created; files that are not notebooks are not unpacked but listed in the
  student's feedback; a notebook over the size limit is not unpacked (the student is told).
  Names stored without the zip's UTF-8 flag are read as UTF-8 when they decode as such (what
  most zip tools write), else as cp437 (the zip standard).

A folder of a zip or folder that holds files but no notebook is still a student, told that no
notebook was found; so is a file beside the students' folders that is not a notebook
(``dave.txt`` is student ``dave``, told that it is not a notebook): every file handed in gets
a gradebook row.

**Canvas.** Canvas's "Download Submissions" zip holds one file per student and file, named
``name_userid_submissionid_filename`` (``name_LATE_userid_...`` when late; a file uploaded
again gets ``-1``, ``-2``, ... before its extension). Such names are read: the student is
``name``, the Canvas user id and the lateness are kept (:attr:`Submission.lms_id`,
:attr:`Submission.late`) for the gradebook and the Canvas export (:mod:`autograder.lms`), the
files of one user id are one student, and of several versions of one file the latest
resubmission is graded (the others are named in the feedback).

One notebook per student. When a student has several, the rule is: the notebooks named after
the assignment (``vae.ipynb``), else those whose name contains it (``vae_final.ipynb``), else
all of them; among those the newest (modification time; a zip member's stored time), then the
largest, then the first by path. The feedback names the notebook graded and those ignored.

Nothing handed in is dropped without a word. Every ``.ipynb`` found is graded or *passed over*
with its reason: a hidden file or folder (name starting with a dot), a Jupyter checkpoint copy
(``.ipynb_checkpoints``), macOS's ``__MACOSX`` copies, a second notebook of a student (and which
one was graded instead), an earlier Canvas upload, a symbolic link, a member that could not be
unpacked, a folder that could not be read. :func:`collect` appends each to its ``passed_over``
list (:class:`PassedOver`, for the instructor's end-of-batch summary and the run log); one that
lies inside a student's folder is also listed in that student's feedback
(:attr:`Submission.passed_over`), and a student folder holding only such files still gets a
gradebook row. Two submissions that end up with one id are both graded, under ``-2``, ...
(the instructor is warned), never over each other's files.

Student ids are sanitised to safe ASCII: accents are dropped and a few letters transliterated
(``José`` -> ``Jose``, ``Łukasz`` -> ``Lukasz``); when other characters are lost (``王芳``) a
short hash of the original name is appended so that different names stay different ids;
letters, digits, ``.``, ``_`` and ``-`` only, no leading dot, at most 80 characters, never the
name of a file the grader writes beside the students' folders. Two submissions that still end
up with one id get ``-2``, ``-3``, ... (and a note).

:func:`inspect_notebook` reads a submitted file before anything runs and returns what is
wrong with it, in words meant for the student: too large, empty, not UTF-8, not JSON (with
the line and column), JSON but not a notebook, an nbformat version the grader cannot read, no
cells, or the notebook of another assignment.
"""

from __future__ import annotations

import json
import os
import re
import stat
import time
import unicodedata
import zipfile
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

from autograder import messages

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_IGNORED_PARTS = {"__MACOSX", ".ipynb_checkpoints", "__pycache__"}
#: Files the grader writes in the output folder beside the students' folders.
_RESERVED = {"gradebook.csv", "grader.log.jsonl", "canvas_gradebook.csv", "grades.csv"}
#: Letters NFKD does not decompose into ASCII.
_TRANSLIT = str.maketrans({"ł": "l", "Ł": "L", "ø": "o", "Ø": "O", "đ": "d", "Đ": "D",
                           "ß": "ss", "æ": "ae", "Æ": "AE", "œ": "oe", "Œ": "OE", "þ": "th",
                           "Þ": "Th", "ð": "d", "Ð": "D", "ı": "i"})
MAX_ID = 80
DEFAULT_MAX_MB = 20.0
#: nbformat major versions the grader reads (3 is converted to 4 by nbformat).
READABLE_NBFORMAT = (3, 4)
CELL_TYPES = ("code", "markdown", "raw")


@dataclass(frozen=True)
class Submission:
    """One student's notebook and where it came from (the *collect* stage's output)."""

    student: str
    path: Path
    origin: str                      # what the instructor passed (file, folder or zip member)
    notes: tuple[str, ...] = ()      # said to the student in the feedback
    problem: str | None = None       # why it cannot be graded, when known while collecting
    lms_id: str | None = None        # the learning platform's user id (Canvas file names)
    late: bool = False               # the platform marked it late (Canvas's LATE)
    #: This student's other files that were not graded: (where, why), for the instructor.
    passed_over: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class PassedOver:
    """A notebook handed in that is not graded, and why (the instructor's summary lists it)."""

    path: str                        # where it was (folder or zip member path)
    reason: str
    student: str | None = None       # whose it is, when it lies in a student's submission


@dataclass
class _Candidate:
    """A notebook found for a student: on disk (``path``) or left in the zip (too large)."""

    rel: PurePosixPath               # inside the folder or the zip
    path: Path | None
    size: int
    mtime: float


def sanitize_id(name: str) -> str:
    """A student id safe to use as a folder name: ASCII letters, digits, ``._-``, no ``..``,
    never empty, at most MAX_ID characters, never a file the grader writes beside the
    students' folders. Names that lose characters get a hash of the original appended."""
    decomposed = unicodedata.normalize("NFKD", name.translate(_TRANSLIT))
    kept = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    lossy = any(ord(ch) > 127 for ch in kept)
    cleaned = _UNSAFE.sub("_", kept.encode("ascii", "ignore").decode()).strip("._-")
    cleaned = re.sub(r"\.{2,}", ".", cleaned) or "student"
    tag = f"{zlib.crc32(name.encode('utf-8', 'surrogatepass')):08x}"
    if lossy or len(cleaned) > MAX_ID:
        cleaned = f"{cleaned[:MAX_ID - 9].rstrip('._-') or 'student'}-{tag}"
    return f"student-{cleaned}" if cleaned.lower() in _RESERVED else cleaned


def _ignored(rel: PurePosixPath) -> bool:
    return _hidden_reason(rel) is not None


def _hidden_reason(rel: PurePosixPath) -> str | None:
    """Why a path the grader never reads is passed over; None when it is read."""
    for n, part in enumerate(rel.parts, start=1):
        if part == ".ipynb_checkpoints":
            return "a Jupyter checkpoint copy in .ipynb_checkpoints; not graded"
        if part == "__MACOSX":
            return "a macOS metadata copy the zip tool added in __MACOSX; not graded"
        if part == "__pycache__":
            return "in a __pycache__ folder; not graded"
        if part.startswith("."):
            return ("a hidden file, its name starts with a dot; not graded" if n == len(rel.parts)
                    else f"in the hidden folder {part}; not graded")
    return None


def _pick(cands: list[_Candidate], assignment: str) -> tuple[_Candidate, list[str]]:
    """The notebook to grade among a student's (see the module docstring for the rule)."""
    chosen, why, _ = _choose(cands, assignment)
    return chosen, why


def _choose(cands: list[_Candidate], assignment: str
            ) -> tuple[_Candidate, list[str], list[tuple[_Candidate, str]]]:
    """:func:`_pick`, and the notebooks not picked with the reason for the instructor."""
    cands = sorted(cands, key=lambda c: str(c.rel))
    if len(cands) == 1:
        return cands[0], [], []
    exact = [c for c in cands if c.rel.stem.lower() == assignment.lower()]
    similar = [c for c in cands if assignment.lower() in c.rel.stem.lower()]
    pool = exact or similar or cands
    chosen = max(pool, key=lambda c: (c.mtime, c.size))  # the first of equals by path
    why = ("named after the assignment" if exact else
           f"its name contains {assignment!r}" if similar else "the newest")
    if (exact or similar) and len(pool) > 1:
        why += ", and the newest of those"
    apart = len({c.rel.parent for c in cands}) > 1  # bob.ipynb and bob/sub.ipynb: say where
    others = ", ".join(c.rel.name if c.rel.name != chosen.rel.name and not apart
                       else c.rel.as_posix() for c in cands if c is not chosen)
    passed = [(c, messages.second_notebook(chosen.rel.as_posix(), why))
              for c in cands if c is not chosen]
    shown = chosen.rel.as_posix() if apart else chosen.rel.name
    return chosen, [messages.several_notebooks(shown, why, others)], passed


_CANVAS_RE = re.compile(r"^(?P<name>[^_/]+?)(?P<late>_LATE)?_(?P<uid>\d+)_(?P<sid>\d+)_"
                        r"(?P<file>[^/]+)$")
_RESUBMITTED_RE = re.compile(r"^(?P<base>.+)-(?P<n>\d+)$")


@dataclass(frozen=True)
class CanvasName:
    """What a file name of Canvas's "Download Submissions" zip says."""

    name: str                 # the student's name as Canvas writes it (``doejane``)
    user_id: str
    submission_id: str
    filename: str             # the file as the student named it, with Canvas's ``-N``
    late: bool
    base: str                 # ``filename`` without the resubmission suffix
    version: int              # 0 for the first upload, N for ``-N``


def canvas_name(filename: str) -> CanvasName | None:
    """Parse ``name[_LATE]_userid_submissionid_filename``; None for other names."""
    found = _CANVAS_RE.match(filename)
    if found is None:
        return None
    original = PurePosixPath(found["file"])
    again = _RESUBMITTED_RE.match(original.stem)
    base, version = ((again["base"] + original.suffix, int(again["n"])) if again
                     else (found["file"], 0))
    return CanvasName(found["name"], found["uid"], found["sid"], found["file"],
                      bool(found["late"]), base, version)


def _group_key(rel: PurePosixPath) -> str:
    if len(rel.parts) > 1:
        return rel.parts[0]
    canvas = canvas_name(rel.name)
    return f"{canvas.name}_{canvas.user_id}" if canvas else rel.stem


def _latest_versions(cands: list[_Candidate]
                     ) -> tuple[list[_Candidate], list[str], list[tuple[_Candidate, str]]]:
    """Of Canvas files uploaded again (``vae.ipynb``, ``vae-1.ipynb``), the latest version
    only; notes naming the earlier ones, and those with the reason for the instructor."""
    latest: dict[str, tuple[tuple[int, int], _Candidate]] = {}
    others: list[_Candidate] = []
    older: list[CanvasName] = []
    dropped: list[_Candidate] = []
    for cand in cands:
        canvas = canvas_name(cand.rel.name) if len(cand.rel.parts) == 1 else None
        if canvas is None:
            others.append(cand)
            continue
        key = (canvas.version, int(canvas.submission_id))
        if canvas.base in latest:
            old_key, old = latest[canvas.base]
            if key > old_key:
                older.append(canvas_name(old.rel.name))
                dropped.append(old)
                latest[canvas.base] = (key, cand)
            else:
                older.append(canvas)
                dropped.append(cand)
        else:
            latest[canvas.base] = (key, cand)
    kept = [c for _, c in latest.values()]
    passed = [(c, messages.earlier_upload(latest[canvas_name(c.rel.name).base][1].rel.name))
              for c in dropped]
    notes = []
    if older:
        names = ", ".join(canvas_name(c.rel.name).filename for c in kept
                          if canvas_name(c.rel.name).version)
        notes.append(messages.older_resubmissions(
            names or "the latest", ", ".join(c.filename for c in sorted(
                older, key=lambda c: (c.base, c.version)))))
    return kept + others, notes, passed


def _unwrap(rels: list[PurePosixPath]) -> int:
    """How many leading folders to look through: a single folder holding the whole export
    and several students below it."""
    depth = 0
    while rels and all(len(r.parts) > depth + 1 for r in rels):
        if len({r.parts[depth] for r in rels}) != 1:
            break
        below = {_group_key(PurePosixPath(*r.parts[depth + 1:])) for r in rels}
        if len(below) < 2:
            break
        depth += 1
    return depth


def _assemble(cands: list[_Candidate], others: list[PurePosixPath], assignment: str,
              origin: str, root: Path, unwrap: bool, max_bytes: int | None,
              links: list[PurePosixPath] = (), skipped: list[tuple[PurePosixPath, str]] = (),
              orphans: list[PassedOver] | None = None) -> list[Submission]:
    """One submission per student from the notebooks, other files and links under ``root``.

    ``skipped``: notebooks not read, with the reason (hidden, checkpoint copies, unpacking
    failed); one inside a student's folder is listed in that student's notes and
    ``passed_over``, any other is appended to ``orphans``."""
    depth = _unwrap([c.rel for c in cands] + list(others) + list(links)) if unwrap else 0
    prefix = next(iter([c.rel for c in cands] + list(others) + list(links)),
                  PurePosixPath()).parts[:depth]
    groups: dict[str, list[_Candidate]] = {}
    extra: dict[str, list[str]] = {}
    unread: dict[str, list[tuple[str | None, str, str]]] = {}  # key -> (note, where, why)
    folders: dict[str, Path] = {}
    for cand in cands:
        groups.setdefault(_group_key(PurePosixPath(*cand.rel.parts[depth:])), []).append(cand)
    loose: dict[str, list[str]] = {}  # files beside the students' folders, not notebooks
    canvas: dict[str, list[CanvasName]] = {}
    for rel in [c.rel for c in cands] + list(others) + list(links):
        inner = PurePosixPath(*rel.parts[depth:])
        found = canvas_name(inner.name) if len(inner.parts) == 1 else None
        if found is not None:
            canvas.setdefault(_group_key(inner), []).append(found)
    for rel, what in [(r, "") for r in others] + [(r, " (a symbolic link, not followed)")
                                                   for r in links]:
        inner = PurePosixPath(*rel.parts[depth:])
        key = _group_key(inner)
        if len(inner.parts) < 2 and not what:
            loose.setdefault(key, []).append(inner.name)
        extra.setdefault(key, []).append(("/".join(inner.parts[1:]) or inner.name) + what)
        folders.setdefault(key, root.joinpath(*rel.parts[:depth + 1]))
        if rel.suffix.lower() == ".ipynb":  # in the notes already, with the other files
            unread.setdefault(key, []).append(
                (None, f"{origin}/{rel.as_posix()}", "a symbolic link, not followed" if what
                 else "not a regular file; not graded"))
    orphans = [] if orphans is None else orphans
    for rel, reason in skipped:
        inner = PurePosixPath(*rel.parts[depth:]) if rel.parts[:depth] == prefix else None
        key = _group_key(inner) if inner is not None and inner.parts else None
        if key is None or _ignored(PurePosixPath(key)) or (len(inner.parts) == 1
                                                            and _ignored(inner)):
            orphans.append(PassedOver(f"{origin}/{rel.as_posix()}", reason))
            continue
        unread.setdefault(key, []).append((f"{'/'.join(inner.parts[1:]) or inner.name} ({reason})",
                                           f"{origin}/{rel.as_posix()}", reason))
        folders.setdefault(key, root.joinpath(*rel.parts[:depth + 1]))
    subs = []
    for key in sorted(set(groups) | set(extra) | set(unread)):
        ignored = sorted(extra.get(key, []))
        listed = ", ".join(ignored[:10]) + (f" and {len(ignored) - 10} more"
                                            if len(ignored) > 10 else "")
        unread_notes = [note for note, _, _ in unread.get(key, []) if note]
        passed = [(where, why) for _, where, why in unread.get(key, [])]
        names = canvas.get(key, [])
        student = sanitize_id(names[0].name if names else key)
        platform = {"lms_id": names[0].user_id if names else None,
                    "late": any(n.late for n in names)}
        late_note = (messages.late_submission(),) if platform["late"] else ()
        if key not in groups:
            problem = (messages.not_a_notebook_file(loose[key][0])
                       if loose.get(key) == ignored and len(ignored) == 1 and not unread_notes
                       else messages.no_notebook(", ".join(filter(None, [
                           listed, "; ".join(unread_notes)]))))
            subs.append(Submission(student, folders[key], f"{origin}/{key}", late_note,
                                   problem, **platform, passed_over=tuple(passed)))
            continue
        kept, notes, older = (_latest_versions(groups[key]) if names
                              else (groups[key], [], []))
        chosen, picked, second = _choose(kept, assignment)
        passed = [(f"{origin}/{c.rel.as_posix()}", why) for c, why in older + second] + passed
        notes = [*late_note, *notes, *picked]
        if ignored:
            notes.append(messages.not_notebooks(listed))
        if unread_notes:
            notes.append(messages.notebooks_not_read("; ".join(unread_notes)))
        problem = None if chosen.path is not None else messages.too_large(chosen.size, max_bytes)
        subs.append(Submission(student, chosen.path or root / chosen.rel.as_posix(),
                               f"{origin}/{chosen.rel.as_posix()}", tuple(notes), problem,
                               **platform, passed_over=tuple(passed)))
    return subs


def _from_folder(folder: Path, assignment: str, origin: str,
                 orphans: list[PassedOver] | None = None) -> list[Submission]:
    """The submissions in ``folder``. Symbolic links are never followed: a link in a student's
    folder (``unzip`` restores them) could point at any file the grader can read."""
    cands, others, links, skipped = [], [], [], []

    def unreadable(exc: OSError) -> None:  # os.walk would drop such a folder without a word
        where = Path(exc.filename or folder)
        rel = PurePosixPath(where.relative_to(folder).as_posix()) if where != folder else None
        reason = f"a folder the grader could not read: {exc.strerror}; nothing in it was graded"
        if rel is None:
            (orphans if orphans is not None else []).append(PassedOver(origin, reason))
        else:
            skipped.append((rel, reason))

    for top, dirs, files in os.walk(folder, onerror=unreadable):
        here = Path(top)
        for name in sorted(dirs + files):
            path = here / name
            rel = PurePosixPath(path.relative_to(folder).as_posix())
            if _ignored(rel):
                if name in files and name.lower().endswith(".ipynb"):
                    skipped.append((rel, _hidden_reason(rel)))
                continue
            if path.is_symlink():
                links.append(rel)
            elif name in files and path.suffix.lower() == ".ipynb" and path.is_file():
                st = path.stat()
                cands.append(_Candidate(rel, path, st.st_size, st.st_mtime))
            elif name in files:
                others.append(rel)
        dirs[:] = [d for d in dirs if not (here / d).is_symlink()]
    return _assemble(cands, others, assignment, origin, folder, unwrap=False, max_bytes=None,
                     links=links, skipped=skipped, orphans=orphans)


def member_name(info: zipfile.ZipInfo) -> str:
    """A zip member's name as its author meant it: names without the UTF-8 flag are cp437 by
    the standard, but most tools write UTF-8 there anyway."""
    name = info.filename
    if not info.flag_bits & 0x800 and not name.isascii():
        try:
            name = name.encode("cp437").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            pass
    return name


def safe_member_path(name: str) -> PurePosixPath | None:
    """The relative path a zip member may be written to, or None when it would leave the
    unpack folder (absolute, a drive letter, ``..``) or is not a usable name."""
    name = name.replace("\\", "/")
    if "\x00" in name or name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return None
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return PurePosixPath(*parts)


def _is_link(info: zipfile.ZipInfo) -> bool:
    return info.create_system == 3 and stat.S_ISLNK(info.external_attr >> 16)


def _unpack(archive: Path, dest: Path, assignment: str, origin: str, max_bytes: int | None,
            warnings: list[str], orphans: list[PassedOver] | None = None) -> list[Submission]:
    """Unpack the notebooks of ``archive`` into ``dest`` (nothing ever outside it) and read
    them like a folder."""
    dest.mkdir(parents=True, exist_ok=True)
    dest = dest.resolve()
    found: dict[PurePosixPath, _Candidate] = {}  # a name stored twice: the later one wins
    others, links, skipped = [], [], []
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise FileNotFoundError(f"{archive}: not a readable zip file ({exc})") from None
    with zf:
        for info in zf.infolist():
            name = member_name(info)
            rel = safe_member_path(name)
            if rel is None:
                warnings.append(f"{archive.name}: skipped member {name!r}: its path leaves "
                                "the archive")
                if name.lower().endswith(".ipynb") and orphans is not None:
                    orphans.append(PassedOver(f"{origin}/{name}", "its path leaves the archive, "
                                              "so it was never unpacked nor graded"))
                continue
            if info.is_dir():
                continue
            if _ignored(rel):
                if rel.suffix.lower() == ".ipynb":
                    skipped.append((rel, _hidden_reason(rel)))
                continue
            if _is_link(info):
                links.append(rel)
                continue
            if rel.suffix.lower() != ".ipynb":
                others.append(rel)
                continue
            try:
                mtime = time.mktime((*info.date_time, 0, 0, -1))
            except (OverflowError, ValueError):
                mtime = 0.0
            if max_bytes is not None and info.file_size > max_bytes:
                found[rel] = _Candidate(rel, None, info.file_size, mtime)
                continue
            target = dest.joinpath(*rel.parts)
            try:
                if not target.resolve().is_relative_to(dest):
                    raise OSError("outside the unpack folder")
                target.parent.mkdir(parents=True, exist_ok=True)
                size = _copy_member(zf, info, target, max_bytes)
            except (OSError, zipfile.BadZipFile, zlib.error, RuntimeError, EOFError) as exc:
                warnings.append(f"{archive.name}: skipped member {name!r}: {exc}")
                if target.is_file() and not target.is_symlink():
                    target.unlink()
                skipped.append((rel, f"could not be unpacked: {exc}; not graded"))
                continue
            if size is None:  # grew past the limit while unpacking
                target.unlink(missing_ok=True)
                found[rel] = _Candidate(rel, None, max(info.file_size, max_bytes + 1), mtime)
                continue
            os.utime(target, (mtime, mtime))
            found[rel] = _Candidate(rel, target, size, mtime)
    return _assemble(list(found.values()), others, assignment, origin, dest, unwrap=True,
                     max_bytes=max_bytes, links=links, skipped=skipped, orphans=orphans)


def _copy_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path,
                 max_bytes: int | None) -> int | None:
    """Copy one member (never following or creating links); None when over ``max_bytes``."""
    size = 0
    with zf.open(info) as src, open(target, "wb") as out:
        while chunk := src.read(1 << 20):
            size += len(chunk)
            if max_bytes is not None and size > max_bytes:
                return None
            out.write(chunk)
    return size


def missing_paths(paths: list[str | Path]) -> list[str]:
    """The SUBMISSION arguments that name nothing on disk (checked before anything starts)."""
    return [str(p) for p in paths if not Path(p).exists()]


def missing_message(missing: list[str]) -> str:
    what = "does not exist" if len(missing) == 1 else "do not exist"
    return (f"{', '.join(missing)} {what}: give notebooks, folders of notebooks or .zip "
            "exports that are there (a mistyped path?)")


def collect(paths: list[str | Path], assignment: str, unpack_dir: Path,
            max_bytes: int | None = None, warnings: list[str] | None = None,
            passed_over: list[PassedOver] | None = None) -> list[Submission]:
    """All submissions named by ``paths``, one per student, sorted by student id.

    Zip files are unpacked under ``unpack_dir``; zip notebooks over ``max_bytes`` stay packed
    and their submission carries a ``problem``. What the instructor should know (members
    skipped because their path leaves the archive, ids given a suffix) is appended to
    ``warnings``; every notebook found and not graded, with the reason and its student, to
    ``passed_over``. Two submissions that sanitise to the same id get ``-2``, ``-3``, ...
    suffixes (and a note), so nobody's results overwrite another's.
    """
    warnings = [] if warnings is None else warnings
    orphans: list[PassedOver] = []
    subs: list[Submission] = []
    missing = missing_paths(paths)
    if missing:
        raise FileNotFoundError(missing_message(missing))
    for n, raw in enumerate(paths):
        path = Path(raw)
        if path.is_dir():
            subs += _from_folder(path, assignment, str(path), orphans)
        elif path.suffix.lower() == ".zip" and path.is_file():
            dest = unpack_dir / f"zip{n}-{sanitize_id(path.stem)}"
            subs += _unpack(path, dest, assignment, str(path), max_bytes, warnings, orphans)
        elif path.is_file():  # a notebook, or a file handed in that is not one
            subs += _assemble([_Candidate(PurePosixPath(path.name), path, 0, 0.0)]
                              if path.suffix.lower() == ".ipynb" else [],
                              [] if path.suffix.lower() == ".ipynb"
                              else [PurePosixPath(path.name)],
                              assignment, str(path.parent), path.parent, unwrap=False,
                              max_bytes=None)
        else:
            raise FileNotFoundError(f"{raw}: not a notebook, a folder or a .zip file")
    original = {sub.student for sub in subs}  # ids students really have are never handed out again
    taken: set[str] = set()
    unique = []
    for sub in sorted(subs, key=lambda s: (s.student, s.origin)):
        name, count = sub.student, 1
        while name in taken or (count > 1 and name in original):
            count += 1
            name = f"{sub.student}-{count}"
        if name != sub.student:
            warnings.append(f"{sub.origin}: graded as {name}, since another submission also "
                            f"has the id {sub.student}")
            sub = replace(sub, student=name,
                          notes=(*sub.notes, messages.renamed(sub.student, name)))
        taken.add(name)
        unique.append(sub)
    if passed_over is not None:
        passed_over += orphans + [PassedOver(where, why, sub.student) for sub in unique
                                  for where, why in sub.passed_over]
        passed_over.sort(key=lambda p: p.path)
    return sorted(unique, key=lambda s: s.student)


# --- what is wrong with a file ----------------------------------------------------------------

@dataclass(frozen=True)
class Expected:
    """What the submitted notebooks of one assignment should contain, and what the other
    assignments' notebooks contain (to recognise a notebook submitted for the wrong one)."""

    assignment: str
    ids: frozenset[str]              # ids of the graded and written cells of the source
    items: frozenset[str]            # their items
    others: dict[str, frozenset[str]] = field(default_factory=dict)  # name -> ids and items

    @classmethod
    def from_source(cls, source, assignment: str, source_dir: str | Path | None = None,
                    ) -> Expected:
        ids, items = _graded_keys(source.get("cells", []))
        others: dict[str, frozenset[str]] = {}
        if source_dir is not None:
            for path in sorted(Path(source_dir).glob("*.ipynb")):
                if path.stem == assignment:
                    continue
                try:
                    o_ids, o_items = _graded_keys(json.loads(path.read_text("utf-8"))["cells"])
                except (OSError, ValueError, KeyError, TypeError, AttributeError):
                    continue
                others[path.stem] = frozenset(o_ids | o_items)
        return cls(assignment, frozenset(ids), frozenset(items), others)


def _dgm_meta(cell) -> dict:
    """A submitted cell's ``metadata.dgm``; empty when the cell or its metadata is malformed."""
    meta = cell.get("metadata") if isinstance(cell, dict) else None
    dgm = meta.get("dgm") if isinstance(meta, dict) else None
    return dgm if isinstance(dgm, dict) else {}


def _graded_keys(cells) -> tuple[set[str], set[str]]:
    ids, items = set(), set()
    for cell in cells if isinstance(cells, list) else []:
        meta = _dgm_meta(cell)
        if meta.get("role") in ("graded", "written"):
            if isinstance(cell.get("id"), str):
                ids.add(cell["id"])
            if isinstance(meta.get("item"), str):
                items.add(meta["item"])
    return ids, items


@dataclass(frozen=True)
class Inspection:
    """What :func:`inspect_notebook` found: a problem that stops grading, notes for the
    student, and the notebook as the grader reads it (when there is no problem)."""

    problem: str | None = None
    notes: tuple[str, ...] = ()
    notebook: object | None = None


def inspect_submission(sub: Submission, expected: Expected | None = None,
                       max_bytes: int | None = None) -> Inspection:
    """The *inspect* stage: what is wrong with ``sub``, if anything (a problem found while
    collecting it, else :func:`inspect_notebook` on its file)."""
    if sub.problem is not None:
        return Inspection(sub.problem)
    return inspect_notebook(sub.path, expected, max_bytes)


def inspect_notebook(path: str | Path, expected: Expected | None = None,
                     max_bytes: int | None = None) -> Inspection:
    """What is wrong with the submitted file ``path``, in words for the student (``problem``
    is None when it can be graded). Reads at most ``max_bytes`` bytes."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if max_bytes is not None and size > max_bytes:
            return Inspection(messages.too_large(size, max_bytes))
        data = path.read_bytes()
    except OSError as exc:
        return Inspection(messages.cannot_open(exc.strerror))
    if not data.strip():
        return Inspection(messages.empty_file(len(data)))
    for magic, what in messages.FILE_SIGNATURES:
        if data.startswith(magic):
            return Inspection(messages.other_file_type(what))
    if data.startswith(b"\xef\xbb\xbf"):
        return Inspection(messages.byte_order_mark())
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Inspection(messages.not_utf8(data[exc.start], exc.start))
    try:
        nb = json.loads(text)
    except json.JSONDecodeError as exc:
        web_page = text.lstrip()[:15].lower().startswith(("<!doctype", "<html"))
        return Inspection(messages.not_json(exc.lineno, exc.colno, exc.msg, web_page))
    if not isinstance(nb, dict):
        return Inspection(messages.json_not_object(type(nb).__name__))
    if not {"cells", "worksheets", "nbformat"} & set(nb):
        return Inspection(messages.json_without_cells(", ".join(list(nb)[:5]) or "none"))
    version = nb.get("nbformat")
    if version is None:
        return Inspection(messages.no_nbformat())
    if version not in READABLE_NBFORMAT or isinstance(version, bool):
        return Inspection(messages.unknown_nbformat(version))
    notes = []
    if version == 3:
        notes.append(messages.NBFORMAT3_CONVERTED)
        if not isinstance(nb.get("worksheets"), list):
            return Inspection(messages.nbformat3_without_worksheets())
        cells = [c for ws in nb["worksheets"] if isinstance(ws, dict)
                 for c in ws.get("cells", [])]
    else:
        cells = nb.get("cells")
        if not isinstance(cells, list):
            return Inspection(messages.cells_not_a_list(type(cells).__name__))
        for n, cell in enumerate(cells, start=1):
            if not isinstance(cell, dict) or cell.get("cell_type") not in CELL_TYPES or not \
                    isinstance(cell.get("source", ""), (str, list)):
                return Inspection(messages.not_a_cell(n))
    if not cells:
        return Inspection(messages.no_cells())
    if expected is not None:
        wrong = _other_assignment(nb, cells, expected)
        if wrong:
            return Inspection(wrong)
    try:  # what the grader itself will do with it
        from autograder.notebook_format import read_notebook

        notebook = read_notebook(path)
    except Exception as exc:  # noqa: BLE001 - anything nbformat rejects is the student's
        return Inspection(messages.rejected_by_nbformat(type(exc).__name__,
                                                        " ".join(str(exc).split())[:200]))
    return Inspection(None, tuple(notes), notebook)


def _other_assignment(nb: dict, cells: list, expected: Expected) -> str | None:
    """A message when none of the assignment's graded cells is there and the notebook is
    recognisably another assignment's (its metadata, or another source's graded cells)."""
    ids = {c["id"] for c in cells if isinstance(c, dict) and isinstance(c.get("id"), str)}
    items = {m["item"] for m in map(_dgm_meta, cells) if isinstance(m.get("item"), str)}
    if ids & expected.ids or items & expected.items:
        return None
    meta = nb.get("metadata", {}).get("dgm", {}) if isinstance(nb.get("metadata"), dict) else {}
    other, why = None, ""
    if isinstance(meta, dict):
        named = meta.get("assignment") or PurePosixPath(str(meta.get("generated_from", ""))).stem
        if isinstance(named, str) and named and named != expected.assignment:
            other, why = named, f"its metadata names the {named} assignment"
    if other is None:
        overlap = {name: len(keys & (ids | items)) for name, keys in expected.others.items()}
        best = max(overlap, key=overlap.get, default=None)
        if best is not None and overlap[best]:
            other, why = best, f"it has {overlap[best]} of the {best} notebook's graded cells"
    if other is None:
        return None
    wanted = ", ".join(f"`{i}`" for i in sorted(expected.ids)[:4])
    return messages.other_assignment(other, expected.assignment, wanted, why)


def collect_single(folder: Path, assignment: str, student: str = "submission") -> Submission:
    """The one notebook to grade among everything one student handed in (Gradescope's
    ``/autograder/submission``: a notebook, or a folder of files at any depth), picked by the
    rule of the module docstring; its notes always name the notebook graded."""
    cands, others, unread = [], [], []
    for top, dirs, files in os.walk(folder):
        here = Path(top)
        dirs[:] = sorted(d for d in dirs if not (here / d).is_symlink())
        for name in sorted(files):
            path = here / name
            rel = PurePosixPath(path.relative_to(folder).as_posix())
            if _ignored(rel):
                if rel.suffix.lower() == ".ipynb":  # never dropped without a word (collect's rule)
                    unread.append(f"{rel} ({_hidden_reason(rel)})")
                continue
            if path.is_symlink() or not path.is_file():
                others.append(f"{rel} (a symbolic link, not followed)")
            elif path.suffix.lower() == ".ipynb":
                st = path.stat()
                cands.append(_Candidate(rel, path, st.st_size, st.st_mtime))
            else:
                others.append(str(rel))
    listed = ", ".join(others[:10]) + (f" and {len(others) - 10} more" if len(others) > 10
                                       else "")
    if not cands:
        return Submission(student, folder, str(folder), (),
                          messages.no_notebook(", ".join(filter(None, [listed, "; ".join(unread)]))
                                               or "nothing"))
    chosen, notes = _pick(cands, assignment)
    if not notes:
        notes = [messages.graded_notebook(str(chosen.rel))]
    if others:
        notes.append(messages.not_notebooks(listed))
    if unread:
        notes.append(messages.notebooks_not_read("; ".join(unread)))
    return Submission(student, chosen.path, f"{folder}/{chosen.rel}", tuple(notes))
