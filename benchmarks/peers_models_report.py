"""The RESULTS.md section for benchmarks/results/peers_models.json (the course's DDPM, flow, VAE
and SimCLR against the libraries people would use, at an equal CPU budget);
benchmarks/report.py calls :func:`models_section`."""

from __future__ import annotations

TITLES = {"ddpm": "DDPM", "flow": "Normalizing flow", "vae": "VAE", "simclr": "SimCLR"}
METRIC_NAMES = {"fd": "Frechet distance (classifier features)", "coverage": "class coverage",
                "test_bits_per_dim": "test bits/dim", "test_negative_elbo_nats": "test negative ELBO (nats)",
                "probe_acc_10": "linear probe, 10 labels/class", "probe_acc_100": "linear probe, 100 labels/class"}
#: What the comparison leaves out, per model; printed under the table.
NOTES = {
    "ddpm": "Both sample with the same sampler ({sampler}, {steps} steps, {n} samples scored by "
            "dgm.evaluate against the test split; the Frechet distance depends on N, so compare it only "
            "within this table). The peer keeps its defaults (v-prediction, sigmoid schedule, T = 200) "
            "and its Trainer's optimiser (Adam 1e-4, betas 0.9/0.99, clipping at 1) without the EMA.",
    "flow": "Both flows see the same input: dgm.flows.Dequantize (uniform noise, (k + u) / 256, "
            "logit with alpha = 1e-5), whose log-determinant is added to normflows' log_prob, so both "
            "numbers are the same bound on the discrete likelihood, in bits per dimension of 8-bit data.",
    "vae": "Both: batch 128, Bernoulli likelihood on grey levels, one z per test image. Ours: the "
           "chapter's cpu recipe (width 8, per-pixel decoder bias started at the mean image, fused "
           "Adam 2e-3); the peer: the PyTorch example's Adam 1e-3.",
    "simclr": "The peer is lightly's recipe (SimCLRTransform on PIL images without blur, "
              "SimCLRProjectionHead, NTXentLoss, SGD 0.06) on the course's small backbone: a "
              "ResNet-18 gets only a handful of steps in this budget. Probe: dgm.contrastive.linear_probe.",
}


def _num(x, digits: int) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _digits(metric: str) -> int:
    return 3 if metric.startswith(("probe", "coverage", "test_bits")) else 1


def models_section(lines: list[str], data: dict | None, machine_line) -> None:
    if not data or not data.get("models"):
        return
    v = data.get("versions", {})
    lines += ["### The course's models against the libraries people would use, at an equal CPU budget", "",
              machine_line(data),
              f" denoising-diffusion-pytorch {v.get('denoising-diffusion-pytorch', '?')}, normflows "
              f"{v.get('normflows', '?')}, lightly {v.get('lightly', '?')}. Each run trains until its "
              "process has used the same number of CPU seconds (`time.process_time`, all threads, at a "
              "fixed torch thread count; data loading and augmentation run in the process and count), "
              "on the 4,000 training images; scores on the 443 test images. The machine was shared with "
              "other jobs: wall seconds and the load average are recorded beside the CPU seconds, and "
              "wall time is inflated by the load. Mean over the seeds; the ratio is ours / peer "
              "(the better side is named).", "",
              "| model | peer | CPU budget (s) x seeds | metric | ours | peer | ours / peer | better | "
              "steps ours / peer | train wall s ours / peer |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for key, entry in data["models"].items():
        model = entry.get("model", key)
        s = entry["summary"]
        steps, wall = s.get("steps", {}), s.get("train_wall_s", {})
        for metric in (k for k in s if k in METRIC_NAMES):
            m, d = s[metric], _digits(metric)
            by_seed = lambda side: ", ".join(_num(x, d) for x in m[f"{side}_by_seed"])  # noqa: E731
            lines.append(
                f"| {TITLES[model]} | {entry['peer']} | {entry['budget_cpu_s']:g} x {len(entry['seeds'])} | "
                f"{METRIC_NAMES[metric]} ({'lower' if m['lower_is_better'] else 'higher'} is better) | "
                f"{_num(m['ours'], d)} ({by_seed('ours')}) | {_num(m['peer'], d)} ({by_seed('peer')}) | "
                f"{_num(m['ratio_ours_over_peer'], 2)} | {m['better']} | "
                f"{_num(steps.get('ours'), 0)} / {_num(steps.get('peer'), 0)} | "
                f"{_num(wall.get('ours'), 0)} / {_num(wall.get('peer'), 0)} |")
    lines.append("")
    lost = [f"{TITLES[model]} at {entry['budget_cpu_s']:g} s x {len(entry['seeds'])} seed(s) ("
            + ", ".join(f"{METRIC_NAMES[k]} {_num(m['ours'], _digits(k))} against {_num(m['peer'], _digits(k))}"
                        for k, m in entry["summary"].items() if k in METRIC_NAMES) + ")"
            for model, entry in ((e.get("model", k), e) for k, e in data["models"].items())
            if all(m["better"] == "peer" for k, m in entry["summary"].items() if k in METRIC_NAMES)]
    if lost:
        lines += ["At this budget the course's model does worse than the peer on every measure for: "
                  + "; ".join(lost) + ". Small budgets favour cheap steps: compare the step counts. A gap "
                  "smaller than the spread between seeds (in brackets in the table) is a tie.", ""]
    lines.append("| model | side | parameters | recipe | train CPU s | sampling CPU s / wall s | load average (1 min) |")
    lines.append("| --- | --- | --- | --- | --- | --- | --- |")
    for key, entry in data["models"].items():
        model = entry.get("model", key)
        for side in ("ours", "peer"):
            runs = entry["runs"][side]
            r = runs[0]
            cpu = sum(x["train_cpu_s"] for x in runs) / len(runs)
            sampling = (f"{_num(r['sample_cpu_s'], 0)} / {_num(r['sample_wall_s'], 0)} ({r['n_samples']} samples)"
                        if "sample_cpu_s" in r else "-")
            loads = ", ".join(_num(x["load_average_before"][0], 1) for x in runs)
            lines.append(f"| {TITLES[model]} | {side} | {r['params']:,} | {r['recipe']} | {_num(cpu, 1)} | "
                         f"{sampling} | {loads} |")
    lines.append("")
    for key, entry in data["models"].items():
        model = entry.get("model", key)
        r = entry["runs"]["ours"][0]
        note = NOTES[model].format(sampler=r.get("sampler", "ddpm").upper(), steps=r.get("sampling_steps", 200),
                                   n=r.get("n_samples"))
        if model == "ddpm" and entry["budget_cpu_s"] < 60:
            note += (" With well under a minute of CPU neither DDPM has left the noise regime (uniform "
                     "noise is in the table of evaluation baselines below): read this row for the cost "
                     "per step and per sample, not for quality.")
        lines.append(f"* {TITLES[model]}, {entry['budget_cpu_s']:g} CPU s: {note} Reproduce: `{entry['command']}`")
    lines.append("")
