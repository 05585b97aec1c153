"""Print the per-layer sparsity table of a checkpoint.

    python tools/analysis/sparsity_summary.py CKPT [--out table.txt]
"""
import argparse
import sys

from mmslak.checkpoint import CheckpointError
from mmslak.sparse.summary import format_sparsity_table, sparsity_table


def parse_args():
    parser = argparse.ArgumentParser(
        description='Per-layer densities and non-zero parameter counts of '
        'a (sparse) checkpoint')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', help='also write the table to this file')
    return parser.parse_args()


def main():
    args = parse_args()
    try:
        text = format_sparsity_table(sparsity_table(args.checkpoint))
    except (CheckpointError, OSError) as e:
        sys.exit(f'error: {e}')
    print(text)
    if args.out:
        with open(args.out, 'w') as f:
            f.write(text + '\n')


if __name__ == '__main__':
    main()
