"""Rules every chapter of the book follows, as functions of a chapter's MyST text.

Each function returns a list of messages, one per breach, empty when the text follows the rule,
so that the tests can run it on the real chapters and on planted slips alike.

- Shape: a model chapter's second-level headings run Overview, The model, The derivation, The
  implementation, one or more Experiment sections, Summary, Exercises, and every labelled
  equation comes before the experiments (in the model, derivation or implementation section). Other chapters with code (the foundations
  and the comparison) open with an Overview and end with Summary and Exercises.
- Code from `dgm` is shown one way: a ``{literalinclude}`` of ``../dgm/*.py`` with ``:pyobject:``
  and ``:language: python``, highlighted and never executed.
- Figure names (``name:`` of a figure cell, ``:name:`` of a figure or glue directive, savefig
  files) start with ``fig-<prefix>-``, the prefix of the chapter's exercise labels.
- SymPy symbols that stand for a symbol of book/notation.md carry its code name.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
MODEL_PARTS = ("Generative models", "Representation learning and adversarial models")

#: the second-level headings of a model chapter, in order: (pattern, repeats allowed)
MODEL_SHAPE = [(r"Overview", False), (r"The model\b", False), (r"The derivation\b", False),
               (r"The implementation\b", False), (r"Experiment\b", True), (r"Summary", False),
               (r"Exercises", False)]
EQUATION_SECTIONS = (r"The model\b", r"The derivation\b", r"The implementation\b")


def toc_parts() -> dict[str, list[str]]:
    """Caption of each part of _toc.yml -> its chapters' names (``book/vae`` -> ``vae``)."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    return {part.get("caption", ""): [Path(c["file"]).name for c in part["chapters"]]
            for part in toc["parts"]}


def model_chapters() -> list[str]:
    parts = toc_parts()
    return [name for caption in MODEL_PARTS for name in parts[caption]]


def chapter_text(name: str) -> str:
    return (ROOT / "book" / f"{name}.md").read_text(encoding="utf-8")


def markdown_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) of the text outside code fences (code cells, literal blocks)."""
    out, fence = [], None
    for number, line in enumerate(text.splitlines(), 1):
        match = re.match(r"^(`{3,})", line)
        if fence is None and match:
            fence = match.group(1)
        elif fence is not None and re.match(rf"^{fence}`*\s*$", line):
            fence = None
        elif fence is None:
            out.append((number, line))
    return out


def sections(text: str) -> list[tuple[str, str]]:
    """(second-level heading, the text under it up to the next one); the text before the first
    such heading is under the title, ''."""
    lines = text.splitlines()
    starts = [(n, line[3:].strip()) for n, line in markdown_lines(text) if line.startswith("## ")]
    bounds = [(0, "")] + starts + [(len(lines) + 1, None)]
    return [(title, "\n".join(lines[start:end - 1]))
            for (start, title), (end, _) in zip(bounds, bounds[1:])]


def shape_errors(text: str) -> list[str]:
    """Breaches of the model-chapter shape (headings in order, equations where they belong)."""
    titles = [title for title, _ in sections(text)[1:]]
    errors, k = [], 0
    for pattern, repeats in MODEL_SHAPE:
        if k < len(titles) and re.match(pattern, titles[k]):
            k += 1
            while repeats and k < len(titles) and re.match(pattern, titles[k]):
                k += 1
        else:
            found = titles[k] if k < len(titles) else "the end of the chapter"
            errors.append(f"expected a section matching {pattern!r}, found {found!r}; "
                          f"the order is {[p for p, _ in MODEL_SHAPE]}")
            break
    else:
        if k < len(titles):
            errors.append(f"unexpected sections after Exercises: {titles[k:]}")
    for title, body in sections(text):
        for label in re.findall(r"^\$\$ \(([\w-]+)\)", body, re.M):
            if not any(re.match(p, title) for p in EQUATION_SECTIONS):
                errors.append(f"equation ({label}) is stated under {title!r}: equations belong to "
                              "the model, the derivation or the implementation, before the experiments")
    return errors


def frame_errors(text: str) -> list[str]:
    """Breaches of the shape of a chapter outside the model parts: Overview first, Summary and
    Exercises last."""
    titles = [title for title, _ in sections(text)[1:]]
    if titles[:1] != ["Overview"] or titles[-2:] != ["Summary", "Exercises"]:
        return [f"sections should open with 'Overview' and end with 'Summary', 'Exercises': {titles}"]
    return []


CODE_SLIPS = {
    r"\binspect\.getsource\b|^import inspect\b|^from inspect import": "prints source with inspect",
    r"from IPython\.display import[^\n]*\bCode\b|\bCode\(": "shows source with IPython's Code",
    r"\.__doc__\b|\.split\(\s*['\"]{1}\"\"\"": "cuts source or docstrings as strings",
}


def code_display_errors(text: str) -> list[str]:
    """Ways of showing `dgm` code other than a highlighted literalinclude of one object."""
    errors = [f"{why}: use {{literalinclude}} with :pyobject: and :language: python"
              for pattern, why in CODE_SLIPS.items() if re.search(pattern, text, re.M)]
    for block in re.findall(r"^```\{literalinclude\}([^\n]*\n(?::[^\n]*\n)*)", text, re.M):
        if not re.match(r" \.\./dgm/\w+\.py\n", block):
            errors.append(f"literalinclude of something other than ../dgm/*.py: {block.splitlines()[0]!r}")
        if not re.search(r"^:pyobject: [\w.]+$", block, re.M):
            errors.append(f"literalinclude without :pyobject: {block.splitlines()[0]!r}")
        if not re.search(r"^:language: python$", block, re.M):
            errors.append(f"literalinclude without :language: python: {block.splitlines()[0]!r}")
    return errors


def chapter_prefix(text: str) -> str | None:
    """The prefix of the chapter's exercise labels (``vae`` for ``vae-ex-sigma``)."""
    prefixes = set(re.findall(r"^:label: ([a-z0-9]+)-", text, re.M))
    if len(prefixes) > 1:
        raise ValueError(f"exercise labels with several prefixes {sorted(prefixes)}: use one")
    return prefixes.pop() if prefixes else None


def figure_names(text: str) -> list[str]:
    """Names given to figures: a figure cell's ``name:``, ``:name:`` of figure and glue:figure
    directives, and files written by savefig."""
    names = re.findall(r"^mystnb:\n(?:  .*\n)*?  figure:\n(?:    .*\n)*?    name: (\S+)", text, re.M)
    names += re.findall(r"^[`:]{3,}\{(?:figure|glue:figure)\}[^\n]*\n(?::[^\n]*\n)*?:name: (\S+)", text, re.M)
    names += [Path(f).stem for f in re.findall(r"savefig\(\s*['\"]([^'\"]+)['\"]", text)]
    return names


def figure_name_errors(text: str) -> list[str]:
    names = figure_names(text)
    if not names:
        return []
    prefix = chapter_prefix(text)
    if prefix is None:
        return [f"figures {names} but no exercise label to take the chapter's prefix from"]
    return [f"figure {name!r} should be named fig-{prefix}-..." for name in names
            if not name.startswith(f"fig-{prefix}-")]


def notation_identifiers() -> set[str]:
    """The code names of book/notation.md's index: backquoted plain identifiers."""
    text = (ROOT / "book" / "notation.md").read_text(encoding="utf-8")
    table = [line for line in text.splitlines() if line.startswith("| $")]
    return {name for line in table for name in re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", line.rsplit("|", 2)[1])}


#: spellings in SymPy cells of symbols that notation.md names otherwise
SYMPY_ALIASES = {"epsilon": "eps", "epsilon_theta": "eps_model", "epsilonhat": "eps_hat",
                 "abar": "alpha_bar", "alphabar": "alpha_bar", "betatilde": "beta_tilde",
                 "mutilde": "mu_tilde", "x_0": "x0", "x_t": "xt", "x_1": "x1", "xhat_0": "x0_hat",
                 "xhat_1": "x1_hat", "sigma_sq": "sigma2", "log_var": "logvar", "SNR": "snr"}


def sympy_symbols(text: str) -> list[tuple[str | None, str]]:
    """(Python name or None, SymPy name) of the symbols a chapter's code makes with
    sp.symbols / sp.Symbol / sp.Function / ss.Normal; the Python name is None where a
    range ("x1:4") or an expression makes the pairing unclear."""
    found = []
    call = r"(?:sp\.symbols|sp\.Symbol|sp\.Function|ss\.Normal)\(\s*['\"]([^'\"]+)['\"]"
    for line in text.splitlines():
        calls = list(re.finditer(call, line))
        if not calls:
            continue
        assign = re.match(r"^\s*([A-Za-z_][\w, ]*?)\s*=\s*(.*)$", line)
        targets = [t.strip() for t in assign.group(1).split(",")] if assign else []
        names = [n for c in calls for n in c.group(1).replace(",", " ").split()]
        rhs_is_calls = assign is not None and re.match(call, assign.group(2)) is not None
        paired = rhs_is_calls and ":" not in "".join(names) and (
            (len(calls) == 1 and len(targets) == len(names))
            or (len(calls) == len(targets) and all(len(c.group(1).split()) == 1 for c in calls)))
        found += [(t if paired else None, n) for t, n in zip(targets if paired else [None] * len(names), names)]
    return found


def sympy_name_errors(text: str, identifiers: set[str]) -> list[str]:
    """SymPy symbols spelt otherwise than notation.md, or bound to another Python name."""
    errors = []
    for python, name in sympy_symbols(text):
        for alias, ident in sorted(SYMPY_ALIASES.items(), key=lambda kv: -len(kv[0])):
            if name == alias or name.startswith(alias + "_") or (name.startswith(alias) and alias.startswith("x_")):
                errors.append(f"SymPy symbol {name!r}: notation.md calls it {ident!r}")
                break
        else:
            stem = next((i for i in sorted(identifiers, key=len, reverse=True)
                         if len(i) > 1 and (name == i or name.startswith(i + "_"))), None)
            if stem and python is not None and python != name and not python.startswith(name + "_"):
                errors.append(f"SymPy symbol {name!r} is bound to {python!r}: name it {name!r} "
                              f"(or {name}_s where a tensor has that name)")
    return errors
