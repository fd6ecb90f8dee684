"""Sphinx extension of the course: a Colab-ready ``.ipynb`` copy of every chapter, and the links to it.

Chapters are MyST-markdown notebooks (book/*.md), which Colab cannot open. For each page that is
a notebook (it has a kernelspec) and does not say ``launch_buttons: false`` in its front matter,
this writes ``_sources/<page>.ipynb`` into the built site: the chapter converted by jupytext,
without outputs, after one setup cell (tagged ``remove-cell``) that installs the course package
from the repository when it runs in Colab and does nothing elsewhere. The theme's download menu
offers that file as ``.ipynb``, and the Colab launch button opens it from the branch the site is
published on (``dgm_site_branch``, default ``gh-pages``, where ``ghp-import -n -p -f
_build/html`` puts the site). The repository URL comes from ``repository.url`` of _config.yml,
the one place it is written. Pages that say ``launch_buttons: false`` get no launch buttons.
"""

from __future__ import annotations

from pathlib import Path

import jupytext
import nbformat

SETUP_ID = "colab-setup"
SETUP_SOURCE = '''\
# Colab only: install the course's helper package `dgm` from its repository. Elsewhere this does nothing.
import sys

if "google.colab" in sys.modules:
    import subprocess

    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "git+{url}"], check=True)'''


def colab_notebook(source: Path, repository_url: str) -> nbformat.NotebookNode:
    """The chapter ``source`` as a notebook without outputs, the Colab setup cell first."""
    nb = jupytext.read(source)
    nb.metadata.pop("jupytext", None)  # a plain notebook, not one paired with a text file
    setup = nbformat.v4.new_code_cell(SETUP_SOURCE.format(url=repository_url),
                                      metadata={"tags": ["remove-cell"]})
    nb.cells.insert(0, setup)
    for k, cell in enumerate(nb.cells):  # stable ids: the same chapter gives the same file
        cell.id = SETUP_ID if k == 0 else f"cell-{k}"
    return nb


def _launchable(app, pagename: str) -> bool:
    meta = app.env.metadata.get(pagename, {})
    return "kernelspec" in meta and str(meta.get("launch_buttons", "true")).lower() != "false"


def write_copy_and_link(app, pagename, templatename, context, doctree):
    """After the theme's buttons (priority 501): write the copy, point Colab at it."""
    buttons = context.get("header_buttons")
    if doctree is None or buttons is None or "kernelspec" not in app.env.metadata.get(pagename, {}):
        return
    if not _launchable(app, pagename):
        context["header_buttons"] = [b for b in buttons if b.get("label") != "launch-buttons"]
        return
    options = app.config.html_theme_options
    repository_url = options.get("repository_url", "").rstrip("/")
    if not repository_url:
        return
    target = Path(app.outdir) / "_sources" / f"{pagename}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(colab_notebook(Path(app.env.doc2path(pagename)), repository_url), target)
    context["ipynb_source"] = f"{pagename}.ipynb"
    org_repo = repository_url.split("github.com/")[-1]
    colab = options.get("launch_buttons", {}).get("colab_url", "").rstrip("/")
    url = f"{colab}/github/{org_repo}/blob/{app.config.dgm_site_branch}/_sources/{pagename}.ipynb"
    for group in buttons:
        for button in group.get("buttons", []):
            if group.get("label") == "launch-buttons" and button.get("text") == "Colab":
                button["url"] = url


def setup(app):
    app.add_config_value("dgm_site_branch", "gh-pages", "html")
    app.connect("html-page-context", write_copy_and_link, priority=502)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
