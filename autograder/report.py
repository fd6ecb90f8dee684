"""Write what grading found: results.json (Gradescope), feedback.md/.html, gradebook.csv.

Per student, in ``DIR/<student>/``:

``results.json``   Gradescope's autograder format, ready to upload: top-level ``score``,
                   ``max_score`` (auto-graded points), ``execution_time``, ``output``,
                   ``visibility``, ``stdout_visibility`` and ``tests``, one entry per
                   auto-graded item with ``name``, ``number``, ``score``, ``max_score``,
                   ``status``, ``output`` and ``visibility``. ``extra_data`` keeps what the
                   gradebook needs (items, written answers pending, timings) and, once
                   the student is done, the ``error`` and the ``fingerprint`` that lets a
                   later run skip the student (:mod:`autograder.state`).
``feedback.md``    for each item its points and messages, the notes of the merge step, then
                   the written answers, collected for manual grading. ``feedback.html`` is the
                   same page rendered.

For the class, ``DIR/gradebook.csv``: one row per student, columns ``student``, one per
auto-graded item (points), one per written item (``pending`` until an instructor types the
points in), ``auto_score``, ``written_pending`` (points still to grade by hand), ``total``
(auto-graded points plus the written points filled in so far) and ``max_score``. Regrading
keeps the written points already typed in.

Nothing here ever sees a hidden check's source or a traceback: messages are built by
:mod:`autograder.scoring` from the exception's message only, in the words of
:mod:`autograder.messages`, which redacts hidden-source lines.
"""

from __future__ import annotations

import csv
import html
import io
import json
import os
import re
import shutil
import threading
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from pathlib import Path

from autograder import messages

PENDING = "pending"


@dataclass(frozen=True)
class ItemResult:
    """The grade of one item for one student."""

    item: str
    kind: str                   # "auto" or "written"
    max_score: float
    score: float | None         # None: pending (written, graded by hand)
    messages: list[str] = field(default_factory=list)
    checks: list[dict] = field(default_factory=list)  # per hidden cell: id, points, earned, status
    title: str = ""             # the exercise's title in the notebook ("Exercise 2: the schedule")

    @property
    def label(self) -> str:
        """How the student's feedback names the item: its title, else its id."""
        return self.title or self.item


@dataclass(frozen=True)
class StudentResult:
    """Everything graded for one student."""

    student: str
    assignment: str
    items: list[ItemResult]
    notes: list[str]                      # general notes (not tied to an item)
    written_answers: dict[str, str]       # item -> the student's markdown
    profile: str
    device: str
    timings: dict[str, float]
    error: str | None = None
    lms_id: str | None = None             # the learning platform's id (a Canvas user id)
    late: bool = False                    # the platform marked the submission late

    @property
    def auto_score(self) -> float:
        return sum(i.score or 0.0 for i in self.items if i.kind == "auto")

    @property
    def auto_max(self) -> float:
        return sum(i.max_score for i in self.items if i.kind == "auto")

    @property
    def written_pending(self) -> float:
        """Points of written answers still to grade by hand (an answer left as the template's
        placeholder is 0 points already)."""
        return sum(i.max_score for i in self.items if i.kind == "written" and i.score is None)


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file beside it, flushed to disk, and
    ``os.replace``: a reader (or a grader killed half-way) sees the old file or the new one,
    never a part. The temporary name is unique per process and thread."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}-{threading.get_ident()}")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _fmt(x: float | None) -> str:
    if x is None:
        return PENDING
    return f"{x:g}"


def gradescope_json(res: StudentResult) -> dict:
    """``results.json`` in Gradescope's autograder format."""
    tests = []
    for n, item in enumerate((i for i in res.items if i.kind == "auto"), start=1):
        tests.append({
            "name": item.item,
            "number": str(n),
            "score": float(item.score or 0.0),
            "max_score": float(item.max_score),
            "status": "passed" if (item.score or 0.0) >= item.max_score else "failed",
            "output": "\n".join(item.messages),
            "visibility": "visible",
        })
    pending = [i for i in res.items if i.kind == "written" and i.score is None]
    summary = f"Auto-graded: {_fmt(res.auto_score)}/{_fmt(res.auto_max)} points."
    if pending:
        summary += (f" Written answers ({', '.join(i.item for i in pending)}; "
                    f"{_fmt(res.written_pending)} points) are graded by hand.")
    if res.error:
        summary += f" {res.error}"
    return {
        "score": float(res.auto_score),
        "max_score": float(res.auto_max),
        "execution_time": messages.coarse_seconds(res.timings.get("wall_s", 0.0)),
        "output": "\n".join([summary, *res.notes]),
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": tests,
        "extra_data": {
            "student": res.student,
            "assignment": res.assignment,
            "profile": res.profile,
            "device": res.device,
            "items": [{k: v for k, v in asdict(i).items() if k != "messages"} for i in res.items],
            "timings": {k: (v if not isinstance(v, (int, float)) or v == 0 else messages.coarse_seconds(v))
                        for k, v in res.timings.items()},  # exact: out/.instructor/<student>/timings.json
            "lms_id": res.lms_id,
            "late": res.late,
        },
    }


def feedback_markdown(res: StudentResult) -> str:
    """The student's feedback page."""
    lines = [f"# Feedback on `{res.assignment}` for {res.student}", "",
             f"**Auto-graded score: {_fmt(res.auto_score)} / {_fmt(res.auto_max)}**"]
    if res.written_pending:
        lines.append(f"(plus {_fmt(res.written_pending)} points of written answers, graded by "
                     "hand)")
    lines += ["", f"Graded in the `{res.profile}` profile on `{res.device}`.", ""]
    if res.error:
        lines += [f"> {res.error}", ""]
    for note in res.notes:
        lines += [f"- {note}"]
    if res.notes:
        lines.append("")
    for item in res.items:
        if item.kind != "auto":
            continue
        lines += [f"## {item.label} ({_fmt(item.score)} / {_fmt(item.max_score)} points)", ""]
        lines += [f"- {m}" for m in item.messages] or ["- All checks passed."]
        lines.append("")
    written = [i for i in res.items if i.kind == "written"]
    if written:
        lines += ["## Written answers (graded by hand)", ""]
        for item in written:
            lines += [f"### {item.label} ({_fmt(item.score)} / {_fmt(item.max_score)} points)",
                      ""]
            lines += [f"- {m}" for m in item.messages]
            answer = res.written_answers.get(item.item, "").strip()
            lines += [""] + ["> " + _no_heading(line) for line in answer.splitlines()] + [""]
    return "\n".join(lines).rstrip() + "\n"


_HEADING = re.compile(r"^( {0,3})(#{1,6}(?:[ \t]|$)|=+[ \t]*$|-+[ \t]*$)")


def _no_heading(line: str) -> str:
    """A line of a student's written answer that cannot render as a heading in the feedback (a
    heading "Exercise 9 (100 / 100 points)" would read like the grader's own): a leading ``#``
    and a setext underline (``===``, ``---``) are escaped; other Markdown and math stay."""
    return _HEADING.sub(lambda m: f"{m.group(1)}\\{m.group(2)}", line)


#: The course's MathJax (``make install`` puts it there, as for the book): copied once into the
#: output folder as :data:`MATHJAX_DIR`, so that feedback pages render formulas offline.
MATHJAX_SOURCE = Path(__file__).resolve().parent.parent / "book" / "_static" / "mathjax"
MATHJAX_DIR = ".mathjax"  # hidden: every other folder in the output is a student
_MATHJAX_LOCK = threading.Lock()
_MATHJAX_CONFIG = ("window.MathJax={tex:{inlineMath:[['\\\\(','\\\\)']],"
                   "displayMath:[['\\\\[','\\\\]']]},options:{enableMenu:false,safeOptions:{allow:"
                   "{URLs:'none',classes:'none',cssIDs:'none',styles:'none'}}},"
                   "loader:{load:['ui/safe']}};")  # safe: no \\href, \\style or \\class in an answer


def render_markdown(text: str) -> str:
    """``text`` as HTML (CommonMark, raw HTML escaped), with ``$...$`` and ``$$...$$`` kept
    as TeX between MathJax's ``\\(...\\)`` and ``\\[...\\]`` delimiters (Markdown would
    otherwise eat its backslashes: ``\\,`` and ``\\|`` are Markdown escapes)."""
    try:
        from markdown_it import MarkdownIt
        from mdit_py_plugins.dollarmath import dollarmath_plugin
    except ImportError:  # keep the grader usable without markdown-it
        return f"<pre>{html.escape(text)}</pre>"
    md = MarkdownIt("commonmark", {"html": False}).use(dollarmath_plugin, double_inline=True)
    # no images (a page that fetches a URL when opened tracks its reader and is not offline) and
    # no links (a student's answer must not link a reader elsewhere): both stay as their text
    md.disable(["image", "link", "autolink"])
    md.add_render_rule("math_inline", lambda self, tokens, idx, options, env:
                       f'<span class="math">\\({html.escape(tokens[idx].content)}\\)</span>')
    md.add_render_rule("math_inline_double", lambda self, tokens, idx, options, env:
                       f'<div class="math">\\[{html.escape(tokens[idx].content)}\\]</div>')
    md.add_render_rule("math_block", lambda self, tokens, idx, options, env:
                       f'<div class="math">\\[{html.escape(tokens[idx].content)}\\]</div>\n')
    md.add_render_rule("math_block_label", lambda self, tokens, idx, options, env:
                       f'<div class="math">\\[{html.escape(tokens[idx].content)}\\]</div>\n')
    return md.render(text)


def markdown_to_html(text: str, title: str, mathjax: str | None = None) -> str:
    """A standalone page of the Markdown ``text``; ``mathjax``: the URL of MathJax's
    ``tex-chtml.js`` (relative to the page) that typesets its formulas, if any."""
    body = render_markdown(text)
    script = ""
    if mathjax:
        script = (f"<script>{_MATHJAX_CONFIG}</script>"
                  f'<script defer src="{html.escape(mathjax)}"></script>')
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}"
            "</title><style>body{font-family:sans-serif;max-width:50em;margin:2em auto}"
            "blockquote{color:#444;border-left:3px solid #ccc;padding-left:1em}</style>"
            f"{script}</head><body>\n{body}</body></html>\n")


def install_mathjax(out: Path) -> str | None:
    """Copy the course's MathJax into ``out/_mathjax`` once (a no-op when it is there); the
    URL of its script relative to a student's folder, or None when MathJax is not installed
    here (the feedback then shows the TeX source)."""
    script = MATHJAX_SOURCE / "tex-chtml.js"
    if not script.is_file():
        return None
    target = out / MATHJAX_DIR
    with _MATHJAX_LOCK:
        if not (target / "tex-chtml.js").is_file():
            tmp = out / f".{MATHJAX_DIR}.tmp{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(MATHJAX_SOURCE.resolve(), tmp)
            shutil.rmtree(target, ignore_errors=True)
            os.replace(tmp, target)
    return f"../{MATHJAX_DIR}/tex-chtml.js"


def results_json_text(res: StudentResult, extra: dict | None = None) -> str:
    """The text of ``results.json``; ``extra`` is added to its ``extra_data``."""
    data = gradescope_json(res)
    data["extra_data"].update(extra or {})
    return json.dumps(data, indent=2) + "\n"


#: Where the executed notebooks go, away from the students' folders (a student's folder is what
#: an instructor hands out; the executed notebook holds the hidden checks): ``out/.instructor/``.
INSTRUCTOR_DIR = ".instructor"


def instructor_folder(student_folder: Path) -> Path:
    """What only instructors see of the student whose folder is ``student_folder``
    (``out/<student>``): ``out/.instructor/<student>/``."""
    student_folder = Path(student_folder)
    return student_folder.parent / INSTRUCTOR_DIR / student_folder.name


def executed_copy(student_folder: Path) -> Path:
    """The instructors' executed notebook of a student: ``out/.instructor/<student>/executed.ipynb``."""
    return instructor_folder(student_folder) / "executed.ipynb"


def exact_timings(student_folder: Path) -> dict:
    """The exact timings of a student's grading (``out/.instructor/<student>/timings.json``); the
    student's own ``results.json`` holds them rounded up to whole minutes (a run time is a channel
    the student's code can choose), so benchmarks read them here."""
    path = instructor_folder(student_folder) / "timings.json"
    if path.is_file():
        return json.loads(path.read_text())
    return json.loads((Path(student_folder) / "results.json").read_text())["extra_data"].get("timings", {})


def write_student(out: Path, res: StudentResult, executed=None, extra: dict | None = None,
                  ) -> None:
    """Write ``out/<student>/`` (results.json, feedback.md, feedback.html) and the executed
    notebook (:func:`executed_copy`, instructors only);
    ``extra`` is added to results.json's ``extra_data`` (the grader's fingerprint)."""
    folder = out / res.student
    instructor_folder(folder).mkdir(parents=True, exist_ok=True)
    atomic_write(instructor_folder(folder) / "timings.json", json.dumps(res.timings, indent=1) + "\n")
    atomic_write(folder / "results.json", results_json_text(res, extra))
    md = feedback_markdown(res)
    atomic_write(folder / "feedback.md", md)
    atomic_write(folder / "feedback.html", markdown_to_html(md, f"{res.assignment}: {res.student}",
                                                            install_mathjax(out)))
    if executed is not None:
        import nbformat

        atomic_write(executed_copy(folder), nbformat.writes(executed))


def write_report(out: Path, res: StudentResult, executed=None) -> None:
    """The *report* stage: write ``out/<student>/`` for this grading. An executed notebook left
    by an earlier grading of the student is removed when this one ran nothing."""
    write_student(out, res, executed)
    if executed is None:
        executed_copy(out / res.student).unlink(missing_ok=True)


def _read_results(out: Path, assignment: str) -> list[dict]:
    rows = []
    for path in sorted(out.glob("*/results.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        extra = data.get("extra_data", {})
        if extra.get("assignment") == assignment:
            rows.append(extra)
    return rows


def read_typed(path: Path, items: list[tuple[str, str, float]]) -> dict[tuple[str, str], float]:
    """The written points an instructor typed into the gradebook ``path``, by ``(student,
    item)`` (nothing when it does not exist yet)."""
    typed: dict[tuple[str, str], float] = {}
    if not path.exists():
        return typed
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            for name, kind, _ in items:
                if kind == "written":
                    try:
                        typed[(row.get("student", ""), name)] = float(row.get(name, ""))
                    except (TypeError, ValueError):
                        pass
    return typed


def write_gradebook(out: Path, assignment: str, items: list[tuple[str, str, float]],
                    rows: list[dict] | None = None) -> Path:
    """Write ``out/gradebook.csv`` from ``rows`` (the ``extra_data`` of each student's
    results, as :func:`gradescope_json` makes it), by default read from every
    ``out/*/results.json`` of ``assignment``.

    ``items`` lists ``(item, kind, max_score)`` in notebook order. Written points an instructor
    already typed into an earlier gradebook are kept; a written answer left as the template's
    placeholder reads 0 until points are typed over it. ``late`` says ``late`` where the
    learning platform marked the submission late.
    """
    path = out / "gradebook.csv"
    typed = read_typed(path, items)
    auto_names = [n for n, k, _ in items if k == "auto"]
    written_names = [n for n, k, _ in items if k == "written"]
    max_score = sum(m for _, _, m in items)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["student", *auto_names, *written_names, "auto_score", "written_pending",
                     "total", "max_score", "late"])
    if rows is None:
        rows = _read_results(out, assignment)
    for extra in sorted(rows, key=lambda r: r["student"]):
        student = extra["student"]
        scores = {i["item"]: i["score"] for i in extra.get("items", [])}
        auto = [float(scores.get(n) or 0.0) for n in auto_names]
        written, pending, filled = [], 0.0, 0.0
        for name, kind, points in items:
            if kind != "written":
                continue
            value = typed.get((student, name), scores.get(name))
            if value is None:
                written.append(PENDING)
                pending += points
            else:
                written.append(_fmt(value))
                filled += value
        writer.writerow([student, *map(_fmt, auto), *written, _fmt(sum(auto)), _fmt(pending),
                         _fmt(sum(auto) + filled), _fmt(max_score),
                         "late" if extra.get("late") else ""])
    atomic_write(path, buf.getvalue())
    return path


def summary_table(results: list[StudentResult], skipped: Collection[str] = (),
                  note_width: int = 100,
                  typed: dict[tuple[str, str], float] | None = None) -> str:
    """A plain-text table: one row per student, points per item, total, time, and a note:
    the error that stopped grading (cut to ``note_width`` characters), or that the student
    was skipped (graded already, by an earlier run). ``typed``: written points typed into
    the gradebook (:func:`read_typed`), shown in place of ``pending``."""
    typed = typed or {}
    if not results:
        return "no submissions graded"
    names = [i.item for i in results[0].items]
    header = ["student", *names, "auto", "time (s)", "note"]

    def note(r: StudentResult) -> str:
        text = " ".join((r.error or "").split())
        if r.student in skipped:
            text = "skipped: graded by an earlier run" + (f"; {text}" if text else "")
        return text if len(text) <= note_width else text[:note_width - 3] + "..."

    def scores(r: StudentResult) -> list[str]:
        by_name = {i.item: i for i in r.items}
        return [_fmt(typed.get((r.student, n), by_name[n].score)) if n in by_name else "-"
                for n in names]

    rows = [[r.student, *scores(r), f"{_fmt(r.auto_score)}/{_fmt(r.auto_max)}",
             f"{r.timings.get('wall_s', 0):.1f}", note(r)] for r in results]
    maxes = ["max", *[_fmt(i.max_score) for i in results[0].items],
             _fmt(results[0].auto_max), "", ""]
    table = [header, maxes, *rows]
    widths = [max(len(str(row[c])) for row in table) for c in range(len(header))]
    fmt = lambda row: "  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip()  # noqa: E731
    return "\n".join([fmt(header), fmt(["-" * w for w in widths]), *map(fmt, table[1:])])
