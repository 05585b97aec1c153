"""The paper's analyses: effective receptive field, dense and sparse
parameter/FLOP counts, and throughput."""
from ..models import switch_to_deploy
from .builder import (BACKBONE_ALIASES, TensorForward, build_erf_backbone,
                      build_model, dummy_inputs, task_of)
from .complexity import (count_complexity, densities_assumed,
                         densities_from_masks, densities_from_weights,
                         sparsifiable_layers)
from .erf import (DEFAULT_THRESHOLDS, compute_erf, fallback_images,
                  high_contribution_area_ratios, input_gradient_map,
                  load_images, normalize_erf, plot_erfs, preprocess)
from .throughput import measure_throughput

__all__ = [
    'BACKBONE_ALIASES', 'TensorForward', 'build_erf_backbone', 'build_model',
    'dummy_inputs', 'task_of', 'count_complexity', 'densities_from_masks',
    'densities_from_weights', 'sparsifiable_layers', 'densities_assumed',
    'DEFAULT_THRESHOLDS', 'compute_erf', 'fallback_images',
    'high_contribution_area_ratios', 'input_gradient_map', 'load_images',
    'normalize_erf', 'plot_erfs', 'preprocess', 'measure_throughput',
    'switch_to_deploy'
]
