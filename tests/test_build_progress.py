"""What `make book` says at the terminal (dgm/build_progress.py, dgm/kernel_progress.py): the
plan names every chapter with its recorded time, and progress lines come from the kernels
through the event file, never through the executed notebook."""

import io
import json
import logging
import time
from pathlib import Path

import nbformat
import pytest
import yaml
from jupyter_cache import get_cache
from jupyter_cache.base import CacheBundleIn
from nbclient import NotebookClient

from dgm.build import kernel_ipython_dir
from dgm.build_progress import (ROOT, Estimates, Follower, announcement, cached_chapters,
                                load_estimates, minutes, toc_chapters)
from dgm.kernel_progress import LOG_VAR, TCP_NOTICE, TcpNotice, log_event

CELLS = [
    "print('hello')",
    "from dgm.progress import progress_bar\nfor i in progress_bar(range(3), desc='train'):\n    pass",
    "import sys\nprint('to stderr', file=sys.stderr)",
]


def test_toc_chapters_are_the_pages_of_the_toc_that_hold_code():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]] + [c["file"] for part in toc["parts"] for c in part["chapters"]]
    with_code = {Path(f).name for f in files if "{code-cell}" in (ROOT / f"{f}.md").read_text()}
    assert set(toc_chapters()) == with_code and len(toc_chapters()) == len(with_code) > 0


def test_the_plan_names_every_chapter_with_its_recorded_time_and_their_sum():
    estimates = Estimates({"vae": 300.0, "gans": 40.0}, ROOT / "benchmarks" / "results" / "x.json",
                          "2 CPU cores, no GPU, 2026-11-24")
    text = announcement("cpu", ["vae", "gans", "homework"], set(), estimates)
    lines = text.splitlines()
    assert "'cpu' profile" in lines[0] and "3 of 3 chapters" in lines[1]
    assert "benchmarks/results/x.json" in text and "2 CPU cores" in text
    assert any(line.split() == ["vae", "executes,", "estimate", "5.0", "min"] for line in lines)
    assert any(line.split() == ["gans", "executes,", "estimate", "40", "s"] for line in lines)
    assert any(line.split()[0] == "homework" and "unknown" in line for line in lines)
    assert f"about {minutes(340.0)} plus 1 chapter(s) without a record" in text


def test_cached_chapters_are_announced_as_cached_and_left_out_of_the_estimate():
    estimates = Estimates({"vae": 100.0, "gans": 50.0}, ROOT / "x.json", "here")
    text = announcement("cpu", ["vae", "gans"], {"vae"}, estimates)
    assert "1 of 2 chapters with code will execute; 1 come from the execution cache." in text
    assert any(line.split() == ["vae", "cached"] for line in text.splitlines())
    assert f"about {minutes(50.0)}," in text


def test_the_recorded_cpu_times_give_every_recorded_toc_chapter_an_estimate():
    estimates = load_estimates("cpu")
    assert estimates is not None and estimates.seconds
    text = announcement("cpu", toc_chapters(), set(), estimates)
    for name in toc_chapters():
        line = next(line for line in text.splitlines() if line.split()[:1] == [name])
        if name in estimates.noted:
            assert line.endswith(f"estimate {minutes(estimates.seconds[name])} "
                                 "(see the note recorded with it)")
        elif name in estimates.seconds:
            assert line.endswith(f"estimate {minutes(estimates.seconds[name])}")
        else:
            assert line.endswith("estimate unknown (not recorded)")


def test_a_profile_without_recorded_times_says_so(tmp_path):
    assert load_estimates("smoke", tmp_path) is None
    assert "no time estimate" in announcement("smoke", ["vae"], set(), None)


def _write_chapter(root: Path, name: str, code: str) -> None:
    (root / "book").mkdir(parents=True, exist_ok=True)
    (root / "book" / f"{name}.md").write_text(
        "---\njupytext:\n  text_representation:\n    format_name: myst\n"
        "kernelspec:\n  name: python3\n  display_name: Python 3\n---\n\n"
        f"# {name}\n\n```{{code-cell}} ipython3\n{code}\n```\n")


def test_the_cache_check_matches_unchanged_code_only(tmp_path):
    """A chapter is 'cached' when myst-nb would find its code in the cache, not otherwise."""
    from myst_nb.core.config import NbParserConfig
    from myst_nb.core.read import create_nb_reader
    from myst_parser.config.main import MdParserConfig

    (tmp_path / "_config.yml").write_text((ROOT / "_config.yml").read_text())
    for name in ("a", "b"):
        _write_chapter(tmp_path, name, "x = 1")
    cache = get_cache(str(tmp_path / "cache"))
    path = tmp_path / "book" / "a.md"
    nb = create_nb_reader(str(path), MdParserConfig(), NbParserConfig(), path.read_text()).read(
        path.read_text())
    cache.cache_notebook_bundle(CacheBundleIn(nb, str(path)), check_validity=False)
    assert cached_chapters(tmp_path / "cache", ["a", "b"], tmp_path) == {"a", "b"}  # same code
    _write_chapter(tmp_path, "b", "x = 2")
    assert cached_chapters(tmp_path / "cache", ["a", "b"], tmp_path) == {"a"}
    assert cached_chapters(tmp_path / "no-cache", ["a", "b"], tmp_path) == set()


def _execute(cells, env=None):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    NotebookClient(nb, kernel_name="python3", timeout=120).execute(env=env)
    return nb


@pytest.fixture(scope="module")
def build_kernel_run(tmp_path_factory):
    """The same tiny chapter executed as in a plain kernel and as in the book build."""
    import os

    tmp = tmp_path_factory.mktemp("progress")
    log = tmp / "events.jsonl"
    plain_env = {k: v for k, v in os.environ.items() if k not in (LOG_VAR, "IPYTHONDIR")}
    plain_env["DGM_PROGRESS"] = "0"
    plain = _execute(CELLS, plain_env)
    build_env = dict(plain_env, IPYTHONDIR=str(kernel_ipython_dir(tmp / "ipython")),
                     **{LOG_VAR: str(log)})
    built = _execute(CELLS, build_env)
    return plain, built, log


def test_progress_goes_to_the_event_file_and_the_notebook_outputs_do_not_change(build_kernel_run):
    plain, built, log = build_kernel_run
    assert [c.outputs for c in built.cells] == [c.outputs for c in plain.cells]
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(e["event"], e.get("cell")) for e in events if e["event"] != "bar"] == [
        ("cell_start", 1), ("cell_end", 1), ("cell_start", 2), ("cell_end", 2),
        ("cell_start", 3), ("cell_end", 3)]
    bars = [e["text"] for e in events if e["event"] == "bar"]
    assert bars and bars[-1].startswith("train: 100%") and "3/3" in bars[-1]


def test_the_follower_prints_each_cell_and_bar_with_the_chapter_name(build_kernel_run, tmp_path):
    _, _, log = build_kernel_run
    events = tmp_path / "events.jsonl"
    first = json.loads(log.read_text().splitlines()[0])["time"]
    events.write_text(json.dumps({"event": "chapter", "time": first - 1.0, "name": "book/tiny",
                                  "cells": 3}) + "\n" + log.read_text())
    out = io.StringIO()
    follower = Follower(events, out, Estimates({"tiny": 65.0}, ROOT / "x.json", "here"))
    follower.poll()
    follower.finish_chapter(time.time())
    lines = out.getvalue().splitlines()
    assert all(line.startswith("[book ") for line in lines)
    assert "tiny: executing 3 code cells (estimate 65 s)" in lines[0]
    for cell in (1, 2, 3):
        assert any(f"tiny: cell {cell}/3 done in" in line for line in lines)
    assert any("tiny: train: 100%" in line for line in lines)
    assert "tiny: finished, 3 cells in" in lines[-1]


def test_a_chapter_without_cell_events_is_reported_as_cached(tmp_path):
    events = tmp_path / "events.jsonl"
    now = time.time()
    events.write_text("".join(json.dumps(e) + "\n" for e in (
        {"event": "chapter", "time": now, "name": "book/a", "cells": 4},
        {"event": "chapter", "time": now, "name": "book/b", "cells": 2})))
    out = io.StringIO()
    follower = Follower(events, out)
    follower.poll()
    assert out.getvalue().splitlines()[0].endswith("a: outputs taken from the execution cache")


def test_a_long_cell_gets_a_line_after_a_silence(tmp_path, monkeypatch):
    events = tmp_path / "events.jsonl"
    out = io.StringIO()
    follower = Follower(events, out, quiet_s=0.0)
    monkeypatch.setenv(LOG_VAR, str(events))
    log_event("chapter", name="book/slow", cells=2)
    log_event("cell_start", cell=1)
    follower.poll()
    follower.poll()
    assert "slow: cell 1/2 still running" in out.getvalue().splitlines()[-1]


def test_the_tcp_notice_filter_drops_that_notice_only():
    def record(msg, level=logging.WARNING):
        return logging.LogRecord("IPKernelApp", level, __file__, 1, msg, None, None)

    assert not TcpNotice().filter(record(TCP_NOTICE + ". All communication ..."))
    assert TcpNotice().filter(record("Error in loading extension: nosuch", logging.ERROR))
    assert TcpNotice().filter(record("Kernel died"))


def test_the_build_kernel_still_reports_its_other_warnings(tmp_path, capfd):
    """The filter is installed (no TCP notice) and a real start-up problem is still printed."""
    import os

    import ipykernel
    from packaging.version import Version

    plain = {k: v for k, v in os.environ.items() if k not in (LOG_VAR, "IPYTHONDIR")}
    _execute(["1 + 1"], dict(plain, IPYTHONDIR=str(tmp_path / "plain-ipython")))
    if Version(ipykernel.__version__) >= Version("7.4"):  # the version that prints the notice
        assert TCP_NOTICE in capfd.readouterr().err
    ipython = kernel_ipython_dir(tmp_path / "ipython")
    config = ipython / "profile_default" / "ipython_kernel_config.py"
    config.write_text(config.read_text() + "c.InteractiveShellApp.extensions.append('no_such_ext_x')\n")
    env = dict(os.environ, IPYTHONDIR=str(ipython))
    env.pop(LOG_VAR, None)
    _execute(["1 + 1"], env)
    err = capfd.readouterr().err
    assert "no_such_ext_x" in err and TCP_NOTICE not in err
