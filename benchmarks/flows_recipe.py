"""Flow recipe comparison (issue #14): train image-flow variants for the same process CPU time on
one thread, score test bits/dim and save sample grids at temperatures 1 and 0.7.

    PYTHONPATH=$PWD DGM_DATA=/work/shared/data python -m benchmarks.flows_recipe NAME --build ms3_an --budget 210

``base`` is ``dgm.flows.build_image_flow`` with the cpu profile's sizes; ``base_an`` adds ActNorm
(data-dependent init) after every coupling; ``ms3_an`` has three scales (2 checkerboard couplings
at 28x28 width 32, 4 channel couplings at 4x14x14 width 64, 4 at 16x7x7 width 64) with ActNorm.
The learning rate decays to 10 % over the CPU budget. Results are appended to
benchmarks/results/flows_recipe_cpu.jsonl; PNGs go to --out.
"""
import math, torch
import torch.nn as nn
import dgm.flows as F

class ActNorm(nn.Module):
    """Per-channel affine z = (x - b) * exp(-log_s); data-dependent init on the first training batch."""
    def __init__(self, c):
        super().__init__()
        self.b = nn.Parameter(torch.zeros(1, c, 1, 1)); self.log_s = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.register_buffer("initialized", torch.tensor(False))
    def forward(self, x):
        if not bool(self.initialized) and self.training and torch.is_grad_enabled():
            with torch.no_grad():
                self.b.copy_(x.mean(dim=(0, 2, 3), keepdim=True))
                self.log_s.copy_(torch.log(x.std(dim=(0, 2, 3), keepdim=True) + 1e-6))
                self.initialized.fill_(True)
        z = (x - self.b) * torch.exp(-self.log_s)
        return z, (-self.log_s.sum() * x.shape[2] * x.shape[3]).expand(x.shape[0])
    def inverse(self, z):
        return z * torch.exp(self.log_s) + self.b

def _c(mask, c, hidden, nl):
    return F.AffineCoupling(mask, F.conv_net(c, hidden, 2 * c, nl), c)

def scales(spec, actnorm):
    """spec: list of (n_couplings, hidden) per scale; scale 0 checkerboard at 28x28, later ones channel masks after a squeeze."""
    def build(a):
        layers = []; c, h = 1, 28
        for si, (n, hid) in enumerate(spec):
            if si > 0:
                layers.append(F.Squeeze()); c *= 4; h //= 2
            if actnorm: layers.append(ActNorm(c))
            for k in range(n):
                mask = F.checkerboard_mask(h, h, k % 2) if si == 0 else F.channel_mask(c, k % 2)
                layers.append(_c(mask, c, hid, a.net_layers))
                if actnorm: layers.append(ActNorm(c))
        return F.FlowModel(layers, (1, 28, 28), F.Dequantize())
    return build

def base(a):
    return F.build_image_flow(a.couplings, a.hidden, True, net_layers=a.net_layers)
BUILD = {"base": base,
         "base_an": scales([(4, 32), (4, 32)], True),
         "ms3": scales([(2, 32), (4, 64), (4, 64)], False),
         "ms3_an": scales([(2, 32), (4, 64), (4, 64)], True),
         "ms3s_an": scales([(2, 32), (4, 48), (4, 64)], True),
         "ms2w_an": scales([(2, 32), (6, 64)], True),
        }
import sys, time, json, argparse
from dgm.data import load_dataset, make_loader
from dgm.evaluate import bits_per_dim
import dgm.flows as F
import matplotlib; matplotlib.use("Agg"); import matplotlib.pyplot as plt
import dgm.plotting

p = argparse.ArgumentParser()
p.add_argument("name"); p.add_argument("--budget", type=float, default=300)
p.add_argument("--couplings", type=int, default=8); p.add_argument("--hidden", type=int, default=32)
p.add_argument("--net_layers", type=int, default=2); p.add_argument("--lr", type=float, default=1e-3)
p.add_argument("--warmup", type=int, default=0); p.add_argument("--batch", type=int, default=64)
p.add_argument("--build", default="base", choices=sorted(BUILD))
p.add_argument("--out", default="/tmp/flowq")
a = p.parse_args()
torch.set_num_threads(1)
torch.manual_seed(0)
train = load_dataset("fashion_mnist", "train", scale="01", subset=4000, seed=0)
test = load_dataset("fashion_mnist", "test", scale="01", subset=443, seed=0).tensors[0]
loader = make_loader(train, batch_size=a.batch, shuffle=True, seed=0)
model = BUILD[a.build](a)
print(a.name, sum(q.numel() for q in model.parameters()), "params", flush=True)
opt = torch.optim.Adam(model.parameters(), lr=a.lr)
dims = 784; hist = []; step = 0; t0 = time.process_time(); w0 = time.time()
model.train(); done = False; ep = 0
while not done:
    for batch in loader:
        x = batch[0]
        frac = (time.process_time() - t0) / a.budget
        if frac >= 1: done = True; break
        lr = a.lr * 0.1 ** frac * min(1.0, (step + 1) / a.warmup if a.warmup else 1.0)
        for g in opt.param_groups: g["lr"] = lr
        loss = bits_per_dim(-model.log_prob(x).mean(), dims, scale="bytes")
        opt.zero_grad(); loss.backward(); nn.utils.clip_grad_norm_(model.parameters(), 10.0); opt.step()
        hist.append(loss.item()); step += 1
        if step % 50 == 0: print(step, f"{sum(hist[-50:])/50:.3f}", f"cpu {time.process_time()-t0:.0f}", flush=True)
    ep += 1
cpu = time.process_time() - t0
bpd = F.nll_bits_per_dim(model, test, generator=torch.Generator().manual_seed(0))
fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
for ax, temp in zip(axes, (1.0, 0.7)):
    s = model.sample(32, generator=torch.Generator().manual_seed(2), temperature=temp)
    dgm.plotting.show_images(s, nrow=8, ax=ax, title=f"{a.name} T={temp}")
fig.savefig(f"{a.out}/{a.name}.png", dpi=80, bbox_inches="tight")
res = dict(name=a.name, steps=step, epochs=step/len(loader), cpu=cpu, wall=time.time()-w0, test_bpd=bpd,
           train_last=sum(hist[-50:])/50, args=vars(a), load=open("/proc/loadavg").read().split()[:3])
print(json.dumps(res)); open("benchmarks/results/flows_recipe_cpu.jsonl", "a").write(json.dumps(res) + "\n")
torch.save(model.state_dict(), f"{a.out}/{a.name}.pt")
