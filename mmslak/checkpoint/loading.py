"""Checked checkpoint loading: weights-only unpickling with clear errors.

:func:`read_checkpoint` is mmslak's one reader (local paths through
:func:`load_checkpoint_file`, other schemes through mmengine's
``CheckpointLoader``); mmengine's own local loader is left as it is.
"""
import os
import os.path as osp
import pickle
import re
import sys
import zipfile
from collections import OrderedDict
from typing import Dict, Iterable, List, Optional, Tuple, Union

import torch
import torch.nn as nn
from mmengine.logging import print_log
from mmengine.runner.checkpoint import CheckpointLoader

__all__ = [
    'CheckpointError', 'UnsafeCheckpointError', 'CorruptCheckpointError',
    'CheckpointMismatchError', 'load_checkpoint_file', 'get_state_dict',
    'compare_state_dicts', 'check_state_dict', 'load_weights',
    'read_checkpoint', 'check_torch_format'
]


class CheckpointError(RuntimeError):
    """Base class of the checkpoint errors raised by mmslak."""


class UnsafeCheckpointError(CheckpointError, pickle.UnpicklingError):
    """The file needs a global that is not on the allow-list."""


class CorruptCheckpointError(CheckpointError):
    """The file is empty, truncated or not a torch checkpoint."""


class CheckpointMismatchError(CheckpointError):
    """Keys are missing/unexpected or shapes disagree with the model."""


_OFFENDER_RES = (
    re.compile(r'GLOBAL ([\w.]+)'),
    re.compile(r"but got <class '([^']+)'>"),
    re.compile(r'unrecognized function (.+?)(?: which|$)', re.M),
)


def _offending_global(msg: str) -> Optional[str]:
    for regex in _OFFENDER_RES:
        found = regex.search(msg)
        if found:
            return found.group(1)
    return None


# torch.save writes a zip archive (torch >= 1.6) or a bare pickle (legacy,
# protocol >= 2, so it starts with the PROTO opcode 0x80).
_TORCH_MAGICS = (b'PK\x03\x04', b'\x80')


def check_torch_format(filename, name: str) -> None:
    """Refuse a file that is neither: torch's legacy loader otherwise fails
    with a bare ``KeyError`` (e.g. "101" for a text file)."""
    if hasattr(filename, 'read'):
        if not hasattr(filename, 'seek'):
            return
        start = filename.tell()
        head = filename.read(4)
        filename.seek(start)
    else:
        with open(filename, 'rb') as f:
            head = f.read(4)
    if not head.startswith(_TORCH_MAGICS):
        raise CorruptCheckpointError(
            f'{name!r} is not a PyTorch checkpoint: it is neither a zip '
            'archive (torch.save) nor a pickle (legacy torch.save); it '
            f'starts with {head!r}')


def _is_module_class(qualname: str) -> bool:
    """Whether ``qualname`` names an ``nn.Module`` subclass of a module
    already imported (nothing is imported to find out)."""
    module, _, name = qualname.rpartition('.')
    obj = sys.modules.get(module)
    for part in name.split('.'):
        obj = getattr(obj, part, None)
    return isinstance(obj, type) and issubclass(obj, nn.Module)


def _unpickling_error(e: pickle.UnpicklingError, name: str) -> CheckpointError:
    """Our error for torch's weights-only refusal of checkpoint ``name``:
    unsafe (a global off the allow-list, named) or corrupt."""
    # torch's message starts with generic advice; the reason follows
    # 'WeightsUnpickler error:'.
    msg = str(e).split('WeightsUnpickler error:')[-1].strip()
    offending = _offending_global(msg)
    # The blocked-module refusal has no 'WeightsUnpickler error:': its reason
    # follows torch's advice to retry with weights_only=False; quote the
    # reason (the line naming the offender), never that advice.
    reason = next(
        (line for line in msg.splitlines() if offending and offending in line),
        msg.splitlines()[0])
    # torch 2.14's refusals that name no class: REDUCE ('unrecognized
    # function') and NEWOBJ on a non-class ('Can only create new object')
    if offending is None and not any(
            s in msg for s in ('unrecognized function', 'Can only')):
        return CorruptCheckpointError(
            f'checkpoint {name!r} is not a readable torch checkpoint '
            f'(truncated or corrupt): {reason}')
    hint = (' It holds a whole pickled nn.Module: save model.state_dict() '
            'instead.' if offending and _is_module_class(offending) else '')
    what = f'the global {offending!r}' if offending else \
        'an object that is not on the allow-list'
    return UnsafeCheckpointError(
        f'refusing to load checkpoint {name!r}: unpickling it needs '
        f'{what}, which is not on the allow-list of types mmengine '
        'checkpoints use (mmslak.checkpoint.MMENGINE_SAFE_GLOBALS), and '
        'unpickling it could run arbitrary code. Nothing was executed. '
        'Only if you trust the file, convert it to a weights-only '
        f'checkpoint yourself.{hint} (torch: {reason})')


def load_checkpoint_file(filename,
                         map_location=None,
                         extra_safe_globals: Iterable = (),
                         display_name: Optional[str] = None) -> dict:
    """``torch.load`` with ``weights_only=True`` and errors naming the file.

    Args:
        filename: local path of the checkpoint, or a binary file object
            (e.g. the bytes a remote backend returned).
        map_location: as in :func:`torch.load` (e.g. ``'cpu'``).
        extra_safe_globals: more globals to allow for this call only (e.g.
            ``argparse.Namespace`` for the reference ImageNet checkpoints).
        display_name: how errors name the checkpoint (e.g. the URL it was
            downloaded from); defaults to ``filename``.

    Raises:
        FileNotFoundError: no such file.
        UnsafeCheckpointError: unpickling would need a global outside the
            allow-list (it could run code); the message names it.
        CorruptCheckpointError: empty, truncated or not a checkpoint.
    """
    if hasattr(filename, 'read'):
        size = filename.getbuffer().nbytes if hasattr(
            filename, 'getbuffer') else None  # unknown
        name = display_name or repr(filename)
    else:
        filename = osp.expanduser(str(filename))
        name = display_name or filename
        if not osp.exists(filename):
            raise FileNotFoundError(f'checkpoint {name!r} does not exist')
        if not osp.isfile(filename):
            raise CorruptCheckpointError(
                f'{name!r} is not a checkpoint file (a directory, device or '
                'other special file)')
        size = os.path.getsize(filename)
    if size == 0:
        raise CorruptCheckpointError(
            f'checkpoint {name!r} is empty (0 bytes); was its writing '
            'interrupted?')
    check_torch_format(filename, name)
    try:
        with torch.serialization.safe_globals(list(extra_safe_globals)):
            # Explicit weights_only=True: TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD
            # cannot switch it off for an explicit call.
            return torch.load(
                filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise _unpickling_error(e, name) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError,
            OSError) as e:
        size_text = '' if size is None else f'; {size} bytes'
        raise CorruptCheckpointError(
            f'checkpoint {name!r} is not a readable torch checkpoint '
            f'(truncated or corrupt{size_text}): '
            f'{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ""}'
        ) from None


def get_state_dict(
    checkpoint: dict,
    keys: Tuple[str, ...] = ('state_dict', 'model'),
    strip_prefixes: Tuple[str, ...] = ('module.', )
) -> dict:
    """The state dict inside a checkpoint, the one definition of it: the
    first of ``keys`` (mmengine's ``state_dict``, the reference's
    ``model``) whose value is a dict, else the checkpoint itself if it
    holds only tensors (a bare state dict), with ``strip_prefixes`` (DDP's
    ``module.``) stripped from the names."""
    if not isinstance(checkpoint, dict):
        raise CheckpointError(
            f'expected a checkpoint dict, got {type(checkpoint).__name__}')
    for key in keys:
        if isinstance(checkpoint.get(key), dict):
            state_dict = checkpoint[key]
            break
    else:
        if checkpoint and all(torch.is_tensor(v) for v in checkpoint.values()):
            state_dict = checkpoint
        else:
            raise CheckpointError(
                f'no state dict found: the checkpoint has none of the keys '
                f'{list(keys)} (its keys: {sorted(checkpoint)[:10]})')
    out = OrderedDict()
    for name, value in state_dict.items():
        for prefix in strip_prefixes:
            if name.startswith(prefix):
                name = name[len(prefix):]
        out[name] = value
    return out


def compare_state_dicts(
    state_dict: Dict[str, torch.Tensor], reference: Dict[str, torch.Tensor]
) -> Tuple[List[str], List[str], List[Tuple[str, tuple, tuple]]]:
    """Missing keys, unexpected keys and (key, got, expected) shape
    mismatches of ``state_dict`` against ``reference``."""
    missing = sorted(set(reference) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(reference))
    mismatched = [(k, tuple(state_dict[k].shape), tuple(reference[k].shape))
                  for k in sorted(set(state_dict) & set(reference))
                  if hasattr(state_dict[k], 'shape')
                  and tuple(state_dict[k].shape) != tuple(reference[k].shape)]
    return missing, unexpected, mismatched


def _listing(keys: List, limit: int = 20) -> str:
    lines = [f'    {k}' for k in keys[:limit]]
    if len(keys) > limit:
        lines.append(f'    ... and {len(keys) - limit} more')
    return f'{len(keys)}:\n' + '\n'.join(lines)


def check_state_dict(
    state_dict: Dict[str, torch.Tensor],
    reference: Dict[str, torch.Tensor],
    source: str = 'the checkpoint',
    target: str = 'the model',
    allow_missing: Iterable[str] = (),
    allow_unexpected: Iterable[str] = ()
) -> None:
    """Raise :class:`CheckpointMismatchError` listing every missing,
    unexpected and shape-mismatched key (a 31x31 kernel into a 51x51
    model, a tiny checkpoint into a small model, ...).

    ``allow_missing`` / ``allow_unexpected`` are key prefixes tolerated.
    """
    missing, unexpected, mismatched = compare_state_dicts(
        state_dict, reference)
    allow_missing, allow_unexpected = tuple(allow_missing), tuple(
        allow_unexpected)
    missing = [k for k in missing if not k.startswith(allow_missing)]
    unexpected = [k for k in unexpected if not k.startswith(allow_unexpected)]
    if not (missing or unexpected or mismatched):
        return
    lines = [f'{source} does not match {target}:']
    if mismatched:
        lines.append('  shape mismatch (key: checkpoint vs model) ' +
                     _listing([f'{k}: {a} vs {b}' for k, a, b in mismatched]))
    if missing:
        lines.append('  missing in the checkpoint ' + _listing(missing))
    if unexpected:
        lines.append('  unexpected (not in the model) ' + _listing(unexpected))
    raise CheckpointMismatchError('\n'.join(lines))


def read_checkpoint(filename,
                    map_location='cpu',
                    extra_safe_globals: Iterable = ()) -> dict:
    """Read a checkpoint weights-only, from a local path or any scheme
    mmengine's ``CheckpointLoader`` knows (URLs etc.: mmslak.checkpoint.remote
    registered weights-only loaders for every remote scheme)."""
    if '://' in str(filename):
        with torch.serialization.safe_globals(list(extra_safe_globals)):
            return CheckpointLoader.load_checkpoint(filename, map_location)
    return load_checkpoint_file(
        filename,
        map_location=map_location,
        extra_safe_globals=extra_safe_globals)


def load_weights(module: nn.Module,
                 checkpoint: Union[str, dict],
                 prefix: Optional[str] = None,
                 new_layer_prefixes: Iterable[str] = (),
                 allow_unexpected: Iterable[str] = (),
                 source: Optional[str] = None,
                 map_location='cpu') -> dict:
    """mmslak's one weight loader: copy the state dict of ``checkpoint``
    into ``module``; any missing, unexpected or shape-mismatched key raises
    :class:`CheckpointMismatchError` listing them, before anything is
    copied (DDP ``module.`` prefixes are stripped first).

    Args:
        module (nn.Module): the model (or backbone) to load into.
        checkpoint (str | dict): a path or URL, read weights-only by
            :func:`read_checkpoint`, or a checkpoint already read.
        prefix (str, optional): load only the keys under it (e.g.
            ``'backbone'``), with the prefix removed. Defaults to None
            (every key).
        new_layer_prefixes (Iterable[str]): module layers the checkpoint
            may lack as a whole (e.g. the per-stage output norms of a
            dense-prediction backbone, absent from an ImageNet checkpoint);
            if the checkpoint has any key under such a prefix, all must
            match. Defaults to ().
        allow_unexpected (Iterable[str]): checkpoint key prefixes that are
            ignored (e.g. an ImageNet classifier's ``head.``; ``''``
            ignores every extra key): never loaded, even where the model
            has such keys. Defaults to ().
        source (str, optional): how errors name the checkpoint. Defaults
            to ``checkpoint {path!r}``, or ``the checkpoint`` for a dict.
        map_location: as in :func:`torch.load`. Defaults to ``'cpu'``.

    Returns:
        dict: what was loaded.
    """
    if isinstance(checkpoint, dict):
        source = source or 'the checkpoint'
    else:
        source = source or f'checkpoint {checkpoint!r}'
        checkpoint = read_checkpoint(checkpoint, map_location)
    state_dict = get_state_dict(checkpoint)
    if prefix:
        if not prefix.endswith('.'):
            prefix += '.'
        state_dict = OrderedDict((k[len(prefix):], v)
                                 for k, v in state_dict.items()
                                 if k.startswith(prefix))
        if not state_dict:
            raise CheckpointMismatchError(
                f'{source} has no key starting with the prefix {prefix!r}')
        source += f' (prefix {prefix!r})'
    ignored = tuple(allow_unexpected)
    kept = OrderedDict(
        (k, v) for k, v in state_dict.items() if not k.startswith(ignored))
    absent = tuple(
        p for p in new_layer_prefixes
        if not any(k.startswith(p) for k in kept))
    model_state = module.state_dict()
    check_state_dict(
        kept,
        model_state,
        source=source,
        target=type(module).__name__,
        allow_missing=absent)
    loaded = OrderedDict((k, v) for k, v in kept.items() if k in model_state)
    module.load_state_dict(loaded, strict=False)
    skipped = sorted(set(state_dict) - set(loaded))
    if prefix or absent or skipped:
        print_log(
            f'loaded {len(loaded)}/{len(model_state)} '
            f'{type(module).__name__} tensors from {source}' +
            (f'; newly initialised: {list(absent)}' if absent else '') +
            (f'; ignored checkpoint keys: {skipped}' if skipped else ''),
            logger='current')
    return loaded
