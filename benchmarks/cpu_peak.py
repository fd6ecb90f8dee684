"""How much of the CPU's matrix-multiply peak each chapter's training step reaches (issue #14).

    python -m benchmarks.cpu_peak [--models vae ddpm ...] [--variants baseline ...]
                                  [--threads 1 2] [--steps 8] [--repeats 3]

For the training step of each chapter's main model, at the cpu profile's sizes (each module's
``SETTINGS["cpu"]``), it measures

* the machine's peak: ``torch.matmul`` of two n x n float32 matrices, 2 n^3 FLOP, at 1 thread and
  at ``torch.get_num_threads()`` threads;
* the FLOP of one step (forward + backward) counted by ``torch.utils.flop_counter.FlopCounterMode``
  (matrix products, convolutions and attention; element-wise work is not counted), and the
  achieved FLOP/s = FLOP / step time as a share of the peak at the same thread count;
* where the time goes: data loading, forward, backward and optimiser step, by explicit timers
  (CPU operators run synchronously, so a timer stops when its work is done).

The machine is shared: every time is taken as wall time and as process CPU time, at a fixed
thread count, with the load average beside it; each figure is the median of ``--repeats`` runs of
``--steps`` steps after two warm-up steps. Variants (``--variants``) are the speed-ups tried:
``tensor_loader`` (index batches of the dataset tensor instead of a ``DataLoader`` collating
items one by one), ``channels_last`` and ``compile`` (``torch.compile``, compile time recorded).
Rows are merged into benchmarks/results/cpu_peak.json, so models can be measured one at a time.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.common import previous, stamped, write

PHASES = ("data", "forward", "backward", "optimiser")
MODELS = ("vae", "ddpm", "flow", "gan", "simclr", "transformer")
VARIANTS = ("baseline", "tensor_loader", "fused_adam", "channels_last", "compile")
NAME = "cpu_peak"


# ------------------------------------------------------------------------------------ timing
class PhaseTimer:
    """Accumulates wall and process CPU seconds (and counted FLOP, when a counter is given) per
    phase of a step; ``with timer("forward"): ...``."""

    def __init__(self, counter: FlopCounterMode | None = None):
        self.counter = counter
        self.wall: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)
        self.flop: dict[str, int] = defaultdict(int)

    @contextmanager
    def __call__(self, phase: str):
        f0 = self.counter.get_total_flops() if self.counter else 0
        w0, c0 = time.perf_counter(), time.process_time()
        yield
        self.wall[phase] += time.perf_counter() - w0
        self.cpu[phase] += time.process_time() - c0
        if self.counter:
            self.flop[phase] += self.counter.get_total_flops() - f0


def matmul_peak(threads: int, n: int = 2048, repeats: int = 5) -> dict:
    """FLOP/s of ``torch.matmul`` on two n x n float32 matrices at ``threads`` threads: the
    median over ``repeats`` products, by wall time and by process CPU time per thread."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.matmul(a, b)  # warm-up: MKL picks its kernels and allocates its buffers
    walls, cpus = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        torch.matmul(a, b)
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    flop = 2 * n**3
    return {"threads": threads, "n": n, "flop": flop,
            "gflops_wall": flop / statistics.median(walls) / 1e9,
            "gflops_cpu_per_thread": flop / statistics.median(cpus) / 1e9,
            "load_average": [round(v, 2) for v in os.getloadavg()]}


# --------------------------------------------------------------------------------- workloads
class TensorBatches:
    """Batches of a ``TensorDataset`` by indexing its tensors, in the order ``DataLoader`` gives
    with ``shuffle=True`` and the same seeded generator (it draws the loader's base seed first)."""

    def __init__(self, tensors, batch_size: int, seed: int, drop_last: bool):
        self.tensors, self.batch_size, self.drop_last = tensors, batch_size, drop_last
        self.gen = torch.Generator().manual_seed(seed)

    def __iter__(self):
        n = len(self.tensors[0])
        torch.empty((), dtype=torch.int64).random_(generator=self.gen)
        order = torch.randperm(n, generator=self.gen)
        stop = n - n % self.batch_size if self.drop_last else n
        for i in range(0, stop, self.batch_size):
            idx = order[i:i + self.batch_size]
            yield [t[idx] for t in self.tensors]


def _loader(dataset, batch_size: int, seed: int, drop_last: bool, kind: str):
    if kind == "tensor_loader":
        return TensorBatches(dataset.tensors, batch_size, seed, drop_last)
    gen = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=gen, drop_last=drop_last)


def _forever(loader) -> Iterator:
    while True:
        yield from loader


@dataclass
class Workload:
    """One model's training step: ``step(timer)`` runs it, timing its phases; ``modules`` are the
    networks (for channels-last and compile)."""

    name: str
    step: Callable[[PhaseTimer], None]
    batch: int
    threads_setting: int | None  # the module's SETTINGS["cpu"].threads (None: torch's default)


def _has(variant: str, change: str) -> bool:
    """Whether a variant (changes joined by "+", e.g. "tensor_loader+fused_adam") has ``change``."""
    return change in variant.split("+")


def _fused(variant: str) -> dict:
    """Optimiser keywords: the fused CPU kernel of Adam/AdamW for the fused_adam variant."""
    return {"fused": True} if _has(variant, "fused_adam") else {}


def _prepare(model: torch.nn.Module, variant: str) -> torch.nn.Module:
    if _has(variant, "channels_last"):
        return model.to(memory_format=torch.channels_last)
    return model


def _input(x: torch.Tensor, variant: str) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if _has(variant, "channels_last") and x.ndim == 4 else x


def _maybe_compile(fn, variant: str):
    return torch.compile(fn) if _has(variant, "compile") else fn


def _timed_step(fetch, loss_of, opt, clip: float | None = None, sched=None):
    """A training step timed by phase: ``fetch()`` a batch (data), ``loss_of(batch)`` (forward),
    backward, then gradient clipping at ``clip``, the optimiser and ``sched`` (optimiser)."""
    params = [p for group in opt.param_groups for p in group["params"]]

    def step(t: PhaseTimer) -> None:
        with t("data"):
            batch = fetch()
        with t("forward"):
            loss = loss_of(batch)
        with t("backward"):
            opt.zero_grad(set_to_none=True)
            loss.backward()
        with t("optimiser"):
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(params, clip)
            opt.step()
            if sched is not None:
                sched.step()
    return step

def build(name: str, variant: str) -> Workload:
    """The cpu-profile training step of one chapter's model, written as in its training loop."""
    from dgm.config import seed_everything
    from dgm.data import load_dataset

    loader_kind = "tensor_loader" if _has(variant, "tensor_loader") else "dataloader"
    if name == "vae":
        from dgm import vae
        cfg = vae.SETTINGS["cpu"]
        seed_everything(cfg.seed)
        data = load_dataset("fashion_mnist", "train", subset=cfg.train_subset, seed=cfg.seed)
        model = _prepare(vae.ConvVAE.from_settings(cfg), variant)
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, **_fused(variant))
        batches = _forever(_loader(data, cfg.batch_size, cfg.seed, False, loader_kind))
        fwd = _maybe_compile(lambda x: vae.vae_loss(x, *model(x)).total, variant)

        step = _timed_step(lambda: _input(next(batches)[0], variant), fwd, opt)
        return Workload(name, step, cfg.batch_size, None)

    if name == "ddpm":
        from dgm import diffusion
        from dgm.unet import UNet
        cfg = diffusion.SETTINGS["cpu"]
        generator = seed_everything(cfg.seed)
        data = load_dataset("fashion_mnist", "train", scale="pm1", subset=cfg.subset, seed=cfg.seed)
        schedule = diffusion.schedule_from_settings(cfg)
        model = _prepare(UNet(cfg.widths), variant)
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, **_fused(variant))
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=10_000, pct_start=0.05)
        batches = _forever(_loader(data, cfg.batch, cfg.seed, True, loader_kind))
        net = _maybe_compile(model, variant)

        step = _timed_step(lambda: _input(next(batches)[0], variant),
                           lambda x0: diffusion.ddpm_loss(net, schedule, x0, generator), opt, clip=1.0, sched=sched)
        return Workload(name, step, cfg.batch, cfg.threads)

    if name == "flow":
        from dgm import flows
        from dgm.evaluate import bits_per_dim
        cfg = flows.SETTINGS["cpu"]
        seed_everything(0)
        data = load_dataset("fashion_mnist", "train", scale="01", subset=cfg.subset, seed=0)
        model = _prepare(flows.build_image_flow(cfg.num_couplings, cfg.hidden, cfg.multiscale,
                                                net_layers=cfg.net_layers), variant)
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, **_fused(variant))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.1 ** (s / 10_000))
        batches = _forever(_loader(data, cfg.batch, 0, False, loader_kind))
        fwd = _maybe_compile(lambda x: bits_per_dim(-model.log_prob(x).mean(), 784, scale="bytes"), variant)

        step = _timed_step(lambda: _input(next(batches)[0], variant), fwd, opt, clip=10.0, sched=sched)
        return Workload(name, step, cfg.batch, None)

    if name == "gan":
        from dgm import gan
        cfg = gan.SETTINGS["cpu"]
        torch.manual_seed(0)
        real_images = load_dataset("fashion_mnist", "train", scale="pm1", subset=cfg.n_train).tensors[0]
        G, D = gan.Generator(cfg.z_dim, cfg.dcgan_width), gan.Discriminator(cfg.dcgan_width)
        G.apply(gan.dcgan_init)
        D.apply(gan.dcgan_init)
        G, D = _prepare(G, variant), _prepare(D, variant)
        opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr, betas=(0.5, 0.999), **_fused(variant))
        opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr, betas=(0.5, 0.999), **_fused(variant))
        sample_real, gen, b = gan.tensor_sampler(real_images), torch.Generator().manual_seed(0), cfg.dcgan_batch
        Gc, Dc = _maybe_compile(G, variant), _maybe_compile(D, variant)

        def step(t: PhaseTimer) -> None:  # one D update and one G update, as train_gan
            with t("data"):
                real = _input(sample_real(b, gen), variant)
                z_d, z_g = torch.randn(b, cfg.z_dim, generator=gen), torch.randn(b, cfg.z_dim, generator=gen)
            with t("forward"):
                with torch.no_grad():
                    fake = Gc(z_d)
                loss_d = gan.d_loss(Dc(real), Dc(fake))
            with t("backward"):
                opt_d.zero_grad()
                loss_d.backward()
            with t("optimiser"):
                opt_d.step()
            with t("forward"):
                loss_g = gan.g_loss(Dc(Gc(z_g)))
            with t("backward"):
                opt_g.zero_grad()
                loss_g.backward()
            with t("optimiser"):
                opt_g.step()
        return Workload(name, step, b, None)

    if name == "simclr":
        from dgm import contrastive as con
        cfg = con.SETTINGS["cpu"]
        torch.manual_seed(0)
        images = load_dataset("fashion_mnist", "train", scale="01", subset=cfg.n_pretrain, seed=0).tensors[0]
        encoder = _prepare(con.Encoder(cfg.width, cfg.proj_dim), variant)
        opt = torch.optim.Adam(encoder.parameters(), lr=cfg.lr, weight_decay=1e-6, **_fused(variant))
        gen = torch.Generator().manual_seed(0)

        def index_batches():
            while True:
                yield from con._batches(len(images), cfg.batch_size, gen)
        batches = index_batches()
        enc = _maybe_compile(encoder, variant)

        def views():  # the two augmented views are the data pipeline
            x = images[next(batches)]
            return _input(con.augment(x, gen), variant), _input(con.augment(x, gen), variant)

        step = _timed_step(views, lambda v: con.nt_xent(enc(v[0]), enc(v[1]), cfg.temperature), opt)
        return Workload(name, step, cfg.batch_size, None)

    if name == "transformer":
        from dgm import autoregressive as ar
        cfg = ar.SETTINGS["cpu"]
        data = load_dataset("fashion_mnist", "train", scale="01", subset=cfg.subset, seed=0)
        seed_everything(cfg.seed)
        model = ar.PixelTransformer((28, 28), cfg.tf_d_model, cfg.tf_heads, cfg.tf_layers,
                                    positions=cfg.tf_positions)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.tf_lr, weight_decay=0.0, **_fused(variant))
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: ar.lr_factor(s, 10_000, cfg.tf_schedule, cfg.tf_warmup))
        gen = torch.Generator().manual_seed(cfg.seed)
        batches = _forever(_loader(data, cfg.batch, cfg.seed, False, loader_kind))
        net = _maybe_compile(model, variant)

        def labelled():
            x, y = next(batches)
            return x, ar.drop_labels(y, cfg.p_uncond, gen)

        step = _timed_step(labelled, lambda b: F.cross_entropy(net(*b), ar.to_levels(b[0])[:, 0]) / math.log(2),
                           opt, clip=1.0, sched=sched)
        return Workload(name, step, cfg.batch, cfg.threads)
    raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")


# ------------------------------------------------------------------------------- measurement
def count_flops(name: str) -> dict:
    """FLOP of one training step, forward and backward, by ``FlopCounterMode`` (eager model)."""
    work = build(name, "baseline")
    work.step(PhaseTimer())  # the first step may allocate optimiser state; count the second
    counter = FlopCounterMode(display=False)
    timer = PhaseTimer(counter)
    with counter:
        work.step(timer)
    return {"flop": counter.get_total_flops(), "flop_by_phase": dict(timer.flop)}


def measure(name: str, variant: str, threads: int, steps: int, repeats: int) -> dict:
    """Median seconds per step (wall and process CPU), overall and per phase."""
    torch.set_num_threads(threads)
    w0 = time.perf_counter()
    work = build(name, variant)
    build_s = time.perf_counter() - w0
    w0 = time.perf_counter()
    for _ in range(2):  # warm-up; with torch.compile the first call compiles
        work.step(PhaseTimer())
    warmup_s = time.perf_counter() - w0
    runs = []
    for _ in range(repeats):
        timer = PhaseTimer()
        for _ in range(steps):
            work.step(timer)
        runs.append(timer)
    row = {"model": name, "variant": variant, "threads": threads, "batch": work.batch,
           "threads_setting": work.threads_setting, "steps": steps, "repeats": repeats,
           "build_seconds": round(build_s, 2), "warmup_seconds": round(warmup_s, 2)}
    for kind in ("wall", "cpu"):
        per_run = [sum(getattr(r, kind).values()) / steps for r in runs]
        row[f"step_{kind}_s"] = statistics.median(per_run)
        row[f"step_{kind}_s_runs"] = [round(v, 5) for v in per_run]
        row[f"{kind}_split_s"] = {p: statistics.median(getattr(r, kind)[p] / steps for r in runs)
                                  for p in PHASES}
    return stamped(row)


def compare(name: str, variant: str, threads: int, steps: int, rounds: int) -> dict:
    """Paired A/B: the baseline step and the ``variant`` step in one process, alternating in
    blocks of ``steps`` (ABBA order) for ``rounds`` rounds, so that a change of machine load hits
    both alike. Returns the median CPU (and wall) seconds per step of each and the median of the
    per-round ratios variant / baseline."""
    torch.set_num_threads(threads)
    works = {"baseline": build(name, "baseline"), variant: build(name, variant)}
    warm = {}
    for key, work in works.items():
        w0 = time.perf_counter()
        for _ in range(2):
            work.step(PhaseTimer())
        warm[key] = round(time.perf_counter() - w0, 2)
    cpu: dict[str, list[float]] = {k: [] for k in works}
    wall: dict[str, list[float]] = {k: [] for k in works}
    split: dict[str, list[dict]] = {k: [] for k in works}
    for r in range(rounds):
        for key in (works if r % 2 == 0 else reversed(works)):
            timer = PhaseTimer()
            for _ in range(steps):
                works[key].step(timer)
            cpu[key].append(sum(timer.cpu.values()) / steps)
            wall[key].append(sum(timer.wall.values()) / steps)
            split[key].append({p: timer.cpu[p] / steps for p in PHASES})
    ratios = [v / b for v, b in zip(cpu[variant], cpu["baseline"])]
    return stamped({
        "model": name, "variant": variant, "threads": threads, "steps": steps, "rounds": rounds,
        "baseline_cpu_s": statistics.median(cpu["baseline"]), "variant_cpu_s": statistics.median(cpu[variant]),
        "baseline_wall_s": statistics.median(wall["baseline"]), "variant_wall_s": statistics.median(wall[variant]),
        "ratio_median": statistics.median(ratios), "ratios": [round(x, 3) for x in ratios],
        "gain_cpu": 1 - statistics.median(ratios),
        "split_cpu_s": {k: {p: statistics.median(s[p] for s in v) for p in PHASES} for k, v in split.items()},
        "first_two_steps_s": warm})


def shares(row: dict, flop: int, peaks: dict) -> dict:
    """Achieved GFLOP/s of a measured row and its share of the peak at the same thread count.

    By wall time against the wall peak; and by process CPU time per thread (what the step would
    reach with its threads never preempted) against the peak measured the same way."""
    peak = peaks[str(row["threads"])]
    wall = flop / row["step_wall_s"] / 1e9
    cpu = flop / (row["step_cpu_s"] / row["threads"]) / 1e9
    return {"gflops_wall": wall, "share_wall": wall / peak["gflops_wall"],
            "gflops_cpu": cpu, "share_cpu": cpu / peak["gflops_cpu_per_thread"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--variants", nargs="+", default=["baseline"],
                        help=f"changes to measure, several joined by +: {', '.join(VARIANTS)}")
    parser.add_argument("--threads", nargs="+", type=int, default=None,
                        help="thread counts to measure the steps at (default: 1 and all)")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--stage", default="before", help="label of this run: before or after")
    parser.add_argument("--ab", type=int, default=0, metavar="ROUNDS",
                        help="paired A/B of each variant against the baseline, ROUNDS rounds")
    parser.add_argument("--skip-peak", action="store_true", help="keep the peak of the last run")
    args = parser.parse_args()
    for variant in args.variants:
        unknown = set(variant.split("+")) - set(VARIANTS)
        if unknown:
            parser.error(f"unknown variant {sorted(unknown)}; choose from {', '.join(VARIANTS)}")
    all_threads = torch.get_num_threads()
    thread_counts = args.threads or sorted({1, all_threads})
    payload = previous(NAME) or {}
    payload.pop("machine", None)
    payload.pop("command", None)
    peaks = payload.get("peak", {})
    if not args.skip_peak or not peaks:
        peaks = {str(n): stamped(matmul_peak(n)) for n in sorted({1, all_threads})}
        print("peak", peaks)
    flops = payload.get("flop", {})
    rows = payload.get("rows", {})
    notes = payload.get("notes", [])  # conclusions written by hand into the JSON, kept
    ab = payload.get("ab", {})
    if args.ab:
        for name in args.models:
            for variant in args.variants:
                for n in thread_counts:
                    row = compare(name, variant, n, args.steps, args.ab)
                    ab[f"{name}/{variant}/{n}"] = row
                    print(f"A/B {name} {variant} {n}t: CPU ms/step {row['baseline_cpu_s'] * 1e3:.1f} -> "
                          f"{row['variant_cpu_s'] * 1e3:.1f}, ratio {row['ratio_median']:.3f} {row['ratios']} "
                          f"load {row['load_average']}", flush=True)
                    write(NAME, {"peak": peaks, "flop": flops, "rows": rows, "ab": ab, "notes": notes})
        return
    for name in args.models:
        if name not in flops:
            flops[name] = count_flops(name)
        for variant in args.variants:
            for n in thread_counts:
                row = measure(name, variant, n, args.steps, args.repeats)
                row.update(shares(row, flops[name]["flop"], peaks), stage=args.stage)
                rows[f"{args.stage}/{name}/{variant}/{n}"] = row
                print(f"{args.stage} {name} {variant} {n}t: wall {row['step_wall_s'] * 1e3:.1f} ms "
                      f"cpu {row['step_cpu_s'] * 1e3:.1f} ms, {row['gflops_wall']:.1f} GFLOP/s wall "
                      f"({100 * row['share_wall']:.1f} %), {100 * row['share_cpu']:.1f} % by CPU time; "
                      f"split {({k: round(v * 1e3, 1) for k, v in row['wall_split_s'].items()})} "
                      f"load {row['load_average']}", flush=True)
                write(NAME, {"peak": peaks, "flop": flops, "rows": rows, "ab": ab, "notes": notes})
    write(NAME, {"peak": peaks, "flop": flops, "rows": rows, "ab": ab, "notes": notes})


if __name__ == "__main__":
    main()
