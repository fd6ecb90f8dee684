"""No hidden check carries text the student's code chose into the feedback.

The student's code that a hidden check calls can read the check's frame (its locals, the names and
constants of its code) and put them into an exception's message, a string it returns, or a class
name. So a check's kernel side records an exception only through
:func:`autograder.observe.shown_exception` (never ``{exc}``, ``str(exc)``, ``repr(exc)``,
``exc.args``), and its verdict never applies ``str``/``repr`` (or ``!r``/``!s``) to an observed
value: :func:`autograder.verdict_helpers.describe` shows shapes, dtypes and numbers instead. A
static scan of every hidden check, the scan shown catching each slip, and the two helpers.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from autograder.checks import VERDICT_MARK
from autograder.observe import shown_exception
from autograder.verdict_helpers import describe, raised

ROOT = Path(__file__).resolve().parents[1]


def _hidden_checks():
    for path in sorted((ROOT / "solutions").glob("*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            source = "".join(cell["source"])
            if "hidden" in " ".join(cell.get("metadata", {}).get("tags", [])) and VERDICT_MARK in source:
                yield f"{path.stem}/{cell.get('id')}", source


def _mentions(node, names) -> bool:
    return any(isinstance(n, ast.Name) and n.id in names for n in ast.walk(node))


def kernel_slips(kernel: str) -> list[str]:
    """Places where the kernel side formats an exception's message into a value."""
    tree = ast.parse(kernel)
    names = {h.name for h in ast.walk(tree) if isinstance(h, ast.ExceptHandler) and h.name}
    names |= {a.arg for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) for a in f.args.args
              if a.arg in ("exc", "e", "err", "error")}
    slips = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FormattedValue) and _mentions(node.value, names) and not (
                isinstance(node.value, ast.Call) and ast.unparse(node.value.func) == "shown_exception"):
            slips.append(ast.unparse(node.value))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("str", "repr")
              and any(_mentions(a, names) for a in node.args)):
            slips.append(ast.unparse(node))
        elif isinstance(node, ast.Attribute) and node.attr == "args" and _mentions(node.value, names):
            slips.append(ast.unparse(node))
    return slips


def verdict_slips(verdict: str) -> list[str]:
    """Places where the verdict applies str()/repr() (or !r/!s) to a value the kernel observed."""
    tree = ast.parse(verdict)
    tainted = {"obs"}
    for _ in range(5):  # names assigned from an observed value, to a fixpoint
        for node in ast.walk(tree):
            targets = (node.targets if isinstance(node, ast.Assign) else [node.target]
                       if isinstance(node, (ast.For, ast.AnnAssign, ast.AugAssign)) else [])
            value = node.iter if isinstance(node, ast.For) else node.value if targets else None
            if value is not None and _mentions(value, tainted):
                tainted |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    shown = [n for m in ast.walk(tree) for n in ast.walk(m.msg if isinstance(m, ast.Assert) and m.msg else
                                                           m.exc if isinstance(m, ast.Raise) and m.exc else
                                                           m if isinstance(m, ast.JoinedStr) else ast.Pass())]
    slips = []
    for node in shown:  # what messages show
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("str", "repr")
                and any(_mentions(a, tainted) for a in node.args)):
            slips.append(ast.unparse(node))
        elif isinstance(node, ast.FormattedValue) and node.conversion in (ord("r"), ord("s")) and _mentions(
                node.value, tainted):
            slips.append(ast.unparse(node.value))
    return slips


def _parts(source):
    kernel, verdict = source.split(VERDICT_MARK, 1)
    return kernel, verdict


CHECKS = list(_hidden_checks())


def test_there_are_hidden_checks_to_scan():
    assert len(CHECKS) > 30 and any("train-hidden" in name for name, _ in CHECKS)


@pytest.mark.parametrize("name,source", CHECKS, ids=[n for n, _ in CHECKS])
def test_no_hidden_check_echoes_text_the_student_chose(name, source):
    kernel, verdict = _parts(source)
    assert not kernel_slips(kernel), f"{name}: the kernel side records an exception's message: {kernel_slips(kernel)}"
    assert not verdict_slips(verdict), f"{name}: the verdict echoes an observed value as text: {verdict_slips(verdict)}"


@pytest.mark.parametrize("slip", [
    'try:\n    w = f(x)\nexcept Exception as exc:\n    w = f"{type(exc).__name__}: {exc}"[:300]\n',
    'try:\n    w = f(x)\nexcept Exception as err:\n    w = str(err)\n',
    'try:\n    w = f(x)\nexcept Exception as exc:\n    w = {"error": repr(exc)}\n',
    'try:\n    w = f(x)\nexcept Exception as exc:\n    w = exc.args\n',
    'def _failed(exc):\n    return f"{exc}"\n',
])
def test_the_scan_catches_a_kernel_side_that_records_a_message(slip):
    assert kernel_slips(slip)
    assert not kernel_slips(slip.replace("exc.args", "shown_exception(exc)").replace("str(err)", "shown_exception(err)")
                            .replace('f"{type(exc).__name__}: {exc}"[:300]', "shown_exception(exc)")
                            .replace("repr(exc)", "shown_exception(exc)").replace('f"{exc}"', "shown_exception(exc)"))


@pytest.mark.parametrize("slip", [
    'w = obs["weights"]\nassert False, f"got {str(w)[:200]}"\n',
    'assert False, f"got {str(obs[\'loss\'])[:80]}"\n',
    'v = obs["recon"]\nassert False, f"got {repr(v)}"\n',
    'for k, v in obs["state"].items():\n    assert False, f"got {v!r}"\n',
])
def test_the_scan_catches_a_verdict_that_echoes_an_observed_value(slip):
    assert verdict_slips(slip)
    clean = slip.replace("str(w)[:200]", "describe(w)").replace("str(obs['loss'])[:80]", "describe(obs['loss'])")
    assert not verdict_slips(clean.replace("repr(v)", "describe(v)").replace("{v!r}", "{describe(v)}"))


def test_shown_exception_names_python_and_torch_classes_only():
    class Leak_tiny_images(AttributeError):
        pass

    class Disguised(ValueError):
        __module__ = "builtins"

    Disguised.__name__ = "ValueError tiny_images"
    assert shown_exception(KeyError("tiny_images")) == "KeyError"
    assert shown_exception(torch.OutOfMemoryError("x")) == "OutOfMemoryError"
    for exc in (Leak_tiny_images("tiny_images"), Disguised("tiny_images")):
        text = shown_exception(exc)
        assert "tiny_images" not in text and "notebook defined" in text and "Error)" in text
    with pytest.raises(RuntimeError) as info:
        torch.zeros(2) @ torch.zeros(3)
    assert shown_exception(info.value) == "RuntimeError"


def test_the_verdict_echoes_only_what_shown_exception_can_write():
    class Mine(TypeError):
        pass

    assert raised("NotImplementedError") == "NotImplementedError"  # the exercise is not done
    # any other type is chosen by code that saw the check (red team round 6: 6 bits per name)
    for text in ("ValueError", "OutOfMemoryError", shown_exception(Mine()), "AttributeError: N=torch,tiny_images",
                 "tiny_images", "an exception of a class the notebook defined (derived from tiny_images)", 3):
        assert raised(text) == "an exception"


def test_describe_shows_shapes_and_numbers_and_no_text():
    assert describe(torch.zeros(2, 3)) == "a tensor of shape (2, 3) and dtype float32"
    assert describe(np.zeros(4, dtype=np.int64)) == "an array of shape (4,) and dtype int64"
    assert describe(1.5) == "between 1 and 10" and describe(3) == "3" and describe(float("nan")) == "nan"
    assert describe(True) == "True" and describe(None) == "None"
    assert describe("tiny_images") == "a string"
    assert describe([1, 2.5]) == "a list [1, between 1 and 10]"  # numbers by their decade
    assert describe(["tiny_images"]) == "a list of 1 items" and describe({"tiny_images": 1}) == "a dict of 1 entries"
    assert "tiny_images" not in describe(object())
