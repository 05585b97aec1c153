"""Check every sample of a config's datasets before a long run: images
readable, annotations parseable, labels in range, boxes valid,
image/annotation pairs complete. Prints a table of the problems per file
and exits with status 1 if there is any.

    python tools/misc/check_dataset.py CONFIG [--split train val]
"""
import argparse
import sys

from mmengine.registry import init_default_scope

import mmslak  # noqa: F401  (registers SLaK and mmslak's pieces)
from mmslak.apis import load_config
from mmslak.cli.cfg_options import CfgOptionsAction
from mmslak.cli.errors import run_main
from mmslak.datasets.checker import check_dataset_cfg


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='config file path')
    parser.add_argument(
        '--split',
        nargs='+',
        default=['train', 'val'],
        choices=['train', 'val', 'test'],
        help='which *_dataloader datasets to check')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=CfgOptionsAction,
        help='override config settings, key=value')
    return parser.parse_args(argv)


def print_table(rows) -> None:
    widths = [max(len(str(r[i])) for r in rows) for i in range(2)]
    for row in rows:
        print(f'{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]}')


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmengine'))
    rows, total = [('split', 'file', 'problem')], 0
    for split in args.split:
        loader = cfg.get(f'{split}_dataloader')
        if not loader or not loader.get('dataset'):
            print(f'{split}: the config has no {split}_dataloader.dataset; '
                  'skipped')
            continue
        num, problems = check_dataset_cfg(loader['dataset'])
        total += num
        print(f'{split}: {num} samples checked, {len(problems)} problem(s)')
        rows += [(split, p.file, p.what) for p in problems]
    if len(rows) == 1:
        print(f'no problems found in {total} samples')
        return 0
    print_table(rows)
    print(f'{len(rows) - 1} problem(s) in '
          f'{len({r[1] for r in rows[1:]})} file(s)')
    return 1


if __name__ == '__main__':
    sys.exit(run_main(main))
