"""Read the homework notebook format: cell roles, items, points and solution regions.

The contract between the homework and the grader, in short: a homework source notebook
``solutions/<name>.ipynb`` marks the cells that matter for grading with BOTH a tag and
``metadata.dgm``:

``graded``     code the student writes; ``{"item", "role", "points"}``; holds solution regions.
``selfcheck``  the visible check right after a graded cell; ``{"item", "role"}``.
``hidden``     an instructor-only check; ``{"item", "role", "points", "after"}``.
``written``    a markdown answer graded by hand; ``{"item", "role", "points"}``.

A solution region is the lines from ``### BEGIN SOLUTION`` (optionally followed by ``: hint``)
to ``### END SOLUTION``. Regions may appear in ``graded`` code cells and ``written`` markdown
cells only. Everything wrong with a notebook raises :class:`NotebookFormatError`, whose message
names the notebook and the cell id.

The release command (:mod:`autograder.release`) and the grader both read notebooks through
this module, so they agree on what a cell is.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import nbformat

from autograder.checks import CheckFormatError, split_check

Role = Literal["graded", "selfcheck", "hidden", "written"]
ROLES: tuple[str, ...] = get_args(Role)

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
#: A marker line: optional indentation, the marker, and for BEGIN an optional ``: hint``.
_BEGIN_RE = re.compile(r"^(?P<indent>[ \t]*)### BEGIN SOLUTION(?:\s*:\s*(?P<hint>.*?))?\s*$")
_END_RE = re.compile(r"^[ \t]*### END SOLUTION\s*$")
#: Anything that looks like a marker, even a misspelt or misplaced one.
_ANY_MARKER_RE = re.compile(r"#+\s*(BEGIN|END)\s+SOLUT", re.IGNORECASE)

#: Keys of ``metadata.dgm`` each role must carry.
REQUIRED_KEYS: dict[str, tuple[str, ...]] = {
    "graded": ("item", "role", "points"),
    "selfcheck": ("item", "role"),
    "hidden": ("item", "role", "points", "after"),
    "written": ("item", "role", "points"),
}
#: Cell type each role must have.
CELL_TYPES: dict[str, str] = {
    "graded": "code", "selfcheck": "code", "hidden": "code", "written": "markdown",
}


class NotebookFormatError(ValueError):
    """A homework notebook breaks the format; the message names the notebook and the cell."""

    def __init__(self, notebook: str | Path, cell_id: str | None, message: str):
        where = f"{notebook}, cell {cell_id!r}" if cell_id else str(notebook)
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class SolutionRegion:
    """One ``### BEGIN SOLUTION`` ... ``### END SOLUTION`` block of a cell's source.

    ``begin`` and ``end`` are the 0-based line numbers of the two marker lines; ``indent`` is
    the BEGIN line's leading whitespace; ``hint`` is the text after ``BEGIN SOLUTION:``, if any.
    """

    begin: int
    end: int
    indent: str
    hint: str | None


@dataclass(frozen=True)
class Item:
    """One graded item of a notebook: its cells by role and its points."""

    item: str
    graded: tuple[str, ...]      # ids of graded code cells
    selfchecks: tuple[str, ...]  # ids of self-check cells
    hidden: tuple[str, ...]      # ids of hidden check cells
    written: tuple[str, ...]     # ids of written-answer cells
    hidden_points: int           # what the autograder can award (sum over hidden cells)
    written_points: int          # what is graded by hand

    @property
    def max_score(self) -> int:
        return self.hidden_points + self.written_points


def read_notebook(path: str | Path) -> nbformat.NotebookNode:
    """Read a notebook as nbformat 4 without converting or validating it. Text that is not
    valid Unicode (a lone surrogate, which JSON can spell as ``\\ud800``) is replaced by ``?``,
    so that no file written from it later (feedback, gradebook) fails to encode."""
    return _valid_text(nbformat.read(str(path), as_version=4))


def _valid_text(value):
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-8", "replace").decode("utf-8")
        return value
    if isinstance(value, dict):
        for key in list(value):
            value[key] = _valid_text(value[key])
        return value
    if isinstance(value, list):
        return [_valid_text(v) for v in value]
    return value


def source_text(cell) -> str:
    """A cell's source as one string (nbformat allows a list of lines on disk)."""
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def cell_id(cell) -> str | None:
    return cell.get("id")


def cell_meta(cell) -> dict:
    """The cell's ``metadata.dgm`` dict (empty when absent)."""
    meta = cell.get("metadata", {}).get("dgm", {})
    return dict(meta) if isinstance(meta, dict) else {}


def cell_tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def cell_role(cell, notebook: str | Path = "<notebook>") -> str | None:
    """The cell's role, or None for an ordinary cell.

    The tag and ``metadata.dgm.role`` must agree; a role given only one way, two role tags,
    or an unknown role raise :class:`NotebookFormatError`.
    """
    cid = cell_id(cell)
    tag_roles = [t for t in cell_tags(cell) if t in ROLES]
    meta = cell_meta(cell)
    meta_role = meta.get("role")
    if meta_role is not None and meta_role not in ROLES:
        raise NotebookFormatError(
            notebook, cid, f"unknown role {meta_role!r} in metadata.dgm; choose one of "
            f"{', '.join(ROLES)}")
    if len(tag_roles) > 1:
        raise NotebookFormatError(notebook, cid, f"cell has several role tags {tag_roles}")
    tag_role = tag_roles[0] if tag_roles else None
    if tag_role != meta_role:
        raise NotebookFormatError(
            notebook, cid, f"tag says role {tag_role!r} but metadata.dgm.role says "
            f"{meta_role!r}; a graded cell needs both, and they must agree")
    return tag_role


def iter_cells(nb, role: str | None = None, notebook: str | Path = "<notebook>",
               ) -> Iterator[tuple[int, object]]:
    """Yield ``(index, cell)`` for every cell, or only those of ``role`` (``"ordinary"``
    selects cells without a role)."""
    if role is not None and role not in ROLES + ("ordinary",):
        raise ValueError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}, ordinary")
    for index, cell in enumerate(nb.cells):
        r = cell_role(cell, notebook)
        if role is None or r == role or (role == "ordinary" and r is None):
            yield index, cell


def parse_regions(source: str, notebook: str | Path = "<notebook>",
                  cell: str | None = None) -> list[SolutionRegion]:
    """Find the solution regions of one cell's source.

    Raises :class:`NotebookFormatError` for a region left open, a BEGIN inside a region
    (nesting), an END without BEGIN, or an empty region.
    """
    regions: list[SolutionRegion] = []
    open_at: tuple[int, str, str | None] | None = None
    for n, line in enumerate(source.split("\n")):
        begin, end = _BEGIN_RE.match(line), _END_RE.match(line)
        if begin:
            if open_at is not None:
                raise NotebookFormatError(
                    notebook, cell, f"nested solution region: BEGIN SOLUTION on line {n + 1} "
                    f"inside the region opened on line {open_at[0] + 1}")
            open_at = (n, begin["indent"], begin["hint"] or None)
        elif end:
            if open_at is None:
                raise NotebookFormatError(
                    notebook, cell, f"END SOLUTION on line {n + 1} without a BEGIN SOLUTION")
            if n == open_at[0] + 1:
                raise NotebookFormatError(
                    notebook, cell, f"empty solution region on lines {n}-{n + 1}")
            regions.append(SolutionRegion(open_at[0], n, open_at[1], open_at[2]))
            open_at = None
        elif _ANY_MARKER_RE.search(line):
            raise NotebookFormatError(
                notebook, cell, f"malformed solution marker on line {n + 1}: {line.strip()!r}; "
                f"write {BEGIN!r} (optionally ': hint') or {END!r} on a line of its own")
    if open_at is not None:
        raise NotebookFormatError(
            notebook, cell, f"unterminated solution region opened on line {open_at[0] + 1}: "
            f"add {END!r}")
    return regions


def has_marker(source: str) -> bool:
    return bool(_ANY_MARKER_RE.search(source))


def validate(nb, notebook: str | Path = "<notebook>") -> dict[str, Item]:
    """Check the whole notebook and return its items in order of first appearance.

    Checks: unique non-empty cell ids; tag/metadata agreement; the keys each role needs;
    the cell type of each role; markers only in graded code cells and written markdown cells;
    well-formed regions; every graded and written cell holds at least one region; a hidden
    cell's ``after`` names an existing cell; points are non-negative integers.
    """
    ids: dict[str, int] = {}
    for index, cell in enumerate(nb.cells):
        cid = cell_id(cell)
        if not cid:
            raise NotebookFormatError(notebook, None, f"cell {index} has no id (nbformat >= 4.5)")
        if cid in ids:
            raise NotebookFormatError(notebook, cid, f"duplicate cell id (cells {ids[cid]} "
                                      f"and {index})")
        ids[cid] = index

    found: dict[str, dict[str, list]] = {}
    for index, cell in enumerate(nb.cells):
        cid = cell_id(cell)
        role = cell_role(cell, notebook)
        src = source_text(cell)
        ctype = cell.get("cell_type")
        if role is None:
            if has_marker(src):
                kind = "a raw cell" if ctype == "raw" else f"a {ctype} cell that is not " + (
                    "graded" if ctype == "code" else "written")
                raise NotebookFormatError(
                    notebook, cid, f"solution marker in {kind}; markers belong in graded code "
                    "cells and written markdown cells only")
            continue
        if ctype != CELL_TYPES[role]:
            raise NotebookFormatError(notebook, cid, f"a {role} cell must be a "
                                      f"{CELL_TYPES[role]} cell, not {ctype}")
        meta = cell_meta(cell)
        missing = [k for k in REQUIRED_KEYS[role] if k not in meta]
        if missing:
            raise NotebookFormatError(notebook, cid, f"metadata.dgm of a {role} cell lacks "
                                      f"{missing}")
        if "points" in REQUIRED_KEYS[role]:
            pts = meta["points"]
            if not isinstance(pts, int) or isinstance(pts, bool) or pts < 0:
                raise NotebookFormatError(notebook, cid, f"points must be a non-negative "
                                          f"integer, got {pts!r}")
        if role == "hidden":
            after = meta["after"]
            if after not in ids:
                raise NotebookFormatError(notebook, cid, f"'after' names {after!r}, which is "
                                          "not a cell id of this notebook")
            try:
                split_check(src)
            except CheckFormatError as exc:
                raise NotebookFormatError(notebook, cid, str(exc)) from None
        if role in ("graded", "written"):
            if not parse_regions(src, notebook, cid):
                raise NotebookFormatError(notebook, cid, f"a {role} cell needs at least one "
                                          f"{BEGIN!r} ... {END!r} region")
        elif has_marker(src):
            raise NotebookFormatError(notebook, cid, f"solution marker in a {role} cell; "
                                      "markers belong in graded and written cells only")
        entry = found.setdefault(meta["item"], {r: [] for r in ROLES})
        entry[role].append((cid, meta.get("points", 0)))

    items: dict[str, Item] = {}
    for name, entry in found.items():
        items[name] = Item(
            item=name,
            graded=tuple(c for c, _ in entry["graded"]),
            selfchecks=tuple(c for c, _ in entry["selfcheck"]),
            hidden=tuple(c for c, _ in entry["hidden"]),
            written=tuple(c for c, _ in entry["written"]),
            hidden_points=sum(p for _, p in entry["hidden"]),
            written_points=sum(p for _, p in entry["written"]),
        )
    return items


def total_points(items: dict[str, Item]) -> int:
    return sum(item.max_score for item in items.values())


_HEADING_RE = re.compile(r"^#{2,6}\s+(?P<title>.+?)\s*#*\s*$")
_BOLD_LEAD_RE = re.compile(r"^\s*\*\*(?P<title>[^*]+?)\*\*")
_POINTS_RE = re.compile(r"\s*\(\s*\d+(?:\.\d+)?\s+points?\s*\)\s*\.?\s*$|\.\s*$", re.IGNORECASE)


def _clean_title(text: str) -> str:
    return _POINTS_RE.sub("", text.strip()).strip()


def item_titles(nb, items: dict[str, Item]) -> dict[str, str]:
    """A title per item, for students' feedback: the last Markdown heading (level 2 or
    deeper) before the item's first cell (``## Exercise 2: the schedule (3 points)`` ->
    ``Exercise 2: the schedule``), or, for a written item, the bold lead of its cell
    (``**Question 1 (3 points).**`` -> ``Question 1``). Items without either keep their id. A written part of an item that also
    has hidden checks is keyed ``"<item> (written)"`` as in the gradebook."""
    titles: dict[str, str] = {}
    heading = None
    for cell in nb.cells:
        if cell.get("cell_type") == "markdown":
            meta = cell_meta(cell)
            text = source_text(cell)
            if meta.get("role") == "written":
                item = items.get(meta.get("item"))
                lead = _BOLD_LEAD_RE.match(text)
                key = meta["item"] if item is None or not item.hidden else f"{meta['item']} (written)"
                if key not in titles:
                    titles[key] = _clean_title(lead["title"]) if lead else (heading or key)
                continue
            for line in text.splitlines():
                found = _HEADING_RE.match(line)
                if found and not has_marker(line):
                    heading = _clean_title(found["title"])
            continue
        meta = cell_meta(cell)
        name = meta.get("item")
        if name in items and name not in titles and meta.get("role") in ("graded", "hidden",
                                                                         "selfcheck"):
            titles[name] = heading or name
    return titles
