"""mmslak: SLaK (sparse large kernels) as an OpenMMLab 2.0 plugin.

Importing this package registers, in the upstream registries, the SLaK
backbone (``type='mmpretrain.SLaK'``) and the pieces the paper needs that
upstream lacks, and the package name with mmengine, so that configs can
inherit ``mmslak::<path>`` (the configs installed in ``mmslak/.mim``).
"""
from mmengine.config.utils import MODULE2PACKAGE

from . import apis  # noqa: F401,E402  (init_model)
from . import checkpoint  # noqa: F401,E402  (safe loading, atomic writes)
from . import engine  # noqa: F401,E402  (hooks, layer-decay constructor)
from . import models  # noqa: F401,E402  (registers the backbone)
from . import sparse  # noqa: F401,E402  (masks, prune/grow)
from .version import __version__

MODULE2PACKAGE.setdefault('mmslak', 'mmslak')

__all__ = ['__version__']
