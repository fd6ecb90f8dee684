"""Chapters show code one way, name figures with one prefix, and use notation.md's names in SymPy.

The rules are in tests/chapter_rules.py; each is run on every chapter with code and, to show that
it can fail, on a planted slip.
"""

from __future__ import annotations

import pytest
from chapter_rules import (chapter_prefix, chapter_text, code_display_errors, figure_name_errors,
                           figure_names, model_chapters, notation_identifiers, sympy_name_errors)

CHAPTERS = model_chapters() + ["probability", "evaluation", "sequence_models", "comparison"]
INCLUDE = "```{literalinclude} ../dgm/vae.py\n:pyobject: vae_loss\n:language: python\n```\n"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_shows_dgm_code_only_as_a_highlighted_literalinclude(chapter):
    assert code_display_errors(chapter_text(chapter)) == []


@pytest.mark.parametrize("slip", [
    "```{code-cell} ipython3\nimport inspect\nprint(inspect.getsource(vae_loss))\n```\n",
    "```{code-cell} ipython3\nfrom IPython.display import Code\nCode(src, language='python')\n```\n",
    "```{code-cell} ipython3\nprint(src.split('\"\"\"')[-1])\n```\n",
    "```{code-cell} ipython3\nprint(vae_loss.__doc__)\n```\n",
    INCLUDE.replace(":language: python\n", ""),
    INCLUDE.replace(":pyobject: vae_loss\n", ":lines: 1-20\n"),
])
def test_another_way_of_showing_code_is_caught(slip):
    assert code_display_errors(INCLUDE) == []
    assert code_display_errors(INCLUDE + slip)


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_names_its_figures_with_its_own_prefix(chapter):
    assert figure_name_errors(chapter_text(chapter)) == []


def test_the_prefixes_differ_between_chapters():
    prefixes = [chapter_prefix(chapter_text(c)) for c in CHAPTERS]
    assert None not in prefixes and len(set(prefixes)) == len(prefixes)


def test_figure_names_are_found_in_cells_directives_and_savefig():
    text = chapter_text("vae")
    assert "fig-vae-beta" in figure_names(text)
    planted = (":::{exercise}\n:label: vae-ex-a\n:::\n"
               "```{code-cell} ipython3\n---\nmystnb:\n  figure:\n    name: vae-samples\n---\nx\n```\n"
               "```{glue:figure} key\n:name: fig-ddpm-curve\n```\n"
               "```{code-cell} ipython3\nfig.savefig('prior.png')\n```\n")
    assert figure_names(planted) == ["vae-samples", "fig-ddpm-curve", "prior"]
    assert len(figure_name_errors(planted)) == 3


def test_notation_identifiers_are_read_from_the_notation_page():
    assert {"alpha_bar", "beta_tilde", "sigma2", "eps", "eps_model", "x0", "xt", "logvar"} <= notation_identifiers()


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_sympy_cells_use_the_notation_pages_names(chapter):
    assert sympy_name_errors(chapter_text(chapter), notation_identifiers()) == []


@pytest.mark.parametrize("slip, fragment", [
    ('ab = sp.symbols("alpha_bar", positive=True)', "bound to 'ab'"),
    ('eps_s = ss.Normal("epsilon", 0, 1)', "'epsilon': notation.md calls it 'eps'"),
    ('xt_s, x0_s = sp.symbols("x_t x_0", real=True)', "'x_t': notation.md calls it 'xt'"),
    ('bt, s2 = sp.symbols("beta_tilde sigma2", positive=True)', "bound to 'bt'"),
])
def test_a_sympy_name_off_the_notation_page_is_caught(slip, fragment):
    good = 'alpha_bar, beta_tilde_s = sp.symbols("alpha_bar beta_tilde", positive=True)'
    assert sympy_name_errors(good, notation_identifiers()) == []
    errors = sympy_name_errors(slip, notation_identifiers())
    assert any(fragment in e for e in errors), errors
