"""The one config -> model path (``init_model``) and what it needs."""
from .inference import (FAMILIES, drop_pretrained_init, init_model,
                        load_config, task_family)

__all__ = [
    'FAMILIES', 'drop_pretrained_init', 'init_model', 'load_config',
    'task_family'
]
