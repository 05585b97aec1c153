"""SLaK: Sparse Large Kernel Network (Liu et al., ICLR 2023).

ConvNeXt's macro design with each 7x7 depthwise conv replaced by a decomposed
large kernel (Kx5 + 5xK + 5x5, each with BN) and the widths multiplied by 1.3.
Block parameter names follow the reference implementation
(``downsample_layers``,
``stages.i.j.large_kernel.{LoRA1,LoRA2,small_conv}.{conv,bn}``,
``stages.i.j.{norm,pwconv1,pwconv2,gamma}``); the output norms are
``norm{i}`` as in mmpretrain's ConvNeXt, and the converter renames the
reference classifier's final ``norm.`` to ``norm3.``
(:func:`mmslak.checkpoint.slak_to_mmpretrain`, as timm's checkpoint filter
maps foreign names).
"""
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from mmcv.cnn.bricks import DropPath
from mmengine.model import BaseModule, ModuleList, Sequential
from mmpretrain.models.backbones.base_backbone import BaseBackbone
from mmpretrain.models.backbones.convnext import ConvNeXt
from mmpretrain.registry import MODELS
from torch.nn.modules.batchnorm import _BatchNorm

from mmslak.ops import memory_format_of, preferred_memory_format
from ..layers.large_kernel import DecomposedLargeKernelConv, LayerNorm2d
from .slak_args import check_slak_args


class SLaKBlock(BaseModule):
    """One SLaK block (channels in = channels out = ``channels``).

    x -> large_kernel -> LN -> Linear(C, 4C) -> GELU -> Linear(4C, C)
      -> gamma -> drop_path -> + x

    The LN and the two linears run on an (N, H, W, C) view of the tensor,
    which is free when the input is channels_last.

    Args:
        channels (int): Input (= output) channels.
        kernel_size (int): The large kernel size K (odd).
        small_kernel (int, optional): Strip width and small square kernel
            (odd); ``None`` drops the square branch. Defaults to 5.
        mlp_ratio (float): Hidden width of the MLP over ``channels``.
            Defaults to 4.
        drop_path_rate (float): Stochastic depth rate. Defaults to 0.
        layer_scale_init_value (float): Init value of ``gamma``; <= 0
            disables it. Defaults to 1e-6.
        norm_cfg (dict): Norm after each large-kernel branch.
            Defaults to ``dict(type='BN')``.
        with_cp (bool): Gradient checkpointing. Defaults to False.
        deploy (bool): Build the fused large kernel. Defaults to False.
        init_cfg (dict, optional): mmengine init config. Defaults to None.
    """

    def __init__(self,
                 channels: int,
                 kernel_size: int,
                 small_kernel: Optional[int] = 5,
                 mlp_ratio: float = 4.,
                 drop_path_rate: float = 0.,
                 layer_scale_init_value: float = 1e-6,
                 norm_cfg: dict = dict(type='BN'),
                 with_cp: bool = False,
                 deploy: bool = False,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.with_cp = with_cp
        self.large_kernel = DecomposedLargeKernelConv(
            channels,
            kernel_size,
            small_kernel,
            norm_cfg=norm_cfg,
            deploy=deploy)
        self.norm = nn.LayerNorm(channels, eps=1e-6)
        hidden = int(mlp_ratio * channels)
        self.pwconv1 = nn.Linear(channels, hidden)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(hidden, channels)
        if layer_scale_init_value > 0:
            self.gamma = nn.Parameter(layer_scale_init_value *
                                      torch.ones(channels))
        else:
            self.gamma = None
        self.drop_path = DropPath(
            drop_path_rate) if drop_path_rate > 0. else nn.Identity()

    def _inner_forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.large_kernel(x)
        x = x.permute(0, 2, 3, 1)  # (N, H, W, C)
        x = self.pwconv2(self.act(self.pwconv1(self.norm(x))))
        if self.gamma is not None:
            x = x * self.gamma
        x = x.permute(0, 3, 1, 2)  # back to (N, C, H, W)
        return shortcut + self.drop_path(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.with_cp and x.requires_grad:
            return cp.checkpoint(self._inner_forward, x, use_reentrant=False)
        return self._inner_forward(x)


@MODELS.register_module()
class SLaK(BaseBackbone):
    """SLaK backbone.

    Paper: `More ConvNets in the 2020s: Scaling up Kernels Beyond 51x51
    using Sparsity <https://arxiv.org/abs/2207.03620>`_.

    Args:
        arch (str | dict): The model's architecture. If a string, one of
            :attr:`arch_settings` ('tiny', 'small', 'base', 'large') or an
            alias ('t', 's', 'b', 'l'); if a dict, it has the keys:

            - depths (list[int]): Number of blocks in each stage.
            - channels (list[int]): Widths of the stages before
              ``width_factor`` (``dims`` is accepted as an alias, the
              reference's name).
            - kernel_sizes (list[int]): Large kernel size of each stage
              (odd); may be left out if given as ``kernel_sizes``.

            Defaults to 'tiny'.
        in_channels (int): Number of input image channels. Defaults to 3.
        width_factor (float): Multiplies every stage width
            (``int(c * width_factor)``); the paper uses 1.3.
            Defaults to 1.3.
        kernel_sizes (Sequence[int], optional): Large kernel size of each
            stage (odd), replacing the arch's. Defaults to None (the arch's
            ``kernel_sizes``).
        small_kernel (int, optional): Width of the strips and size of the
            small square kernel (odd); ``None`` drops the square branch.
            Defaults to 5.
        drop_path_rate (float): Stochastic depth rate, increased linearly
            per block. Defaults to 0.
        layer_scale_init_value (float): Init value of the layer scale
            ``gamma``; <= 0 disables it. Defaults to 1e-6.
        norm_cfg (dict): Config of the norm after each large-kernel branch
            (SyncBN downstream); the stem, downsampling and block norms are
            LayerNorms as in the paper. Defaults to
            ``dict(type='BN', requires_grad=True)``.
        out_indices (int | Sequence[int]): Stages whose output is returned
            (negative indices count from the end), each through its own
            output norm ``norm{i}``. Defaults to -1 (the last stage).
        frozen_stages (int): Stages (with their downsampling layer) to
            freeze; 0 or -1 freezes nothing. Defaults to 0.
        norm_eval (bool): Keep the BN layers in eval mode during training.
            Defaults to False.
        gap_before_final_norm (bool): Global-average-pool each output
            before its norm and return (N, C) vectors (classification).
            Defaults to True.
        with_cp (bool): Gradient checkpointing per block. Defaults to False.
        deploy (bool): Build the reparameterised form (see
            :meth:`switch_to_deploy`), to load fused checkpoints.
            Defaults to False.
        init_cfg (dict | list[dict], optional): mmengine init config, e.g.
            mmslak's strict ``dict(type='PretrainedStrict', checkpoint=...,
            prefix='backbone.')`` (see
            :class:`mmslak.checkpoint.PretrainedStrictInit`). Defaults to
            truncated-normal linear / conv weights and unit norms.
    """
    # The paper's Table 1 / the reference's SLaK_{tiny,small,base,large}
    # (kernel_size=[51, 49, 47, 13, 5]); widths before width_factor=1.3.
    arch_settings: Dict[str, dict] = {
        'tiny':
        dict(
            depths=[3, 3, 9, 3],
            channels=[96, 192, 384, 768],
            kernel_sizes=[51, 49, 47, 13]),
        'small':
        dict(
            depths=[3, 3, 27, 3],
            channels=[96, 192, 384, 768],
            kernel_sizes=[51, 49, 47, 13]),
        'base':
        dict(
            depths=[3, 3, 27, 3],
            channels=[128, 256, 512, 1024],
            kernel_sizes=[51, 49, 47, 13]),
        'large':
        dict(
            depths=[3, 3, 27, 3],
            channels=[192, 384, 768, 1536],
            kernel_sizes=[51, 49, 47, 13]),
    }
    arch_aliases = {'t': 'tiny', 's': 'small', 'b': 'base', 'l': 'large'}

    def __init__(
        self,
        arch: Union[str, dict] = 'tiny',
        in_channels: int = 3,
        width_factor: float = 1.3,
        kernel_sizes: Optional[Sequence[int]] = None,
        small_kernel: Optional[int] = 5,
        drop_path_rate: float = 0.,
        layer_scale_init_value: float = 1e-6,
        norm_cfg: dict = dict(type='BN', requires_grad=True),
        out_indices: Union[int, Sequence[int]] = -1,
        frozen_stages: int = 0,
        norm_eval: bool = False,
        gap_before_final_norm: bool = True,
        with_cp: bool = False,
        deploy: bool = False,
        init_cfg: Optional[Union[dict, List[dict]]] = [
            dict(
                type='TruncNormal',
                layer=['Conv2d', 'Linear'],
                std=.02,
                bias=0.),
            dict(
                type='Constant',
                layer=['LayerNorm', '_BatchNorm'],
                val=1.,
                bias=0.),
        ]
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        depths, base_channels, arch_kernels = self._parse_arch(arch)
        channels = check_slak_args(depths, base_channels, width_factor,
                                   drop_path_rate, in_channels)
        self.num_stages = len(depths)
        self.kernel_sizes = self._check_kernel_sizes(
            kernel_sizes if kernel_sizes is not None else arch_kernels)
        self.depths = list(depths)
        self.channels = channels
        self.small_kernel = small_kernel
        self.in_channels = in_channels
        self.out_indices = self._parse_out_indices(out_indices)
        if not isinstance(frozen_stages,
                          int) or not (-1 <= frozen_stages <= self.num_stages):
            raise ValueError(
                f'frozen_stages must be an int in [-1, {self.num_stages}] '
                f'(-1 or 0: nothing frozen), got {frozen_stages!r}')
        self.frozen_stages = max(frozen_stages, 0)
        self.norm_eval = norm_eval
        self.gap_before_final_norm = gap_before_final_norm
        self.deploy = deploy
        self._build_layers(
            drop_path_rate,
            dict(
                layer_scale_init_value=layer_scale_init_value,
                norm_cfg=norm_cfg,
                with_cp=with_cp,
                deploy=deploy))
        self._freeze_stages()

    def _check_kernel_sizes(self, kernel_sizes) -> Tuple[int, ...]:
        if kernel_sizes is None:
            raise ValueError(
                'a custom arch dict needs its stage kernel sizes, as the '
                "arch key 'kernel_sizes' or the kernel_sizes argument")
        kernel_sizes = tuple(kernel_sizes)
        if len(kernel_sizes) != self.num_stages:
            raise ValueError(
                f'kernel_sizes has {len(kernel_sizes)} entries but the arch '
                f'has {self.num_stages} stages: {list(kernel_sizes)}')
        for i, k in enumerate(kernel_sizes):
            if not isinstance(k, int) or k <= 0 or k % 2 == 0:
                raise ValueError(f'kernel_sizes[{i}] must be a positive odd '
                                 f'integer, got {k!r} (all: '
                                 f'{list(kernel_sizes)})')
        return kernel_sizes

    def _build_layers(self, drop_path_rate: float, block_cfg: dict) -> None:
        """Stem / downsampling layers, stages of blocks, output norms."""
        dpr = torch.linspace(0, drop_path_rate, sum(self.depths)).tolist()
        self.downsample_layers = ModuleList()
        self.stages = ModuleList()
        block_idx = 0
        for i, (depth, channels) in enumerate(zip(self.depths, self.channels)):
            if i == 0:
                downsample = Sequential(
                    nn.Conv2d(
                        self.in_channels, channels, kernel_size=4, stride=4),
                    LayerNorm2d(channels))
            else:
                prev = self.channels[i - 1]
                downsample = Sequential(
                    LayerNorm2d(prev),
                    nn.Conv2d(prev, channels, kernel_size=2, stride=2))
            self.downsample_layers.append(downsample)
            self.stages.append(
                Sequential(*[
                    SLaKBlock(
                        channels,
                        self.kernel_sizes[i],
                        self.small_kernel,
                        drop_path_rate=dpr[block_idx + j],
                        **block_cfg) for j in range(depth)
                ]))
            block_idx += depth
        for i in self.out_indices:
            if self.gap_before_final_norm:
                norm = nn.LayerNorm(self.channels[i], eps=1e-6)
            else:
                norm = LayerNorm2d(self.channels[i])
            self.add_module(f'norm{i}', norm)

    # ---------------------------------------------------------------- config
    def _parse_arch(self, arch) -> Tuple[list, list, Optional[tuple]]:
        """(depths, channels before width_factor, kernel sizes or None)."""
        if isinstance(arch, str):
            name = self.arch_aliases.get(arch.lower(), arch.lower())
            if name not in self.arch_settings:
                valid = sorted(self.arch_settings) + sorted(self.arch_aliases)
                raise ValueError(f'Unknown SLaK arch {arch!r}; valid archs '
                                 f'are {valid} or a dict with keys '
                                 "'depths', 'channels' and optionally "
                                 "'kernel_sizes'")
            arch = self.arch_settings[name]
        if not isinstance(arch, dict):
            raise TypeError(f'arch must be a str or a dict, got {type(arch)}')
        arch = dict(arch)
        if 'dims' in arch:  # the reference's name for the widths
            if 'channels' in arch:
                raise ValueError("give the arch's widths as 'channels' or "
                                 "its alias 'dims', not both")
            arch['channels'] = arch.pop('dims')
        missing = {'depths', 'channels'} - set(arch)
        if missing:
            raise ValueError(
                f'a custom arch dict needs the keys {sorted(missing)}; '
                f'got {sorted(arch)}')
        unknown = set(arch) - {'depths', 'channels', 'kernel_sizes'}
        if unknown:
            raise ValueError(
                f'unknown keys in the arch dict: {sorted(unknown)}')
        depths, channels = list(arch['depths']), list(arch['channels'])
        if len(depths) != len(channels) or not depths:
            raise ValueError(f'arch depths {depths} and channels {channels} '
                             'must be non-empty and of the same length')
        kernels = arch.get('kernel_sizes')
        return depths, channels, tuple(
            kernels) if kernels is not None else None

    def _parse_out_indices(self, out_indices) -> Tuple[int, ...]:
        if isinstance(out_indices, int):
            out_indices = [out_indices]
        if not isinstance(out_indices, Sequence):
            raise TypeError('out_indices must be an int or a sequence of '
                            f'ints, got {type(out_indices)}')
        parsed = []
        for index in out_indices:
            if not -self.num_stages <= index < self.num_stages:
                raise ValueError(
                    f'out_indices entry {index} is out of range for '
                    f'{self.num_stages} stages (valid: '
                    f'{-self.num_stages}..{self.num_stages - 1})')
            parsed.append(index % self.num_stages)
        if len(set(parsed)) != len(parsed):
            raise ValueError(
                f'out_indices has duplicates: {list(out_indices)}')
        return tuple(sorted(parsed))

    # --------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f'SLaK expects an (N, {self.in_channels}, H, W) input, got '
                f'shape {tuple(x.shape)}')
        # Run in the faster memory format (channels_last on the CPU, see
        # mmslak.ops.layout); outputs come back in the input's format.
        in_format = memory_format_of(x)
        x = x.contiguous(memory_format=preferred_memory_format(x))
        outs = []
        for i in range(self.num_stages):
            x = self.downsample_layers[i](x)
            x = x.contiguous(
                memory_format=preferred_memory_format(x, self.kernel_sizes[i]))
            x = self.stages[i](x)
            if i in self.out_indices:
                norm = getattr(self, f'norm{i}')
                if self.gap_before_final_norm:
                    outs.append(norm(x.mean(dim=(-2, -1))))
                else:
                    outs.append(norm(x).contiguous(memory_format=in_format))
        return tuple(outs)

    # ----------------------------------------------------- train-time state
    def _freeze_stages(self) -> None:
        for i in range(self.frozen_stages):
            for module in (self.downsample_layers[i], self.stages[i]):
                module.eval()
                for param in module.parameters():
                    param.requires_grad = False

    def train(self, mode: bool = True) -> 'SLaK':
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        return self

    def switch_to_deploy(self) -> 'SLaK':
        """Fold BNs and the small kernel into two strip convs per block."""
        for module in self.modules():
            if isinstance(module, DecomposedLargeKernelConv):
                module.switch_to_deploy()
        self.deploy = True
        return self

    # ------------------------------------------------------ layer-wise decay
    # mmpretrain's ConvNeXt convention, which the paper's fine-tuning recipes
    # use (same attribute names: depths, downsample_layers, stages): the
    # stem is layer 0, stages 1-2 are layers 1-2, stage 3 in groups of three
    # blocks, stage 4 is the last layer; anything else is ``max + 1``.
    get_layer_depth = ConvNeXt.get_layer_depth
