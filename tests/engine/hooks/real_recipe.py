"""A tiny classifier trained with the project's real ImageNet recipe
(``configs/slak/slak-tiny_4xb128-accum8_in1k.py``: RandomResizedCrop, flip,
RandAugment, RandomErasing, Mixup/CutMix, label smoothing, drop path, EMA,
SNIP + dynamic sparsity) on a 12-image folder dataset, through this
checkout's ``tools/train.py``. Only sizes are shrunk (arch, image scale,
batch, schedule length); every random component of the recipe stays.

Shared by the resume and fault-injection tests (also run as a script to
write the dataset and the config)."""
import os
import os.path as osp
import subprocess

import numpy as np
import torch
from child_process import (assert_imported_this_checkout, checkout_command,
                           checkout_env)

REPO = osp.dirname(
    osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
RECIPE = osp.join(REPO, 'configs', 'slak', 'slak-tiny_4xb128-accum8_in1k.py')
CLASSES = ('a', 'b', 'c')


def recipe_overrides(root: str, by_epoch: bool, length: int, interval: int,
                     val: int, workers: int, seed) -> tuple:
    """Sizes only; the recipe's random components all stay: (keys merged
    into the recipe, keys replaced)."""
    loop = (
        dict(type='EpochBasedTrainLoop', max_epochs=length)
        if by_epoch else dict(type='IterBasedTrainLoop', max_iters=length))
    # iteration-based: 12 iterations are one pass over the 48 images
    # (mmengine sleeps 2 s at each pass); epoch-based: 12 images
    train_set = dict(type='CustomDataset', data_root=root, data_prefix='train')
    if by_epoch:
        train_set['indices'] = 12
    val_pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='Resize', scale=32),
        dict(type='PackInputs')
    ]
    return {
        'model.backbone.width_factor': 1.0,
        'model.backbone.kernel_sizes': (7, 5),
        'model.backbone.drop_path_rate': 0.3,
        'model.head.num_classes': 3,
        'model.head.in_channels': 16,
        'data_preprocessor.num_classes': 3,
        'train_dataloader.batch_size': 4,
        # one forward per optimizer step (the recipe accumulates 8, a layout
        # for 4 GPUs): checkpoints every 2 iterations then fall on steps
        'optim_wrapper.accumulative_counts': 1,
        # update_interval counts steps at this total batch: 2 stays 2
        'auto_scale_lr.base_batch_size': 4,
        'train_dataloader.num_workers': workers,
        'train_dataloader.persistent_workers': False,
        'default_hooks.logger.interval': 1,
        'default_hooks.checkpoint.interval': interval,
        'default_hooks.checkpoint.by_epoch': by_epoch,
        'randomness.seed': seed,
    }, {
        'model.backbone.arch':
        dict(depths=[1, 1], channels=[8, 16]),
        'train_dataloader.dataset':
        train_set,
        'val_dataloader':
        dict(
            batch_size=4,
            num_workers=0,
            sampler=dict(type='DefaultSampler', shuffle=False),
            dataset=dict(
                type='CustomDataset',
                data_root=root,
                indices=6,
                data_prefix='train',
                pipeline=val_pipeline)),
        'val_evaluator':
        dict(type='Accuracy', topk=(1, )),
        'train_cfg':
        dict(val_interval=val, **loop),
        'param_scheduler': [
            dict(
                type='LinearLR',
                start_factor=1e-3,
                by_epoch=False,
                begin=0,
                end=3),
            dict(
                type='CosineAnnealingLR',
                eta_min=1e-5,
                by_epoch=False,
                begin=3)
        ],
    }


def make_dataset(root: str, per_class: int = 16, size: int = 40) -> None:
    """``root/train/<class>/<i>.jpg``: noisy crops of scikit-image photos,
    one photo per class."""
    from PIL import Image
    from skimage import data
    photos = [data.astronaut(), data.coffee(), data.chelsea()]
    rng = np.random.default_rng(0)
    for cls, photo in zip(CLASSES, photos):
        folder = osp.join(root, 'train', cls)
        os.makedirs(folder, exist_ok=True)
        for i in range(per_class):
            y, x = rng.integers(0, 200, size=2)
            crop = photo[y:y + size * 4:4, x:x + size * 4:4].astype(np.int16)
            crop = crop + rng.integers(-20, 20, crop.shape)
            Image.fromarray(np.clip(crop, 0, 255).astype(np.uint8)).save(
                osp.join(folder, f'{i}.jpg'))


def write_config(path: str,
                 root: str,
                 by_epoch: bool = False,
                 length: int = 12,
                 interval: int = 2,
                 val: int = 4,
                 workers: int = 0,
                 seed=0) -> str:
    """The real recipe with :func:`recipe_overrides`, dumped to ``path``."""
    from mmengine.config import Config
    cfg = Config.fromfile(RECIPE)
    pipeline = cfg.train_pipeline
    assert pipeline[1]['type'] == 'RandomResizedCrop', pipeline
    pipeline[1]['scale'] = 32
    merged, replaced = recipe_overrides(root, by_epoch, length, interval, val,
                                        workers, seed)
    cfg.merge_from_dict(merged)
    for key, value in replaced.items():
        *parents, name = key.split('.')
        node = cfg
        for parent in parents:
            node = node[parent]
        node[name] = value
    cfg.train_dataloader.dataset.pipeline = pipeline
    hooks = {h['type']: h for h in cfg.custom_hooks}
    hooks['SparseTrainingHook'].update(update_interval=2)
    hooks['EMAHook'].update(momentum=0.1, interval=1)  # once per step
    # the recipe's own fault-tolerance hooks
    assert 'RandomStateHook' in hooks, cfg.custom_hooks
    assert cfg.default_hooks.checkpoint.type == 'AtomicCheckpointHook'
    cfg.dump(path)
    return path


def child_env() -> dict:
    """Environment of a child that imports THIS checkout's mmslak."""
    env = checkout_env()
    env.setdefault('OMP_NUM_THREADS', '1')
    return env


def train_cmd(config: str, work_dir: str, *extra: str) -> list:
    """tools/train.py of this checkout, printing where mmslak came from."""
    return checkout_command(
        osp.join(REPO, 'tools', 'train.py'), config, '--work-dir', work_dir,
        *extra)


def train(config: str, work_dir: str, *extra: str, timeout: int = 600) -> str:
    """Run training to the end; return its output (asserting the child
    imported this checkout)."""
    proc = subprocess.run(
        train_cmd(config, work_dir, *extra),
        env=child_env(),
        cwd=work_dir if osp.isdir(work_dir) else None,
        capture_output=True,
        text=True,
        timeout=timeout)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert_imported_this_checkout(out)
    return out


def final_state(ckpt_path: str) -> dict:
    """Everything a resumed run must reproduce: weights, EMA, optimizer,
    schedulers (lr), masks, explored masks, the sparse schedule, the
    random states and the loop position."""
    from mmslak.checkpoint import load_checkpoint_file
    ckpt = load_checkpoint_file(ckpt_path)
    keep = ('state_dict', 'ema_state_dict', 'optimizer', 'param_schedulers',
            'sparsity', 'random_states')
    state = {k: ckpt[k] for k in keep if k in ckpt}
    state['position'] = (ckpt['meta']['epoch'], ckpt['meta']['iter'])
    return state


def differences(a, b, path='') -> list:
    """Paths where ``a`` and ``b`` differ (tensors compared bit for bit,
    NaNs equal), both directions."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f'{path}.{k}: missing on one side' for k in set(a) ^ set(b)]
        for k in sorted(set(a) & set(b), key=str):
            out += differences(a[k], b[k], f'{path}.{k}')
        return out
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return [f'{path}: length {len(a)} != {len(b)}']
        return [
            d for i, (x, y) in enumerate(zip(a, b))
            for d in differences(x, y, f'{path}[{i}]')
        ]
    if torch.is_tensor(a) and torch.is_tensor(b):
        same = (
            a.dtype == b.dtype and a.shape == b.shape and torch.equal(
                a.reshape(-1).view(torch.uint8),
                b.reshape(-1).view(torch.uint8)))
        return [] if same else [f'{path}: tensors differ']
    return [] if type(a) is type(b) and a == b else [f'{path}: {a!r} != {b!r}']


def tensor_count(state) -> int:
    if isinstance(state, dict):
        return sum(tensor_count(v) for v in state.values())
    if isinstance(state, (list, tuple)):
        return sum(tensor_count(v) for v in state)
    return int(torch.is_tensor(state))
