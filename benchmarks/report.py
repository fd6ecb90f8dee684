"""Write benchmarks/RESULTS.md from the JSON files the benchmark scripts left in results/.

    python -m benchmarks.report

Every figure in RESULTS.md comes from a file in benchmarks/results/ (with the machine and date it
was measured on); the reference numbers beside them are quoted from ../shared/TARGETS.md with
their sources.
"""

from __future__ import annotations

import json

from benchmarks.common import RESULTS
from benchmarks.cpu_peak_report import cpu_peak_section
from benchmarks.peers_models_report import models_section
from benchmarks.peers_report import peers_section

OUT = RESULTS.parent / "RESULTS.md"


def load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def fmt(value, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def when(row: dict) -> str:
    """`` (measured DATE)`` for a row merged from a run other than the file's own, else nothing."""
    return f" (measured {row['measured']})" if isinstance(row, dict) and "measured" in row else ""


def machine_line(payload: dict) -> str:
    m = payload.get("machine", {})
    gpu = m.get("gpu") or "no GPU"
    return f"*Measured {m.get('date', '?')} on {m.get('cpus', '?')} CPU cores, {gpu}, torch {m.get('torch', '?')}.*"


BUILD_TARGETS = {"smoke": "foundation chapters under 120 s", "cpu": "under 1,200 s (20 min), issue 14"}


def book_section(lines: list[str]) -> None:
    for profile in ("smoke", "cpu", "full"):
        data = load(f"book_build_{profile}")
        if not data:
            continue
        lines += [f"### Book build, {profile} profile", "", machine_line(data), "",
                  "| measure | value | target |", "| --- | --- | --- |",
                  f"| clean build, all chapters executed{', ' + str(data['jobs']) + ' at a time' if data.get('jobs', 1) > 1 else ''} "
                  f"| {fmt(data['clean_build_seconds'])} s | {BUILD_TARGETS.get(profile, '-')} |",
                  f"| no-change rebuild | {fmt(data['no_change_rebuild_seconds'])} s | under 5 s |",
                  f"| chapters re-executed by the rebuild | {data['rebuild_executed_chapters']} | 0 |", ""]
        lines += ["| chapter | execution in the build (s) |", "| --- | --- |"]
        lines += [f"| {k} | {fmt(v)} |" for k, v in data["chapter_execution_seconds"].items()]
        lines.append("")


def chapters_section(lines: list[str]) -> None:
    for profile in ("smoke", "cpu", "full"):
        data = load(f"chapters_{profile}")
        if not data:
            continue
        lines += [f"### Chapters executed alone, {profile} profile (target: each under "
                  f"{data['target_minutes']} min)", "", machine_line(data), "",
                  "| chapter | seconds | under target | figures recorded by the chapter |",
                  "| --- | --- | --- | --- |"]
        for name, row in data["chapters"].items():
            figures = "; ".join(
                f"{k}={fmt(v, 3) if isinstance(v, float) else v}"
                for rec in row["metrics"].values() for k, v in sorted(rec.items()))
            lines.append(f"| {name} | {fmt(row['seconds'])} | {fmt(row['under_target'])} | {figures or '-'} |")
        lines.append("")


#: Per chapter, the figures worth reading side by side in the cpu and full profiles.
SIDE_BY_SIDE = {
    "vae": ("vae", ["test_neg_elbo_nats", "sample_fd", "sample_coverage", "train_seconds"]),
    "diffusion": ("diffusion", ["final_train_loss", "sample_fd", "sample_coverage",
                                "ddpm_sample_seconds", "train_seconds", "n_parameters"]),
    "score_guidance": ("diffusion", ["cfg_fidelity", "cfg_diversity", "cfg_train_seconds"]),
    "flows": ("flows", ["test_bits_per_dim", "train_seconds"]),
    "autoregressive": ("autoregressive", ["pixelcnn_test_bits_per_dim", "transformer_test_bits_per_dim",
                                          "flow_test_bits_per_dim", "pixelcnn_ms_per_image",
                                          "transformer_cached_ms_per_image",
                                          "transformer_uncached_ms_per_image",
                                          "transformer_sample_fd", "transformer_sample_coverage"]),
    "contrastive": ("contrastive", ["probe_acc_10", "probe_acc_100", "supervised_acc_100",
                                    "random_acc_100", "simclr_seconds"]),
    "gans": ("gans", ["dcgan_fd", "dcgan_coverage", "toy_modes_1_d_step", "dcgan_seconds"]),
    "comparison": ("comparison", ["vae_fd", "gan_fd", "flow_fd", "ddpm_fd", "ddim_fd",
                                  "flow_test_bits_per_dim", "ddpm_ms_per_image", "autoregressive_fd",
                                  "autoregressive_test_bits_per_dim", "autoregressive_ms_per_image"]),
    "evaluation": ("evaluation", ["classifier_accuracy", "fd_real", "fd_noise"]),
    "flow_matching": ("flow_matching", ["fm_train_seconds", "ddpm_train_seconds", "fd_fm_euler_nfe50",
                                        "fd_fm_heun_nfe50", "fd_ddim_nfe50", "fd_ddpm_nfe100",
                                        "straightness_before", "straightness_after"]),
}


def profiles_section(lines: list[str]) -> None:
    """The full profile (one GPU) next to the cpu profile (2 cores), chapter by chapter."""
    cpu, full = load("chapters_cpu"), load("chapters_full")
    if not (cpu and full):
        return
    lines += ["### The full profile next to the cpu profile", "",
              f"cpu: {machine_line(cpu)[1:-1]}", f"full: {machine_line(full)[1:-1]}", "",
              f"Full-profile command: `{full.get('command', '?')}`. Both read the same 4,000-image",
              "training subset (the full profile is sized for all 60,000 images, so its epoch counts",
              "give about 15 times fewer updates here than on the whole training set).", "",
              "| chapter | seconds cpu / full | figure | cpu | full |", "| --- | --- | --- | --- | --- |"]
    for chapter, (rec, keys) in SIDE_BY_SIDE.items():
        c, f = cpu["chapters"].get(chapter), full["chapters"].get(chapter)
        if not f:
            continue
        secs = f"{fmt((c or {}).get('seconds'))} / {fmt(f.get('seconds'))}"
        if f.get("note"):
            secs += f" ({f['note']})"
        for i, key in enumerate(keys):
            cv = ((c or {}).get("metrics", {}).get(rec, {})).get(key)
            fv = f.get("metrics", {}).get(rec, {}).get(key)
            if cv is None and fv is None:
                continue
            lines.append(f"| {chapter if i == 0 else ''} | {secs if i == 0 else ''} | {key} | "
                         f"{fmt(cv, 3)} | {fmt(fv, 3)} |")
    lines.append("")


def headline_section(lines: list[str]) -> None:
    data = load("chapters_cpu") or load("chapters_smoke")
    if not data:
        return
    ch = data["chapters"]
    vae = ch.get("vae", {}).get("metrics", {}).get("vae", {})
    ddpm = ch.get("diffusion", {}).get("metrics", {}).get("diffusion", {})
    ev = load("evaluation") or {}
    real = ev.get("scores", {}).get("real_train", {})
    noise = ev.get("scores", {}).get("uniform_noise", {})
    lines += [f"### Model quality ({data['profile']} profile) next to the reference numbers", "",
              "| model | measure | ours | reference (../shared/TARGETS.md) |", "| --- | --- | --- | --- |",
              f"| conv VAE, Fashion-MNIST subset | test negative ELBO (nats) | {fmt(vae.get('test_neg_elbo_nats'))} | "
              "MLP VAE on MNIST, about 105.6 (pytorch/examples): another data set, not comparable |",
              f"| conv VAE | samples: coverage / FD_clf | {fmt(vae.get('sample_coverage'), 2)} / {fmt(vae.get('sample_fd'))} | "
              "8x8-digits setup: 60-epoch VAE FD_clf 183 |",
              f"| DDPM | samples: coverage / FD_clf | {fmt(ddpm.get('sample_coverage'), 2)} / {fmt(ddpm.get('sample_fd'))} | "
              "8x8-digits setup: 3-minute DDPM FD_clf 170 |",
              f"| DDPM vs DDIM | sampling seconds ({fmt(ddpm.get('n_samples'))} images) | "
              f"{fmt(ddpm.get('ddpm_sample_seconds'))} vs {fmt(ddpm.get('ddim_sample_seconds'))} | "
              "64 samples: 200 steps about 14 s, DDIM 20 steps about 10x faster |",
              f"| real images / uniform noise | FD_clf | {fmt(real.get('fd'))} / {fmt(noise.get('fd'))} | "
              "8x8-digits setup: 13.7 / 3,585 |", ""]


FM_SAMPLERS = {"fm_euler": "flow matching, Euler", "fm_heun": "flow matching, Heun",
               "ddim": "DDIM (eta = 0)", "ddpm": "DDPM (eta = 1)"}


def flow_matching_section(lines: list[str]) -> None:
    """FD_clf against network evaluations at equal training time, and reflow's straightness."""
    for profile in ("cpu", "full"):
        data = load(f"chapters_{profile}")
        row = (data or {}).get("chapters", {}).get("flow_matching")
        rec = (row or {}).get("metrics", {}).get("flow_matching")
        if not rec:
            continue
        nfes = sorted({int(k.rsplit("nfe", 1)[1]) for k in rec if k.startswith("fd_") and "_nfe" in k})
        lines += [f"### Flow matching against DDPM/DDIM at equal training time, {profile} profile", "",
                  machine_line(data) + (f" Note: {row['note']}." if row.get("note") else ""), "",
                  (f"{rec.get('train_steps')} training steps each: flow matching {fmt(rec.get('fm_train_seconds'))} s, "
                   f"DDPM {fmt(rec.get('ddpm_train_seconds'))} s. FD_clf (coverage) of {rec.get('eval_samples')} "
                   "samples from the same noise, by network evaluations (NFE):"), "",
                  "| sampler | " + " | ".join(f"NFE {n}" for n in nfes) + " |",
                  "| --- |" + " --- |" * len(nfes)]
        for key, label in FM_SAMPLERS.items():
            cells = [f"{fmt(rec[f'fd_{key}_nfe{n}'])} ({fmt(rec.get(f'coverage_{key}_nfe{n}'), 1)})"
                     if f"fd_{key}_nfe{n}" in rec else "-" for n in nfes]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        few = sorted({int(k.split("nfe")[1].split("_")[0]) for k in rec if k.startswith("reflow_fd_nfe")})
        lines += ["", (f"Reflow ({rec.get('reflow_pairs')} pairs in {fmt(rec.get('reflow_pair_seconds'))} s, "
                       f"fine-tuning {fmt(rec.get('reflow_seconds'))} s): straightness (mean deviation from the "
                       f"chord, 20 Euler steps) {fmt(rec.get('straightness_before'), 4)} before, "
                       f"{fmt(rec.get('straightness_after'), 4)} after."), "",
                  "| Euler steps | FD_clf before reflow | after |", "| --- | --- | --- |"]
        lines += [f"| {n} | {fmt(rec.get(f'reflow_fd_nfe{n}_before'))} | {fmt(rec.get(f'reflow_fd_nfe{n}_after'))} |"
                  for n in few]
        lines.append("")


def likelihood_section(lines: list[str]) -> None:
    """The exact-likelihood families side by side (same test images, bytes scale), and the cost
    of a pixel-by-pixel sample with and without the transformer's key-value cache."""
    for profile in ("cpu", "smoke", "full"):
        data = load(f"chapters_{profile}")
        ar = (data or {}).get("chapters", {}).get("autoregressive", {}).get("metrics", {}).get("autoregressive")
        if not ar:
            continue
        flows_ch = data["chapters"].get("flows", {}).get("metrics", {}).get("flows", {})
        lines += [f"### Exact likelihoods: flow and autoregressive models ({profile} profile)", "",
                  machine_line(data), "",
                  f"Test bits/dim on the flows chapter's {fmt(ar.get('test_images'))} test images, on the "
                  "8-bit scale (`bits_per_dim(..., scale=\"bytes\")`); the flow's is an upper bound through "
                  "dequantisation, the others are exact. Sampling: 784 sequential network calls per image. "
                  "Training seconds are those of each chapter's own run (in a whole build, one thread "
                  "per chapter, two chapters at a time).", "",
                  "| model | test bits/dim | given the class | training s | sampling ms per image |",
                  "| --- | --- | --- | --- | --- |",
                  f"| independent pixels | {fmt(ar.get('independent_pixels_bits_per_dim'), 3)} | - | - | - |",
                  f"| flow (flows chapter; the autoregressive chapter quotes it) | "
                  f"{fmt(flows_ch.get('test_bits_per_dim'), 3)} | - | {fmt(flows_ch.get('train_seconds'))} | - |",
                  f"| PixelCNN | {fmt(ar.get('pixelcnn_test_bits_per_dim'), 3)} | "
                  f"{fmt(ar.get('pixelcnn_test_bits_per_dim_given_y'), 3)} | {fmt(ar.get('pixelcnn_train_seconds'))} | "
                  f"{fmt(ar.get('pixelcnn_ms_per_image'))} |",
                  f"| pixel transformer | {fmt(ar.get('transformer_test_bits_per_dim'), 3)} | "
                  f"{fmt(ar.get('transformer_test_bits_per_dim_given_y'), 3)} | {fmt(ar.get('transformer_train_seconds'))} | "
                  f"{fmt(ar.get('transformer_ms_per_image'))} |",
                  "",
                  "Sampling ms per image is measured on one batch (the chapter's unconditional and class-conditional "
                  "samples together). The key-value cache, timed on a few images with the same seed (identical samples): "
                  f"{fmt(ar.get('transformer_cached_ms_per_image'))} ms per image with the cache, "
                  f"{fmt(ar.get('transformer_uncached_ms_per_image'))} ms without, "
                  f"{fmt(ar.get('kv_cache_speedup'))}x faster.",
                  ""]


def grading_section(lines: list[str]) -> None:
    for tag in ("smoke", "cpu", "smoke_cpu", "full"):
        data = load(f"grading_{tag}")
        if not data:
            continue
        lines += [f"### Grading one submission ({tag.replace('_', ' and ')})", "", machine_line(data),
                  f" Load average at the end: {', '.join(fmt(v, 1) for v in data.get('load_average_at_end', []))}.", "",
                  "| assignment | submission | score | wall (s) | notebook cells (s) | hidden checks (s) | grader overhead (s) |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        batches = []
        for profile, assignments in data["profiles"].items():
            for name, runs in assignments.items():
                if not isinstance(runs, dict):
                    continue
                for kind, r in runs.items():
                    if kind == "measured":
                        continue
                    if kind.startswith("batch"):
                        batches.append((profile, name, kind, r))
                    elif isinstance(r, dict) and "score" in r:
                        lines.append(f"| {name} ({profile}){when(runs)} | {kind} | {fmt(r['score'], 0)}/{fmt(r['max_score'], 0)} | "
                                     f"{fmt(r['wall_s'])} | {fmt(r['cells_s'])} | {fmt(r['checks_s'])} | {fmt(r['overhead_s'])} |")
                if "speedup_jobs2" in runs:
                    batches.append((profile, name, "speedup with --jobs 2", runs["speedup_jobs2"]))
        lines.append("")
        if batches:
            lines += ["| batch | assignment | run | wall (s) | submissions per minute |", "| --- | --- | --- | --- | --- |"]
            for profile, name, kind, r in batches:
                if isinstance(r, dict):
                    lines.append(f"| {profile} | {name} | {kind} | {fmt(r['wall_s'])} | {fmt(r['submissions_per_minute'], 2)} |")
                else:
                    lines.append(f"| {profile} | {name} | {kind} | {fmt(r, 2)}x | |")
            lines.append("")
    scale = load("grading_scale")
    if scale:
        lines += ["### Grading at scale: good, broken and hostile submissions in one batch", "", machine_line(scale), "",
                  "| jobs | submissions | wall (s) | per submission (s) | per minute | per core per minute | peak memory (MiB) | scores as expected |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in scale["runs"]:
            lines.append(f"| {r['jobs']} | {r['submissions']} | {fmt(r['wall_s'])} | {fmt(r['per_submission_s'], 2)} | "
                         f"{fmt(r['throughput_per_min'])} | {fmt(r['throughput_per_core_per_min'])} | {r['peak_memory_mb']} | "
                         f"{r['scores_as_expected']}/{r['submissions']} |")
        lines.append("")
    slurm = load("slurm_grading")
    if slurm:
        lines += ["### Grading through Slurm: a job array against local `--jobs 2`", "", machine_line(slurm),
                  f" One-node cluster on the same machine (`CPUs={slurm['node_cpus']}`), "
                  f"{slurm['array_parallelism']} tasks at a time, {slurm['cpus_per_task']} core each. "
                  f"Load average at the end: {', '.join(fmt(v, 1) for v in slurm.get('load_average_at_end', []))}.", "",
                  "| submissions | local wall (s) | Slurm wall (s) | overhead per submission (s) | task start (s, median) | task (s, median) | grading in the task (s, median) | same grades |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |",
                  f"| {slurm['submissions']} | {fmt(slurm['local_wall_s'])} | {fmt(slurm['slurm_wall_s'])} | "
                  f"{fmt(slurm['overhead_per_submission_s'], 2)} | {fmt(slurm['task_setup_s_median'], 2)} | "
                  f"{fmt(slurm['task_s_median'], 2)} | {fmt(slurm['grading_in_task_s_median'], 2)} | "
                  f"{slurm['same_grades']}/{slurm['submissions']} |", ""]
    mut = load("mutations_smoke")
    if mut:
        lines += ["### Typical mistakes graded by the real grader (smoke)", "", machine_line(mut), "",
                  "| assignment | submission | items that lost points | expected | ok |", "| --- | --- | --- | --- | --- |"]
        for r in mut["rows"]:
            if "submission" in r:
                lines.append(f"| {r['assignment']}{when(r)} | {r['submission']}{' (' + r['mistake'] + ')' if r.get('mistake') else ''} | "
                             f"{', '.join(r['lost']) or '-'} | {', '.join(r['expected']) or '-'} | {fmt(r['ok'])} |")
        lines.append("")
    bands = load("bands_cpu")
    if bands:
        lines += ["### Training-loss bands of the hidden checks, cpu profile", "", machine_line(bands),
                  f" Rule: {bands['rule']}.", "",
                  "| assignment | seeds | final losses | band |", "| --- | --- | --- | --- |"]
        for name, r in bands["assignments"].items():
            lines.append(f"| {name} | {', '.join(map(str, r['seeds']))} | "
                         f"{', '.join(f'{v:.4f}' for v in r['values'])} | {r['band'][0]}-{r['band'][1]} |")
        lines.append("")
    for profile in ("smoke", "cpu", "full"):
        sol = load(f"solutions_{profile}")
        if sol:
            lines += [f"### Reference solutions under nbval, {profile} profile", "", machine_line(sol), "",
                      "| assignment | wall (s) | all cells pass | within target |", "| --- | --- | --- | --- |"]
            for r in sol["runs"]:
                lines.append(f"| {r['assignment']}{when(r)} | {fmt(r['wall_s'])} | {fmt(r['passed'])} | "
                             f"{fmt(r['within_target'])} (under {r['target_s']} s) |")
            lines.append("")


def gradescope_section(lines: list[str]) -> None:
    data = load("gradescope")
    if not data:
        return
    lim = data.get("limits", {})
    lines += ["### Gradescope packages within Gradescope's limits", "", machine_line(data),
              f" Limits: {lim.get('memory_mb')} MB, {lim.get('cpus')} CPU ({lim.get('how', '')}).", "",
              "| profile | assignment | package (MB) | run_autograder (s) | peak memory (MB) | "
              "hit the memory limit | score | fits (time scaled to 0.5 CPU < 60 % of 600 s, limit never hit, full marks) |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    from autograder.gradescope import fit_problem

    for profile, runs in data.get("runs", {}).items():
        for name, r in runs.items():
            fits = fit_problem(name, profile, data) is None
            lines.append(f"| {profile} | {name} | {fmt(r['package_mb'], 2)} | {fmt(r['seconds'])} | "
                         f"{fmt(r['peak_mb'], 0)} | {fmt(r['hit_memory_limit'])} | "
                         f"{fmt(r['score'], 0)}/{fmt(r['max_score'], 0)} | {fmt(fits)} |")
    lines.append("")


def site_section(lines: list[str]) -> None:
    data = load("site_check")
    if not data:
        return
    lines += ["### The site in headless Chromium (network off)", "", machine_line(data), "",
              "| measure | value | target |", "| --- | --- | --- |"]
    for key, target in [("pages_checked", ""), ("console_errors", "0"), ("broken_links", "0"),
                        ("external_requests_blocked", "0"), ("untypeset_math", "0"), ("broken_images", "0"),
                        ("dropdowns_opened", ""), ("search_finds_chapter", "yes"),
                        ("players_checked", ""), ("players_responding", ""),
                        ("browser_check_seconds", ""), ("site_megabytes", "")]:
        lines.append(f"| {key.replace('_', ' ')} | {fmt(data.get(key))} | {target} |")
    lines.append("")


def flow_recipe_section(lines: list[str]) -> None:
    """The Glow flow's recipe variants at equal CPU time (benchmarks/flows_glow_recipe.py)."""
    data = load("flows_glow_recipe_cpu")
    if not data or not data.get("rows"):
        return
    rows = sorted(data["rows"], key=lambda r: (r.get("budget_cpu_s", 0), r.get("test_bpd", 9)))
    lines += ["### The flow's recipe at equal CPU time (cpu profile's data)", "",
              machine_line(data), "",
              "Each variant of the flows chapter's Glow-style flow trains for the same process CPU-seconds "
              "on one thread (`python -m benchmarks.flows_glow_recipe`); test bits/dim on 443 test images, "
              "FD_clf of 443 samples at temperature 1 and 0.8. Recipe: the schedule, learning rate, batch, "
              "optimiser and gradient clip (blank: the chapter's, which reads chapter, 0.005, 32, adam, 10); "
              "weights: the trained ones or a bias-corrected EMA of them.", "",
              "| variant | recipe | weights | CPU-s | steps | parameters | test bits/dim | FD_clf, T = 1 | "
              "FD_clf, T = 0.8 |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]

    def recipe(r: dict) -> str:
        rec = r.get("recipe")
        return "" if not rec else (f"{rec['schedule']}, {rec['lr']:g}, {rec['batch']}, {rec['optimizer']}, "
                                   f"{rec['clip']:g}")

    lines += [f"| {r['name']} | {recipe(r)} | {r.get('weights', 'trained')} | {fmt(r.get('cpu_s'))} | "
              f"{r.get('steps')} | {r.get('parameters'):,} | {fmt(r.get('test_bpd'), 3)} | "
              f"{fmt(r.get('fd_tau1.0'))} | {fmt(r.get('fd_tau0.8'))} |" for r in rows]
    lines.append("")


def ar_recipe_section(lines: list[str]) -> None:
    """The pixel transformer's recipe and output head at equal CPU time (benchmarks/autoregressive_recipe.py)."""
    data = load("autoregressive_recipe_cpu")
    rows = [r for r in (data or {}).get("rows", []) if r.get("train_cpu_seconds")]
    if not rows:
        return
    lines += ["### The pixel transformer's output head at equal CPU time (cpu profile's data)", "",
              machine_line(data), "",
              "The autoregressive chapter's transformer, trained on one thread for about the same process "
              "CPU-seconds (a cheaper step gets more steps; `python -m benchmarks.autoregressive_recipe`): "
              "`new` is the chapter's 256-way softmax, `dlmK` a discretised logistic mixture of K components "
              "(PixelCNN++), `new_lr5e-3` the softmax at a higher peak learning rate. Test bits/dim of p(x) "
              "on 443 test images; FD_clf and class coverage of 443 unconditional samples at temperature 1; "
              "class accuracy: the share of 10 class-conditional samples per class the evaluation "
              "classifier puts in their class, with classifier-free guidance weight w (about +-0.04).", "",
              "| recipe | CPU-s | steps | test bits/dim | FD_clf, T = 1 | coverage | class accuracy w = 0 | "
              "w = 1 |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in sorted(rows, key=lambda r: r["test_bits_per_dim"]):
        lines.append(f"| {r['recipe']} | {fmt(r['train_cpu_seconds'])} | {r['steps']} | "
                     f"{fmt(r['test_bits_per_dim'], 3)} | {fmt(r.get('fd_tau1.0'))} | "
                     f"{fmt(r.get('coverage_tau1.0'), 1)} | {fmt(r.get('class_accuracy_tau1.0_w0.0'), 2)} | "
                     f"{fmt(r.get('class_accuracy_tau1.0_w1.0'), 2)} |")
    lines.append("")


def main() -> None:
    lines = ["# Measured results", "",
             "Generated by `python -m benchmarks.report` from `benchmarks/results/*.json`; each JSON file",
             "names the script that wrote it, the machine and the date. Do not edit by hand.", "",
             "All figures come from the 4,000 + 443-image Fashion-MNIST subset in ../shared/data (so they",
             "are not comparable with published full-data numbers): the smoke and cpu profiles on a 2-core",
             "machine without a GPU, the full profile on one NVIDIA H100 (each table names its machine).", ""]
    headline_section(lines)
    likelihood_section(lines)
    book_section(lines)
    profiles_section(lines)
    flow_matching_section(lines)
    flow_recipe_section(lines)
    ar_recipe_section(lines)
    chapters_section(lines)
    cpu_peak_section(lines, load("cpu_peak"), machine_line)
    grading_section(lines)
    peers_section(lines, load("peers_grader"), machine_line, fmt)
    models_section(lines, load("peers_models"), machine_line)
    gradescope_section(lines)
    site_section(lines)
    ev = load("evaluation")
    if ev:
        lines += ["### Evaluation harness baselines", "",
                  f"Classifier held-out accuracy {fmt(ev.get('accuracy_heldout'), 3)} "
                  f"({ev.get('profile')} profile, {ev.get('n_train')} training images).", "",
                  "| set | n | FD_clf | coverage | mean confidence |", "| --- | --- | --- | --- | --- |"]
        for name, sc in ev.get("scores", {}).items():
            lines.append(f"| {name} | {sc.get('n')} | {fmt(sc.get('fd'))} | {fmt(sc.get('coverage'), 2)} | "
                         f"{fmt(sc.get('mean_confidence'), 3)} |")
        lines.append("")
    OUT.write_text("\n".join(lines) + "\n")
    print(OUT.read_text())


if __name__ == "__main__":
    main()
