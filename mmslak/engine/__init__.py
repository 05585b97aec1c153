"""Training-time pieces upstream lacks (registered in mmengine's root
registries, so every OpenMMLab codebase's configs can use them)."""
from .hooks import *  # noqa: F401,F403
from .optimizers import *  # noqa: F401,F403
