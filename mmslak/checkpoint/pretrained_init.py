"""``init_cfg=dict(type='PretrainedStrict', ...)``: pretrained weights that
must match, for any backbone."""
from typing import Optional, Sequence

from mmengine.registry import WEIGHT_INITIALIZERS

from .loading import load_weights

__all__ = ['PretrainedStrictInit']


@WEIGHT_INITIALIZERS.register_module(name='PretrainedStrict')
class PretrainedStrictInit:
    """mmengine's ``Pretrained`` init, except that it checks.

    mmengine's ``Pretrained`` loads with ``strict=False`` and only logs what
    did not match, so a checkpoint of another architecture silently leaves
    the model at random. This one reads ``checkpoint`` weights-only
    (:func:`~mmslak.checkpoint.read_checkpoint`) and raises
    :class:`~mmslak.checkpoint.CheckpointMismatchError` listing every
    missing, unexpected or shape-mismatched key.

    Args:
        checkpoint: path or URL of the checkpoint.
        prefix: load only the keys under it (e.g. ``'backbone.'``), stripped.
        map_location: as in :func:`torch.load`.
        new_layers: module prefixes the checkpoint may lack as a whole
            (e.g. a dense-prediction backbone's per-stage output norms
            ``['norm0.', ...]``, absent from an ImageNet classifier);
            if any key under such a prefix is present, all must be.
        ignore_keys: checkpoint key prefixes to ignore, left out of the
            load even where the model has such keys (e.g. an ImageNet
            classifier's final ``'norm3.'``, applied to pooled features,
            kept out of a dense backbone's ``norm3``).

    Example::

        backbone=dict(type='mmpretrain.SLaK', ..., init_cfg=dict(
            type='PretrainedStrict', checkpoint='slak_tiny.pth',
            prefix='backbone.', new_layers=['norm0.', 'norm1.', 'norm2.',
            'norm3.'], ignore_keys=['norm3.']))
    """

    def __init__(
        self,
        checkpoint: str,
        prefix: Optional[str] = None,
        map_location: str = 'cpu',
        new_layers: Sequence[str] = (),
        ignore_keys: Sequence[str] = ()
    ) -> None:
        self.checkpoint = checkpoint
        self.prefix = prefix
        self.map_location = map_location
        self.new_layers = tuple(new_layers)
        self.ignore_keys = tuple(ignore_keys)

    def __call__(self, module) -> None:
        load_weights(
            module,
            self.checkpoint,
            prefix=self.prefix,
            map_location=self.map_location,
            new_layer_prefixes=self.new_layers,
            allow_unexpected=self.ignore_keys)

    def _get_init_info(self) -> str:
        return f'{type(self).__name__}: strictly loaded {self.checkpoint}'
