"""Child-process entry of the checkpoint tests: trains the toy Runner of
``conftest.py`` (beside this file) and saves its ``state_of`` to ``--out``.

    python train_toy.py WORK_DIR --length N --interval K [--by-epoch]
        [--resume-from CKPT] [--sparse] --out OUT
"""
import argparse
import os.path as osp
import sys

import torch

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from conftest import build_runner, state_of  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('work_dir')
    parser.add_argument('--by-epoch', action='store_true')
    parser.add_argument('--length', type=int, required=True)
    parser.add_argument('--interval', type=int, required=True)
    parser.add_argument('--resume-from')
    parser.add_argument('--sparse', action='store_true')
    parser.add_argument('--out', required=True)
    args = parser.parse_args()
    runner = build_runner(args.work_dir, args.by_epoch, args.length,
                          args.interval, args.resume_from, args.sparse)
    runner.train()
    torch.save(state_of(runner), args.out)


if __name__ == '__main__':
    main()
