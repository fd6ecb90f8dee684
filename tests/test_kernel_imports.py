"""A graded notebook cannot borrow the course's own answers.

The course package holds reference code for what the homework asks students to write (the
attention of dgm.sequence, the flow-matching path of dgm.flow_matching, the coupling layer of
dgm.homework, ...). A grading kernel gets its own copy of the packages in which only the modules
of ``autograder.sandbox.KERNEL_MODULES`` are real; every other one raises ImportError saying why,
and the real packages are not in the sandbox at all. These tests check the copy, that the
homework itself needs nothing outside the allow-list, and, through the real grader, that a
submission which imports or reads the answers loses those items and keeps the others.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from autograder import grade, sandbox
from autograder.checks import STUDENT_MARK, VERDICT_MARK
from autograder.release import ASSIGNMENTS, render
from autograder.report import executed_copy
from benchmarks.mutations import reference_submission
from edited_submissions import auto_tests

ROOT = Path(__file__).resolve().parents[1]
IMPORT_RE = re.compile(r"^\s*(?:from\s+(dgm|autograder)(\.\w+)?\s+import|import\s+(dgm|autograder)(\.\w+)?)",
                       re.M)
needs_bwrap = pytest.mark.skipif(bool(sandbox.bwrap_problem()), reason="bubblewrap cannot run here: "
                                 "`make test` installs it")


def _kernel_python(tree: Path, code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(tree)!r})\n" + code],
                          capture_output=True, text=True, timeout=120, cwd=tree)


def test_the_kernels_copy_denies_every_module_not_listed(tmp_path):
    tree = sandbox.write_kernel_packages(tmp_path / "kernel")
    for folder in sandbox.package_dirs():
        for module in sorted(folder.glob("*.py")):
            copy = (tree / folder.name / module.name).read_text()
            if module.stem in sandbox.KERNEL_MODULES[folder.name]:
                assert copy == module.read_text(), module
            else:
                assert copy.startswith("raise ImportError(") and "def " not in copy, module
    assert not list(tree.rglob("__pycache__")) and not list(tree.rglob("*.pyc"))
    assert all(p.stat().st_mode & 0o004 for p in tree.rglob("*"))  # a kernel's user reads it


def test_a_denied_import_says_why_and_what_may_be_imported(tmp_path):
    tree = sandbox.write_kernel_packages(tmp_path / "kernel")
    done = _kernel_python(tree, "from dgm.sequence import attention")
    assert done.returncode != 0
    assert "ImportError: dgm.sequence cannot be imported while a homework is graded" in done.stderr
    assert "dgm.handout" in done.stderr and "dgm.data" in done.stderr


def test_every_allowed_module_imports_without_a_denied_one(tmp_path):
    """An allowed module that imported a denied one would break every graded notebook."""
    tree = sandbox.write_kernel_packages(tmp_path / "kernel")
    names = [f"{pkg}.{m}" for pkg, mods in sandbox.KERNEL_MODULES.items() for m in mods if m != "__init__"]
    done = _kernel_python(tree, "import importlib\n" + "".join(f"importlib.import_module({n!r})\n" for n in names))
    assert done.returncode == 0, done.stderr[-2000:]


def _kernel_side(cell) -> str:
    """The part of a cell that a grading kernel runs: all of it, or a hidden check's setup and
    student sections (its verdict runs in the grader)."""
    text = cell.source
    if "hidden" in cell.get("metadata", {}).get("tags", []) and VERDICT_MARK in text:
        text = text.split(VERDICT_MARK)[0]
    return text


@pytest.mark.parametrize("name", sorted(ASSIGNMENTS))
def test_the_homework_imports_only_what_a_grading_kernel_may(name):
    nb = nbformat.read(str(ROOT / "solutions" / f"{name}.ipynb"), as_version=4)
    bad = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for match in IMPORT_RE.finditer(_kernel_side(cell)):
            package, module = match.group(1) or match.group(3), (match.group(2) or match.group(4) or ".__init__")
            if module[1:] not in sandbox.KERNEL_MODULES[package]:
                bad.append(f"{cell.get('id')}: {match.group(0).strip()}")
    assert not bad, f"{name}: the kernel cannot import these (autograder.sandbox.KERNEL_MODULES): {bad}"


def test_the_scan_above_catches_a_denied_import():
    cell = nbformat.v4.new_code_cell("import torch\nfrom dgm.sequence import attention\n" + STUDENT_MARK + "\n"
                                     + VERDICT_MARK + "\nfrom dgm.homework import FlowNet\n",
                                     metadata={"tags": ["hidden"]})
    found = [m.group(0).strip() for m in IMPORT_RE.finditer(_kernel_side(cell))]
    assert found == ["from dgm.sequence import"]  # the verdict's import runs in the grader: allowed


# --- through the real grader -----------------------------------------------------------------

#: Looks for the real course packages from inside the kernel: the editable install's finder names
#: their folder; the repository's own path is tried too. Prints what it could read.
PROBE = f"""import glob as _glob, re as _re, sys as _sys
_places = {{{str(ROOT / 'dgm')!r}}}
for _finder in _glob.glob(_sys.prefix + "/lib/python3*/site-packages/__editable__*finder.py"):
    try:
        _places |= set(_re.findall(r"'(/[^']+/dgm)'", open(_finder).read()))
    except OSError:
        pass
_read = []
for _place in sorted(_places):
    for _name in ("sequence.py", "flow_matching.py", "homework.py"):
        try:
            _read.append(len(open(_place + "/" + _name).read()))
        except OSError:
            pass
print("PROBE read", len(_read), "of", 3 * len(_places), "answer files")
"""

BORROW = {"ar-attention": PROBE + "from dgm.sequence import attention\n",
          "ar-pe": "from dgm.sequence import positional_encoding\n"}


@pytest.fixture(scope="module")
def graded(tmp_path_factory) -> Path:
    nb = reference_submission("transformer")
    for cell in nb.cells:
        if cell.get("id") in BORROW:
            cell.source = BORROW[cell.id]
    subs = tmp_path_factory.mktemp("borrow-subs")
    (subs / "borrowed.ipynb").write_text(render(nb))
    out = tmp_path_factory.mktemp("borrow-out")
    code = grade.main(["--assignment", "transformer", str(subs), "--out", str(out), "--profile", "smoke",
                       "--device", "cpu", "--no-progress"])
    assert code == 0
    return out


@needs_bwrap
def test_borrowed_answers_lose_their_items_and_only_those(graded):
    tests = {t["name"]: t for t in auto_tests(graded, "borrowed")}
    for item in ("ar-attention", "ar-pe"):
        assert tests[item]["score"] == 0, tests[item]
        told = tests[item]["output"]  # which module is told before the first hidden check only
        assert ("cannot be imported while a homework is graded" in told
                or "imported a module the grader refuses" in told), told
    kept = [n for n in ("ar-mask", "ar-loss", "ar-sample") if n in tests]
    assert kept and all(tests[n]["score"] == tests[n]["max_score"] for n in kept), tests


@needs_bwrap
def test_the_kernel_cannot_read_the_real_packages(graded):
    executed = nbformat.read(str(executed_copy(graded / "borrowed")), as_version=4)
    text = "\n".join(o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", []))
    line = next(ln for ln in text.splitlines() if ln.startswith("PROBE read"))
    assert line.startswith("PROBE read 0 of "), line
    assert int(line.split(" of ")[1].split()[0]) >= 3, line  # it did know where to look


# --- no reference answer in what the kernel runs (attack S1) ----------------------------------------

REFERENCE_NAME = re.compile(r"^_*ref", re.I)
#: assignments whose hidden checks still define reference answers kernel-side: assignment -> those names
#: (empty: every homework's checks use stand-ins; an entry makes the gap visible as a strict xfail)
KNOWN_REFERENCES: dict[str, set[str]] = {}


def kernel_references(cell) -> list[str]:
    """Reference answers a hidden check's setup or student section puts into the student's kernel: a
    function, class, lambda or import alias named ref..., _ref..., Ref..., _Ref..., or an import of a
    module the kernel may not import (both sections run there, and later student code can reach them)."""
    if "hidden" not in cell.get("metadata", {}).get("tags", []):
        return []
    found = []
    for node in ast.walk(ast.parse(_kernel_side(cell))):
        names = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names = [node.name]
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Lambda):
            names = [n.id for t in node.targets for n in ast.walk(t) if isinstance(n, ast.Name)]
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.asname or a.name for a in node.names]
            modules = [node.module] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            for module in filter(None, modules):
                package, _, rest = module.partition(".")
                if package in sandbox.KERNEL_MODULES and (rest or "__init__").split(".")[0] not in sandbox.KERNEL_MODULES[package]:
                    found.append(f"import of {module}")
        found += [n for n in names if REFERENCE_NAME.match(n)]
    return found


def _references(name: str) -> dict[str, list[str]]:
    nb = nbformat.read(str(ROOT / "solutions" / f"{name}.ipynb"), as_version=4)
    return {cell.get("id"): refs for cell in nb.cells if cell.cell_type == "code" and (refs := kernel_references(cell))}


@pytest.mark.parametrize("name", sorted(ASSIGNMENTS))
def test_no_hidden_check_puts_a_reference_answer_into_the_kernel(name, request):
    found = _references(name)
    if name in KNOWN_REFERENCES:
        remaining = {n for refs in found.values() for n in refs}
        assert remaining <= KNOWN_REFERENCES[name], f"{name}: new kernel-side references {remaining - KNOWN_REFERENCES[name]}"
        request.applymarker(pytest.mark.xfail(strict=True, reason=f"{name}: reference answers still defined "
                                              f"kernel-side: {sorted(KNOWN_REFERENCES[name])}"))
    assert not found, (f"{name}: hidden checks define reference answers where the student's kernel runs (use a "
                       f"stand-in that answers no item, and replay it in the verdict): {found}")


@pytest.mark.parametrize("planted, expected", [
    ("def _ref_attention(q, k, v):\n    return q\n", ["_ref_attention"]),
    ("class RefMHA:\n    pass\n", ["RefMHA"]),
    ("ref_cfm = lambda model, x1: 0\n", ["ref_cfm"]),
    ("from dgm.sequence import attention\n", ["import of dgm.sequence"]),
    ("import dgm.flow_matching as fm\n", ["import of dgm.flow_matching"]),
    ("from torch.nn.functional import scaled_dot_product_attention as _Ref\n", ["_Ref"]),
    ("def _standin(q):\n    return q\nfrom dgm.data import load_dataset\n", []),
])
def test_the_reference_scan_catches_a_planted_slip(planted, expected):
    cell = nbformat.v4.new_code_cell(planted + STUDENT_MARK + "\nobs = 1\n" + VERDICT_MARK
                                     + "\nfrom dgm.sequence import attention as ref_attention\n"
                                       "def _ref(x):\n    return x\n",
                                     metadata={"tags": ["hidden"]})
    assert kernel_references(cell) == expected  # the verdict's references run in the grader: allowed
