"""Merge a student's notebook into the instructor's source: the notebook the grader runs.

The merged notebook is the source notebook ``solutions/<name>.ipynb`` with

* each graded cell's code taken from the student's notebook. The student's cell is found by
  cell id; failing that by ``metadata.dgm`` item and role (the tag); failing that (Colab and
  VS Code may drop ids, tags and metadata) by content and position: the names the cell
  defines, its similarity to the released cell and where it sits. Each fallback is noted so
  the feedback can say so. A graded cell that cannot be found keeps the released ``FIXME``;
* each written answer taken from the student (collected for manual grading, never run);
* hidden check cells inserted right after the cell named in their ``after``, each reduced to
  what the kernel runs (setup and student sections, :mod:`autograder.checks`): verdicts never
  reach the kernel or the disk;
* before every graded and hidden cell, a small cell tagged ``grader`` that resets the seeds
  of ``random``, NumPy and torch (each only if already imported, so it costs nothing), with a
  seed derived from the next cell's id: a cell sees the same random numbers whatever ran
  before it, and grading twice gives the same scores;
* no outputs, and the source's kernel metadata (the student's own is ignored).

Self-check and ordinary cells come from the source. Cells a student added are not run; if one
defines a function or class, the feedback says so (helpers belong inside the graded cell).
"""

from __future__ import annotations

import ast
import copy
import difflib
import re
import threading
import zlib
from dataclasses import dataclass, field

import nbformat

from autograder import messages
from autograder.checks import split_check
from autograder.notebook_format import (
    Item,
    cell_id,
    cell_meta,
    cell_role,
    cell_tags,
    source_text,
    validate,
)
from autograder.release import strip_regions

GRADER_TAG = "grader"
#: A content match needs at least this score (names defined in common + text similarity).
MATCH_THRESHOLD = 0.6

SEED_CELL = '''\
# Added by the grader: reset the seeds before the next graded cell.
def __dgm_reset_seeds(seed):
    import random, sys
    random.seed(seed)
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed(seed)
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(seed)
__dgm_reset_seeds({seed})
del __dgm_reset_seeds'''


@dataclass(frozen=True)
class Match:
    """How the student's cell for one graded or written source cell was found."""

    item: str
    how: str                    # "id", "metadata", "content" or "missing"
    student_index: int | None   # position in the student's notebook


@dataclass(frozen=True)
class MergeResult:
    notebook: nbformat.NotebookNode
    items: dict[str, Item]
    written: dict[str, str]            # written cell id -> the student's markdown
    notes: dict[str, list[str]] = field(default_factory=dict)  # item ("" = general) -> notes

    def note(self, item: str, text: str) -> None:
        self.notes.setdefault(item, []).append(text)


def seed_for(cid: str) -> int:
    """The seed the grader sets before cell ``cid``: a stable hash of its id."""
    return zlib.crc32(cid.encode()) % 2**31


#: ``ast.parse`` is not thread-safe in CPython 3.11 (python/cpython#106905: two threads parsing at
#: once raise "SystemError: AST constructor recursion depth mismatch"); submissions are merged in
#: a thread pool, so parses take turns.
_PARSE_LOCK = threading.Lock()


def defined_names(source: str) -> set[str]:
    """Top-level names a cell binds (functions, classes, assignments); regex if it won't parse."""
    try:
        with _PARSE_LOCK:
            tree = ast.parse(source)
    except SyntaxError:
        found = re.findall(r"^(?:def|class)\s+(\w+)|^(\w+)\s*(?::[^=]*)?=(?!=)", source, re.M)
        return {a or b for a, b in found}
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
    return names


def _student_role(cell) -> str | None:
    try:
        return cell_role(cell)
    except ValueError:  # tag and metadata disagree after an edit: trust either
        tags = [t for t in cell_tags(cell) if t in ("graded", "written")]
        return cell_meta(cell).get("role") or (tags[0] if tags else None)


def _similarity(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def _content_score(src_cell, released: str, cell, rel_src: float, rel_student: float) -> float:
    score = 0.0
    if src_cell.cell_type == "code":
        want = defined_names(source_text(src_cell))
        have = defined_names(source_text(cell))
        if want and have:
            score += len(want & have) / len(want | have)
    score += _similarity(released, source_text(cell))
    score += 0.2 * (1.0 - abs(rel_src - rel_student))
    return score


def match_cells(source, student, notebook: str = "<source>") -> dict[str, Match]:
    """Find, for every graded and written cell of ``source``, the student's cell."""
    targets = [(i, c) for i, c in enumerate(source.cells)
               if cell_role(c, notebook) in ("graded", "written")]
    used: set[int] = set()
    matches: dict[str, Match] = {}

    by_id: dict[str, list[int]] = {}
    for j, cell in enumerate(student.cells):
        if cell_id(cell):
            by_id.setdefault(cell_id(cell), []).append(j)
    for _, src in targets:
        cid = cell_id(src)
        hits = [j for j in by_id.get(cid, []) if student.cells[j].cell_type == src.cell_type]
        if hits:
            matches[cid] = Match(cell_meta(src)["item"], "id", hits[-1])
            used.update(hits)

    for _, src in targets:
        cid = cell_id(src)
        if cid in matches:
            continue
        meta = cell_meta(src)
        hits = [j for j, c in enumerate(student.cells) if j not in used
                and c.cell_type == src.cell_type and cell_meta(c).get("item") == meta["item"]
                and _student_role(c) == meta["role"]]
        if len(hits) == 1:
            matches[cid] = Match(meta["item"], "metadata", hits[0])
            used.add(hits[0])

    n_src, n_stu = max(len(source.cells) - 1, 1), max(len(student.cells) - 1, 1)
    for i, src in targets:
        cid = cell_id(src)
        if cid in matches:
            continue
        released = strip_regions(source_text(src), src.cell_type, notebook, cid)
        best, best_score = None, MATCH_THRESHOLD
        for j, cell in enumerate(student.cells):
            if j in used or cell.cell_type != src.cell_type:
                continue
            score = _content_score(src, released, cell, i / n_src, j / n_stu)
            if score > best_score:
                best, best_score = j, score
        meta = cell_meta(src)
        if best is None:
            matches[cid] = Match(meta["item"], "missing", None)
        else:
            matches[cid] = Match(meta["item"], "content", best)
            used.add(best)
    return matches


def _seed_cell(next_id: str):
    cell = nbformat.v4.new_code_cell(SEED_CELL.format(seed=seed_for(next_id)))
    cell.id = f"grader-seed-{next_id}"[:64]
    cell.metadata = {"tags": [GRADER_TAG], "dgm_grader": {"kind": "seed", "before": next_id}}
    return cell


def merge(source, student, notebook: str = "<source>") -> MergeResult:
    """The notebook to execute for ``student`` (see the module docstring)."""
    items = validate(source, notebook)
    matches = match_cells(source, student, notebook)
    merged = nbformat.v4.new_notebook()
    merged.metadata = copy.deepcopy(source.metadata)
    merged.nbformat, merged.nbformat_minor = 4, 5
    result = MergeResult(merged, items, {})

    hidden_after: dict[str, list] = {}
    for cell in source.cells:
        if cell_role(cell, notebook) == "hidden":
            hidden_after.setdefault(cell_meta(cell)["after"], []).append(cell)

    def emit(cell, role):
        if role in ("graded", "hidden"):
            merged.cells.append(_seed_cell(cell_id(cell)))
        merged.cells.append(cell)
        for hidden in hidden_after.get(cell_id(cell), []):
            kernel_cell = _clean(copy.deepcopy(hidden))
            kernel_cell.source = split_check(source_text(hidden)).kernel_source
            emit(kernel_cell, "hidden")

    for cell in source.cells:
        role = cell_role(cell, notebook)
        if role == "hidden":
            continue
        new = _clean(copy.deepcopy(cell))
        cid = cell_id(cell)
        if role in ("graded", "written"):
            match = matches[cid]
            item = match.item
            if match.student_index is None:
                new.source = strip_regions(source_text(cell), cell.cell_type, notebook, cid)
                result.note(item, messages.cell_not_found(cid, role))
            else:
                new.source = source_text(student.cells[match.student_index])
                if match.how == "content":
                    result.note(item, messages.matched_by_content(cid, match.student_index))
                elif match.how == "metadata":
                    result.note(item, messages.matched_by_tag(cid))
            if role == "written":
                result.written[cid] = new.source
        emit(new, role)

    used = {m.student_index for m in matches.values()}
    extra = [j + 1 for j, c in enumerate(student.cells) if j not in used
             and c.cell_type == "code" and _is_new_definition(source, source_text(c))]
    if extra:
        result.note("", messages.added_definitions(extra))
    return result


def _is_new_definition(source, text: str) -> bool:
    names = {n for n in defined_names(text)
             if re.search(rf"^\s*(?:def|class)\s+{re.escape(n)}\b", text, re.M)}
    if not names:
        return False
    known = set().union(*(defined_names(source_text(c)) for c in source.cells
                          if c.cell_type == "code"))
    return bool(names - known)


def _clean(cell):
    if cell.cell_type == "code":
        cell.outputs = []
        cell.execution_count = None
    return cell
