"""Progress bars (dgm/progress.py) are drawn when asked for, and never in the built book."""

from dgm.progress import progress_bar, progress_enabled


def test_bars_follow_the_request_when_the_environment_is_silent(monkeypatch):
    monkeypatch.delenv("DGM_PROGRESS", raising=False)
    assert progress_enabled(True) and not progress_enabled(False)


def test_the_book_build_switch_turns_every_bar_off(monkeypatch):
    monkeypatch.setenv("DGM_PROGRESS", "0")
    assert not progress_enabled(True)
    assert progress_bar(range(3), enabled=True).disable


def test_a_disabled_bar_still_iterates_over_everything(monkeypatch):
    monkeypatch.setenv("DGM_PROGRESS", "0")
    assert list(progress_bar(range(5))) == [0, 1, 2, 3, 4]
