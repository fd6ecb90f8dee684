"""The built site works for a reader: every page checked in headless Chromium, network off.

benchmarks/sitecheck.py does the checking (and records its figures when run as a script); these
tests state each promise separately. Chromium is Debian's package (`make test` installs it).
"""

from __future__ import annotations

import pytest

from benchmarks.sitecheck import (CHROMIUM_ARGS, check_site, count_search_boxes, find_chromium,
                                  raw_markdown_tables, raw_tex)
from conftest import smoke_lock

pytestmark = pytest.mark.book


@pytest.fixture(scope="module")
def report(smoke_book):
    assert smoke_book.returncode == 0, "the smoke build failed:\n" + smoke_book.log[-3000:]
    assert find_chromium(), "Chromium is missing: run `make test` (installs it) or `apt-get install chromium`"
    with smoke_lock():
        return check_site(smoke_book.html_dir, smoke_book.html_dir.parent / "screenshots")


def test_every_chapter_page_was_opened(report, smoke_book):
    assert any(p.endswith("probability.html") for p in report.pages)
    assert len(report.pages) >= 4


def test_pages_log_no_console_errors(report):
    assert report.console_errors == []


def test_pages_request_nothing_outside_the_site(report):
    assert report.external_requests == []


def test_all_mathematics_is_typeset_by_the_local_mathjax(report):
    assert report.untypeset_math == []


def test_every_image_loads(report):
    assert report.broken_images == []


def test_every_internal_link_and_anchor_resolves(report):
    assert report.broken_links == []


def test_exercise_solutions_open_when_clicked(report):
    assert report.dropdown_failures == [] and report.dropdowns_opened >= 3


def test_each_interactive_chapter_has_its_players(report):
    players = report.players
    assert players.get("book/diffusion.html", 0) >= 2
    assert players.get("book/vae.html", 0) >= 1 and players.get("book/flows.html", 0) >= 1
    assert sum(players.values()) >= 3


def test_every_player_changes_frame_with_its_button_and_its_slider(report):
    assert report.player_failures == []
    assert report.players_responding == sum(report.players.values()) >= 3


def test_search_finds_a_chapter_by_a_word_in_it(report):
    assert report.search_ok


def test_screenshots_of_every_chapter_are_saved(report):
    assert len(report.screenshots) >= 3


def test_no_page_shows_a_markdown_table_as_text(report):
    assert report.raw_tables == []


def test_no_page_shows_raw_tex(report):
    assert report.raw_tex == []


def test_every_page_has_exactly_one_visible_search_box(report, smoke_book):
    assert len(report.search_boxes) == len(report.pages)
    assert {page: n for page, n in report.search_boxes.items() if n != 1} == {}


# The checks above can fail: each finds what it looks for in a small planted page, and leaves
# alone the same text where a reader does not see it as text (code, typeset mathematics).
PLANTED = """<html><body><nav>| menu | not | checked |</nav><article>
<p>The table below was printed as text:</p>
<p>| model | FD |
| --- | --- |
| VAE | 160 |</p>
<div class="cell_output"><table class="dataframe"><tr><th>model</th><td>160</td></tr></table></div>
<pre>| in | code | is fine |
|---|---|</pre>
<p>A fraction left raw: \\frac{1}{2}, and $x_t$ too.</p>
<p>Typeset: <span class="math"><mjx-container>\\frac{a}{b} $y$</mjx-container></span>;
code: <code>$HOME \\begin{x}</code>.</p>
</article></body></html>"""


def test_raw_table_check_finds_a_planted_markdown_table_and_only_it():
    assert raw_markdown_tables(PLANTED) == ["| model | FD |", "| --- | --- |", "| VAE | 160 |"]


def test_raw_tex_check_finds_planted_tex_and_only_it():
    assert raw_tex(PLANTED) == ["\\frac", "$x_t$"]


@pytest.mark.parametrize("tex", ["$$x$$", "\\begin{align}", "\\(x\\)", "\\[x\\]", "\\eta = 0"])
def test_raw_tex_check_knows_each_kind_of_tex(tex):
    assert raw_tex(f"<article><p>see {tex} here</p></article>") != []


def test_a_page_with_a_rendered_table_and_typeset_math_passes():
    clean = ("<article><table><tr><th>a</th><td>1</td></tr></table><p>costs | one | thing</p>"
             "<p><mjx-container>\\frac{1}{2}</mjx-container> of $5</p></article>")
    assert raw_markdown_tables(clean) == [] and raw_tex(clean) == []


def test_search_box_count_sees_visible_boxes_only(tmp_path):
    """Two visible search buttons count 2; a hidden field and a closed search dialog count 0."""
    from playwright.sync_api import sync_playwright

    header = '<header><button class="search-button__button">Search</button></header>'
    rest = """<aside><button class="search-button__button">Search</button></aside>
    <div style="display: none"><input type="search"></div>
    <dialog><input type="search"></dialog>"""
    (tmp_path / "two.html").write_text(f"<html><body>{header}{rest}</body></html>")
    (tmp_path / "one.html").write_text(f"<html><body>{rest}</body></html>")
    assert find_chromium(), "Chromium is missing: run `make test` (installs it) or `apt-get install chromium`"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=find_chromium(), args=CHROMIUM_ARGS)
        page = browser.new_page()
        counts = {}
        for name in ("two", "one"):
            page.goto((tmp_path / f"{name}.html").as_uri())
            counts[name] = count_search_boxes(page)
        browser.close()
    assert counts == {"two": 2, "one": 1}
