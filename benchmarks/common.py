"""What every benchmark records beside its figures: the machine, the versions, the date."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import sys
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    return {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "data_root": os.environ.get("DGM_DATA", "(default cache)"),
    }


def command() -> str:
    """The command line that is running, as ``python -m benchmarks.<script> ARGS``."""
    script = Path(sys.argv[0])
    if script.suffix == ".py" and script.resolve().parent == RESULTS.parent:
        return " ".join(["python", "-m", f"benchmarks.{script.stem}", *sys.argv[1:]])
    return " ".join(["python", *sys.argv])


def write(name: str, payload: dict) -> Path:
    """Write ``benchmarks/results/<name>.json`` atomically, with the machine facts and the
    command that made it."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"command": command(), **payload}
    path = RESULTS / f"{name}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"machine": machine(), **payload}, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
    return path


def previous(name: str) -> dict | None:
    """The payload of ``benchmarks/results/<name>.json``, or None when there is none."""
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def stamped(row: dict) -> dict:
    """``row`` with the date and load of this run, for rows merged into a file measured earlier."""
    return {**row, "measured": machine()["date"], "load_average": [round(v, 2) for v in os.getloadavg()]}


def dated(row: dict, payload: dict) -> dict:
    """A row kept from an earlier file, with that file's date unless it already carries its own."""
    return row if "measured" in row else {**row, "measured": payload.get("machine", {}).get("date", "?")}
