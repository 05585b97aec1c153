"""Shared logic of ``tools/train.py`` and ``tools/test.py``: one pair of
scripts for classification (mmpretrain), segmentation (mmseg) and detection
(mmdet), told apart by the config alone."""
import argparse
import logging
import os
import os.path as osp

from mmengine.config import Config
from mmengine.evaluator import DumpResults
from mmengine.logging import print_log
from mmengine.runner import find_latest_checkpoint

from ..checkpoint.loading import load_checkpoint_file, read_checkpoint


def parse_with_launcher(parser: argparse.ArgumentParser,
                        argv=None) -> argparse.Namespace:
    """Add the launcher flags both tools share (``--launcher``,
    ``--local-rank``), parse, and export ``LOCAL_RANK`` as torch.distributed
    launchers expect."""
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def set_work_dir(cfg: Config, work_dir, config_path: str) -> None:
    """CLI > config > ./work_dirs/<config name>, as upstream."""
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(config_path))[0])


def seed_from_resumed_checkpoint(cfg: Config) -> None:
    """With ``randomness.seed=None`` a resumed run would draw a new seed for
    its sampler and data workers (mmengine restores the checkpoint's seed
    only after building the dataloader): take the checkpoint's instead."""
    randomness = dict(cfg.get('randomness') or {})
    if not cfg.get('resume') or randomness.get('seed') is not None:
        return
    path = cfg.get('load_from') or find_latest_checkpoint(cfg.work_dir)
    if not path or not osp.isfile(path):
        return  # nothing to resume: mmengine starts afresh and says so
    seed = read_checkpoint(path).get('meta', {}).get('seed')
    if seed is not None:
        cfg.randomness = dict(randomness, seed=seed)
        print_log(
            f'randomness.seed is None: resuming with the seed {seed} of '
            f'{path}',
            logger='current')


def enable_amp(cfg: Config) -> None:
    wrapper = cfg.optim_wrapper.get('type', 'OptimWrapper')
    if wrapper == 'AmpOptimWrapper':
        print_log(
            'AMP training is already enabled in your config.',
            logger='current',
            level=logging.WARNING)
        return
    if wrapper != 'OptimWrapper':
        raise ValueError('--amp needs optim_wrapper.type == "OptimWrapper", '
                         f'got {wrapper!r}')
    cfg.optim_wrapper.type = 'AmpOptimWrapper'
    cfg.optim_wrapper.loss_scale = 'dynamic'


def enable_visualization(cfg: Config, family: str, show: bool, show_dir,
                         wait_time: float) -> None:
    """Turn the family's visualization hook on (upstream test.py logic)."""
    hooks = cfg.get('default_hooks', {})
    if 'visualization' not in hooks:
        raise RuntimeError('--show / --show-dir need a visualization hook in '
                           'default_hooks (e.g. SegVisualizationHook, '
                           'DetVisualizationHook, VisualizationHook)')
    hook = hooks['visualization']
    if family == 'mmpretrain':
        hook['enable'] = True
        if show_dir:
            hook['out_dir'] = show_dir
    else:
        hook['draw'] = True
        if show_dir and family == 'mmseg':
            cfg.visualizer['save_dir'] = show_dir
            # mmseg's hook draws every 50th batch only (none on a small
            # test set); --show-dir means every test image, as in mmdet
            hook['interval'] = 1
        elif show_dir:
            hook['test_out_dir'] = show_dir
    if show:
        hook['show'] = True
        hook['wait_time'] = wait_time


def dump_metric(family: str, out: str):
    """An evaluator metric that dumps the predictions to ``out`` (.pkl)."""
    if not out.endswith(('.pkl', '.pickle')):
        raise ValueError(f'--out must be a .pkl file, got {out!r}')
    if family == 'mmdet':
        from mmdet.evaluation import DumpDetResults  # optional dependency
        return DumpDetResults(out_file_path=out)
    return DumpResults(out_file_path=out)


def add_partial_load_flag(parser: argparse.ArgumentParser) -> None:
    """``--allow-partial-load``, the one switch of
    :func:`check_checkpoint_match`."""
    parser.add_argument(
        '--allow-partial-load',
        action='store_true',
        help='load a checkpoint that does not match the model: skip (and '
        'only log) missing, unexpected and mismatched keys; without it '
        'any mismatch stops with the list of keys and exit status 1')


def check_local_checkpoint(path) -> None:
    """Read a local ``load_from`` / ``--resume`` / test checkpoint with
    mmslak's reader before mmengine's loader does, so that a missing,
    truncated, unsafe or non-checkpoint file stops with mmslak's error
    naming it (mmengine's fails with torch's bare messages, which name no
    file); URLs are left to the loaders (mmslak.checkpoint.remote)."""
    if path and '://' not in str(path):
        load_checkpoint_file(path, map_location='cpu')


def check_checkpoint_match(cfg: Config, strict: bool,
                           allow_partial: bool) -> None:
    """Make ``load_from`` / ``--resume`` fail on a checkpoint that does not
    match the model (mmengine only logs the mismatch and goes on with
    random weights): add ``CheckpointMatchHook(strict=strict)`` to
    ``custom_hooks`` unless the config has one. ``allow_partial``
    (``--allow-partial-load``) instead removes it, restoring mmengine's
    lenient loading."""
    hooks = list(cfg.get('custom_hooks', None) or [])
    ours = [
        h for h in hooks
        if str(h.get('type', '')).split('.')[-1] == 'CheckpointMatchHook'
    ]
    if allow_partial:
        cfg.custom_hooks = [h for h in hooks if h not in ours]
        print_log(
            '--allow-partial-load: checkpoint keys that do not match the '
            'model are skipped (and only logged)',
            logger='current',
            level=logging.WARNING)
    elif not ours:
        cfg.custom_hooks = hooks + [
            dict(type='CheckpointMatchHook', strict=strict)
        ]
