"""The RESULTS.md section of benchmarks/cpu_peak.py: the CPU's matmul peak, each training step's
share of it, where the step's time goes, and the speed-ups tried (before / after)."""

from __future__ import annotations

from collections.abc import Callable

LABELS = {"vae": "VAE", "ddpm": "DDPM U-Net", "flow": "RealNVP flow", "gan": "DCGAN (D + G update)",
          "simclr": "SimCLR encoder", "transformer": "pixel transformer"}


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{1e3 * value:.1f}"


def cpu_peak_section(lines: list[str], data: dict | None, machine_line: Callable[[dict], str]) -> None:
    if not data or not data.get("rows"):
        return
    peak, flop, rows = data["peak"], data["flop"], data["rows"]
    lines += ["### Training steps against the CPU's matrix-multiply peak (cpu profile)", "",
              machine_line(data), "",
              f"Command: `{data.get('command', '?')}`. The machine was shared with other jobs (load",
              "averages in the tables), so wall times are inflated by waiting for a core; the",
              "figures \"by CPU time\" divide by the process CPU time per thread instead, which is",
              "what the step costs when its threads run. Medians over repeats.", ""]
    busy = max((p["load_average"][0] for p in peak.values()), default=0.0)
    if busy > (data.get("machine", {}).get("cpus") or 2):
        lines += [f"The wall-time peak below was measured at a load average of {busy:g}: the shares of",
                  "it (\"share of peak, wall\") compare two differently loaded runs and can exceed the",
                  "CPU-time share. Read the CPU-time columns.", ""]
    lines += ["| threads | matmul n | GFLOP/s, wall | GFLOP/s per thread, CPU time | load average |",
              "| --- | --- | --- | --- | --- |"]
    for n, p in sorted(peak.items(), key=lambda kv: int(kv[0])):
        lines.append(f"| {n} | {p['n']} | {p['gflops_wall']:.1f} | {p['gflops_cpu_per_thread']:.1f} | "
                     f"{', '.join(f'{v:g}' for v in p['load_average'])} |")
    lines += ["", "FLOP per step are counted by `torch.utils.flop_counter.FlopCounterMode` (matrix",
              "products, convolutions, attention; forward + backward). The split is the share of the",
              "step's CPU time spent in each phase.", "",
              "| model | batch | GFLOP / step | threads | ms / step wall | ms / step CPU | share of peak, wall | "
              "share of peak, CPU time | data / forward / backward / optimiser | load |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    base = [r for r in rows.values() if r["stage"] == "before" and r["variant"] == "baseline"]
    for r in sorted(base, key=lambda r: (list(LABELS).index(r["model"]), r["threads"])):
        total = sum(r["cpu_split_s"].values()) or 1.0
        split = " / ".join(f"{100 * r['cpu_split_s'][p] / total:.0f}" for p in
                           ("data", "forward", "backward", "optimiser"))
        lines.append(f"| {LABELS[r['model']]} | {r['batch']} | {flop[r['model']]['flop'] / 1e9:.2f} | "
                     f"{r['threads']} | {_ms(r['step_wall_s'])} | {_ms(r['step_cpu_s'])} | "
                     f"{_pct(r['share_wall'])} | {_pct(r['share_cpu'])} | {split} % | "
                     f"{r['load_average'][0]:g} |")
    tried = [r for r in rows.values() if r["variant"] != "baseline" or r["stage"] != "before"]
    if tried:
        lines += ["", "Speed-ups tried, against the baseline row of the same model and thread count",
                  "(CPU time per step; a gain is CPU time saved). These runs were separate processes at",
                  "different loads, which moved the CPU time of one step by about 10 %: the paired runs",
                  "below are the measure of each gain.", "",
                  "| model | variant | stage | threads | ms / step CPU, baseline | ms / step CPU | gain | "
                  "ms / step wall | first two steps (s) |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in sorted(tried, key=lambda r: (list(LABELS).index(r["model"]), r["variant"], r["threads"])):
            ref = rows.get(f"before/{r['model']}/baseline/{r['threads']}")
            gain = None if not ref else 1 - r["step_cpu_s"] / ref["step_cpu_s"]
            lines.append(f"| {LABELS[r['model']]} | {r['variant']} | {r['stage']} | {r['threads']} | "
                         f"{_ms(ref and ref['step_cpu_s'])} | {_ms(r['step_cpu_s'])} | {_pct(gain)} | "
                         f"{_ms(r['step_wall_s'])} | {r['warmup_seconds']:g} |")
    ab = data.get("ab", {})
    if ab:
        lines += ["", "Paired A/B runs: the baseline step and the changed step built in one process and run",
                  "alternately in blocks (ABBA), so that load changes hit both; the ratio is the median of",
                  "the per-block ratios of CPU time, changed / baseline (below 1: faster).", "",
                  "| model | change | threads | ms / step CPU, baseline | changed | median ratio | "
                  "ratios per block | load |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in sorted(ab.values(), key=lambda r: (list(LABELS).index(r["model"]), r["variant"], r["threads"])):
            ratios = ", ".join(f"{x:.2f}" for x in r["ratios"])
            lines.append(f"| {LABELS[r['model']]} | {r['variant']} | {r['threads']} | {_ms(r['baseline_cpu_s'])} | "
                         f"{_ms(r['variant_cpu_s'])} | {r['ratio_median']:.3f} | {ratios} | "
                         f"{r['load_average'][0]:g} |")
    for note in data.get("notes", []):
        lines += ["", note]
    lines.append("")
