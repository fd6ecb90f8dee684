"""dgm/speed.py: the fused CPU Adam makes the same updates as torch's default Adam."""

import pytest
import torch

from dgm.speed import adam, channels_last


def _train(make_opt, steps: int = 30) -> torch.Tensor:
    """Parameters after ``steps`` updates from a fixed start with fixed random gradients."""
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(64, 32)), torch.nn.Parameter(torch.randn(32))]
    opt = make_opt(params)
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen)
        opt.step()
    return torch.cat([p.detach().flatten() for p in params])


@pytest.mark.parametrize("decoupled, cls", [(False, torch.optim.Adam), (True, torch.optim.AdamW)])
def test_fused_cpu_adam_matches_default_adam_to_float32_rounding(decoupled, cls):
    kw = dict(lr=1e-2, betas=(0.5, 0.999), weight_decay=1e-2)
    ours = _train(lambda p: adam(p, "cpu", decoupled=decoupled, **kw))
    reference = _train(lambda p: cls(p, foreach=True, **kw))
    start = _train(lambda p: cls(p, lr=0.0))
    assert not torch.equal(ours, start)  # the parameters moved
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-6)


def test_adam_is_fused_on_cpu_only_and_passes_its_arguments_on():
    p = [torch.nn.Parameter(torch.zeros(3))]
    opt = adam(p, torch.device("cpu"), decoupled=True, lr=3e-3, weight_decay=0.1)
    assert isinstance(opt, torch.optim.AdamW)
    assert opt.defaults["fused"] is True and opt.defaults["lr"] == 3e-3
    assert opt.defaults["weight_decay"] == 0.1
    assert adam(p, "meta", lr=1e-3).defaults["fused"] is None  # other devices: torch's default


def test_channels_last_conv_net_gives_the_same_outputs_and_gradients():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv2d(8, 4, 3, stride=2, padding=1))
    twin = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.Conv2d(8, 4, 3, stride=2, padding=1))
    twin.load_state_dict(net.state_dict())
    assert channels_last(twin, "cpu") is twin
    assert twin[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert not net[0].weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(5, 3, 12, 12)
    out, out_cl = net(x), twin(x)
    torch.testing.assert_close(out_cl, out, rtol=1e-5, atol=1e-5)
    out.square().sum().backward()
    out_cl.square().sum().backward()
    for p, q in zip(net.parameters(), twin.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-4)


def test_channels_last_leaves_models_on_other_devices_alone():
    net = torch.nn.Conv2d(3, 8, 3)
    channels_last(net, "meta")
    assert net.weight.is_contiguous()
