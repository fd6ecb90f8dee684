"""The book build's execution cache is cleared when what it cannot see changes (dgm/build.py)."""

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
