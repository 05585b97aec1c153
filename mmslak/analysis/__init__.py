"""The paper's analyses: effective receptive field, dense and sparse
parameter/FLOP counts, and throughput (models come from
:mod:`mmslak.apis`)."""
from ..models import switch_to_deploy
from .complexity import (count_complexity, densities_assumed,
                         densities_from_masks, densities_from_weights,
                         sparsifiable_layers)
from .erf import (DEFAULT_THRESHOLDS, compute_erf, fallback_images,
                  high_contribution_area_ratios, input_gradient_map,
                  load_images, normalize_erf, plot_erfs, preprocess,
                  strip_output_norms)
from .tensor_forward import TensorForward, dummy_inputs
from .throughput import measure_throughput

__all__ = [
    'TensorForward', 'dummy_inputs', 'count_complexity',
    'densities_from_masks', 'densities_from_weights', 'sparsifiable_layers',
    'densities_assumed', 'DEFAULT_THRESHOLDS', 'compute_erf',
    'fallback_images', 'high_contribution_area_ratios', 'input_gradient_map',
    'load_images', 'normalize_erf', 'plot_erfs', 'preprocess',
    'strip_output_norms', 'measure_throughput', 'switch_to_deploy'
]
