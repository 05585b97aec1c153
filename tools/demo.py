"""The README's main job, end to end on the CPU.

1. Build SLaK-T through the registry and print per-stage output shapes and
   dense / non-zero parameter counts.
2. Generate the toy datasets (ADE20K, VOCdevkit, COCO layouts).
3. For UperNet (ADE20K mIoU), Faster R-CNN (VOC mAP) and Cascade Mask R-CNN
   (COCO box / mask AP): train with ``tools/train.py`` on the REAL configs
   through the small overrides in ``configs/demo/`` (data root, image scale,
   iterations, model width), test with ``tools/test.py``, print the metric
   and save one visualisation PNG per task.

Any failing step stops the demo with a non-zero exit status.
"""
import argparse
import glob
import json
import os
import os.path as osp
import subprocess
import sys
import time

import torch
from mmengine.registry import init_default_scope
from mmpretrain.registry import MODELS

import mmslak  # noqa: F401  (registers SLaK)
from mmslak.cli.errors import run_main

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TASKS = {
    'ade':
    dict(
        name='UperNet + SLaK (ADE20K layout)',
        config='configs/demo/upernet_slak-demo_toy-ade.py',
        metrics=['mIoU', 'aAcc']),
    'voc':
    dict(
        name='Faster R-CNN + SLaK (VOC layout)',
        config='configs/demo/faster-rcnn_slak-demo_toy-voc.py',
        metrics=['pascal_voc/mAP']),
    'coco':
    dict(
        name='Cascade Mask R-CNN + SLaK (COCO layout)',
        config='configs/demo/cascade-mask-rcnn_slak-demo_toy-coco.py',
        metrics=[
            'coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/segm_mAP',
            'coco/segm_mAP_50'
        ]),
}


def backbone_summary(arch: str, size: int) -> None:
    init_default_scope('mmpretrain')
    model = MODELS.build(
        dict(
            type='mmpretrain.SLaK',
            arch=arch,
            out_indices=(0, 1, 2, 3),
            gap_before_final_norm=False)).eval()
    dense = sum(p.numel() for p in model.parameters())
    nonzero = sum(int(p.count_nonzero()) for p in model.parameters())
    x = torch.randn(1, 3, size, size)
    start = time.perf_counter()
    with torch.no_grad():
        outs = model(x)
    elapsed = time.perf_counter() - start
    print(f'SLaK-{arch} on a 1x3x{size}x{size} input ({elapsed:.2f} s, CPU)')
    for i, out in enumerate(outs):
        print(f'  stage {i + 1}: {tuple(out.shape)}  kernel '
              f'{model.kernel_sizes[i]}')
    print(f'  parameters: {dense:,} dense, {nonzero:,} non-zero')


def run(cmd, env=None) -> None:
    """Run a step, streaming its output; stop the demo if it fails."""
    print('\n$ ' + ' '.join(cmd), flush=True)
    result = subprocess.run(cmd, cwd=REPO, env=env)
    if result.returncode != 0:
        raise SystemExit(f'demo step failed (exit {result.returncode}): ' +
                         ' '.join(cmd))


def last_checkpoint(work_dir: str) -> str:
    marker = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(marker):
        raise SystemExit(f'training wrote no checkpoint in {work_dir}')
    with open(marker) as f:
        return f.read().strip()


def read_test_metrics(work_dir: str, since: float) -> dict:
    """Metrics of the newest test run (mmengine's ``<ts>/<ts>.json``)."""
    logs = [
        p for p in glob.glob(osp.join(work_dir, '*', '*.json'))
        if osp.basename(p)[:-5] == osp.basename(osp.dirname(p))
        and osp.getmtime(p) >= since
    ]
    if not logs:
        raise SystemExit(f'tools/test.py wrote no metrics in {work_dir}')
    with open(max(logs, key=osp.getmtime)) as f:
        lines = [json.loads(line) for line in f if line.strip()]
    return lines[-1]


def save_one_png(show_dir: str, out_png: str) -> str:
    from PIL import Image
    images = sorted(
        p for p in glob.glob(osp.join(show_dir, '**', '*'), recursive=True)
        if p.lower().endswith(('.png', '.jpg', '.jpeg')))
    if not images:
        raise SystemExit(f'no visualisation was written in {show_dir}')
    Image.open(images[0]).convert('RGB').save(out_png)
    return out_png


def train_and_test(task: str, work_root: str, env: dict) -> dict:
    spec = TASKS[task]
    work_dir = osp.join(work_root, task)
    show_dir = osp.join(work_dir, 'vis')
    print(f'\n=== {spec["name"]}: train ({spec["config"]}) ===', flush=True)
    start = time.time()
    run([
        sys.executable, 'tools/train.py', spec['config'], '--work-dir',
        work_dir
    ], env)
    ckpt = last_checkpoint(work_dir)
    print(f'\n=== {spec["name"]}: test ({ckpt}) ===', flush=True)
    test_start = time.time()
    run([
        sys.executable, 'tools/test.py', spec['config'], ckpt, '--work-dir',
        work_dir, '--show-dir', show_dir
    ], env)
    metrics = read_test_metrics(work_dir, test_start)
    missing = [m for m in spec['metrics'] if m not in metrics]
    if missing:
        raise SystemExit(f'{task}: metrics {missing} missing from the test '
                         f'results {sorted(metrics)}')
    png = save_one_png(show_dir, osp.join(work_root, f'{task}_vis.png'))
    return dict(
        metrics={m: metrics[m]
                 for m in spec['metrics']},
        png=png,
        seconds=time.time() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--arch', default='tiny')
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument(
        '--data-root', default='data/toy', help='where the toy data goes')
    parser.add_argument('--work-dir', default='work_dirs/demo')
    parser.add_argument(
        '--tasks', nargs='+', default=list(TASKS), choices=list(TASKS))
    parser.add_argument(
        '--summary-only',
        action='store_true',
        help='only print the backbone summary (step 1)')
    args = parser.parse_args()

    start = time.time()
    backbone_summary(args.arch, args.size)
    if args.summary_only:
        return
    data_root = osp.abspath(args.data_root)
    work_root = osp.abspath(args.work_dir)
    os.makedirs(work_root, exist_ok=True)
    env = dict(os.environ, MMSLAK_TOY_DATA=data_root)
    run([
        sys.executable, 'tools/dataset_converters/make_toy_datasets.py',
        '--out', data_root, '--tasks', *args.tasks
    ], env)
    results = {
        task: train_and_test(task, work_root, env)
        for task in args.tasks
    }

    print('\n=== demo results (toy data, CPU; not the paper\'s numbers) ===')
    for task, res in results.items():
        shown = ', '.join(f'{k} {v:.2f}' if 'coco' not in k else f'{k} {v:.3f}'
                          for k, v in res['metrics'].items())
        print(f'{TASKS[task]["name"]}: {shown}  ({res["seconds"]:.0f} s, '
              f'picture: {res["png"]})')
    with open(osp.join(work_root, 'results.json'), 'w') as f:
        json.dump(results, f, indent=2)
    print(f'total {time.time() - start:.0f} s')


if __name__ == '__main__':
    sys.exit(run_main(main))
