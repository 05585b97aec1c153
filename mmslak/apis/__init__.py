"""The one config -> model path (``init_model``) and what builds on it."""
from ..utils import FAMILIES, task_family
from .analysis_models import BACKBONE_ALIASES, build_erf_backbone, build_model
from .inference import drop_pretrained_init, init_model, load_config

__all__ = [
    'FAMILIES', 'drop_pretrained_init', 'init_model', 'load_config',
    'task_family', 'BACKBONE_ALIASES', 'build_erf_backbone', 'build_model'
]
