"""SLaK's decomposed large-kernel depthwise convolution.

A KxK depthwise kernel is replaced by two parallel strips, Kx5 and 5xK, plus
a 5x5 kernel, each followed by its own BatchNorm, and summed::

    y = BN(conv_{Kx5}(x)) + BN(conv_{5xK}(x)) + BN(conv_{5x5}(x))

Module and parameter names follow the reference implementation so that its
checkpoints load unchanged: ``LoRA1`` is the Kx5 branch, ``LoRA2`` the 5xK
branch and ``small_conv`` the 5x5 branch, each with ``.conv`` and ``.bn``.

``switch_to_deploy()`` folds every BN into its convolution and adds the 5x5
kernel into the centre of the Kx5 strip, leaving two biased strip convolutions.
"""
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from mmengine.model import BaseModule
from torch.nn.utils.fusion import fuse_conv_bn_weights

from mmslak.ops import depthwise_conv2d


def _check_odd_kernel(name: str, k: int) -> None:
    if not isinstance(k, int) or isinstance(k, bool) or k <= 0 or k % 2 == 0:
        raise ValueError(f'{name} must be a positive odd integer (a "same" '
                         f'padded kernel needs a centre), got {k!r}')


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channel axis of an (N, C, H, W) tensor.

    Works on NCHW and channels_last tensors alike; for a channels_last input
    both permutes are free and the output stays channels_last.
    Ours, not mmpretrain's LayerNorm2d: that one ends in ``.contiguous()``,
    which copies a channels_last output back to NCHW at every norm.

    Args:
        num_channels (int): Channels C.
        eps (float): Added to the variance. Defaults to 1e-6.
    """

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__(num_channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(
            x.permute(0, 2, 3, 1), self.normalized_shape, self.weight,
            self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class LargeKernelDWConv2d(nn.Conv2d):
    """Depthwise, stride-1, "same"-padded convolution through
    :func:`mmslak.ops.depthwise_conv2d`.

    A subclass of :class:`nn.Conv2d` so that parameter names, ``init_cfg``
    layer matching (``layer='Conv2d'``) and FLOP counters keep working; only
    the computation goes through the fast op.

    Args:
        channels (int): Input (= output) channels.
        kernel_size (tuple[int, int]): (height, width), both odd.
        bias (bool): Add a learnable bias. Defaults to False.
    """

    def __init__(self,
                 channels: int,
                 kernel_size: Tuple[int, int],
                 bias: bool = False) -> None:
        kh, kw = kernel_size
        _check_odd_kernel('kernel height', kh)
        _check_odd_kernel('kernel width', kw)
        super().__init__(
            channels,
            channels,
            kernel_size=(kh, kw),
            stride=1,
            padding=(kh // 2, kw // 2),
            groups=channels,
            bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return depthwise_conv2d(x, self.weight, self.bias)


class ConvBN(nn.Module):
    """A depthwise convolution followed by a norm layer (``.conv``, ``.bn``).

    In deploy form (``deploy=True``, or after the parent's
    ``switch_to_deploy``) the norm is folded into a biased convolution and
    ``bn`` is an ``nn.Identity``.

    Args:
        channels (int): Input (= output) channels.
        kernel_size (tuple[int, int]): (height, width), both odd.
        norm_cfg (dict): Config of the norm.
        deploy (bool): Biased convolution, no norm. Defaults to False.
    """

    def __init__(self,
                 channels: int,
                 kernel_size: Tuple[int, int],
                 norm_cfg: dict,
                 deploy: bool = False) -> None:
        super().__init__()
        self.conv = LargeKernelDWConv2d(channels, kernel_size, bias=deploy)
        self.bn = nn.Identity() if deploy else build_norm_layer(
            norm_cfg, channels)[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))

    @torch.no_grad()
    def fused_weight_bias(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """The kernel and bias of one convolution equal to conv+BN in eval
        mode."""
        weight, bias = self.conv.weight, self.conv.bias
        bn = self.bn
        if isinstance(bn, nn.Identity):
            return weight.clone(), (
                bias.clone()
                if bias is not None else torch.zeros_like(weight[:, 0, 0, 0]))
        if not isinstance(bn, nn.modules.batchnorm._BatchNorm):
            raise TypeError(f'cannot fold a {type(bn).__name__} into a '
                            'convolution; only BatchNorm variants fold')
        fused_w, fused_b = fuse_conv_bn_weights(weight, bias, bn.running_mean,
                                                bn.running_var, bn.eps,
                                                bn.weight, bn.bias)
        return fused_w.detach(), fused_b.detach()


class DecomposedLargeKernelConv(BaseModule):
    """BN(Kx5 depthwise) + BN(5xK depthwise) + BN(5x5 depthwise).

    Args:
        channels (int): Number of input (= output) channels.
        kernel_size (int): The large kernel size K (odd).
        small_kernel (int, optional): The strip width and small square
            kernel (odd, <= K); ``None`` drops the small square branch.
            Defaults to 5 (the paper's).
        norm_cfg (dict): Config of the norm after each branch (SyncBN in
            distributed downstream training). Defaults to
            ``dict(type='BN')``.
        deploy (bool): Build the fused form directly (two biased strip
            convs), to load checkpoints written after
            :meth:`switch_to_deploy`. Defaults to False.
        init_cfg (dict, optional): mmengine initialisation config.
            Defaults to None.

    Shapes: (N, C, H, W) -> (N, C, H, W) for any H, W.
    """

    def __init__(self,
                 channels: int,
                 kernel_size: int,
                 small_kernel: Optional[int] = 5,
                 norm_cfg: dict = dict(type='BN'),
                 deploy: bool = False,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        _check_odd_kernel('kernel_size', kernel_size)
        if small_kernel is not None:
            _check_odd_kernel('small_kernel', small_kernel)
            if small_kernel > kernel_size:
                raise ValueError(
                    f'small_kernel ({small_kernel}) must not exceed '
                    f'kernel_size ({kernel_size})')
        self.channels = channels
        self.kernel_size = kernel_size
        self.small_kernel = small_kernel
        self.deploy = deploy
        strip = small_kernel if small_kernel is not None else 1
        self.LoRA1 = ConvBN(channels, (kernel_size, strip), norm_cfg, deploy)
        self.LoRA2 = ConvBN(channels, (strip, kernel_size), norm_cfg, deploy)
        if small_kernel is not None and not deploy:
            self.small_conv = ConvBN(channels, (small_kernel, small_kernel),
                                     norm_cfg)
        else:
            self.small_conv = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.LoRA1(x) + self.LoRA2(x)
        if self.small_conv is not None:
            out = out + self.small_conv(x)
        return out

    @torch.no_grad()
    def switch_to_deploy(self) -> None:
        """Fold the BNs and the 5x5 branch into two biased strip convs.

        The result equals the training form in eval mode (BN running
        statistics), up to float rounding.
        """
        if self.deploy:
            return
        w1, b1 = self.LoRA1.fused_weight_bias()
        w2, b2 = self.LoRA2.fused_weight_bias()
        if self.small_conv is not None:
            w3, b3 = self.small_conv.fused_weight_bias()
            # Zero-pad the small kernel to the Kx5 strip (rows only).
            pad_rows = (w1.shape[-2] - w3.shape[-2]) // 2
            pad_cols = (w1.shape[-1] - w3.shape[-1]) // 2
            w1 = w1 + F.pad(w3, (pad_cols, pad_cols, pad_rows, pad_rows))
            b1 = b1 + b3
        for branch, w, b in ((self.LoRA1, w1, b1), (self.LoRA2, w2, b2)):
            branch.conv = LargeKernelDWConv2d(
                self.channels, tuple(w.shape[-2:]), bias=True).to(w)
            branch.conv.weight.copy_(w)
            branch.conv.bias.copy_(b)
            branch.bn = nn.Identity()
        self.small_conv = None
        self.deploy = True

    def extra_repr(self) -> str:
        return (f'channels={self.channels}, kernel_size={self.kernel_size}, '
                f'small_kernel={self.small_kernel}, deploy={self.deploy}')
