"""Helpers every layer may use (the bottom layer: imports nothing of
mmslak's)."""
from .config_walk import edit_dicts
from .task import FAMILIES, task_family

__all__ = ['edit_dicts', 'FAMILIES', 'task_family']
