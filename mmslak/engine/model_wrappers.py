"""A DistributedDataParallel wrapper for CPU (gloo) runs."""
from mmengine.model import MMDistributedDataParallel
from mmengine.registry import MODEL_WRAPPERS


@MODEL_WRAPPERS.register_module()
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """mmengine's Runner passes ``device_ids=[LOCAL_RANK]``, which DDP
    rejects for a module on the CPU: drop it."""

    def __init__(self, module, device_ids=None, **kwargs) -> None:
        super().__init__(module=module, device_ids=None, **kwargs)
