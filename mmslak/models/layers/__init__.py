from .large_kernel import (ConvBN, DecomposedLargeKernelConv,
                           LargeKernelDWConv2d, LayerNorm2d)

__all__ = [
    'ConvBN', 'DecomposedLargeKernelConv', 'LargeKernelDWConv2d', 'LayerNorm2d'
]
