"""Write small, deterministic toy datasets in the real on-disk formats.

Each image is a crop of one of scikit-image's bundled photographs (offline)
with a few filled shapes drawn on it. Shape and (jittered) colour decide the
class, so a short training run can beat chance:

    red circle -> 'person', green square -> 'car', blue triangle -> 'chair'

(names that exist in ADE20K, PASCAL VOC and COCO alike). Layouts::

    OUT/ade/ADEChallengeData2016/images/{training,validation}/*.jpg
    OUT/ade/ADEChallengeData2016/annotations/{training,validation}/*.png
        (uint8 ADE20K ids: 0 = unlabelled / ignored, 1 = wall for the
        background, 13 person, 21 car, 20 chair; shape borders are 0)
    OUT/VOCdevkit/VOC{2007,2012}/{JPEGImages,Annotations}/,
        ImageSets/Main/{trainval,test}.txt (test only for VOC2007)
    OUT/coco/annotations/instances_{train,val}2017.json (polygons, the 80
        COCO categories with their official ids), OUT/coco/{train,val}2017/

Usage::

    python tools/dataset_converters/make_toy_datasets.py --out data/toy
"""
import argparse
import json
import os
import os.path as osp
import xml.etree.ElementTree as ET
from typing import Dict, List, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SHAPES = ('circle', 'square', 'triangle')
# each class has its own hue (jittered) as well as its own shape
COLOURS = {
    'circle': (220, 40, 40),
    'square': (40, 200, 60),
    'triangle': (50, 80, 230)
}
SHAPE_NAMES = {'circle': 'person', 'square': 'car', 'triangle': 'chair'}
# ADE20K ids in the PNGs (1-based; 0 is "other" and ignored by
# reduce_zero_label): wall 1, person 13, chair 20, car 21.
ADE_IDS = {'background': 1, 'circle': 13, 'square': 21, 'triangle': 20}
# Official COCO category ids of the 80 classes, in mmdet's class order.
COCO_IDS = [
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
    23, 24, 25, 27, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44,
    46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64,
    65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88,
    89, 90
]
PHOTOS = ('astronaut', 'coffee', 'chelsea', 'rocket', 'immunohistochemistry',
          'hubble_deep_field')


def _photos() -> List[np.ndarray]:
    from skimage import data
    return [getattr(data, name)() for name in PHOTOS]


class ToyImages:
    """Deterministic generator of (image, shapes) pairs."""

    def __init__(self,
                 seed: int,
                 min_shapes: int = 1,
                 max_shapes: int = 3) -> None:
        self.rng = np.random.default_rng(seed)
        self.photos = _photos()
        self.min_shapes, self.max_shapes = min_shapes, max_shapes

    def background(self, w: int, h: int) -> Image.Image:
        photo = self.photos[self.rng.integers(len(self.photos))]
        ph, pw = photo.shape[:2]
        scale = self.rng.uniform(0.4, 1.0)
        cw = max(16, int(min(pw, ph * w / h) * scale))
        ch = max(16, int(cw * h / w))
        x0 = self.rng.integers(0, pw - cw + 1)
        y0 = self.rng.integers(0, ph - ch + 1)
        crop = Image.fromarray(photo[y0:y0 + ch, x0:x0 + cw])
        crop = crop.resize((w, h), Image.BILINEAR)
        # lower contrast so the shapes stand out from the texture
        grey = Image.new('RGB', (w, h), (128, 128, 128))
        return Image.blend(crop, grey, 0.35)

    def polygon(self, shape: str, w: int, h: int,
                size_range: Tuple[float, float]) -> List[Tuple[float, float]]:
        side = min(w, h) * self.rng.uniform(*size_range)
        cx = self.rng.uniform(side / 2, w - side / 2)
        cy = self.rng.uniform(side / 2, h - side / 2)
        r = side / 2
        if shape == 'circle':
            angles = np.linspace(0, 2 * np.pi, 24, endpoint=False)
        elif shape == 'square':
            angles = np.array([0.25, 0.75, 1.25, 1.75]) * np.pi
            r = r * np.sqrt(2) * 0.95  # corners inside the box
        else:  # triangle, apex up
            angles = np.array([-0.5, 1 / 6, 5 / 6]) * np.pi
        theta = self.rng.uniform(-0.15, 0.15)  # slight rotation
        xs = np.clip(cx + r * np.cos(angles + theta), 0, w - 1)
        ys = np.clip(cy + r * np.sin(angles + theta), 0, h - 1)
        return [(float(x), float(y)) for x, y in zip(xs, ys)]

    def sample(self, w: int, h: int, size_range=(0.25, 0.5)):
        """Return an RGB image and a list of dicts (shape, polygon, mask)."""
        img = self.background(w, h)
        draw = ImageDraw.Draw(img)
        occupied = np.zeros((h, w), bool)
        objects = []
        for _ in range(
                self.rng.integers(self.min_shapes, self.max_shapes + 1)):
            shape = SHAPES[self.rng.integers(len(SHAPES))]
            for _try in range(30):  # no overlaps: masks stay exact
                poly = self.polygon(shape, w, h, size_range)
                mask_img = Image.new('L', (w, h), 0)
                ImageDraw.Draw(mask_img).polygon(poly, fill=1)
                mask = np.asarray(mask_img, bool)
                grown = np.asarray(
                    mask_img.filter(ImageFilter.MaxFilter(5)), bool)
                if mask.sum() > 64 and not (grown & occupied).any():
                    break
            else:
                continue
            jitter = self.rng.integers(-30, 31, 3)
            colour = tuple(
                int(c)
                for c in np.clip(np.array(COLOURS[shape]) + jitter, 0, 255))
            draw.polygon(poly, fill=colour, outline=(0, 0, 0))
            occupied |= grown
            objects.append(dict(shape=shape, polygon=poly, mask=mask))
        return img, objects


def _bbox(mask: np.ndarray) -> Tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def make_ade(out: str, gen: ToyImages, counts: Dict[str, int],
             size: Tuple[int, int]) -> str:
    root = osp.join(out, 'ade', 'ADEChallengeData2016')
    for split, n in counts.items():
        img_dir = osp.join(root, 'images', split)
        ann_dir = osp.join(root, 'annotations', split)
        os.makedirs(img_dir, exist_ok=True)
        os.makedirs(ann_dir, exist_ok=True)
        for i in range(n):
            img, objects = gen.sample(*size)
            label = np.full((size[1], size[0]), ADE_IDS['background'],
                            np.uint8)
            for obj in objects:
                mask = Image.fromarray(obj['mask'].astype(np.uint8))
                border = np.asarray(
                    mask.filter(ImageFilter.MaxFilter(3)), bool) & ~np.asarray(
                        mask.filter(ImageFilter.MinFilter(3)), bool)
                label[obj['mask']] = ADE_IDS[obj['shape']]
                label[border] = 0  # unlabelled, as ADE20K's object borders
            name = f'ADE_{split[:5]}_{i:08d}'
            img.save(osp.join(img_dir, name + '.jpg'), quality=95)
            Image.fromarray(label).save(osp.join(ann_dir, name + '.png'))
    return root


def _voc_xml(name: str, size: Tuple[int, int], objects: Sequence[dict],
             folder: str) -> ET.ElementTree:
    ann = ET.Element('annotation')
    ET.SubElement(ann, 'folder').text = folder
    ET.SubElement(ann, 'filename').text = name + '.jpg'
    sz = ET.SubElement(ann, 'size')
    for key, val in zip(('width', 'height', 'depth'), (*size, 3)):
        ET.SubElement(sz, key).text = str(val)
    ET.SubElement(ann, 'segmented').text = '0'
    for obj in objects:
        o = ET.SubElement(ann, 'object')
        ET.SubElement(o, 'name').text = SHAPE_NAMES[obj['shape']]
        ET.SubElement(o, 'pose').text = 'Unspecified'
        ET.SubElement(o, 'truncated').text = '0'
        ET.SubElement(o, 'difficult').text = '0'
        x0, y0, x1, y1 = _bbox(obj['mask'])
        box = ET.SubElement(o, 'bndbox')
        # VOC boxes are 1-based and inclusive
        for key, val in zip(('xmin', 'ymin', 'xmax', 'ymax'),
                            (x0 + 1, y0 + 1, x1, y1)):
            ET.SubElement(box, key).text = str(val)
    return ET.ElementTree(ann)


def make_voc(out: str, gen: ToyImages, counts: Dict[str, Dict[str, int]],
             size: Tuple[int, int]) -> str:
    root = osp.join(out, 'VOCdevkit')
    for year, splits in counts.items():
        base = osp.join(root, year)
        for sub in ('JPEGImages', 'Annotations', 'ImageSets/Main'):
            os.makedirs(osp.join(base, sub), exist_ok=True)
        for split, n in splits.items():
            ids = []
            for i in range(n):
                img, objects = gen.sample(*size)
                name = f'{year[3:]}_{split}_{i:06d}'
                img.save(
                    osp.join(base, 'JPEGImages', name + '.jpg'), quality=95)
                _voc_xml(name, size, objects, year).write(
                    osp.join(base, 'Annotations', name + '.xml'))
                ids.append(name)
            with open(
                    osp.join(base, 'ImageSets', 'Main', split + '.txt'),
                    'w') as f:
                f.write('\n'.join(ids) + '\n')
    return root


def make_coco(out: str, gen: ToyImages, counts: Dict[str, int],
              size: Tuple[int, int]) -> str:
    from mmdet.datasets import CocoDataset
    names = CocoDataset.METAINFO['classes']
    assert len(names) == len(COCO_IDS) == 80
    categories = [
        dict(id=cid, name=name, supercategory='none')
        for cid, name in zip(COCO_IDS, names)
    ]
    name_to_id = {c['name']: c['id'] for c in categories}
    root = osp.join(out, 'coco')
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    ann_id = 1
    for split, n in counts.items():
        img_dir = osp.join(root, f'{split}2017')
        os.makedirs(img_dir, exist_ok=True)
        images, anns = [], []
        for i in range(n):
            img, objects = gen.sample(*size)
            img_id = i + 1
            file_name = f'{img_id:012d}.jpg'
            img.save(osp.join(img_dir, file_name), quality=95)
            images.append(
                dict(
                    id=img_id,
                    file_name=file_name,
                    width=size[0],
                    height=size[1]))
            for obj in objects:
                x0, y0, x1, y1 = _bbox(obj['mask'])
                anns.append(
                    dict(
                        id=ann_id,
                        image_id=img_id,
                        category_id=name_to_id[SHAPE_NAMES[obj['shape']]],
                        segmentation=[[
                            round(v, 2) for xy in obj['polygon'] for v in xy
                        ]],
                        area=float(obj['mask'].sum()),
                        bbox=[x0, y0, x1 - x0, y1 - y0],
                        iscrowd=0))
                ann_id += 1
        with open(
                osp.join(root, 'annotations', f'instances_{split}2017.json'),
                'w') as f:
            json.dump(
                dict(
                    info=dict(description='mmslak toy COCO'),
                    licenses=[],
                    images=images,
                    annotations=anns,
                    categories=categories), f)
    return root


def make_toy_datasets(out: str,
                      tasks: Sequence[str] = ('ade', 'voc', 'coco'),
                      num_train: int = 48,
                      num_val: int = 16,
                      seg_size: Tuple[int, int] = (128, 128),
                      det_size: Tuple[int, int] = (192, 160),
                      seed: int = 0) -> Dict[str, str]:
    """Write the toy datasets under ``out``; returns {task: root}."""
    unknown = set(tasks) - {'ade', 'voc', 'coco'}
    if unknown:
        raise ValueError(f'unknown tasks {sorted(unknown)}; choose from '
                         "'ade', 'voc', 'coco'")
    if num_train < 1 or num_val < 1:
        raise ValueError('num_train and num_val must be >= 1, got '
                         f'{num_train}, {num_val}')
    roots = {}
    if 'ade' in tasks:
        roots['ade'] = make_ade(out, ToyImages(seed),
                                dict(training=num_train, validation=num_val),
                                seg_size)
    if 'voc' in tasks:
        # VOC07+12 trainval for training, VOC2007 test for testing
        half = max(1, num_train // 2)
        roots['voc'] = make_voc(
            out, ToyImages(seed + 1),
            dict(
                VOC2007=dict(trainval=num_train - half, test=num_val),
                VOC2012=dict(trainval=half)), det_size)
    if 'coco' in tasks:
        roots['coco'] = make_coco(out, ToyImages(seed + 2),
                                  dict(train=num_train, val=num_val), det_size)
    return roots


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', default='data/toy', help='output folder')
    parser.add_argument(
        '--tasks',
        nargs='+',
        default=['ade', 'voc', 'coco'],
        choices=['ade', 'voc', 'coco'])
    parser.add_argument('--num-train', type=int, default=48)
    parser.add_argument('--num-val', type=int, default=16)
    parser.add_argument(
        '--seg-size',
        type=int,
        nargs=2,
        default=(128, 128),
        metavar=('W', 'H'))
    parser.add_argument(
        '--det-size',
        type=int,
        nargs=2,
        default=(192, 160),
        metavar=('W', 'H'))
    parser.add_argument('--seed', type=int, default=0)
    return parser.parse_args()


def main():
    args = parse_args()
    roots = make_toy_datasets(args.out, args.tasks, args.num_train,
                              args.num_val, tuple(args.seg_size),
                              tuple(args.det_size), args.seed)
    for task, root in roots.items():
        print(f'{task}: {root}')


if __name__ == '__main__':
    main()
