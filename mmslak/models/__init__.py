from .backbones import *  # noqa: F401,F403
from .deploy import switch_to_deploy  # noqa: F401
from .layers import *  # noqa: F401,F403
