"""Hand figures measured inside a chapter or notebook to the benchmark scripts.

A chapter calls ``record("vae", test_neg_elbo_nats=...)`` after it measured something. When
``$DGM_METRICS_DIR`` is set (the benchmark scripts set it), the figures are merged into
``$DGM_METRICS_DIR/<name>.json``; otherwise nothing is written, so a reader's run leaves no files.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def record(name: str, **metrics: float | int | str) -> dict:
    """Merge ``metrics`` into ``$DGM_METRICS_DIR/<name>.json`` (no-op when it is unset); return them."""
    folder = os.environ.get("DGM_METRICS_DIR", "").strip()
    if folder:
        path = Path(folder) / f"{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        old = json.loads(path.read_text()) if path.exists() else {}
        old.update(metrics)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(old, indent=2, sort_keys=True))
        tmp.replace(path)
    return metrics


RECORDS = Path(__file__).resolve().parent.parent / "benchmarks" / "results"


def recorded(chapter: str, metric: str, profile: str, folder: Path = RECORDS) -> float | int | str:
    """The figure ``metric`` that ``chapter`` recorded when ``python -m benchmarks.chapters``
    last ran it in ``profile`` (``<folder>/chapters_<profile>.json``), for a chapter that quotes
    another chapter's result instead of recomputing it. Raises ``KeyError`` naming the file and
    what is missing, with the command that records it."""
    path = Path(folder) / f"chapters_{profile}.json"
    chapters = json.loads(path.read_text())["chapters"] if path.exists() else {}
    metrics = chapters.get(chapter, {}).get("metrics", {}).get(chapter, {})
    if metric not in metrics:
        raise KeyError(f"{path} holds no {metric!r} of chapter {chapter!r}; record it with "
                       f"python -m benchmarks.chapters --profile {profile} --chapters {chapter}")
    return metrics[metric]
