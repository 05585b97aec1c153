"""Per-layer sparsity of a checkpoint (behind
tools/analysis/sparsity_summary.py)."""
from typing import List, Union

import torch

from ..checkpoint.loading import get_state_dict, read_checkpoint
from .checkpoint import (_BUFFER_SUFFIXES, decode_sparsity_state,
                         masks_from_checkpoint)


def sparsity_table(ckpt: Union[dict, str]) -> dict:
    """Per-layer mask densities and non-zero counts of a checkpoint.

    Returns ``dict(rows=[(name, shape, active, numel, nonzero)], ...)``
    with totals: ``active`` / ``numel`` over the masked layers (masks from
    ``checkpoint['sparsity']`` or ``weight != 0``), ``nonzero`` /
    ``params`` over every floating-point parameter of the state dict
    (BN running statistics excluded), ``source`` ('sparsity' or 'zeros')
    and ``explored``. The in-scope layers that the hook left dense are
    listed at density 1.
    """
    if isinstance(ckpt, str):
        source, ckpt = ckpt, read_checkpoint(ckpt)
    else:
        source = 'checkpoint'
    state = get_state_dict(ckpt, strip_prefixes=())
    masks = masks_from_checkpoint(ckpt, source=source)
    rows: List[tuple] = []
    for name, mask in masks.items():
        weight = state.get(name)
        nonzero = (
            int(weight.count_nonzero()) if torch.is_tensor(weight) else -1)
        rows.append((name, tuple(mask.shape), int(mask.count_nonzero()),
                     mask.numel(), nonzero))
    sparsity = ckpt.get('sparsity')
    if isinstance(sparsity, dict) and 'masks' in sparsity:
        sparsity = decode_sparsity_state(sparsity)  # bool or bit-packed
    dense = sparsity.get('dense', []) if isinstance(sparsity, dict) else []
    for name in dense:  # in the sparse scope but left dense
        weight = state.get(name)
        if torch.is_tensor(weight):
            rows.append((name, tuple(weight.shape), weight.numel(),
                         weight.numel(), int(weight.count_nonzero())))
    params = [
        v for k, v in state.items() if torch.is_tensor(v)
        and v.is_floating_point() and not k.endswith(_BUFFER_SUFFIXES)
    ]
    dense_numel = sum(r[3] for r in rows if r[0] in dense)
    return dict(
        rows=rows,
        active=sum(r[2] for r in rows),
        numel=sum(r[3] for r in rows),
        nonzero=sum(int(p.count_nonzero()) for p in params),
        params=sum(p.numel() for p in params),
        source='sparsity' if isinstance(sparsity, dict) else 'zeros',
        explored=_explored_ratio(sparsity, dense_numel))


def _explored_ratio(sparsity, dense_numel: int = 0) -> float:
    """Ever-active fraction of the scope (dense layers count as explored),
    as the hook logs it; NaN without the hook's record."""
    if not isinstance(sparsity, dict) or not sparsity.get('explored'):
        return float('nan')
    explored = sparsity['explored'].values()
    active = sum(int(e.count_nonzero()) for e in explored)
    total = sum(e.numel() for e in explored)
    return (active + dense_numel) / (total + dense_numel)


def format_layer_rows(rows) -> str:
    """The one per-layer sparsity table (the hook's log and
    tools/analysis/sparsity_summary.py): a line per ``(name, shape, active,
    numel)`` row, with a ``nonzero`` column where rows have a fifth item."""
    rows = list(rows)
    width = max([len(r[0]) for r in rows] + [5])
    nonzero = bool(rows) and len(rows[0]) > 4
    out = [
        f'{"layer":<{width}}  {"shape":<18}  {"active":>10}  '
        f'{"numel":>10}  {"density":>7}' +
        (f'  {"nonzero":>10}' if nonzero else '')
    ]
    for name, shape, active, numel, *rest in rows:
        shape_s = 'x'.join(str(s) for s in shape)
        out.append(f'{name:<{width}}  {shape_s:<18}  {active:>10}  '
                   f'{numel:>10}  {active / numel:>7.4f}' +
                   (f'  {rest[0]:>10}' if nonzero else ''))
    return '\n'.join(out)


def format_sparsity_table(table: dict) -> str:
    """:func:`sparsity_table` as text: the layer rows, then the totals."""
    out = [format_layer_rows(table['rows'])]
    numel = max(table['numel'], 1)
    out.append(f'masks from: {table["source"]}; layers: {len(table["rows"])}; '
               f'density {table["active"] / numel:.6f} '
               f'({table["active"]}/{table["numel"]})')
    if table['explored'] == table['explored']:  # not NaN
        out.append(f'explored ratio: {table["explored"]:.4f}')
    out.append(f'non-zero parameters: {table["nonzero"]} of '
               f'{table["params"]} ({table["nonzero"] / 1e6:.2f}M)')
    return '\n'.join(out)
