"""Results tables (dgm.tables) are HTML tables with the theme's look: formatted numbers, no index,
number columns right-aligned, missing values shown as a dash, ids stable between builds."""

from __future__ import annotations

import pytest
from bs4 import BeautifulSoup

from dgm.tables import results_table

ROWS = [{"model": "VAE", "FD": 160.04, "coverage": 0.9, "NFE 4": "440 (0.1)"},
        {"model": "GAN", "FD": 51.0, "coverage": None, "NFE 4": None}]


def _soup(styler) -> BeautifulSoup:
    return BeautifulSoup(styler.to_html(), "html.parser")


def test_table_is_an_html_dataframe_table_without_an_index_column():
    soup = _soup(results_table(ROWS))
    table = soup.find("table")
    assert "dataframe" in table["class"]
    assert [th.get_text(strip=True) for th in table.thead.find_all("th")] == list(ROWS[0])
    assert [td.get_text(strip=True) for td in table.tbody.tr.find_all("td")][0] == "VAE"


def test_formats_apply_per_column_and_missing_values_show_as_a_dash():
    soup = _soup(results_table(ROWS, {"FD": "{:.1f}", "coverage": "{:.2f}"}))
    cells = [[td.get_text(strip=True) for td in tr.find_all("td")] for tr in soup.tbody.find_all("tr")]
    assert cells == [["VAE", "160.0", "0.90", "440 (0.1)"], ["GAN", "51.0", "-", "-"]]


def test_number_columns_are_right_aligned_and_text_columns_are_not():
    css = _soup(results_table(ROWS)).style.get_text()
    for k in (1, 2, 3):  # FD, coverage, and "NFE 4": numbers written as text
        assert f"td.col{k}" in css
    assert "td.col0" not in css


def test_the_same_table_gets_the_same_ids_and_another_table_other_ids():
    first, again = results_table(ROWS).to_html(), results_table(ROWS).to_html()
    other = results_table(ROWS[:1]).to_html()
    assert first == again
    assert _soup(results_table(ROWS)).table["id"] != BeautifulSoup(other, "html.parser").table["id"]


def test_a_format_for_a_missing_column_names_the_columns():
    with pytest.raises(ValueError, match=r"\['fd'\].*'model', 'FD'"):
        results_table(ROWS, {"fd": "{:.1f}"})
