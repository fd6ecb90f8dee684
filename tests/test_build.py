"""The book build's execution cache is cleared when what it cannot see changes, and chapters
draw with the kernel's own backend whatever the caller's environment says (dgm/build.py)."""

import subprocess

from dgm.build import fingerprint


def test_fingerprint_differs_between_profiles():
    assert fingerprint("smoke") != fingerprint("cpu")


def test_fingerprint_follows_the_helper_package_sources(tmp_path, monkeypatch):
    import dgm.build as build

    (tmp_path / "dgm").mkdir()
    (tmp_path / "dgm" / "a.py").write_text("x = 1\n")
    monkeypatch.setattr(build, "ROOT", tmp_path)
    before = build.fingerprint("smoke")
    assert build.fingerprint("smoke") == before
    (tmp_path / "dgm" / "a.py").write_text("x = 2\n")
    assert build.fingerprint("smoke") != before


def test_a_forced_matplotlib_backend_does_not_reach_the_chapters(monkeypatch):
    """MPLBACKEND=Agg (common on CI machines) would make plt.show() draw nothing in a chapter."""
    import dgm.build as build

    seen = {}

    class FakePopen:
        def __init__(self, cmd, env, **kwargs):
            seen.update(env)
            self.stdout = iter(())
            self.returncode = 0

        def wait(self):
            return 0

    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setattr(subprocess, "Popen", FakePopen)
    build.build_book("smoke", build.ROOT / "_build" / "env-test", echo=False)
    assert "MPLBACKEND" not in seen and seen["DGM_PROFILE"] == "smoke" and seen["DGM_PROGRESS"] == "0"
