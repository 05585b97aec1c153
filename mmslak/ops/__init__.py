from .depthwise_conv import (Plan, cropped_kernel_size, depthwise_conv2d,
                             dispatch, get_dispatch, heuristic_plan, plan_for,
                             set_dispatch, tune_plan)
from .layout import memory_format_of, preferred_memory_format

__all__ = [
    'depthwise_conv2d', 'Plan', 'cropped_kernel_size', 'dispatch',
    'get_dispatch', 'heuristic_plan', 'plan_for', 'set_dispatch', 'tune_plan',
    'memory_format_of', 'preferred_memory_format'
]
