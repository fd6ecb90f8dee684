"""Execute chapters in one run profile and record their times and the figures they measured.

    python -m benchmarks.chapters --profile cpu [--chapters vae diffusion ...]

Each chapter (a MyST notebook under book/) runs in a fresh kernel with book/ as its working
folder, exactly as the book build runs it, with ``$DGM_METRICS_DIR`` set so that the chapter's
``dgm.results.record(...)`` calls land beside the timing. Writes
benchmarks/results/chapters_<profile>.json (merged with what earlier runs of other chapters
wrote). Targets on 2 cores: every chapter under 3 minutes in smoke and under 15 in cpu.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import jupytext
import yaml
from nbclient import NotebookClient

from benchmarks.common import RESULTS, write
from dgm.config import PROFILES, get_profile

ROOT = Path(__file__).resolve().parent.parent
LIMITS_MINUTES = {"smoke": 3, "cpu": 15, "full": 15}


def toc_chapters() -> list[str]:
    """Chapter names (book/<name>.md) that hold code, in table-of-contents order."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]] + [c["file"] for part in toc["parts"] for c in part["chapters"]]
    return [Path(f).name for f in files if "```{code-cell}" in (ROOT / f"{f}.md").read_text()]


def run_chapter(name: str, profile: str, metrics_dir: Path, timeout: int) -> float:
    nb = jupytext.read(ROOT / "book" / f"{name}.md")
    env = {"DGM_PROFILE": profile, "DGM_METRICS_DIR": str(metrics_dir), "DGM_PROGRESS": "0"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits the environment of this process
    os.environ.pop("MPLBACKEND", None)  # figures come from the kernel's inline backend
    try:
        start = time.perf_counter()
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(ROOT / "book")}}).execute()
        return time.perf_counter() - start
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=PROFILES, default=None)
    parser.add_argument("--chapters", nargs="*", default=None, help="default: every chapter with code")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per cell")
    args = parser.parse_args()
    profile = get_profile(args.profile)
    chapters = args.chapters or toc_chapters()
    path = RESULTS / f"chapters_{profile}.json"
    results = json.loads(path.read_text()).get("chapters", {}) if path.exists() else {}
    for name in chapters:
        with tempfile.TemporaryDirectory() as tmp:
            print(f"[{profile}] executing {name} ...", flush=True)
            seconds = run_chapter(name, profile, Path(tmp), args.timeout)
            metrics = {}
            for f in Path(tmp).glob("*.json"):
                metrics[f.stem] = json.loads(f.read_text())
        results[name] = {"seconds": round(seconds, 1),
                         "under_target": seconds < 60 * LIMITS_MINUTES[profile],
                         "metrics": metrics}
        print(f"[{profile}] {name}: {seconds:.1f} s", flush=True)
        write(f"chapters_{profile}", {"profile": profile, "target_minutes": LIMITS_MINUTES[profile],
                                      "chapters": results})


if __name__ == "__main__":
    main()
