"""Tests of the grading pipeline's shape: its configuration and the order of its stages.

The configuration (:class:`autograder.config.GradeConfig`) is checked once, when it is built:
a bad value raises ValueError naming the option, and ``grade`` turns that into a usage error.
The stages run in the order :data:`autograder.pipeline.STAGES` documents; the cell records the
plugin sends become typed :class:`autograder.execute.CellRecord` objects.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from autograder import grade, pipeline, state
from autograder.config import GradeConfig
from autograder.execute import CellRecord, Execution

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "grading"
SOURCE = FIXTURES / "source"
CORRECT = FIXTURES / "students" / "correct.ipynb"


def _config(tmp_path: Path, **changes) -> GradeConfig:
    return GradeConfig(**{"assignment": "toy", "submissions": (str(CORRECT),),
                          "out": tmp_path / "out", "source_dir": SOURCE, "timeout": 60.0,
                          "progress": False, **changes})


# --- GradeConfig -----------------------------------------------------------------------------

@pytest.mark.parametrize("changes, option", [
    ({"jobs": 0}, "--jobs"),
    ({"jobs": 1.5}, "--jobs"),
    ({"timeout": 0.0}, "--timeout"),
    ({"timeout": float("nan")}, "--timeout"),
    ({"max_bytes": 0}, "--max-size-mb"),
    ({"memory_mb": -1}, "--memory-mb"),
    ({"max_procs": -5}, "--max-procs"),
    ({"profile": "fast"}, "profile"),
    ({"device": "auto"}, "device"),
    ({"submissions": ()}, "SUBMISSION"),
])
def test_a_bad_config_value_raises_a_value_error_naming_the_option(tmp_path, changes, option):
    with pytest.raises(ValueError, match=option):
        _config(tmp_path, **changes)


def test_an_unknown_profile_error_lists_the_allowed_ones(tmp_path):
    with pytest.raises(ValueError) as info:
        _config(tmp_path, profile="fast")
    assert all(p in str(info.value) for p in ("smoke", "cpu", "full"))


def test_the_config_cannot_be_changed_after_it_is_built(tmp_path):
    cfg = _config(tmp_path)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.timeout = 1.0


@pytest.mark.parametrize("argv, message", [
    (["--jobs", "0"], "--jobs must be a whole number of at least 1"),
    (["--timeout", "-3"], "--timeout must be a positive number"),
    (["--max-size-mb", "0"], "--max-size-mb must be positive"),
    (["--profile", "fast"], "profile"),
    (["--device", "tpu"], "device"),
    (["--memory-mb", "-1"], "--memory-mb must be 0 (no limit) or positive"),
])
def test_grade_turns_a_bad_option_into_a_usage_error_that_names_it(tmp_path, capsys, argv,
                                                                   message):
    with pytest.raises(SystemExit) as info:
        grade.main(["--assignment", "toy", "--source", str(SOURCE), str(CORRECT), "--out",
                    str(tmp_path / "out"), "--device", "cpu", *argv])
    assert info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing started


def test_options_become_config_fields_resolved_once():
    args = grade.build_parser().parse_args(
        ["--assignment", "toy", "--source", str(SOURCE), str(CORRECT), "--out", "o",
         "--device", "cpu", "--profile", "cpu", "--max-size-mb", "0.5",
         "--insecure-no-sandbox", "--no-progress"])
    cfg = GradeConfig.from_args(args)
    assert cfg.timeout == 900.0  # the cpu profile's default per-cell timeout
    assert cfg.max_bytes == 2**19 and cfg.device == "cpu" and cfg.gpus == ()
    assert cfg.sandbox is False and cfg.progress is False
    assert cfg.submissions == (str(CORRECT),)
    default = GradeConfig.from_args(grade.build_parser().parse_args(
        ["--assignment", "toy", str(CORRECT), "--out", "o", "--device", "cpu"]))
    assert default.sandbox is True and default.timeout == 120.0


# --- cell records ----------------------------------------------------------------------------

def test_a_plugin_record_becomes_a_typed_cell_record():
    rec = CellRecord.from_plugin({"index": 3, "id": "c", "status": "failed", "duration": 0.5,
                                  "ename": "ValueError", "evalue": "bad", "observations": [{}]})
    assert rec == CellRecord("c", "failed", 0.5, "ValueError", "bad", ({},))
    with pytest.raises(ValueError, match="unknown cell status 'exploded'"):
        CellRecord.from_plugin({"index": 0, "id": "c", "status": "exploded"})


# --- the order of the stages -----------------------------------------------------------------

def test_the_stages_run_in_the_documented_order(tmp_path, monkeypatch):
    calls: list[str] = []

    def spy(name, real):
        def wrapper(*args, **kwargs):
            calls.append(name)
            return real(*args, **kwargs)
        return wrapper

    for stage, attribute in [("collect", "collect"), ("inspect", "inspect_submission"),
                             ("merge", "merge"), ("judge", "judge"), ("score", "score_items"),
                             ("report", "write_report")]:
        monkeypatch.setattr(pipeline, attribute, spy(stage, getattr(pipeline, attribute)))

    def run(nb, student, cfg, work):  # no kernel: every cell passed, in no time
        calls.append("run")
        return Execution(tuple(CellRecord(c.id, "passed") for c in nb.cells
                               if c.cell_type == "code"), None, 0.0)

    monkeypatch.setattr(pipeline, "run", run)
    monkeypatch.setattr(state.Batch, "record", spy("record", state.Batch.record))
    cfg = _config(tmp_path)
    outcome = pipeline.grade_batch(cfg, pipeline.load_assignment(cfg))
    assert calls == list(pipeline.STAGES)
    assert [r.student for r in outcome.results] == ["correct"]


def test_a_file_that_cannot_be_graded_skips_merge_to_score(tmp_path, monkeypatch):
    calls: list[str] = []
    for attribute in ("merge", "run", "judge", "score_items"):
        monkeypatch.setattr(pipeline, attribute, lambda *a, _n=attribute, **k: calls.append(_n))
    (tmp_path / "broken.ipynb").write_text("{ not json")
    cfg = _config(tmp_path, submissions=(str(tmp_path / "broken.ipynb"),))
    outcome = pipeline.grade_batch(cfg, pipeline.load_assignment(cfg))
    assert calls == []
    (result,) = outcome.results
    assert result.auto_score == 0.0 and "not valid JSON" in result.error
    assert outcome.batch.counts["rejected"] == 1


# --- inspect ---------------------------------------------------------------------------------

@pytest.mark.parametrize("content, expected", [
    ({"nbformat": 3, "nbformat_minor": 0, "metadata": {}, "worksheets": 1},
     'it says nbformat 3 but has no "worksheets" list'),
    ({"nbformat": 4, "nbformat_minor": 5, "metadata": {},
      "cells": [{"cell_type": "code", "source": "x", "metadata": 5, "id": ["a"]}]},
     "Your notebook could not be read: ValidationError"),
])
def test_malformed_cell_fields_are_inspected_without_an_exception(tmp_path, content, expected):
    """Once an internal grader error: a worksheets number, non-dict metadata, a list as id."""
    import json

    import nbformat

    from autograder.submissions import Expected, inspect_notebook

    path = tmp_path / "odd.ipynb"
    path.write_text(json.dumps(content))
    source = nbformat.read(str(SOURCE / "toy.ipynb"), as_version=4)
    found = inspect_notebook(path, Expected.from_source(source, "toy", SOURCE))
    assert expected in found.problem
