"""The optimiser of the course's training loops: Adam (or AdamW) with torch's fused kernel on the CPU.

The default ("foreach") Adam runs about a dozen element-wise kernels over the parameters per
step; the fused one makes a single pass. On the CPU it cut the VAE chapter's optimiser step from
about 5 ms to 1.5 ms, 8 % of its training step (benchmarks/cpu_peak.py, issue #14). The update
is the same formula; results agree to float32 rounding (checked in tests/test_optim.py). Other
devices keep torch's default.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


def adam(params: Iterable, device: torch.device | str = "cpu", decoupled: bool = False,
         **kwargs) -> torch.optim.Optimizer:
    """``torch.optim.Adam`` (``AdamW`` with ``decoupled``) over ``params``, fused when ``device``
    is the CPU; ``kwargs`` (lr, betas, weight_decay, ...) are passed on."""
    cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    if torch.device(device).type == "cpu":
        kwargs.setdefault("fused", True)
    return cls(params, **kwargs)
