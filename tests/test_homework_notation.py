"""The homework speaks the book's notation: the equations it cites and the names it gives symbols.

- Every equation label a homework notebook cites (``eq. (label)``, ``eqs. (a) and (b)``, the
  ``\\text{(label)}`` tag of a displayed equation) is the label of an equation of the book
  (``$$ (label)`` in book/*.md), so a student can look it up.
- No name bound in a homework's code (functions, classes, arguments, variables; hidden checks
  included) is a spelling that book/notation.md gives another identifier, a name the page gives a
  meaning the homework does not have (``y`` is the class label: the flow homework's dequantised data
  is ``y_deq``), or a name of ``dgm`` given to something else; and the LaTeX writes the book's
  ``\\epsilon``, never ``\\varepsilon``.
- The grader's reference models (dgm/homework.py) follow the same names: its flow (``Coupling``,
  ``FlowNet``, ...) is held to the flow homework's rules, the rest to the general ones.

Each rule is a function returning one message per breach, run on the reference solutions (the
homework notebooks are generated from them) and on planted slips.
"""

from __future__ import annotations

import ast
import json
import re

import pytest

from autograder.release import ASSIGNMENTS
from chapter_rules import ROOT, notation_identifiers

#: spellings of a symbol of book/notation.md -> the identifier the notation page gives it
NOTATION_ALIASES = {"log_det": "logdet", "log_s": "s", "shift": "t", "x_logits": "logits", "lg": "logits",
                    "ab": "alpha_bar", "abp": "alpha_bar", "abar": "alpha_bar", "lv": "logvar",
                    "log_var": "logvar", "epsilon": "eps", "sigma_sq": "sigma2", "x_0": "x0", "x_t": "xt",
                    "x_1": "x1"}
#: aliases that are the coupling layer's only in the flow homework (elsewhere a shift is a translation)
FLOW_ONLY = {"log_s", "shift"}
#: assignment -> names notation.md gives a meaning that assignment's code does not have -> what to use
MEANING_CLASHES = {"flow": {"y": "'y' is the class label on book/notation.md; dequantised data is 'y_deq'"}}
#: top-level definitions of dgm/homework.py that are the flow homework's (held to its rules)
FLOW_DEFINITION = re.compile(r"flow|coupling|bpd|checkerboard", re.I)
#: names of the dgm package that the homework must not give to something else -> what to use
DGM_NAMES = {"reparameterise": "reparameterize, as dgm.vae.ConvVAE spells it",
             "make_schedule": "another name: dgm.diffusion.make_schedule takes (kind, T, **kwargs)",
             "Schedule": "another name: dgm.diffusion.Schedule is a different class"}

_LABEL = r"\(([a-z][a-z0-9-]*)\)"
_CITE = re.compile(r"\beqs?\.\s*(?:#\s*)?" + _LABEL + r"((?:\s*(?:,|and|or)\s*(?:#\s*)?" + _LABEL + r")*)")
_TAG = re.compile(r"\\text\{" + _LABEL + r"\}")


def book_labels() -> set[str]:
    """The labels of the book's displayed equations: ``$$ (label)``."""
    return {label for path in (ROOT / "book").glob("*.md")
            for label in re.findall(r"\$\$\s*" + _LABEL, path.read_text(encoding="utf-8"))}


def cited_labels(text: str) -> list[str]:
    """Equation labels a text cites: eq. (a), eqs. (a), (b) and (c), \\text{(a)}."""
    found = []
    for m in _CITE.finditer(text):
        found.append(m.group(1))
        found += re.findall(_LABEL, m.group(2) or "")
    return found + _TAG.findall(text)


def label_errors(text: str, labels: set[str]) -> list[str]:
    return [f"eq. ({label}) is not an equation label of the book (grep book/*.md for '$$ (label)')"
            for label in cited_labels(text) if label not in labels]


def bound_names(source: str) -> set[str]:
    """Names a code cell binds: functions, classes, arguments, assignment and loop targets."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
    return names


def name_errors(source: str, assignment: str = "flow") -> list[str]:
    errors = []
    for name in sorted(bound_names(source)):
        if name in FLOW_ONLY and assignment != "flow":
            continue
        if name in NOTATION_ALIASES:
            errors.append(f"{name!r}: book/notation.md calls it {NOTATION_ALIASES[name]!r}")
        elif name in MEANING_CLASHES.get(assignment, {}):
            errors.append(f"{name!r}: {MEANING_CLASHES[assignment][name]}")
        elif name in DGM_NAMES:
            errors.append(f"{name!r}: use {DGM_NAMES[name]}")
    return errors


def latex_errors(text: str) -> list[str]:
    return ["\\varepsilon: the book writes \\epsilon"] * text.count("\\varepsilon")


def notebook_errors(name: str) -> list[str]:
    nb = json.loads((ROOT / "solutions" / f"{name}.ipynb").read_text(encoding="utf-8"))
    labels, errors = book_labels(), []
    for cell in nb["cells"]:
        text = "".join(cell["source"])
        found = label_errors(text, labels) + latex_errors(text)
        if cell["cell_type"] == "code":
            found += name_errors(text, name)
        errors += [f"{name}.ipynb, cell {cell.get('id')}: {e}" for e in found]
    return errors


def module_errors(source: str) -> list[str]:
    """name_errors of each top-level definition of a module like dgm/homework.py: the flow homework's
    (by name: flow, coupling, bpd, checkerboard) under the flow rules, the others under the general ones."""
    errors = []
    for node in ast.parse(source).body:
        name = getattr(node, "name", "")
        segment = ast.get_source_segment(source, node) or ""
        found = name_errors(segment, "flow" if FLOW_DEFINITION.search(name) else "other")
        errors += [f"{name or 'line ' + str(node.lineno)}: {e}" for e in found]
    return errors


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_homework_uses_the_books_labels_and_names(name):
    errors = notebook_errors(name)
    assert not errors, "\n".join(errors)


def test_the_homework_cites_equations_at_all():
    """Guards the label rule against a pattern that matches nothing."""
    nb = json.loads((ROOT / "solutions" / "flow.ipynb").read_text(encoding="utf-8"))
    assert "flows-affine-coupling" in cited_labels("".join("".join(c["source"]) for c in nb["cells"]))


def test_the_aliases_point_at_the_notation_page():
    identifiers = notation_identifiers()
    assert set(NOTATION_ALIASES.values()) <= identifiers, set(NOTATION_ALIASES.values()) - identifiers
    assert not set(NOTATION_ALIASES) & identifiers


def test_the_dgm_names_exist():
    from dgm import diffusion, vae
    assert callable(vae.ConvVAE.reparameterize) and callable(diffusion.make_schedule) and diffusion.Schedule


@pytest.mark.parametrize("text, expected", [
    ("One coupling, eq. (flow-coupling).", ["flow-coupling"]),
    ("x_t = (1 - t) x_0 + t x_1. \\qquad \\text{(fm-path)}", ["fm-path"]),
    ("against eqs. (fm-linear-path) and (fm-velocity) on random", ["fm-velocity"]),
    ("# computed with eq.\n# (ddpm-reverse)", []),  # ddpm-reverse is the book's, though it means p_theta
    ("per eq. (vae-loss) and eq. (vae-reparam)", []),
])
def test_planted_labels(text, expected):
    found = [e.split(")")[0].split("(")[1] for e in label_errors(text, book_labels())]
    assert found == expected


def test_planted_names_are_caught():
    code = ("def vae_loss(x, x_logits, mu, lv):\n    log_det = 0\n    return x\n"
            "def reparameterise(mu, logvar, eps=None):\n    log_s, shift = 1, 2\n")
    assert name_errors(code) == [
        "'log_det': book/notation.md calls it 'logdet'", "'log_s': book/notation.md calls it 's'",
        "'lv': book/notation.md calls it 'logvar'", "'reparameterise': use reparameterize, as dgm.vae.ConvVAE spells it",
        "'shift': book/notation.md calls it 't'", "'x_logits': book/notation.md calls it 'logits'"]
    assert name_errors("def vae_loss(x, logits, mu, logvar):\n    logdet = s.sum(1)\n") == []
    assert name_errors("shift = 3\n", "contrastive") == [] and name_errors("shift = 3\n", "flow")


def test_the_graders_reference_models_use_the_books_names():
    errors = module_errors((ROOT / "dgm" / "homework.py").read_text(encoding="utf-8"))
    assert not errors, "\n".join(errors)


def test_planted_names_in_the_reference_models_are_caught():
    coupling = ("class Coupling:\n    def forward(self, x):\n        log_s, shift = self.params(x)\n"
                "        log_det = log_s.sum(1)\n        return x, log_det\n")
    flow = "def bpd_of(flow, y):\n    return y\n"
    other = "def homework_augment(x, shift=3):\n    y = x\n    return y\n"
    assert module_errors(coupling + flow + other) == [
        "Coupling: 'log_det': book/notation.md calls it 'logdet'", "Coupling: 'log_s': book/notation.md calls it 's'",
        "Coupling: 'shift': book/notation.md calls it 't'",
        "bpd_of: 'y': 'y' is the class label on book/notation.md; dequantised data is 'y_deq'"]


def test_planted_dequantised_y_in_the_flow_homework_is_caught():
    code = "def flow_nll_bpd(flow, y):\n    z, logdet = flow(y)\n"
    assert name_errors(code, "flow") == ["'y': 'y' is the class label on book/notation.md; dequantised data is 'y_deq'"]
    assert name_errors(code.replace("y)", "y_deq)"), "flow") == []
    assert name_errors("for x, y in loader:\n    pass\n", "contrastive") == []  # a class label elsewhere


def test_planted_varepsilon_is_caught():
    assert latex_errors("$z = \\mu + \\sigma \\varepsilon$") and not latex_errors("$\\epsilon$")
