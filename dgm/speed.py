"""CPU speed settings of the course's training loops: fused Adam and channels-last convolutions.

Both leave the arithmetic as it is (results agree to float32 rounding, tests/test_speed.py) and
were adopted where they paid on a 2-core CPU in paired runs of benchmarks/cpu_peak.py (issue #14):

``adam``           torch's fused Adam/AdamW makes one pass over the parameters instead of a dozen
                   element-wise kernels: 7 % less CPU time per VAE step, 5 % per DCGAN step.
``channels_last``  convolution weights stored channels-last, so that oneDNN runs its NHWC kernels
                   without reordering: 25 % less per flow step, 24 % per SimCLR step, 16 % per
                   DDPM U-Net step.

Both act on the CPU only; other devices keep torch's defaults.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


def _on_cpu(device: torch.device | str) -> bool:
    return torch.device(device).type == "cpu"


def adam(params: Iterable, device: torch.device | str = "cpu", decoupled: bool = False,
         **kwargs) -> torch.optim.Optimizer:
    """``torch.optim.Adam`` (``AdamW`` with ``decoupled``) over ``params``, fused when ``device``
    is the CPU; ``kwargs`` (lr, betas, weight_decay, ...) are passed on."""
    cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    if _on_cpu(device):
        kwargs.setdefault("fused", True)
    return cls(params, **kwargs)


def channels_last(model: nn.Module, device: torch.device | str = "cpu") -> nn.Module:
    """Store ``model``'s 4-D weights channels-last (in place) when ``device`` is the CPU; return it.

    Values, shapes and outputs are unchanged (up to float32 rounding); activations of the
    convolutions come out channels-last too, which only matters to code that calls ``.view`` on
    them with more than one channel.
    """
    if _on_cpu(device):
        model.to(memory_format=torch.channels_last)
    return model
