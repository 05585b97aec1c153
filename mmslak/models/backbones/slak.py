"""SLaK: Sparse Large Kernel Network (Liu et al., ICLR 2023).

ConvNeXt's macro design with each 7x7 depthwise conv replaced by a decomposed
large kernel (Kx5 + 5xK + 5x5, each with BN) and the widths multiplied by 1.3.
Parameter names follow the reference implementation (``downsample_layers``,
``stages.i.j.large_kernel.{LoRA1,LoRA2,small_conv}.{conv,bn}``,
``stages.i.j.{norm,pwconv1,pwconv2,gamma}``, ``norm``), so its ImageNet
checkpoints load without renaming.
"""
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from mmcv.cnn.bricks import DropPath
from mmengine.model import BaseModule, ModuleList, Sequential
from mmpretrain.models.backbones.base_backbone import BaseBackbone
from mmpretrain.registry import MODELS
from torch.nn.modules.batchnorm import _BatchNorm

from mmslak.ops import memory_format_of, preferred_memory_format
from ..layers.large_kernel import DecomposedLargeKernelConv, LayerNorm2d


class SLaKBlock(BaseModule):
    """One SLaK block (channels in = channels out = ``channels``).

    x -> large_kernel -> LN -> Linear(C, 4C) -> GELU -> Linear(4C, C)
      -> gamma -> drop_path -> + x

    The LN and the two linears run on an (N, H, W, C) view of the tensor,
    which is free when the input is channels_last.
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
        arch: 'tiny' / 'small' / 'base' / 'large' (or 't' / 's' / 'b' / 'l'),
            or a dict with ``depths``, ``dims`` (before ``width_factor``) and
            optionally ``kernel_sizes``.
        in_channels: input image channels.
        width_factor: multiplies every stage width (``int(d * factor)``);
            the paper uses 1.3.
        kernel_sizes: large kernel size of each stage (odd). Defaults to the
            arch dict's ``kernel_sizes`` or (51, 49, 47, 13).
        small_kernel: width of the strips and size of the small square
            kernel (odd), 5 in the paper; ``None`` drops the square branch.
        drop_path_rate: stochastic depth rate, increased linearly per block.
        layer_scale_init_value: init of ``gamma``; <= 0 disables it.
        norm_cfg: norm after each large-kernel branch (BN; SyncBN
            downstream). The stem, downsampling and block norms are
            LayerNorms as in the paper.
        out_indices: stages whose output is returned (negative allowed).
        frozen_stages: stages (with their downsampling layer) to freeze;
            0 or -1 freezes nothing.
        norm_eval: keep BN layers in eval mode during training.
        gap_before_final_norm: global-average-pool each output before its
            norm and return (N, C) vectors (classification). The last
            stage's norm is then named ``norm`` as in the reference
            classifier; the others are ``norm{i}``.
        with_cp: gradient checkpointing per block.
        deploy: build the reparameterised form (see
            :meth:`switch_to_deploy`), to load fused checkpoints.
        init_cfg: mmengine init config, e.g. mmslak's strict
            ``dict(type='PretrainedStrict', checkpoint=...,
            prefix='backbone.')`` (see
            :class:`mmslak.checkpoint.PretrainedStrictInit`).
    """
    arch_settings: Dict[str, dict] = {
        'tiny': dict(depths=[3, 3, 9, 3], dims=[96, 192, 384, 768]),
        'small': dict(depths=[3, 3, 27, 3], dims=[96, 192, 384, 768]),
        'base': dict(depths=[3, 3, 27, 3], dims=[128, 256, 512, 1024]),
        'large': dict(depths=[3, 3, 27, 3], dims=[192, 384, 768, 1536]),
    }
    arch_aliases = {'t': 'tiny', 's': 'small', 'b': 'base', 'l': 'large'}
    default_kernel_sizes = (51, 49, 47, 13)

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
        depths, base_dims, arch_kernels = self._parse_arch(arch)
        if width_factor <= 0:
            raise ValueError(f'width_factor must be > 0, got {width_factor}')
        self.num_stages = len(depths)
        self.kernel_sizes = self._check_kernel_sizes(
            kernel_sizes if kernel_sizes is not None else arch_kernels
            or self.default_kernel_sizes)
        self.depths = list(depths)
        self.channels = [int(d * width_factor) for d in base_dims]
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
            self.add_module(self.norm_name(i), norm)

    # ---------------------------------------------------------------- config
    def _parse_arch(self, arch) -> Tuple[list, list, Optional[tuple]]:
        if isinstance(arch, str):
            name = self.arch_aliases.get(arch.lower(), arch.lower())
            if name not in self.arch_settings:
                valid = sorted(self.arch_settings) + sorted(self.arch_aliases)
                raise ValueError(f'Unknown SLaK arch {arch!r}; valid archs '
                                 f'are {valid} or a dict with keys '
                                 "'depths', 'channels' (or 'dims') and "
                                 "optionally 'kernel_sizes'")
            arch = self.arch_settings[name]
        if not isinstance(arch, dict):
            raise TypeError(f'arch must be a str or a dict, got {type(arch)}')
        if 'channels' in arch and 'dims' in arch:
            raise ValueError("give the arch's widths as 'channels' "
                             "(mmpretrain's key) or 'dims', not both")
        arch = dict(arch)
        if 'channels' in arch:  # mmpretrain's ConvNeXt name for the widths
            arch['dims'] = arch.pop('channels')
        missing = {'depths', 'dims'} - set(arch)
        if missing:
            raise ValueError(
                f'a custom arch dict needs the keys {sorted(missing)} '
                f"('channels' may replace 'dims'); got {sorted(arch)}")
        unknown = set(arch) - {'depths', 'dims', 'kernel_sizes'}
        if unknown:
            raise ValueError(
                f'unknown keys in the arch dict: {sorted(unknown)}')
        depths, dims = list(arch['depths']), list(arch['dims'])
        if len(depths) != len(dims) or not depths:
            raise ValueError(f'arch depths {depths} and dims {dims} must be '
                             'non-empty and of the same length')
        kernels = arch.get('kernel_sizes')
        return depths, dims, tuple(kernels) if kernels is not None else None

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

    def norm_name(self, stage: int) -> str:
        """Name of the output norm of ``stage``: ``norm`` for the reference
        classifier's final norm (GAP mode, last stage), else ``norm{i}``."""
        if self.gap_before_final_norm and stage == self.num_stages - 1:
            return 'norm'
        return f'norm{stage}'

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
                norm = getattr(self, self.norm_name(i))
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
    def get_layer_depth(self, param_name: str, prefix: str = ''):
        """Layer id of a parameter for layer-wise learning-rate decay.

        Follows ConvNeXt's convention (mmpretrain), which the paper's
        fine-tuning recipes use: the stem is layer 0, stages 1-2 are layers
        1-2, stage 3 is split into groups of three blocks, stage 4 is the
        last layer; anything outside the backbone is ``max + 1``.

        Returns:
            Tuple[int, int]: the layer id and the total number of layers.
        """
        max_layer_id = 12 if self.depths[-2] > 9 else 6
        if not param_name.startswith(prefix):
            return max_layer_id + 1, max_layer_id + 2
        name = param_name[len(prefix):]
        parts = name.split('.')
        if name.startswith('downsample_layers'):
            stage_id = int(parts[1])
            layer_id = stage_id + 1 if stage_id in (1, 2) else (
                0 if stage_id == 0 else max_layer_id)
        elif name.startswith('stages'):
            stage_id, block_id = int(parts[1]), int(parts[2])
            if stage_id in (0, 1):
                layer_id = stage_id + 1
            elif stage_id == 2:
                layer_id = min(3 + block_id // 3, max_layer_id - 1)
            else:
                layer_id = max_layer_id
        else:
            layer_id = max_layer_id + 1
        return layer_id, max_layer_id + 2
