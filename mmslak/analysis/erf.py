"""Effective receptive field (ERF), as measured in the SLaK paper.

For each image (resized to ``size`` x ``size``) the gradient of the centre
pixel of the last stage's output (summed over channels) is taken with respect
to the input; ``|grad|`` is summed over the input channels and averaged
over the images. The aggregated matrix is then shown as ``log10(x + 1)``
normalised to [0, 1], and the "high-contribution area ratio" at threshold
``t`` is the area of the smallest centred square holding ``t`` of that
matrix's total, divided by the image area. The last stage's output is taken
before the backbone's output norm (the reference scripts do the same).
"""
import os.path as osp
from glob import glob
from typing import Callable, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

#: Thresholds reported in the paper's ERF table.
DEFAULT_THRESHOLDS = (0.2, 0.3, 0.5, 0.99)
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
#: Photos bundled in scikit-image's wheel (load offline).
SKIMAGE_PHOTOS = ('astronaut', 'coffee', 'chelsea', 'rocket',
                  'hubble_deep_field', 'immunohistochemistry', 'retina',
                  'camera', 'coins', 'moon', 'grass', 'gravel', 'brick')
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff')


def _to_rgb_uint8(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype == bool:
        img = img.astype(np.uint8) * 255
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    if img.shape[-1] == 4:
        img = img[..., :3]
    return np.ascontiguousarray(img.astype(np.uint8))


def fallback_images(num_images: int) -> List[np.ndarray]:
    """``num_images`` RGB uint8 photos from scikit-image's bundled data.

    The 13 photos are used as they are first; further images are made of
    them by deterministic crops (a centred 70% window moved over a 3x3 grid)
    and horizontal flips, so the set is the same on every machine.
    """
    if num_images <= 0:
        raise ValueError(f'num_images must be > 0, got {num_images}')
    import skimage.data
    photos = [
        _to_rgb_uint8(getattr(skimage.data, n)()) for n in SKIMAGE_PHOTOS
    ]
    images = []
    variant = 0
    while len(images) < num_images:
        for photo in photos:
            if len(images) == num_images:
                break
            if variant == 0:
                images.append(photo)
                continue
            h, w = photo.shape[:2]
            ch, cw = int(h * 0.7), int(w * 0.7)
            pos = (variant - 1) % 9
            top = (h - ch) * (pos // 3) // 2
            left = (w - cw) * (pos % 3) // 2
            crop = photo[top:top + ch, left:left + cw]
            if (variant - 1) // 9 % 2 == 0:
                crop = crop[:, ::-1]
            images.append(np.ascontiguousarray(crop))
        variant += 1
    return images


def load_images(folder: Optional[str], num_images: int) -> List[np.ndarray]:
    """The first ``num_images`` images of ``folder`` (sorted, recursive) as
    RGB uint8 arrays, or :func:`fallback_images` when ``folder`` is None."""
    if folder is None:
        return fallback_images(num_images)
    if not osp.isdir(folder):
        raise FileNotFoundError(f'image folder not found: {folder}')
    from PIL import Image
    paths = sorted(
        p for p in glob(osp.join(folder, '**', '*'), recursive=True)
        if p.lower().endswith(IMAGE_EXTENSIONS))
    if not paths:
        raise FileNotFoundError(
            f'no images ({", ".join(IMAGE_EXTENSIONS)}) found in {folder}')
    if len(paths) < num_images:
        raise ValueError(f'{folder} holds {len(paths)} images, fewer than '
                         f'the {num_images} asked for (--num-images)')
    return [
        np.asarray(Image.open(p).convert('RGB')) for p in paths[:num_images]
    ]


def preprocess(images: Sequence[np.ndarray],
               size: int,
               mean: Sequence[float] = IMAGENET_MEAN,
               std: Sequence[float] = IMAGENET_STD) -> torch.Tensor:
    """Resize each image to ``size`` x ``size`` (bilinear, no crop, as the
    paper) and normalise. Returns an (N, 3, size, size) float tensor."""
    out = []
    for img in images:
        x = torch.from_numpy(_to_rgb_uint8(img)).permute(2, 0, 1).float()
        x = F.interpolate(
            x[None],
            size=(size, size),
            mode='bilinear',
            align_corners=False,
            antialias=True)[0]
        out.append(x)
    x = torch.stack(out)
    mean_t = torch.tensor(mean).view(1, 3, 1, 1)
    std_t = torch.tensor(std).view(1, 3, 1, 1)
    return (x - mean_t) / std_t


def last_feature_map(outputs) -> torch.Tensor:
    """The last stage's (N, C, h, w) map from a backbone's outputs."""
    if isinstance(outputs, (tuple, list)):
        outputs = outputs[-1]
    if not isinstance(outputs, torch.Tensor) or outputs.dim() != 4:
        shape = getattr(outputs, 'shape', type(outputs))
        raise ValueError(
            'the ERF needs the last stage as an (N, C, h, w) feature map, '
            f'got {shape}; build the backbone with '
            'gap_before_final_norm=False (see build_erf_backbone)')
    return outputs


def input_gradient_map(model: Callable[[torch.Tensor], object],
                       inputs: torch.Tensor,
                       grad_mode: str = 'abs') -> torch.Tensor:
    """Per-pixel contribution of ``inputs`` to the centre output pixel.

    Args:
        model: maps (N, 3, H, W) to the backbone outputs.
        inputs: (N, 3, H, W) batch; images do not interact (eval mode), so
            a batch gives each image's own gradient.
        grad_mode: ``'abs'`` (the paper's ``|grad|``) or ``'relu'`` (the
            reference scripts: ReLU on the centre pixel and on the grads).

    Returns:
        (H, W) tensor: the gradient magnitudes summed over channels and
        images.
    """
    if grad_mode not in ('abs', 'relu'):
        raise ValueError(f"grad_mode must be 'abs' or 'relu', got "
                         f'{grad_mode!r}')
    x = inputs.detach().clone().requires_grad_(True)
    feat = last_feature_map(model(x))
    centre = feat[:, :, feat.shape[2] // 2, feat.shape[3] // 2]
    if grad_mode == 'relu':
        centre = F.relu(centre)
    grad, = torch.autograd.grad(centre.sum(), x)
    grad = grad.abs() if grad_mode == 'abs' else F.relu(grad)
    return grad.sum(dim=(0, 1)).detach()


def compute_erf(model: nn.Module,
                images: torch.Tensor,
                batch_size: int = 1,
                grad_mode: str = 'abs',
                device: Union[str, torch.device] = 'cpu',
                progress: Optional[Callable[[int, int],
                                            None]] = None) -> np.ndarray:
    """Aggregated (not yet normalised) ERF of ``model`` over ``images``.

    The model is put in eval mode (BN running statistics, no drop path).

    Returns:
        float64 (H, W) array: |grad| summed over channels and averaged over
        images (as the reference scripts do, so that the scale does not
        depend on the number of images before ``log10(x + 1)``).
    """
    if images.dim() != 4:
        raise ValueError(f'images must be (N, 3, H, W), got '
                         f'{tuple(images.shape)}')
    # Not chained: some upstream backbones' train() returns None.
    model.to(device)
    model.eval()
    total = torch.zeros(images.shape[-2:], dtype=torch.float64)
    for start in range(0, images.shape[0], batch_size):
        batch = images[start:start + batch_size].to(device)
        total += input_gradient_map(model, batch, grad_mode).double().cpu()
        if progress is not None:
            progress(min(start + batch_size, images.shape[0]), images.shape[0])
    return (total / images.shape[0]).numpy()


def normalize_erf(erf: np.ndarray) -> np.ndarray:
    """``log10(x + 1)`` scaled so that the maximum is 1 (the paper's
    display and the input of the area ratios)."""
    erf = np.log10(np.asarray(erf, dtype=np.float64) + 1)
    peak = erf.max()
    if not peak > 0:
        raise ValueError('the ERF is zero everywhere: the output does not '
                         'depend on the input (check the model)')
    return erf / peak


def high_contribution_area_ratios(
        erf: np.ndarray,
        thresholds: Sequence[float] = DEFAULT_THRESHOLDS
) -> Dict[float, float]:
    """Area ratio of the smallest centred square holding ``t`` of the total.

    Squares are centred on pixel (H // 2, W // 2) with odd sides
    1, 3, 5, ..., clipped to the image; the ratio is the clipped square's
    area over H * W. Pass the normalised ERF (:func:`normalize_erf`) to get
    the paper's numbers.
    """
    erf = np.asarray(erf, dtype=np.float64)
    if erf.ndim != 2:
        raise ValueError(f'erf must be a 2-D matrix, got shape {erf.shape}')
    if np.any(erf < 0):
        raise ValueError('erf must be non-negative')
    h, w = erf.shape
    cy, cx = h // 2, w // 2
    integral = np.zeros((h + 1, w + 1))
    integral[1:, 1:] = erf.cumsum(0).cumsum(1)
    radii = np.arange(max(cy, cx, h - cy, w - cx) + 1)
    y0, y1 = np.maximum(cy - radii, 0), np.minimum(cy + radii + 1, h)
    x0, x1 = np.maximum(cx - radii, 0), np.minimum(cx + radii + 1, w)
    sums = (
        integral[y1, x1] - integral[y0, x1] - integral[y1, x0] +
        integral[y0, x0])
    areas = (y1 - y0) * (x1 - x0)
    total = integral[h, w]
    ratios = {}
    for t in thresholds:
        if not 0 < t <= 1:
            raise ValueError(f'thresholds must be in (0, 1], got {t}')
        # Small tolerance so that t = 1 is reachable despite rounding.
        idx = int(np.argmax(sums >= t * total * (1 - 1e-12)))
        ratios[float(t)] = float(areas[idx] / (h * w))
    return ratios


def plot_erfs(erfs: Dict[str, np.ndarray],
              out_file: str,
              thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
              cmap: str = 'RdYlGn') -> None:
    """Side-by-side heatmaps of normalised ERFs, titled with their area
    ratios, saved to ``out_file`` (matplotlib, Agg backend)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    names = list(erfs)
    fig, axes = plt.subplots(
        1, len(names), figsize=(4.2 * len(names), 4.6), squeeze=False)
    for ax, name in zip(axes[0], names):
        data = erfs[name]
        ratios = high_contribution_area_ratios(data, thresholds)
        im = ax.imshow(data, cmap=cmap, vmin=0, vmax=1)
        text = ' '.join(f'{int(round(t * 100))}%:{r:.3f}'
                        for t, r in ratios.items())
        ax.set_title(f'{name}\n{text}', fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    fig.savefig(out_file, dpi=120)
    plt.close(fig)


def strip_output_norms(backbone: nn.Module) -> int:
    """Replace the per-stage output norms (``norm{i}``, as mmpretrain's
    ConvNeXt and SLaK name them) by identities, so the backbone returns
    the raw stage outputs.

    The ERF needs this: with a LayerNorm of unit weight at the output, the
    channel sum of the centre pixel is a constant (zero gradient).
    Returns the number of norms replaced.
    """
    names = {f'norm{i}' for i in getattr(backbone, 'out_indices', ())}
    replaced = 0
    for name in sorted(names):
        if isinstance(getattr(backbone, name, None), nn.Module):
            setattr(backbone, name, nn.Identity())
            replaced += 1
    return replaced
