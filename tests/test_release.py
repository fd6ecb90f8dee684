"""The release command: solutions/ -> notebooks/, and the notebook format it reads.

The golden pair tests/golden/tiny_source.ipynb -> tiny_student.ipynb was written once by the
generator and checked by hand; regenerate it only after reading the diff.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from autograder import release as rel
from autograder.notebook_format import (
    NotebookFormatError,
    iter_cells,
    parse_regions,
    read_notebook,
    source_text,
    total_points,
    validate,
)

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden"
NAMES = rel.ASSIGNMENTS


def solution(name):
    return read_notebook(ROOT / "solutions" / f"{name}.ipynb")


def student(name):
    return read_notebook(ROOT / "notebooks" / f"{name}.ipynb")


def tiny():
    return read_notebook(GOLDEN / "tiny_source.ipynb")


def test_generator_output_matches_golden_file():
    text = rel.render(rel.make_student(tiny(), "tiny"))
    assert text == (GOLDEN / "tiny_student.ipynb").read_text(encoding="utf-8")


def test_release_is_byte_identical_when_run_twice(tmp_path):
    for sub in ("solutions", "notebooks"):
        (tmp_path / sub).mkdir()
    (tmp_path / "solutions" / "tiny.ipynb").write_bytes((GOLDEN / "tiny_source.ipynb").read_bytes())
    assert rel.release(["tiny"], root=tmp_path) == [tmp_path / "notebooks" / "tiny.ipynb"]
    first = (tmp_path / "notebooks" / "tiny.ipynb").read_bytes()
    assert rel.release(["tiny"], root=tmp_path) == []
    assert (tmp_path / "notebooks" / "tiny.ipynb").read_bytes() == first


def test_committed_student_notebooks_are_up_to_date():
    stale = rel.release(NAMES, root=ROOT, check=True)
    assert stale == [], f"run `python -m autograder release`: stale {stale}"


def test_check_mode_names_a_stale_notebook_exits_1_and_writes_nothing(tmp_path):
    for sub in ("solutions", "notebooks"):
        (tmp_path / sub).mkdir()
    (tmp_path / "solutions" / "vae.ipynb").write_bytes((ROOT / "solutions" / "vae.ipynb").read_bytes())
    (tmp_path / "notebooks" / "vae.ipynb").write_text("{}", encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "autograder", "release", "--check", "--root",
                           str(tmp_path), "vae"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 1 and "notebooks/vae.ipynb" in proc.stderr
    assert (tmp_path / "notebooks" / "vae.ipynb").read_text() == "{}"


def test_release_of_a_missing_solution_fails_with_a_clear_message(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "autograder", "release", "--root", str(tmp_path),
                           "flow"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and "solutions/flow.ipynb does not exist" in proc.stderr


def test_solution_region_becomes_fixme_and_raise_at_its_indentation():
    src = "def f(x):\n    y = 1\n    ### BEGIN SOLUTION: use eq. (a)\n    y = 2 * x\n    ### END SOLUTION\n    return y"
    out = rel.strip_regions(src, "code", "nb", "cell")
    assert out == ("def f(x):\n    y = 1\n    # FIXME: use eq. (a)\n    raise NotImplementedError\n"
                   "    return y")


def test_written_region_becomes_answer_placeholder():
    src = "Why?\n\n### BEGIN SOLUTION\nBecause.\n### END SOLUTION"
    assert rel.strip_regions(src, "markdown", "nb", "cell") == "Why?\n\nYOUR ANSWER HERE"


@pytest.mark.parametrize("source, words", [
    ("### BEGIN SOLUTION\nx = 1", "unterminated"),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\nx\n### END SOLUTION\n### END SOLUTION", "nested"),
    ("x = 1\n### END SOLUTION", "without a BEGIN"),
    ("### BEGIN SOLUTION\n### END SOLUTION", "empty"),
    ("### BEGIN SOLUTOIN\nx\n### END SOLUTION", "malformed"),
])
def test_malformed_region_raises_error_naming_notebook_and_cell(source, words):
    with pytest.raises(NotebookFormatError) as info:
        parse_regions(source, "solutions/x.ipynb", "x-cell")
    message = str(info.value)
    assert words in message and "solutions/x.ipynb" in message and "'x-cell'" in message


@pytest.mark.parametrize("cell_type", ["markdown", "raw"])
def test_marker_outside_graded_or_written_cell_raises_error(cell_type):
    nb = tiny()
    maker = {"markdown": nbformat.v4.new_markdown_cell, "raw": nbformat.v4.new_raw_cell}[cell_type]
    bad = maker("### BEGIN SOLUTION\nanswer\n### END SOLUTION")
    bad.id = "stray-marker"
    nb.cells.insert(2, bad)
    with pytest.raises(NotebookFormatError, match=r"tiny\.ipynb, cell 'stray-marker'.*solution marker"):
        rel.make_student(nb, "tiny", "solutions/tiny.ipynb")


def test_marker_in_hidden_cell_raises_error():
    nb = tiny()
    cell = next(c for c in nb.cells if c.id == "double-hidden")
    cell.source += "\n### BEGIN SOLUTION\nz = 1\n### END SOLUTION"
    with pytest.raises(NotebookFormatError, match="double-hidden"):
        validate(nb, "tiny.ipynb")


def test_tag_and_metadata_role_must_agree():
    nb = tiny()
    next(c for c in nb.cells if c.id == "double").metadata["tags"] = []  # the graded cell loses its tag
    with pytest.raises(NotebookFormatError, match="'double'.*tag says role None"):
        validate(nb, "tiny.ipynb")


def test_hidden_cell_after_must_name_a_cell():
    nb = tiny()
    next(c for c in nb.cells if c.id == "double-hidden").metadata["dgm"]["after"] = "nowhere"
    with pytest.raises(NotebookFormatError, match="'nowhere'"):
        validate(nb, "tiny.ipynb")


def test_duplicate_cell_ids_are_rejected():
    nb = tiny()
    nb.cells.append(copy.deepcopy(nb.cells[1]))
    with pytest.raises(NotebookFormatError, match="duplicate cell id"):
        validate(nb, "tiny.ipynb")


def test_items_sum_hidden_and_written_points():
    items = validate(tiny(), "tiny.ipynb")
    assert items["double"].hidden_points == 3 and items["double"].hidden == ("double-hidden",)
    assert items["why"].written_points == 2
    assert total_points(items) == 5


def test_iter_cells_selects_by_role():
    nb = tiny()
    assert [c.id for _, c in iter_cells(nb, "graded")] == ["double"]
    assert [c.id for _, c in iter_cells(nb, "ordinary")] == ["intro", "setup"]
    with pytest.raises(ValueError, match="unknown role"):
        list(iter_cells(nb, "secret"))


@pytest.mark.parametrize("name", NAMES)
def test_student_notebook_has_no_hidden_cells_or_solutions(name):
    text = (ROOT / "notebooks" / f"{name}.ipynb").read_text(encoding="utf-8")
    assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text
    assert "Hidden check" not in text and '"hidden"' not in text
    nb = student(name)
    assert not [c for c in nb.cells if c.get("outputs") or c.get("execution_count")]


@pytest.mark.parametrize("name", NAMES)
def test_student_notebook_starts_with_generated_note(name):
    first = student(name).cells[0]
    assert first.id == rel.NOTE_ID and first.source == rel.note_text(name)


@pytest.mark.parametrize("name", NAMES)
def test_student_notebook_keeps_every_line_outside_solution_regions(name):
    """Signatures, docstrings, equation references and shape assertions survive the release."""
    students = {c.id: c for c in student(name).cells}
    for _, cell in iter_cells(solution(name), "graded"):
        lines = source_text(cell).split("\n")
        inside = set()
        for region in parse_regions(source_text(cell)):
            inside.update(range(region.begin, region.end + 1))
        kept = [ln for i, ln in enumerate(lines) if i not in inside]
        out = students[cell.id].source.split("\n")
        assert [ln for ln in out if "FIXME" not in ln and "raise NotImplementedError" not in ln] == kept
        assert students[cell.id].metadata["dgm"] == cell.metadata["dgm"]
        assert students[cell.id].metadata["tags"] == ["graded"]


@pytest.mark.parametrize("name", NAMES)
def test_every_graded_item_has_a_selfcheck_and_a_hidden_check(name):
    items = validate(solution(name), f"solutions/{name}.ipynb")
    for item in items.values():
        if item.graded:
            assert item.selfchecks and item.hidden, item


@pytest.mark.parametrize("name", NAMES)
def test_total_points_at_the_top_match_the_items(name):
    nb = solution(name)
    stated = re.search(r"Total: (\d+) points", nb.cells[0].source)
    assert stated and int(stated.group(1)) == total_points(validate(nb, name))


@pytest.mark.parametrize("name", NAMES)
def test_each_graded_cell_heading_states_its_points(name):
    nb = solution(name)
    for index, cell in iter_cells(nb, "graded"):
        heading = next(c.source for c in reversed(nb.cells[:index]) if c.cell_type == "markdown")
        assert f"({cell.metadata['dgm']['points']} points)" in heading, cell.id


@pytest.mark.parametrize("name", NAMES)
def test_solutions_store_no_outputs_and_have_a_guarded_colab_cell(name):
    nb = solution(name)
    assert not [c.id for c in nb.cells if c.get("outputs") or c.get("execution_count")]
    colab = next(c for c in nb.cells if c.id == "colab-setup")
    assert 'if "google.colab" in sys.modules:' in colab.source


def test_cli_without_command_prints_usage_and_fails():
    proc = subprocess.run([sys.executable, "-m", "autograder"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and "release" in proc.stdout and "grade" in proc.stdout


def test_cli_unknown_command_names_the_commands(capsys):
    from autograder import __main__ as cli

    assert cli.main(["grades"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'grades'" in err and "release" in err and "grade" in err


def test_student_notebooks_are_valid_nbformat():
    for name in NAMES:
        nb = nbformat.reads((ROOT / "notebooks" / f"{name}.ipynb").read_text(), as_version=4)
        nbformat.validate(nb)
        assert json.loads(nbformat.writes(nb))["nbformat_minor"] >= 5


@pytest.mark.parametrize("name", NAMES)
def test_each_graded_cell_is_followed_by_its_selfcheck_in_the_student_notebook(name):
    cells = student(name).cells
    for index, cell in iter_cells(student(name), "graded"):
        nxt = cells[index + 1]
        assert nxt.metadata.get("dgm", {}).get("role") == "selfcheck", cell.id
        assert nxt.metadata["dgm"]["item"] == cell.metadata["dgm"]["item"]


@pytest.mark.parametrize("name", NAMES)
def test_hidden_checks_follow_a_graded_cell_of_their_own_item(name):
    nb = solution(name)
    graded = {c.id: c.metadata["dgm"]["item"] for _, c in iter_cells(nb, "graded")}
    for _, cell in iter_cells(nb, "hidden"):
        meta = cell.metadata["dgm"]
        assert graded.get(meta["after"]) == meta["item"], cell.id


@pytest.mark.parametrize("name", NAMES)
def test_colab_setup_cell_installs_from_the_repository_url_of_config(name):
    """_config.yml's repository.url is the one place the URL is written: the homework follows it."""
    import yaml

    url = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    for nb in (solution(name), student(name)):
        setup = [source_text(c) for c in nb.cells if "google.colab" in source_text(c)]
        assert setup and all(f"git+{url}" in text for text in setup), setup
