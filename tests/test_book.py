"""The whole book builds, executed, in the smoke profile, with zero Sphinx warnings.

This is the test that runs every chapter, and so every SymPy check in the chapters: a failed
assertion in a cell fails the build (nb_execution_raise_on_error). The build goes to
_build/smoke/ so it never disturbs the reader's _build/html.
"""

from __future__ import annotations

import json
import re

import jupytext
import nbformat
import pytest
import yaml
from bs4 import BeautifulSoup

from autograder.release import ASSIGNMENTS
from conftest import build_smoke_book
from dgm.build import ROOT

pytestmark = pytest.mark.book


def _toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [entry["file"] for entry in part["chapters"]]
    return files


def _front_matter(doc: str) -> dict:
    text = (ROOT / f"{doc}.md").read_text(encoding="utf-8")
    return yaml.safe_load(text.split("---")[1]) if text.startswith("---") else {}


def _chapters() -> list[str]:
    """Pages that are notebooks a reader can run: every toc entry with a kernel, unless its
    front matter turns the launch buttons off (the homework and instructor pages)."""
    return [f for f in _toc_files()
            if "kernelspec" in _front_matter(f) and _front_matter(f).get("launch_buttons", True)]


CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())


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


def test_every_chapter_offers_an_ipynb_download_and_a_colab_link_to_it(first_build):
    chapters = _chapters()
    assert len(chapters) >= 9 and {"book/vae", "book/diffusion", "book/flows"} <= set(chapters)
    colab = CONFIG["launch_buttons"]["colab_url"].rstrip("/")
    org_repo = CONFIG["repository"]["url"].rstrip("/").split("github.com/")[1]
    for doc in chapters:
        soup = BeautifulSoup((first_build.html_dir / f"{doc}.html").read_text(encoding="utf-8"),
                             "html.parser")
        hrefs = [a["href"] for a in soup.find_all("a", href=True)]
        local = [h for h in hrefs if not re.match(r"https?://", h)]
        download = [h for h in local if h.endswith(f"_sources/{doc}.ipynb")]
        assert download, f"{doc}: no .ipynb download"
        assert any(h.endswith(f"_sources/{doc}.md") for h in local), f"{doc}: no .md download"
        copy = (first_build.html_dir / f"{doc}.html").parent / download[0]
        assert copy.resolve().is_file(), f"{doc}: the .ipynb download is missing from the site"
        colab_links = [h for h in hrefs if h.startswith(colab + "/github/")]
        assert colab_links == [f"{colab}/github/{org_repo}/blob/{CONFIG['sphinx']['config']['dgm_site_branch']}"
                               f"/_sources/{doc}.ipynb"], doc


def test_colab_copy_is_the_chapter_after_a_guarded_install_from_the_configured_repository(first_build):
    doc = "book/diffusion"
    nb = nbformat.read(first_build.html_dir / "_sources" / f"{doc}.ipynb", as_version=4)
    nbformat.validate(nb)
    setup, first = nb.cells[0], nb.cells[1]
    assert setup.cell_type == "code" and "remove-cell" in setup.metadata["tags"]
    assert 'if "google.colab" in sys.modules:' in setup.source
    assert f"git+{CONFIG['repository']['url'].rstrip('/')}\"" in setup.source
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
    source_cells = [c.source for c in jupytext.read(ROOT / f"{doc}.md").cells]
    assert [c.source for c in nb.cells[1:]] == source_cells and first.source == source_cells[0]


def test_each_chapter_opens_with_goals_and_prerequisites_and_ends_with_summary_and_exercises():
    for doc in _chapters():
        text = (ROOT / f"{doc}.md").read_text(encoding="utf-8")
        overview = text.split("```{code-cell}")[0]
        assert "**Learning goals.**" in overview or "*Learning goals.*" in overview, doc
        assert "Prerequisites." in overview, doc
        headings = re.findall(r"^## (.+)$", text, re.M)
        assert headings[-2:] == ["Summary", "Exercises"], (doc, headings[-2:])


def test_every_exercise_has_a_solution_in_a_dropdown():
    for doc in _chapters():
        text = (ROOT / f"{doc}.md").read_text(encoding="utf-8")
        exercises = re.findall(r"^[:`]{3,}\{exercise\}\s*\n:label: (\S+)", text, re.M)
        solutions = re.findall(r"^[:`]{3,}\{solution\} (\S+)\s*\n:class: dropdown", text, re.M)
        assert len(exercises) >= 2, doc
        assert sorted(exercises) == sorted(solutions), doc


def test_toc_has_the_notation_index_bibliography_homework_and_instructor_pages(first_build):
    files = _toc_files()
    for page in ("book/notation", "book/bibliography", "book/homework", "book/instructor"):
        assert page in files
    bibliography = (first_build.html_dir / "book" / "bibliography.html").read_text(encoding="utf-8")
    assert bibliography.count('class="citation"') >= 10  # one per reference cited


def test_homework_page_states_each_assignments_points_as_the_solutions_do(first_build):
    from autograder.notebook_format import read_notebook, total_points, validate

    page = (first_build.html_dir / "book" / "homework.html").read_text(encoding="utf-8")
    text = BeautifulSoup(page, "html.parser").get_text(" ")
    for name in ASSIGNMENTS:
        points = total_points(validate(read_notebook(ROOT / "solutions" / f"{name}.ipynb"), name))
        assert f"{name} {points}" in text, name


def test_homework_page_links_each_notebook_for_download_colab_and_binder(first_build):
    page = first_build.html_dir / "book" / "homework.html"
    hrefs = [a["href"] for a in BeautifulSoup(page.read_text(encoding="utf-8"), "html.parser")
             .find_all("a", href=True)]
    for name in ASSIGNMENTS:
        download = [h for h in hrefs if h.endswith(f"/{name}.ipynb") and "_downloads" in h]
        assert download and (page.parent / download[0]).resolve().is_file(), name
        nb = json.loads((page.parent / download[0]).resolve().read_text())
        assert nb == json.loads((ROOT / "notebooks" / f"{name}.ipynb").read_text()), name
        assert any(h.startswith(CONFIG["launch_buttons"]["colab_url"]) and h.endswith(f"notebooks/{name}.ipynb")
                   for h in hrefs), name
        assert any(h.startswith(CONFIG["launch_buttons"]["binderhub_url"]) and h.endswith(f"notebooks/{name}.ipynb")
                   for h in hrefs), name


def test_binder_opens_the_markdown_chapters_as_notebooks(tmp_path):
    """repo2docker runs postBuild: it must make MyST markdown open in the notebook editor."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    post = ROOT / "postBuild"
    assert post.stat().st_mode & 0o111, "postBuild must be executable"
    text = post.read_text()
    assert "jupytext-config set-default-viewer" in text and "markdown" in text
    cmd = next(line for line in text.splitlines() if line.startswith("jupytext-config"))
    home = tmp_path
    subprocess.run(cmd.split(), check=True, env={**os.environ, "HOME": str(home)},
                   cwd=ROOT, executable=str(Path(sys.executable).parent / "jupytext-config"))
    overrides = json.loads((home / ".jupyter" / "labconfig" /
                            "default_setting_overrides.json").read_text())
    viewers = overrides["@jupyterlab/docmanager-extension:plugin"]["defaultViewers"]
    assert viewers["markdown"] == viewers["myst"] == "Jupytext Notebook"
