"""The built site works for a reader: every page checked in headless Chromium, network off.

benchmarks/sitecheck.py does the checking (and records its figures when run as a script); these
tests state each promise separately. Chromium is Debian's package (`make test` installs it).
"""

from __future__ import annotations

import pytest

from benchmarks.sitecheck import check_site, find_chromium
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
