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
    build.build_book("smoke", build.ROOT / "_build" / "env-test", echo=False, jobs=1)
    assert "MPLBACKEND" not in seen and seen["DGM_PROFILE"] == "smoke" and seen["DGM_PROGRESS"] == "0"


def test_a_changed_fingerprint_also_clears_sphinx_saved_environment(tmp_path, monkeypatch):
    """Otherwise Sphinx skips unchanged pages whose executed copies were deleted, and the build
    fails on the missing .ipynb (seen with homework.md)."""
    import dgm.build as build

    class FakePopen:
        def __init__(self, cmd, env, **kwargs):
            self.stdout = iter(())
            self.returncode = 0

        def wait(self):
            return 0

    bdir = build.build_dir(tmp_path)
    (bdir / ".doctrees").mkdir(parents=True)
    (bdir / ".doctrees" / "environment.pickle").write_text("old")
    (bdir / ".dgm-fingerprint").write_text("cpu dgm-0000\n")
    monkeypatch.setattr(subprocess, "Popen", FakePopen)
    build.build_book("smoke", tmp_path, echo=False, progress=None, jobs=1)
    assert not (bdir / ".doctrees").exists()
