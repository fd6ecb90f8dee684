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


def test_a_bar_redrawn_every_step_sends_its_start_and_end_to_the_build_log(tmp_path, monkeypatch):
    """In a build, a bar whose postfix changes every step still gives a few lines, not one a step."""
    import json

    log = tmp_path / "events.jsonl"
    monkeypatch.setenv("DGM_PROGRESS_LOG", str(log))
    bar = progress_bar(total=500, desc="train")
    for step in range(500):
        bar.update()
        bar.set_postfix(loss=f"{1 / (step + 1):.4f}")
    bar.close()
    texts = [json.loads(line)["text"] for line in log.read_text().splitlines()]
    assert 2 <= len(texts) <= 3  # the 0 % line, perhaps one timed redraw, the final line
    assert texts[0].startswith("train:   0%") and "500/500" in texts[-1] and "loss=0.0020" in texts[-1]
