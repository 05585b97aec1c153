"""Conv/linear MACs of a model's tensor forward, counted by forward hooks
from each layer's output size and weight shape (an oracle independent of
mmengine's FlopAnalyzer): conv = outputs x (C_in / groups) x kh x kw,
linear = outputs x in_features."""
import torch
import torch.nn as nn

from mmslak.analysis import TensorForward, dummy_inputs


def conv_linear_macs(model: nn.Module, shape, prefix: str = '') -> int:
    total = [0]

    def hook(module, args, out):
        if isinstance(module, nn.Linear):
            total[0] += out.numel() * module.in_features
        else:
            kh, kw = module.kernel_size
            total[0] += out.numel() * module.in_channels // module.groups \
                * kh * kw

    handles = [
        m.register_forward_hook(hook) for n, m in model.named_modules()
        if n.startswith(prefix) and isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    model.eval()
    inputs, kwargs = dummy_inputs(model, shape)
    try:
        with TensorForward(model, kwargs), torch.no_grad():
            model(inputs)
    finally:
        for h in handles:
            h.remove()
    return total[0]
