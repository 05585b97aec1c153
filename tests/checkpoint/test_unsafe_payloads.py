"""The weights-only reader refuses a payload built on each kind of dangerous
callable, without running it; the allow-list is exactly what is documented.

Each payload is live: an unrestricted ``torch.load`` runs it (it creates a
marker file in the test's tmp folder), so a refusal is not an accident of a
broken payload.
"""
import argparse
import importlib
import io
import os
import pathlib
import re
import shlex
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer

import mmslak  # noqa: F401
from mmslak.checkpoint import (MMENGINE_SAFE_GLOBALS, CorruptCheckpointError,
                               UnsafeCheckpointError, load_checkpoint_file,
                               read_checkpoint, register_safe_globals)

# The documented allow-list, written out by hand (the oracle): widening
# MMENGINE_SAFE_GLOBALS by anything, or dropping an entry, fails.
_DTYPES = ('Bool', 'Int8', 'Int16', 'Int32', 'Int64', 'UInt8', 'UInt16',
           'UInt32', 'UInt64', 'Float16', 'Float32', 'Float64')
DOCUMENTED = {
    'mmengine.logging.history_buffer.HistoryBuffer', 'builtins.getattr',
    'numpy.ndarray', 'numpy.dtype', 'numpy._core.multiarray._reconstruct',
    'numpy.core.multiarray._reconstruct', 'numpy._core.multiarray.scalar',
    'numpy.core.multiarray.scalar'
} | {f'numpy.dtypes.{d}DType'
     for d in _DTYPES}


class _Payload:
    """Unpickling calls ``func(*args)``."""

    def __init__(self, func, *args) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _payloads(marker: str, module: str):
    """(id, payload, the global the refusal must name: protocol 2 writes
    some under their Python 2 names, e.g. ``commands.check_call``)."""
    touch = f'open({marker!r}, "w").close()'
    return [
        ('eval', _Payload(eval, touch), 'eval'),
        ('exec', _Payload(exec, touch), 'exec'),
        ('open', _Payload(open, marker, 'w'), 'io.open'),
        ('os.system', _Payload(os.system,
                               f'touch {shlex.quote(marker)}'), 'system'),
        ('subprocess', _Payload(subprocess.check_call,
                                ['touch', marker]), 'check_call'),
        ('importlib', _Payload(importlib.import_module,
                               module), 'importlib.import_module'),
        # protocol 2 pickles Path.touch as getattr(pathlib.Path, 'touch')
        ('pathlib', _Payload(pathlib.Path.touch,
                             pathlib.Path(marker)), 'pathlib.Path'),
        # getattr on an allowed class, beyond HistoryBuffer's statistics:
        # ndarray.tofile writes a file
        ('getattr', _Payload(np.ndarray.tofile, np.zeros(1),
                             marker), 'builtins.getattr'),
    ]


_KINDS = [p[0] for p in _payloads('m', 'mod')]


@pytest.mark.parametrize('reader', [load_checkpoint_file, read_checkpoint])
@pytest.mark.parametrize('kind', _KINDS)
def test_dangerous_payload_is_refused_without_running(tmp_path, monkeypatch,
                                                      kind, reader):
    marker = str(tmp_path / 'code_ran')
    module = f'mmslak_payload_{kind.replace(".", "_")}_{reader.__name__}'
    # the module the importlib payload imports creates the marker
    (tmp_path / f'{module}.py').write_text(f'open({marker!r}, "w").close()\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    _, payload, name = [p for p in _payloads(marker, module)
                        if p[0] == kind][0]
    path = str(tmp_path / f'{kind}.pth')
    torch.save(dict(state_dict=dict(w=torch.zeros(2)), meta=payload), path)
    with pytest.raises(UnsafeCheckpointError) as info:
        reader(path)
    assert name in str(info.value) and path in str(info.value)
    assert not os.path.exists(marker)
    assert module not in sys.modules
    # the payload is live: unrestricted unpickling runs it
    try:
        torch.load(path, weights_only=False)
    finally:
        sys.modules.pop(module, None)  # the one this test imported
    assert os.path.exists(marker)


def _getattr_pickle(tmp_path, name: str) -> str:
    path = str(tmp_path / f'getattr_{name}.pth')
    torch.save(dict(x=_Payload(getattr, HistoryBuffer, name)), path)
    return path


def test_getattr_allows_exactly_the_four_statistics(tmp_path):
    # both directions over every attribute of HistoryBuffer: the four
    # statistics load as themselves, everything else is refused
    statistics = {'min', 'max', 'mean', 'current'}
    allowed = set()
    for name in dir(HistoryBuffer):
        path = _getattr_pickle(tmp_path, name)
        try:
            got = load_checkpoint_file(path)['x']
        except UnsafeCheckpointError as e:
            assert 'builtins.getattr' in str(e), name
            continue
        assert got is getattr(HistoryBuffer, name), name
        allowed.add(name)
    assert allowed == statistics


def test_getattr_statistic_names_on_another_class_are_refused(tmp_path):
    path = str(tmp_path / 'ndarray_max.pth')
    torch.save(dict(x=_Payload(getattr, np.ndarray, 'max')), path)
    with pytest.raises(UnsafeCheckpointError) as info:
        load_checkpoint_file(path)
    assert ("GLOBAL builtins.getattr(<class 'numpy.ndarray'>, 'max') is not "
            'allowed: mmslak only allows getattr for the statistics methods '
            "('min', 'max', 'mean', 'current') of "
            'mmengine.logging.HistoryBuffer') in str(info.value)


def test_register_safe_globals_adds_every_entry_once():
    from torch.serialization import (add_safe_globals, clear_safe_globals,
                                     get_safe_globals)
    saved = get_safe_globals()
    clear_safe_globals()
    try:
        register_safe_globals()
        got = get_safe_globals()
        assert set(got) == set(MMENGINE_SAFE_GLOBALS)
        register_safe_globals()  # idempotent
        assert len(get_safe_globals()) == len(got)
    finally:
        clear_safe_globals()
        add_safe_globals(saved)


def test_allow_list_is_exactly_the_documented_one():
    names = [name for _, name in MMENGINE_SAFE_GLOBALS]
    assert len(names) == len(set(names))  # no entry twice
    assert set(names) == DOCUMENTED
    # builtins.getattr itself is never registered, only the stand-in
    objects = dict((name, obj) for obj, name in MMENGINE_SAFE_GLOBALS)
    assert objects['builtins.getattr'] is not getattr
    for obj, name in MMENGINE_SAFE_GLOBALS:
        if name.startswith('numpy.dtypes.'):
            assert obj is type(
                np.dtype(name[len('numpy.dtypes.'):-5].lower())), name


def test_refusal_message_names_file_global_and_that_nothing_ran(tmp_path):
    path = str(tmp_path / 'eval.pth')
    torch.save(dict(meta=_Payload(eval, '1')), path)
    with pytest.raises(UnsafeCheckpointError) as info:
        load_checkpoint_file(path)
    msg = str(info.value)
    assert msg.startswith(
        f"refusing to load checkpoint {path!r}: unpickling it needs the "
        "global 'eval', which is not on the allow-list")
    assert msg.startswith(
        f"refusing to load checkpoint {path!r}: unpickling it needs the "
        "global 'eval', which is not on the allow-list of types mmengine "
        'checkpoints use (mmslak.checkpoint.MMENGINE_SAFE_GLOBALS), and '
        'unpickling it could run arbitrary code. Nothing was executed. '
        'Only if you trust the file, convert it to a weights-only '
        'checkpoint yourself. (torch: Unsupported global: GLOBAL eval ')


def test_file_objects_empty_garbage_and_missing_files(tmp_path):
    buffer = io.BytesIO()
    torch.save(dict(meta=_Payload(exec, '1')), buffer)
    buffer.seek(0)
    with pytest.raises(
            UnsafeCheckpointError, match="checkpoint 'https://x/y.pth': "):
        load_checkpoint_file(buffer, display_name='https://x/y.pth')
    with pytest.raises(CorruptCheckpointError) as info:
        load_checkpoint_file(io.BytesIO())
    assert str(info.value).startswith("checkpoint '<_io.BytesIO object")
    assert 'is empty (0 bytes)' in str(info.value)
    garbage = tmp_path / 'garbage.pth'
    garbage.write_bytes(b'not a checkpoint' * 100)  # not a zip: unpickled
    with pytest.raises(CorruptCheckpointError) as info:
        load_checkpoint_file(str(garbage))
    assert str(info.value) == (
        f'{str(garbage)!r} is not a PyTorch checkpoint: it is neither a zip '
        'archive (torch.save) nor a pickle (legacy torch.save); it starts '
        "with b'not '")
    full = io.BytesIO()
    torch.save(dict(w=torch.ones(100)), full)
    cut = tmp_path / 'cut.pth'
    cut.write_bytes(full.getvalue()[:700])  # a broken zip
    with pytest.raises(CorruptCheckpointError) as info:
        load_checkpoint_file(str(cut))
    assert str(info.value).startswith(
        f'checkpoint {str(cut)!r} is not a readable torch checkpoint '
        '(truncated or corrupt; 700 bytes): ')
    missing = str(tmp_path / 'missing.pth')
    with pytest.raises(
            FileNotFoundError,
            match=f'^checkpoint {re.escape(repr(missing))} does '
            'not exist$'):
        load_checkpoint_file(missing)


def test_extra_safe_globals_are_for_one_call_and_map_location_is_used(
        tmp_path):
    path = str(tmp_path / 'namespace.pth')
    torch.save(dict(args=argparse.Namespace(lr=0.1), w=torch.ones(2)), path)
    with pytest.raises(UnsafeCheckpointError, match='argparse.Namespace'):
        load_checkpoint_file(path)
    got = load_checkpoint_file(
        path, map_location='meta', extra_safe_globals=[argparse.Namespace])
    assert got['args'].lr == 0.1 and got['w'].is_meta
    with pytest.raises(UnsafeCheckpointError, match='argparse.Namespace'):
        load_checkpoint_file(path)  # allowed for that call only
