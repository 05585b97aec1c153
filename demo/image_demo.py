"""Run a SLaK model on one image: classification top-5, segmentation
overlay, or detection / instance-segmentation boxes (and masks).

    python demo/image_demo.py IMAGE CONFIG CHECKPOINT [--out-file OUT.png]
        [--device cpu] [--score-thr 0.3]

The task comes from the config (mmpretrain, mmseg or mmdet); CHECKPOINT may
be in training or deploy form (reparameterize_model.py). Uses the upstream
inferencers through ``mmslak.apis``.
"""
import argparse
import os.path as osp
import sys

import mmcv
import numpy as np
import torch

from mmslak.apis.inferencers import build_inferencer, inference_image


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('img', help='image file')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out-file', default=None, help='visualisation')
    parser.add_argument('--device', default='cpu', help='e.g. cpu, cuda:0')
    parser.add_argument(
        '--score-thr', type=float, default=0.3, help='detection threshold')
    return parser.parse_args(argv)


def classification_lines(sample, classes) -> list:
    scores = sample.pred_score.cpu()
    top = torch.topk(scores, min(5, scores.numel()))
    return [
        f'top-{i + 1}: {classes[j] if classes else j} ({float(s):.4f})'
        for i, (s, j) in enumerate(zip(top.values, top.indices.tolist()))
    ]


def segmentation_lines(sample, classes) -> list:
    labels = sample.pred_sem_seg.data.cpu().numpy().ravel()
    ids, counts = np.unique(labels, return_counts=True)
    order = np.argsort(-counts)
    return [
        f'{classes[ids[k]] if classes else ids[k]}: '
        f'{100 * counts[k] / labels.size:.1f}% of the pixels' for k in order
    ]


def detection_lines(sample, classes, score_thr) -> list:
    inst = sample.pred_instances
    keep = inst.scores >= score_thr
    lines = []
    for box, score, label in zip(inst.bboxes[keep].tolist(),
                                 inst.scores[keep].tolist(),
                                 inst.labels[keep].tolist()):
        name = classes[label] if classes else label
        coords = ', '.join(f'{v:.1f}' for v in box)
        lines.append(f'{name} {score:.3f} [{coords}]')
    return lines or [f'no detection above score {score_thr}']


def describe(sample, model, score_thr: float) -> list:
    classes = (getattr(model, 'dataset_meta', None) or {}).get('classes')
    if 'pred_sem_seg' in sample:
        return segmentation_lines(sample, classes)
    if 'pred_instances' in sample:
        return detection_lines(sample, classes, score_thr)
    return classification_lines(sample, classes)


def main(argv=None) -> int:
    args = parse_args(argv)
    for what, path in (('image', args.img), ('checkpoint', args.checkpoint)):
        if not osp.isfile(path):
            raise FileNotFoundError(f'{what} not found: {path}')
    inferencer = build_inferencer(args.config, args.checkpoint, args.device)
    kwargs = {}
    if 'pred_score_thr' in getattr(inferencer, 'visualize_kwargs', ()):
        kwargs['pred_score_thr'] = args.score_thr
    sample, vis = inference_image(inferencer, args.img, **kwargs)
    for line in describe(sample, inferencer.model, args.score_thr):
        print(line)
    if args.out_file:
        mmcv.imwrite(np.ascontiguousarray(vis[..., ::-1]), args.out_file)
        print(f'wrote {osp.abspath(args.out_file)}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
