"""Convert a SLaK checkpoint to its deploy (reparameterised) form.

Every decomposed large kernel (Kx5 + 5xK + 5x5, each with BN) becomes two
biased strip convolutions; outputs are unchanged in eval mode. Works for
classification, segmentation and detection configs alike::

    python tools/model_converters/reparameterize_model.py CONFIG CKPT OUT

Load the result with ``--cfg-options model.backbone.deploy=True``.
"""
import argparse
import os.path as osp
import sys

import torch
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope
from mmengine.runner import load_checkpoint, save_checkpoint

import mmslak  # noqa: F401  (registers SLaK)
from mmslak.utils.cfg_options import CfgOptionsAction


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='config file of the training form')
    parser.add_argument('checkpoint', help='checkpoint of the training form')
    parser.add_argument('out', help='where to write the deploy checkpoint')
    parser.add_argument('--cfg-options', nargs='+', action=CfgOptionsAction)
    return parser.parse_args(argv)


def reparameterize(model: torch.nn.Module) -> int:
    """Call ``switch_to_deploy`` on every outermost module that has it.

    Returns how many modules were switched.
    """
    switched = 0
    for module in model.modules():
        if hasattr(module, 'switch_to_deploy') and not getattr(
                module, 'deploy', False):
            module.switch_to_deploy()
            switched += 1
    return switched


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    model_cfg = cfg.model
    if model_cfg.get('backbone', {}).get('init_cfg') is not None:
        model_cfg.backbone.init_cfg = None  # weights come from CKPT
    model = MODELS.build(model_cfg)
    checkpoint = load_checkpoint(
        model, args.checkpoint, map_location='cpu', strict=True)
    model.eval()
    switched = reparameterize(model)
    if switched == 0:
        print(
            f'error: no module of {type(model).__name__} can be '
            're-parameterised (is it a SLaK model?)',
            file=sys.stderr)
        return 1
    meta = dict(checkpoint.get('meta', {}) or {})
    meta['deploy'] = True
    try:  # mmslak's atomic backend: a failed write leaves nothing behind
        save_checkpoint({
            'state_dict': model.state_dict(),
            'meta': meta
        }, args.out)
    except OSError as e:
        print(f'error: {e}; nothing was written', file=sys.stderr)
        return 1
    print(f'{switched} large-kernel layers re-parameterised; wrote '
          f'{osp.abspath(args.out)}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
