"""Generate the student notebooks ``notebooks/<name>.ipynb`` from ``solutions/<name>.ipynb``.

``python -m autograder release`` rewrites every student notebook; ``--check`` writes nothing
and exits non-zero, naming the stale files, when ``notebooks/`` differs from what release would
write. The student version is the solution with:

* a first markdown cell saying it is generated and must not be edited;
* every solution region of a graded cell replaced by ``# FIXME: <hint>`` and
  ``raise NotImplementedError`` at the region's indentation (signature, docstring and shape
  assertions are outside the region and stay);
* every solution region of a written cell replaced by ``YOUR ANSWER HERE``;
* hidden check cells dropped;
* outputs and execution counts cleared.

The output is a pure function of the source, so running release twice changes nothing.
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Sequence
from pathlib import Path

import nbformat

from autograder.notebook_format import (
    NotebookFormatError,
    cell_id,
    cell_role,
    parse_regions,
    read_notebook,
    source_text,
    validate,
)

ASSIGNMENTS: tuple[str, ...] = ("vae", "ddpm", "flow", "contrastive", "transformer",
                               "flow_matching")
ROOT = Path(__file__).resolve().parent.parent
NOTE_ID = "generated-note"
ANSWER_PLACEHOLDER = "YOUR ANSWER HERE"


def note_text(name: str) -> str:
    return (f"Generated from solutions/{name}.ipynb by `python -m autograder release`: "
            "do not edit.")


def strip_regions(source: str, kind: str, notebook: str, cid: str | None) -> str:
    """Replace each solution region of ``source`` by its student placeholder.

    ``kind="code"``: ``# FIXME: <hint or 'implement this'>`` then ``raise NotImplementedError``;
    ``kind="markdown"``: ``YOUR ANSWER HERE``.
    """
    lines = source.split("\n")
    out: list[str] = []
    pos = 0
    for region in parse_regions(source, notebook, cid):
        out.extend(lines[pos:region.begin])
        if kind == "code":
            out.append(f"{region.indent}# FIXME: {region.hint or 'implement this'}")
            out.append(f"{region.indent}raise NotImplementedError")
        else:
            out.append(ANSWER_PLACEHOLDER)
        pos = region.end + 1
    out.extend(lines[pos:])
    return "\n".join(out)


def _clean(cell) -> None:
    if cell.cell_type == "code":
        cell.outputs = []
        cell.execution_count = None


def make_student(nb, name: str, notebook: str | None = None):
    """The student notebook generated from the solution notebook ``nb``."""
    where = notebook or f"solutions/{name}.ipynb"
    validate(nb, where)
    out = nbformat.v4.new_notebook()
    out.metadata = copy.deepcopy(nb.metadata)
    out.metadata.pop("widgets", None)
    out.metadata["dgm"] = {"assignment": name, "generated_from": f"solutions/{name}.ipynb"}
    out.nbformat, out.nbformat_minor = 4, max(5, nb.get("nbformat_minor", 5))
    note = nbformat.v4.new_markdown_cell(note_text(name))
    note.id = NOTE_ID
    out.cells.append(note)
    for cell in nb.cells:
        if cell_id(cell) == NOTE_ID:
            raise NotebookFormatError(where, NOTE_ID, "this cell id is reserved for the note "
                                      "that release adds")
        role = cell_role(cell, where)
        if role == "hidden":
            continue
        new = copy.deepcopy(cell)
        _clean(new)
        if role in ("graded", "written"):
            new.source = strip_regions(source_text(cell), cell.cell_type, where, cell_id(cell))
        else:
            new.source = source_text(cell)
        out.cells.append(new)
    return out


def render(nb) -> str:
    """The notebook as the exact text release writes (stable key order, final newline)."""
    text = nbformat.writes(nb, version=4)
    return text if text.endswith("\n") else text + "\n"


def release(names: Sequence[str] = ASSIGNMENTS, root: Path = ROOT, check: bool = False,
            ) -> list[Path]:
    """Write (or with ``check``, only compare) the student notebooks; return the paths that
    changed (or would change). Every source is read and checked before anything is written."""
    planned: list[tuple[Path, str]] = []
    for name in names:
        src = root / "solutions" / f"{name}.ipynb"
        if not src.is_file():
            raise FileNotFoundError(f"{src} does not exist; the solution is the source of truth")
        text = render(make_student(read_notebook(src), name, f"solutions/{name}.ipynb"))
        planned.append((root / "notebooks" / f"{name}.ipynb", text))
    changed: list[Path] = []
    for dst, text in planned:
        old = dst.read_text(encoding="utf-8") if dst.is_file() else None
        if old != text:
            changed.append(dst)
            if not check:
                dst.parent.mkdir(parents=True, exist_ok=True)
                dst.write_text(text, encoding="utf-8")
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m autograder release",
        description="Generate notebooks/<name>.ipynb from solutions/<name>.ipynb.")
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"assignments to release (default: all of {', '.join(ASSIGNMENTS)})")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 and name the stale files if notebooks/ is "
                             "out of date")
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root")
    args = parser.parse_args(argv)
    names = tuple(args.names) or ASSIGNMENTS
    unknown = [n for n in names if n not in ASSIGNMENTS]
    if unknown:
        parser.error(f"unknown assignment(s) {', '.join(unknown)}; choose from "
                     f"{', '.join(ASSIGNMENTS)}")
    try:
        changed = release(names, args.root, check=args.check)
    except (NotebookFormatError, FileNotFoundError) as exc:
        print(f"release failed: {exc}", file=sys.stderr)
        return 2
    rel = [str(p.relative_to(args.root)) if p.is_relative_to(args.root) else str(p)
           for p in changed]
    if args.check:
        if rel:
            print("stale student notebooks (run `python -m autograder release`): "
                  + ", ".join(rel), file=sys.stderr)
            return 1
        print(f"notebooks/ is up to date ({len(names)} notebooks)")
        return 0
    print(f"wrote {', '.join(rel)}" if rel else f"notebooks/ already up to date "
          f"({len(names)} notebooks)")
    return 0
