"""Chapters executed side by side before Sphinx reads them (dgm/preexecute.py): what they leave
in the cache is what myst-nb looks for, a failing chapter is left for the build to report, and
the terminal says which chapter each line comes from."""

import io
import json
import time

import pytest

from dgm.build import kernel_ipython_dir
from dgm.build_progress import ROOT, Follower, cached_chapters, makespan
from dgm.kernel_progress import LOG_VAR
from dgm.preexecute import default_jobs, execute_chapters, read_chapter
from tests.test_build_progress import _write_chapter


@pytest.fixture()
def project(tmp_path):
    (tmp_path / "_config.yml").write_text((ROOT / "_config.yml").read_text())
    _write_chapter(tmp_path, "good", "import os\nprint(os.environ['OMP_NUM_THREADS'], 6 * 7, "
                   "os.path.basename(os.environ['DGM_METRICS_DIR']))")
    _write_chapter(tmp_path, "other", "print('other')")
    _write_chapter(tmp_path, "bad", "raise ValueError('broken on purpose')")
    return tmp_path


def test_side_by_side_chapters_land_in_the_cache_as_myst_nb_reads_them(project, tmp_path):
    import os

    log = tmp_path / "events.jsonl"
    env = dict(os.environ, IPYTHONDIR=str(kernel_ipython_dir(tmp_path / "ipython")),
               DGM_METRICS_DIR=str(tmp_path / "metrics"), **{LOG_VAR: str(log)})
    runs = execute_chapters(["good", "other", "bad"], project / "cache", env, jobs=2,
                            root=project)
    by_name = {r.name: r for r in runs}
    assert set(by_name) == {"good", "other", "bad"}
    assert by_name["good"].error is None and by_name["other"].error is None
    assert "broken on purpose" in by_name["bad"].error
    # the failing chapter is not cached, so the build executes it again and reports it
    assert cached_chapters(project / "cache", ["good", "other", "bad"], project) == {"good", "other"}
    from jupyter_cache import get_cache

    cache = get_cache(str(project / "cache"))
    _, merged = cache.merge_match_into_notebook(read_chapter(project / "book" / "good.md", project))
    text = "".join(o.get("text", "") for c in merged.cells if c.cell_type == "code" for o in c.outputs)
    cores = len(os.sched_getaffinity(0))
    # the cores are shared out between the jobs; each chapter records into its own folder
    assert text.strip() == f"{max(1, cores // 2)} 42 good"
    events = [json.loads(line) for line in log.read_text().splitlines()]
    cells = [e for e in events if e["event"] in ("cell_start", "cell_end")]
    assert cells and all(e.get("chapter") in ("good", "other", "bad") for e in cells)
    ends = {e["chapter"]: e["error"] for e in events if e["event"] == "chapter_end"}
    assert ends == {"good": False, "other": False, "bad": True}


def test_interleaved_chapters_are_each_reported_under_their_own_name(tmp_path):
    events = tmp_path / "events.jsonl"
    now = time.time()
    rows = [{"event": "chapter", "name": "a", "cells": 2, "chapter": "a"},
            {"event": "chapter", "name": "b", "cells": 1, "chapter": "b"},
            {"event": "cell_start", "cell": 1, "chapter": "a"},
            {"event": "cell_start", "cell": 1, "chapter": "b"},
            {"event": "cell_end", "cell": 1, "seconds": 1.0, "chapter": "b"},
            {"event": "chapter_end", "chapter": "b", "error": True},
            {"event": "cell_end", "cell": 1, "seconds": 2.0, "chapter": "a"},
            {"event": "chapter_end", "chapter": "a", "error": False}]
    events.write_text("".join(json.dumps(dict(r, time=now)) + "\n" for r in rows))
    out = io.StringIO()
    follower = Follower(events, out)
    follower.poll()
    lines = [line.split("] ", 1)[1] for line in out.getvalue().splitlines()]
    assert "a: cell 1/2 done in 2.0 s" in lines and "b: cell 1/1 done in 1.0 s" in lines
    assert lines[lines.index("b: cell 1/1 done in 1.0 s") + 1].startswith("b: FAILED after 1 cells")
    assert lines[-1].startswith("a: finished, 1 cells in")
    assert follower.chapters == {}


def test_the_estimate_of_a_side_by_side_build_is_its_makespan():
    assert makespan([5, 4, 3, 3], 1) == 15
    assert makespan([5, 4, 3, 3], 2) == 8  # 5 + 3 and 4 + 3
    assert makespan([10, 1, 1], 2) == 10  # never less than the longest chapter
    assert makespan([], 2) == 0


def test_jobs_follow_the_environment_and_refuse_nonsense(monkeypatch):
    monkeypatch.setenv("DGM_BUILD_JOBS", "3")
    assert default_jobs(10) == 3 and default_jobs(2) == 2
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv("DGM_BUILD_JOBS", bad)
        with pytest.raises(ValueError, match="DGM_BUILD_JOBS"):
            default_jobs(5)


def test_a_chapter_that_loads_stored_models_starts_after_the_chapters_that_store_them(tmp_path):
    """With two kernels free, the reader still waits for its maker (dgm.store's comparison
    waits for the five model chapters); an unrelated chapter does not wait."""
    import os

    stamp = "import time, pathlib; pathlib.Path({!r}).write_text(str(time.time()))"
    (tmp_path / "_config.yml").write_text((ROOT / "_config.yml").read_text())
    _write_chapter(tmp_path, "maker", "import time; time.sleep(4)\n"
                   + stamp.format(str(tmp_path / "maker_end")))
    _write_chapter(tmp_path, "reader", stamp.format(str(tmp_path / "reader_start")))
    _write_chapter(tmp_path, "free", stamp.format(str(tmp_path / "free_start")))
    env = dict(os.environ, IPYTHONDIR=str(kernel_ipython_dir(tmp_path / "ipython")))
    env.pop(LOG_VAR, None)
    runs = execute_chapters(["maker", "reader", "free"], tmp_path / "cache", env, jobs=2,
                            estimates={"reader": 100.0, "maker": 1.0}, root=tmp_path,
                            after={"reader": {"maker"}})
    assert all(r.error is None for r in runs), runs
    maker_end = float((tmp_path / "maker_end").read_text())
    assert float((tmp_path / "reader_start").read_text()) >= maker_end
    assert float((tmp_path / "free_start").read_text()) < maker_end  # the second kernel was used


def test_the_comparison_waits_for_the_five_model_chapters_and_runs_again_after_them(tmp_path):
    from dgm.preexecute import with_readers
    from dgm.store import SAVED_BY, chapters_needed

    assert chapters_needed("comparison") == {"vae", "gans", "flows", "autoregressive", "diffusion"}
    assert chapters_needed("vae") == set()
    assert set(SAVED_BY.values()) <= set(_toc_chapters())
    chapters = ["vae", "diffusion", "comparison", "probability"]
    assert with_readers(["vae"], chapters, tmp_path / "no-cache") == ["vae", "comparison"]
    assert with_readers(["probability"], chapters, tmp_path / "no-cache") == ["probability"]
    assert with_readers(["comparison"], chapters, tmp_path / "no-cache") == ["comparison"]


def test_a_cached_reader_is_dropped_from_the_cache_when_a_maker_runs_again(project, tmp_path):
    import os

    from dgm.preexecute import with_readers

    env = dict(os.environ, IPYTHONDIR=str(kernel_ipython_dir(tmp_path / "ipython")))
    env.pop(LOG_VAR, None)
    execute_chapters(["other"], project / "cache", env, jobs=1, root=project, after={})
    assert cached_chapters(project / "cache", ["other"], project) == {"other"}
    import dgm.store

    old = dgm.store.READERS
    dgm.store.READERS = {"other": ("vae",)}  # 'other' loads the model the 'vae' chapter stores
    try:
        assert with_readers(["vae"], ["vae", "other"], project / "cache", project) == ["vae", "other"]
    finally:
        dgm.store.READERS = old
    assert cached_chapters(project / "cache", ["other"], project) == set()


def _toc_chapters():
    from dgm.build_progress import toc_chapters

    return toc_chapters()


def test_a_chapter_others_wait_for_goes_before_a_longer_one_nobody_waits_for():
    from dgm.preexecute import critical_path

    waits = {"maker": set(), "long": set(), "reader": {"maker"}}
    est = {"maker": 100.0, "long": 150.0, "reader": 80.0}
    assert critical_path("maker", waits, est) == 180.0  # itself, then the reader
    assert critical_path("long", waits, est) == 150.0
    assert critical_path("reader", {"reader": {"reader"}}, est) == 80.0  # a loop ends
