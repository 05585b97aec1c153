"""Plot training curves from mmengine's json logs (mmdet's / mmseg's
analyze_logs.py shape), sparse-training trajectory included.

    python tools/analysis/analyze_logs.py plot_curve \
        WORK/TIMESTAMP/vis_data/scalars.json --keys loss mIoU density \
        [--legend A B] [--title T] [--out curves.png]
    python tools/analysis/analyze_logs.py cal_train_time LOG.json

A key matches a logged scalar exactly, or the ``sparsity_<key>`` scalar
that ``SparseTrainingHook`` logs (``density``, ``prune_rate``,
``explored``). Training scalars are plotted against the iteration,
validation metrics against their step (iteration, or epoch for
epoch-based runs). One panel per key, one line per log.
"""
import argparse
import json
import os.path as osp
import sys
from typing import Dict, List, Tuple

import numpy as np

from mmslak.cli.errors import run_main

SPARSE_PREFIX = 'sparsity_'


def load_json_log(path: str) -> List[dict]:
    """The records of an mmengine json log (one JSON object per line)."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'log not found: {path}')
    records = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f'{path}:{number} is not a JSON line (is '
                                 'this vis_data/scalars.json or the '
                                 f'TIMESTAMP.json log?): {e}') from e
    if not records:
        raise ValueError(f'{path} has no records')
    return records


def resolve_key(key: str, records: List[dict], path: str) -> str:
    available = sorted({k for r in records for k in r})
    for name in (key, SPARSE_PREFIX + key):
        if name in available:
            return name
    raise KeyError(f'{key!r} is not in {path}; logged keys: '
                   f'{", ".join(available)}')


def series(records: List[dict], name: str) -> Tuple[np.ndarray, np.ndarray]:
    """(x, y) of one scalar: x is 'iter' where logged, else 'step'."""
    xs, ys = [], []
    for r in records:
        if name in r:
            xs.append(r.get('iter', r.get('step', len(xs))))
            ys.append(r[name])
    return np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)


def plot_curve(logs: Dict[str, List[dict]],
               keys: List[str],
               out: str,
               title: str = None) -> Dict[str, Dict[str, int]]:
    """One panel per key; returns {key: {legend: number of points}}."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(
        len(keys), 1, figsize=(8, 2.6 * len(keys)), squeeze=False)
    drawn = {}
    for ax, key in zip(axes[:, 0], keys):
        drawn[key] = {}
        for legend, records in logs.items():
            name = resolve_key(key, records, legend)
            x, y = series(records, name)
            ax.plot(x, y, marker='o' if len(x) < 20 else None, label=legend)
            ax.set_ylabel(name)
            drawn[key][legend] = len(x)
        ax.set_xlabel('iteration (validation: step)')
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize='small')
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return drawn


def cal_train_time(logs: Dict[str, List[dict]]) -> None:
    for legend, records in logs.items():
        times = np.asarray(
            [r['time'] for r in records if 'iter' in r and 'time' in r])
        if times.size == 0:
            print(f'{legend}: no training iteration times logged')
            continue
        print(f'{legend}: average iter time {times.mean():.4f} s '
              f'(slowest {times.max():.4f}, fastest {times.min():.4f}, '
              f'std {times.std():.4f}) over {times.size} logged points')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Analyze json logs')
    sub = parser.add_subparsers(dest='task', required=True)
    plot = sub.add_parser('plot_curve', help='plot scalars per iteration')
    plot.add_argument('json_logs', nargs='+', help='scalars.json files')
    plot.add_argument('--keys', nargs='+', default=['loss'])
    plot.add_argument('--legend', nargs='+', default=None)
    plot.add_argument('--title', default=None)
    plot.add_argument('--out', default='curves.png', help='output PNG')
    timing = sub.add_parser('cal_train_time', help='time per iteration')
    timing.add_argument('json_logs', nargs='+')
    args = parser.parse_args(argv)
    legend = getattr(args, 'legend', None)
    if legend is not None and len(legend) != len(args.json_logs):
        parser.error(f'--legend needs {len(args.json_logs)} names, got '
                     f'{len(legend)}')
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    legends = getattr(args, 'legend', None) or args.json_logs
    logs = {
        name: load_json_log(path)
        for name, path in zip(legends, args.json_logs)
    }
    if args.task == 'cal_train_time':
        cal_train_time(logs)
        return 0
    drawn = plot_curve(logs, args.keys, args.out, args.title)
    for key, counts in drawn.items():
        print(f'{key}: ' + ', '.join(f'{n} points ({legend})'
                                     for legend, n in counts.items()))
    print(f'wrote {osp.abspath(args.out)}')
    return 0


if __name__ == '__main__':
    sys.exit(run_main(main))
