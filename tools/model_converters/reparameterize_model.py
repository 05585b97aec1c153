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

from mmslak.apis import init_model
from mmslak.apis.inferencers import is_deploy_checkpoint
from mmslak.checkpoint import read_checkpoint, save_converted
from mmslak.cli.cfg_options import CfgOptionsAction
from mmslak.cli.errors import run_main
from mmslak.models import switch_to_deploy


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='config file of the training form')
    parser.add_argument('checkpoint', help='checkpoint of the training form')
    parser.add_argument('out', help='where to write the deploy checkpoint')
    parser.add_argument('--cfg-options', nargs='+', action=CfgOptionsAction)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if is_deploy_checkpoint(read_checkpoint(args.checkpoint)):
        raise ValueError(
            f'checkpoint {args.checkpoint!r} is already in deploy form '
            '(re-parameterised): nothing to do; use it as it is')
    # weights come from CKPT (strict); pretrained init_cfg is dropped
    model = init_model(
        args.config, args.checkpoint, cfg_options=args.cfg_options)
    switched = switch_to_deploy(model)
    if switched == 0:  # a deploy-form checkpoint was refused above
        print(
            f'error: {type(model).__name__} has no module that can be '
            're-parameterised (is it a SLaK model?)',
            file=sys.stderr)
        return 1
    meta = dict(deploy=True)
    if getattr(model, 'dataset_meta', None) is not None:
        meta['dataset_meta'] = model.dataset_meta
    try:  # atomic: a failed write leaves nothing behind
        save_converted({
            'state_dict': model.state_dict(),
            'meta': meta
        }, args.out)
    except OSError as e:
        print(f'error: {e}; nothing was written', file=sys.stderr)
        return 1
    print(f'{switched} module(s) re-parameterised (BN folded, 5x5 merged); '
          f'wrote '
          f'{osp.abspath(args.out)}')
    return 0


if __name__ == '__main__':
    sys.exit(run_main(main))
