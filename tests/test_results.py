"""dgm.results: recording figures for the benchmarks and quoting another chapter's record."""

import json

import pytest

from dgm.results import record, recorded


def test_record_merges_into_the_metrics_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("DGM_METRICS_DIR", str(tmp_path))
    record("flows", a=1.0)
    record("flows", b=2)
    assert json.loads((tmp_path / "flows.json").read_text()) == {"a": 1.0, "b": 2}


def test_recorded_reads_a_chapter_figure_and_names_what_is_missing(tmp_path):
    data = {"chapters": {"flows": {"seconds": 1.0, "metrics": {"flows": {"test_bits_per_dim": 3.6}}}}}
    (tmp_path / "chapters_cpu.json").write_text(json.dumps(data))
    assert recorded("flows", "test_bits_per_dim", "cpu", folder=tmp_path) == 3.6
    with pytest.raises(KeyError, match="train_seconds.*--profile cpu --chapters flows"):
        recorded("flows", "train_seconds", "cpu", folder=tmp_path)
    with pytest.raises(KeyError, match="chapters_full.json"):
        recorded("flows", "test_bits_per_dim", "full", folder=tmp_path)


def test_the_repository_records_the_flow_that_the_autoregressive_chapter_quotes():
    for profile in ("cpu", "full"):
        assert 0 < recorded("flows", "test_bits_per_dim", profile) < 8
        assert recorded("flows", "train_seconds", profile) > 0
