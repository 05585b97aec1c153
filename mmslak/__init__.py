"""mmslak: SLaK (sparse large kernels) as an OpenMMLab 2.0 plugin.

Importing this package registers, in the upstream registries, the SLaK
backbone (``type='mmpretrain.SLaK'``), the pieces the paper needs that
upstream lacks and the checked datasets, and the package name with
mmengine, so that configs can inherit ``mmslak::<path>`` (the configs
installed in ``mmslak/.mim``).
"""
from mmengine.config.utils import MODULE2PACKAGE

from . import apis  # noqa: F401,E402  (init_model)
from . import checkpoint  # noqa: F401,E402  (safe loading, atomic writes)
from . import datasets  # noqa: F401,E402  (checked ADE20K/COCO/VOC)
from . import engine  # noqa: F401,E402  (hooks, layer-decay constructor)
from . import models  # noqa: F401,E402  (registers the backbone)
from . import sparse  # noqa: F401,E402  (masks, prune/grow)
from .version import __version__

# mmengine looks a `pkg::` package up in this table (a dict in
# mmengine.config.utils: only an import can add to it, and `_base_` files are
# resolved before `custom_imports` run). The value is what mmengine passes to
# `get_installed_path`: a distribution name makes it trust pkg_resources'
# location, which for a PEP 660 editable install is site-packages, where no
# mmslak folder exists; a module name that is not a distribution makes it ask
# importlib (`find_spec(...).origin`), which finds the mmslak folder that was
# imported, installed or editable (`.mim` links back to configs/ there).
MODULE2PACKAGE.setdefault('mmslak', 'mmslak.registry')

__all__ = ['__version__']
