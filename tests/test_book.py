"""The whole book builds, executed, in the smoke profile, with zero Sphinx warnings.

This is the test that runs every chapter, and so every SymPy check in the chapters: a failed
assertion in a cell fails the build (nb_execution_raise_on_error). The build goes to
_build/smoke/ so it never disturbs the reader's _build/html.
"""

from __future__ import annotations

import re

import pytest
import yaml

from conftest import build_smoke_book
from dgm.build import ROOT

pytestmark = pytest.mark.book


def _toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [entry["file"] for entry in part["chapters"]]
    return files


@pytest.fixture(scope="module")
def first_build(smoke_book):
    return smoke_book


@pytest.fixture(scope="module")
def second_build(first_build):
    return build_smoke_book()


def test_smoke_build_succeeds_with_zero_warnings(first_build):
    # Sphinx reports "path: WARNING: message"; kernels' own log lines ("[IPKernelApp] WARNING |") are not build warnings.
    warnings = [line for line in first_build.log.splitlines() if re.search(r"\b(WARNING|ERROR|CRITICAL):", line)]
    assert first_build.returncode == 0, "book build failed:\n" + first_build.log[-4000:]
    assert warnings == []


def test_every_toc_entry_has_an_html_page(first_build):
    missing = [f for f in _toc_files() if not (first_build.html_dir / f"{f}.html").is_file()]
    assert missing == []


def test_mathjax_is_served_from_the_site_not_a_cdn(first_build):
    html = first_build.html_dir
    assert (html / "_static" / "mathjax" / "tex-chtml.js").is_file()
    for page in html.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        assert not re.search(r"https?://[^\"']*(mathjax|jsdelivr|unpkg|cdnjs)", text, re.I), page
        if "math notranslate" in text:
            assert "_static/mathjax/tex-chtml.js" in text, page


def test_executed_chapters_contain_their_figures(first_build):
    page = (first_build.html_dir / "book" / "probability.html").read_text(encoding="utf-8")
    assert page.count("<img") >= 4 and "Fig. 2.1" in page


def test_a_no_change_rebuild_executes_nothing(second_build):
    assert second_build.returncode == 0
    assert "Executing notebook" not in second_build.log
    assert re.search(r"0 added, 0 changed, 0 removed", second_build.log)
