"""mmslak.checkpoint.loading piece by piece, every expected message and value
written out by hand: torch's refusals that name no global, state-dict lookup
and prefix stripping, the mismatch listing, strict loading into a module and
the pretrained-backbone loader (prefix, new layers, ignored keys, its log).

Also: mmengine Runner checkpoints need exactly the allow-list and resume
with their message hub and optimizer; strict pretrained initialisation
(PretrainedStrict) and a partial load_from refused by the hook."""
import argparse
import io
import os
import os.path as osp
import pathlib
import pickle
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.logging import HistoryBuffer

import mmslak  # noqa: F401
from mmslak.checkpoint import (MMENGINE_SAFE_GLOBALS, CheckpointError,
                               CheckpointMismatchError, CorruptCheckpointError,
                               UnsafeCheckpointError, check_state_dict,
                               compare_state_dicts, get_state_dict,
                               load_checkpoint_file, load_weights,
                               read_checkpoint)
from mmslak.models import SLaK

ALLOW_LIST_TEXT = (
    'which is not on the allow-list of types mmengine checkpoints use '
    '(mmslak.checkpoint.MMENGINE_SAFE_GLOBALS), and unpickling it could run '
    'arbitrary code. Nothing was executed. Only if you trust the file, '
    'convert it to a weights-only checkpoint yourself.')


def _pickle_file(tmp_path, name: str, body: bytes) -> str:
    """A bare protocol-2 pickle (torch's legacy format): PROTO 2, ``body``,
    STOP."""
    path = str(tmp_path / name)
    with open(path, 'wb') as f:
        f.write(b'\x80\x02' + body + pickle.STOP)
    return path


def _unicode(text: str) -> bytes:
    data = text.encode()
    return pickle.BINUNICODE + len(data).to_bytes(4, 'little') + data


SEVEN = pickle.BININT1 + b'\x07'

# (id, pickle body, what the refusal says is needed, torch's reason line)
REFUSALS = [
    # REDUCE calling '': torch's reason ends at 'unrecognized function '
    # (its trailing space kept) and names nothing
    ('reduce_unnamed', _unicode('') + pickle.EMPTY_TUPLE + pickle.REDUCE,
     'an object that is not on the allow-list',
     'Trying to call reduce for unrecognized function '),
    ('reduce_7', SEVEN + pickle.EMPTY_TUPLE + pickle.REDUCE, "the global '7'",
     'Trying to call reduce for unrecognized function 7'),
    ('newobj_7', SEVEN + pickle.EMPTY_TUPLE + pickle.NEWOBJ,
     'an object that is not on the allow-list',
     'Can only create new object for nn.Parameter or classes allowlisted '
     'via `add_safe_globals` but got 7'),
    ('build_dict', pickle.EMPTY_DICT + pickle.EMPTY_DICT + pickle.BUILD,
     "the global 'dict'",
     'Can only build Tensor, Parameter, OrderedDict or types allowlisted '
     "via `add_safe_globals`, but got <class 'dict'>"),
    # torch puts its advice to retry with weights_only=False before this
    # reason (and no 'WeightsUnpickler error:'): the reason is quoted
    ('blocked_module', pickle.GLOBAL + b'sys\nexit\n', "the global 'sys.exit'",
     'Trying to load unsupported GLOBAL sys.exit whose module sys is '
     'blocked.'),
]


@pytest.mark.parametrize(
    'body, what, torch_line', [r[1:] for r in REFUSALS],
    ids=[r[0] for r in REFUSALS])
def test_refusal_names_what_is_needed_and_quotes_torchs_reason(
        tmp_path, body, what, torch_line):
    path = _pickle_file(tmp_path, 'payload.pth', body)
    with pytest.raises(UnsafeCheckpointError) as info:
        load_checkpoint_file(path)
    assert isinstance(info.value, pickle.UnpicklingError)
    assert str(info.value) == (
        f'refusing to load checkpoint {path!r}: unpickling it needs '
        f'{what}, {ALLOW_LIST_TEXT} (torch: {torch_line})')
    assert 'weights_only' not in str(info.value)  # never torch's advice


def test_unsupported_opcode_is_corrupt_not_unsafe(tmp_path):
    # INT (text opcode 'I' = 73): not one the weights-only unpickler reads
    path = _pickle_file(tmp_path, 'opcode.pth', pickle.INT + b'1\n')
    with pytest.raises(CorruptCheckpointError) as info:
        load_checkpoint_file(path)
    assert not isinstance(info.value, UnsafeCheckpointError)
    assert str(info.value) == (
        f'checkpoint {path!r} is not a readable torch checkpoint (truncated '
        'or corrupt): Unsupported operand 73')


def test_file_object_without_display_name_is_named_by_its_repr(tmp_path):
    buffer = io.BytesIO(b'\x80\x02' + pickle.INT + b'1\n' + pickle.STOP)
    with pytest.raises(CorruptCheckpointError) as info:
        load_checkpoint_file(buffer)
    assert str(info.value) == (
        f'checkpoint {repr(buffer)!r} is not a readable torch checkpoint '
        '(truncated or corrupt): Unsupported operand 73')


class _Reader(io.RawIOBase):
    """A readable, seekable file object with no getbuffer() (its size is
    unknown to the loader)."""

    def __init__(self, data):
        self.inner = io.BytesIO(data)

    def readable(self):
        return True

    def seekable(self):
        return True

    def readinto(self, b):
        return self.inner.readinto(b)

    def seek(self, *args):
        return self.inner.seek(*args)

    def tell(self):
        return self.inner.tell()


def _saved(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


ZIP_CUT = ('RuntimeError: PytorchStreamReader failed reading zip archive: '
           'failed finding central directory')


def test_file_object_without_getbuffer_is_read():
    got = load_checkpoint_file(
        io.BufferedReader(_Reader(_saved(dict(w=torch.arange(3.))))))
    assert list(got) == ['w'] and got['w'].tolist() == [0., 1., 2.]


def test_truncated_zip_names_size_and_torch_reason(tmp_path):
    path = tmp_path / 'cut.pth'
    path.write_bytes(_saved(dict(w=torch.ones(100)))[:700])
    with pytest.raises(CorruptCheckpointError) as info:
        load_checkpoint_file(str(path))
    assert str(info.value).startswith(
        f'checkpoint {str(path)!r} is not a readable torch checkpoint '
        f'(truncated or corrupt; 700 bytes): {ZIP_CUT}')
    # a file object of unknown size: no size in the message
    with pytest.raises(CorruptCheckpointError) as info:
        load_checkpoint_file(
            io.BufferedReader(_Reader(path.read_bytes())), display_name='f')
    assert str(info.value).startswith(
        "checkpoint 'f' is not a readable torch checkpoint (truncated or "
        f'corrupt): {ZIP_CUT}')


def test_garbage_file_object_is_refused_by_its_first_four_bytes():
    buffer = io.BytesIO(b'not a checkpoint' * 10)
    with pytest.raises(CorruptCheckpointError) as info:
        load_checkpoint_file(buffer, display_name='buf')
    assert str(info.value) == (
        "'buf' is not a PyTorch checkpoint: it is neither a zip archive "
        '(torch.save) nor a pickle (legacy torch.save); it starts with '
        "b'not '")
    assert buffer.tell() == 0  # put back where it was


class _TouchOnLoad:
    """Unpickling this creates ``path`` (stands for arbitrary code)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.path), ))


def test_force_no_weights_only_env_cannot_switch_it_off(tmp_path, monkeypatch):
    marker = tmp_path / 'code_ran'
    path = str(tmp_path / 'evil.pth')
    torch.save(dict(meta=_TouchOnLoad(str(marker))), path)
    monkeypatch.setenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
    with pytest.raises(UnsafeCheckpointError, match='pathlib.Path'):
        load_checkpoint_file(path)
    assert not marker.exists()
    # the variable is live: torch.load without weights_only runs the payload
    torch.load(path)
    assert marker.exists()


def test_expanduser_on_paths(tmp_path, monkeypatch):
    monkeypatch.setenv('HOME', str(tmp_path))
    torch.save(dict(w=torch.ones(1)), str(tmp_path / 'home.pth'))
    assert load_checkpoint_file('~/home.pth')['w'].tolist() == [1.]
    missing = osp.join(str(tmp_path), 'nope.pth')
    with pytest.raises(FileNotFoundError) as info:
        load_checkpoint_file('~/nope.pth')
    assert str(info.value) == f'checkpoint {missing!r} does not exist'


@pytest.mark.parametrize(
    'data, message',
    [
        (b'', '{name} is empty (0 bytes); was its writing interrupted?'),
        # a legacy pickle cut after PROTO: torch reads past its end
        (b'\x80\x02', '{name} is not a readable torch checkpoint (truncated '
         'or corrupt; 2 bytes): EOFError: ')
    ],
    ids=['empty', 'cut_pickle'])
def test_empty_or_cut_file_message_names_file_or_display_name(
        tmp_path, data, message):
    path = tmp_path / 'bad.pth'
    path.write_bytes(data)
    for shown, name in [(None, str(path)), ('shown.pth', 'shown.pth')]:
        with pytest.raises(CorruptCheckpointError) as info:
            load_checkpoint_file(str(path), display_name=shown)
        assert str(
            info.value) == 'checkpoint ' + message.format(name=repr(name))


# ---- state dicts -------------------------------------------------------


def test_get_state_dict_takes_the_first_key_present():
    a, b = torch.zeros(1), torch.ones(1)
    both = dict(state_dict=dict(x=a), model=dict(y=b), meta={})
    assert list(get_state_dict(both).items()) == [('x', a)]
    assert list(get_state_dict(dict(model=dict(y=b))).items()) == [('y', b)]
    assert list(get_state_dict(both, keys=('model', )).items()) == [('y', b)]


def test_get_state_dict_of_a_bare_tensor_dict_keeps_order():
    bare = OrderedDict([('z', torch.zeros(1)), ('a', torch.ones(1)),
                        ('module.m', torch.ones(2))])
    got = get_state_dict(bare)
    assert isinstance(got, OrderedDict)
    assert list(got) == ['z', 'a', 'm']
    assert got['m'] is bare['module.m']


def test_get_state_dict_strips_each_prefix_once_in_order():
    t = torch.zeros(1)
    sd = {'module.module.x': t, 'a.b.y': t, 'b.a.z': t, 'modulex': t}
    assert list(get_state_dict(dict(
        state_dict=sd))) == ['module.x', 'a.b.y', 'b.a.z', 'modulex']
    assert list(
        get_state_dict(dict(state_dict=sd), strip_prefixes=('a.', 'b.'))) == [
            'module.module.x', 'y', 'a.z', 'modulex'
        ]


def test_get_state_dict_refusals():
    with pytest.raises(CheckpointError) as info:
        get_state_dict([torch.zeros(1)])
    assert str(info.value) == 'expected a checkpoint dict, got list'
    with pytest.raises(CheckpointError) as info:
        get_state_dict({})
    assert str(info.value) == (
        "no state dict found: the checkpoint has none of the keys "
        "['state_dict', 'model'] (its keys: [])")
    # one tensor among other values is not a bare state dict; the listing
    # shows the first 10 keys in sorted order
    mixed = {f'k{i:02d}': i for i in range(11, -1, -1)}
    mixed['w'] = torch.zeros(1)
    with pytest.raises(CheckpointError) as info:
        get_state_dict(mixed, keys=('weights', ))
    assert str(info.value) == (
        "no state dict found: the checkpoint has none of the keys "
        "['weights'] (its keys: ['k00', 'k01', 'k02', 'k03', 'k04', 'k05', "
        "'k06', 'k07', 'k08', 'k09'])")


def test_compare_state_dicts_lists_sorted_and_skips_shapeless():
    sd = dict(
        b=torch.zeros(2, 3),
        a=torch.zeros(4),
        extra2=torch.zeros(1),
        extra1=torch.zeros(1),
        s=torch.tensor(1.),
        n=5)
    ref = dict(
        a=torch.zeros(4),
        b=torch.zeros(3, 2),
        z=torch.zeros(1),
        y=torch.zeros(1),
        s=torch.tensor(2.),
        n=torch.zeros(3))
    missing, unexpected, mismatched = compare_state_dicts(sd, ref)
    assert missing == ['y', 'z']
    assert unexpected == ['extra1', 'extra2']
    assert mismatched == [('b', (2, 3), (3, 2))]
    assert compare_state_dicts(ref, ref) == ([], [], [])


def _keys(n, prefix='k'):
    return {f'{prefix}{i:02d}': torch.zeros(1) for i in range(n)}


def test_check_state_dict_full_message():
    sd = dict(_keys(2, 'u'), w=torch.zeros(2, 2), b=torch.zeros(3))
    ref = dict(_keys(1, 'm'), w=torch.zeros(2, 3), b=torch.zeros(3))
    with pytest.raises(CheckpointMismatchError) as info:
        check_state_dict(sd, ref, source='ckpt.pth', target='Net')
    assert str(info.value) == '\n'.join([
        'ckpt.pth does not match Net:',
        '  shape mismatch (key: checkpoint vs model) 1:',
        '    w: (2, 2) vs (2, 3)',
        '  missing in the checkpoint 1:',
        '    m00',
        '  unexpected (not in the model) 2:',
        '    u00',
        '    u01',
    ])
    with pytest.raises(CheckpointMismatchError) as info:
        check_state_dict(sd, ref)
    assert str(
        info.value).startswith('the checkpoint does not match the model:\n')


def test_check_state_dict_lists_twenty_keys_then_counts():
    ref = _keys(21)
    with pytest.raises(CheckpointMismatchError) as info:
        check_state_dict({}, ref)
    lines = str(info.value).split('\n')
    assert lines[1] == '  missing in the checkpoint 21:'
    assert lines[2:22] == [f'    k{i:02d}' for i in range(20)]
    assert lines[22:] == ['    ... and 1 more']
    with pytest.raises(CheckpointMismatchError) as info:
        check_state_dict({}, _keys(20))
    lines = str(info.value).split('\n')
    assert lines[1:] == ['  missing in the checkpoint 20:'
                         ] + [f'    k{i:02d}' for i in range(20)]


def test_check_state_dict_allowances_are_prefixes_of_their_own_side():
    ref = dict(norm0_w=torch.zeros(1), body=torch.zeros(1))
    sd = dict(head_w=torch.zeros(1), body=torch.zeros(1))
    check_state_dict(
        sd, ref, allow_missing=['norm0'], allow_unexpected=('head', ))
    # the allowances are not interchangeable
    with pytest.raises(CheckpointMismatchError) as info:
        check_state_dict(
            sd, ref, allow_missing=['head'], allow_unexpected=['norm0'])
    assert str(info.value) == '\n'.join([
        'the checkpoint does not match the model:',
        '  missing in the checkpoint 1:', '    norm0_w',
        '  unexpected (not in the model) 1:', '    head_w'
    ])
    # an allowance never hides a shape mismatch
    with pytest.raises(CheckpointMismatchError, match='body: .2,. vs .1,.'):
        check_state_dict(
            dict(body=torch.zeros(2)),
            dict(body=torch.zeros(1)),
            allow_missing=['body'],
            allow_unexpected=['body'])


class Net(nn.Module):

    def __init__(self, width=3):
        super().__init__()
        self.fc = nn.Linear(2, width)
        self.norm0 = nn.LayerNorm(width)


def _filled(width=3, value=0.5):
    net = Net(width)
    with torch.no_grad():
        for i, p in enumerate(net.parameters()):
            p.fill_(value + i)
    return net


def test_load_weights_copies_and_strips_the_module_prefix():
    src, dst = _filled(), Net()
    ckpt = dict(state_dict={
        f'module.{k}': v
        for k, v in src.state_dict().items()
    })
    assert list(load_weights(dst, ckpt)) == list(src.state_dict())
    for name, value in src.state_dict().items():
        assert torch.equal(dst.state_dict()[name], value), name


def test_load_weights_refuses_before_copying():
    dst = Net()
    before = {k: v.clone() for k, v in dst.state_dict().items()}
    sd = _filled().state_dict()
    sd['fc.weight'] = torch.zeros(4, 2)
    del sd['norm0.bias']
    with pytest.raises(CheckpointMismatchError) as info:
        load_weights(dst, dict(state_dict=sd), source='x.pth')
    assert str(info.value) == '\n'.join([
        'x.pth does not match Net:',
        '  shape mismatch (key: checkpoint vs model) 1:',
        '    fc.weight: (4, 2) vs (3, 2)', '  missing in the checkpoint 1:',
        '    norm0.bias'
    ])
    for name, value in dst.state_dict().items():
        assert torch.equal(value, before[name]), name
    with pytest.raises(CheckpointMismatchError) as info:
        load_weights(dst, dict(state_dict=sd))
    assert str(info.value).startswith('the checkpoint does not match Net:')


def test_load_weights_extra_key_is_refused():
    sd = dict(_filled().state_dict(), extra=torch.zeros(1))
    with pytest.raises(CheckpointMismatchError, match='extra'):
        load_weights(Net(), dict(state_dict=sd))


# ---- load_weights --------------------------------------------


@pytest.fixture
def log(monkeypatch):
    """What load_weights logs (mmengine's print_log)."""
    import mmslak.checkpoint.loading
    lines = []
    monkeypatch.setattr(
        mmslak.checkpoint.loading,
        'print_log',
        lambda msg, logger=None: lines.append((msg, logger)))
    return lines


def _save(tmp_path, name, sd):
    path = str(tmp_path / name)
    torch.save(dict(state_dict=sd), path)
    return path


def test_pretrained_backbone_prefix_gets_its_dot(tmp_path, log):
    src, dst = _filled(), Net()
    sd = {f'backbone.{k}': v for k, v in src.state_dict().items()}
    sd['backbonex.fc.weight'] = torch.zeros(7)  # not under 'backbone.'
    sd['head.fc.weight'] = torch.zeros(7)
    path = _save(tmp_path, 'full.pth', sd)
    loaded = load_weights(dst, path, prefix='backbone')
    want = ['fc.weight', 'fc.bias', 'norm0.weight', 'norm0.bias']
    assert list(loaded) == want
    for name in want:
        assert torch.equal(dst.state_dict()[name], src.state_dict()[name])
        assert torch.equal(loaded[name], src.state_dict()[name])
    assert log == [(f"loaded 4/4 Net tensors from checkpoint {path!r} "
                    "(prefix 'backbone.')", 'current')]


def test_pretrained_backbone_without_prefix_and_default_device(tmp_path, log):
    src, dst = _filled(), Net()
    path = _save(tmp_path, 'bare.pth', src.state_dict())
    loaded = load_weights(dst, path)
    assert [v.device.type for v in loaded.values()] == ['cpu'] * 4
    assert torch.equal(dst.fc.weight, src.fc.weight)
    # map_location reaches the reader
    meta = Net().to('meta')
    loaded = load_weights(meta, path, map_location='meta')
    assert all(v.is_meta for v in loaded.values())


def test_pretrained_backbone_no_key_under_prefix(tmp_path, log):
    path = _save(tmp_path, 'p.pth', _filled().state_dict())
    with pytest.raises(CheckpointMismatchError) as info:
        load_weights(Net(), path, prefix='bb')
    assert str(info.value) == (
        f"checkpoint {path!r} has no key starting with the prefix 'bb.'")
    assert log == []


def test_pretrained_backbone_new_layers_and_ignored_keys(tmp_path, log):
    src, dst = _filled(), Net()
    before = dst.norm0.weight.clone()
    sd = {
        f'backbone.{k}': v
        for k, v in src.state_dict().items() if not k.startswith('norm0.')
    }
    sd['backbone.norm.weight'] = torch.zeros(3)
    sd['backbone.head.w'] = torch.zeros(3)
    path = _save(tmp_path, 'cls.pth', sd)
    loaded = load_weights(
        dst,
        path,
        prefix='backbone.',
        new_layer_prefixes=['norm0.'],
        allow_unexpected=['norm.', 'head.'])
    assert list(loaded) == ['fc.weight', 'fc.bias']
    assert torch.equal(dst.fc.weight, src.fc.weight)
    assert torch.equal(dst.norm0.weight, before)  # left as initialised
    assert log == [(f"loaded 2/4 Net tensors from checkpoint {path!r} "
                    "(prefix 'backbone.'); newly initialised: "
                    "['norm0.']; ignored checkpoint keys: ['head.w', "
                    "'norm.weight']", 'current')]


def test_pretrained_backbone_ignored_keys_stay_out_of_the_model(tmp_path, log):
    """An ignored prefix the model also has (a classifier's final norm3
    into a dense backbone's norm3) is not loaded: the layer keeps its init
    and, listed as new, may be absent."""
    src, dst = _filled(), Net()
    before = dst.norm0.weight.clone()
    path = _save(tmp_path, 'cls.pth', src.state_dict())
    loaded = load_weights(
        dst,
        path,
        prefix='',
        new_layer_prefixes=['norm0.'],
        allow_unexpected=['norm0.'])
    assert sorted(loaded) == ['fc.bias', 'fc.weight']
    assert torch.equal(dst.norm0.weight, before)
    assert not torch.equal(dst.norm0.weight, src.norm0.weight)
    assert torch.equal(dst.fc.weight, src.fc.weight)


def test_pretrained_backbone_new_layer_present_must_be_whole(tmp_path, log):
    sd = _filled().state_dict()
    del sd['norm0.bias']  # norm0 present in part: not a new layer
    path = _save(tmp_path, 'part.pth', sd)
    with pytest.raises(CheckpointMismatchError) as info:
        load_weights(Net(), path, prefix='', new_layer_prefixes=['norm0.'])
    assert str(info.value) == '\n'.join([
        f'checkpoint {path!r} does not match Net:',
        '  missing in the checkpoint 1:', '    norm0.bias'
    ])


def test_pretrained_backbone_mismatch_names_prefix_and_refuses_all(
        tmp_path, log):
    src, dst = _filled(width=4), Net()
    before = {k: v.clone() for k, v in dst.state_dict().items()}
    sd = {f'bb.{k}': v for k, v in src.state_dict().items()}
    sd['bb.extra'] = torch.zeros(1)
    path = _save(tmp_path, 'wide.pth', sd)
    with pytest.raises(CheckpointMismatchError) as info:
        load_weights(dst, path, prefix='bb.', allow_unexpected=['ext'])
    assert str(info.value) == '\n'.join([
        f"checkpoint {path!r} (prefix 'bb.') does not match Net:",
        '  shape mismatch (key: checkpoint vs model) 4:',
        '    fc.bias: (4,) vs (3,)', '    fc.weight: (4, 2) vs (3, 2)',
        '    norm0.bias: (4,) vs (3,)', '    norm0.weight: (4,) vs (3,)'
    ])
    for name, value in dst.state_dict().items():
        assert torch.equal(value, before[name]), name
    assert log == []


# ---- read_checkpoint -----------------------------------------------------


@pytest.mark.parametrize('where', ['local', 'url'])
def test_read_checkpoint_defaults_to_cpu_passes_location_and_globals(
        tmp_path, monkeypatch, where):
    # no network: a URL's file sits in torch's hub cache under its name
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    monkeypatch.setattr(torch.hub, '_hub_dir', None)
    source = {
        'local': str(tmp_path / 'ns.pth'),
        'url': 'https://example.invalid/models/ns-url.pth'
    }[where]
    path = source if where == 'local' else osp.join(
        torch.hub.get_dir(), 'checkpoints', 'ns-url.pth')
    os.makedirs(osp.dirname(path), exist_ok=True)
    torch.save(dict(args=argparse.Namespace(lr=0.5), w=torch.ones(1)), path)
    with pytest.raises(UnsafeCheckpointError, match='argparse.Namespace'):
        read_checkpoint(source)
    got = read_checkpoint(source, extra_safe_globals=[argparse.Namespace])
    assert got['args'].lr == 0.5 and got['w'].device.type == 'cpu'
    assert read_checkpoint(source, 'meta', [argparse.Namespace])['w'].is_meta


@pytest.fixture(scope='module')
def runner_ckpt(tmp_path_factory, toy_runner):
    """A real checkpoint from a Runner: message hub, optimizer, param
    schedulers, EMA."""
    work_dir = str(tmp_path_factory.mktemp('runner'))
    runner = toy_runner(work_dir, by_epoch=False, length=2, interval=2)
    runner.train()
    return osp.join(work_dir, 'iter_2.pth')


@pytest.mark.parametrize('name',
                         ['__init__', 'register_statistics', 'statistics'])
def test_restricted_getattr(tmp_path, name):
    # getattr is allowed only for HistoryBuffer's 4 default statistics
    class Sneaky:

        def __reduce__(self):
            return (getattr, (HistoryBuffer, name))

    path = str(tmp_path / 'getattr.pth')
    torch.save(dict(x=Sneaky()), path)
    with pytest.raises(pickle.UnpicklingError, match='getattr'):
        load_checkpoint_file(path)


def test_runner_checkpoint_needs_exactly_the_allow_list(runner_ckpt):
    from torch.serialization import (add_safe_globals, clear_safe_globals,
                                     get_safe_globals,
                                     get_unsafe_globals_in_checkpoint)
    registered = get_safe_globals()
    clear_safe_globals()
    try:
        needed = set(get_unsafe_globals_in_checkpoint(runner_ckpt))
        with pytest.raises(pickle.UnpicklingError):
            torch.load(runner_ckpt, weights_only=True)
    finally:
        add_safe_globals(registered)
    allowed = {name for _, name in MMENGINE_SAFE_GLOBALS}
    assert needed <= allowed, needed - allowed
    # the other direction: every entry not needed here is one the module
    # documents for other files (numpy 1.x/2.x module names, the dtype
    # classes of other logged scalar types); nothing else, no callable
    numpy2 = int(np.__version__.split('.')[0]) >= 2
    other_numpy = 'numpy.core.' if numpy2 else 'numpy._core.'
    unneeded = allowed - needed
    assert {
        n
        for n in unneeded if not n.startswith((other_numpy, 'numpy.dtypes.'))
    } == set(), unneeded
    assert 'builtins.getattr' in needed  # HistoryBuffer's statistics
    # HistoryBuffer and numpy are what mmengine adds beyond tensors
    assert 'mmengine.logging.history_buffer.HistoryBuffer' in needed
    ckpt = load_checkpoint_file(runner_ckpt)
    assert {
        'meta', 'state_dict', 'optimizer', 'param_schedulers', 'message_hub',
        'ema_state_dict'
    } <= set(ckpt)
    scalars = ckpt['message_hub']['log_scalars']
    assert isinstance(scalars['train/loss'], HistoryBuffer)
    values, counts = scalars['train/loss'].data
    assert len(values) == 2 and counts.tolist() == [1, 1]
    # the statistics methods survived unpickling (restricted getattr)
    assert scalars['train/loss'].mean() == pytest.approx(values.mean())


def test_runner_resume_restores_message_hub_and_optimizer(
        runner_ckpt, tmp_path, toy_runner):
    saved = load_checkpoint_file(runner_ckpt)
    runner = toy_runner(
        str(tmp_path),
        by_epoch=False,
        length=2,
        interval=2,
        resume_from=runner_ckpt)
    runner.train()  # resumes at iter 2 of 2: restores state, trains nothing
    assert runner.iter == 2
    hub = runner.message_hub.log_scalars['train/loss']
    torch.testing.assert_close(
        torch.as_tensor(hub.data[0]),
        torch.as_tensor(
            saved['message_hub']['log_scalars']['train/loss'].data[0]))
    state = runner.optim_wrapper.optimizer.state_dict()['state']
    for idx, saved_state in saved['optimizer']['state'].items():
        torch.testing.assert_close(state[idx]['exp_avg'],
                                   saved_state['exp_avg'])


def _save_backbone(path, backbone, drop=()):
    sd = {
        f'backbone.{k}': v
        for k, v in backbone.state_dict().items()
        if not k.startswith(tuple(drop))
    }
    torch.save(dict(state_dict=sd), path)


def _strict(checkpoint, prefix='backbone.', **kwargs):
    return dict(
        type='PretrainedStrict',
        checkpoint=checkpoint,
        prefix=prefix,
        **kwargs)


# ImageNet classifier -> dense backbone: per-stage norms are new, the
# classifier's final norm is ignored
DENSE = dict(new_layers=['norm0.', 'norm1.'], ignore_keys=['norm.'])


def test_pretrained_init_is_strict(tmp_path, tiny_arch):
    source = SLaK(arch=tiny_arch, width_factor=1.0)
    good = str(tmp_path / 'good.pth')
    _save_backbone(good, source)

    dense = SLaK(
        arch=tiny_arch,
        width_factor=1.0,
        out_indices=(0, 1),
        gap_before_final_norm=False,
        init_cfg=_strict(good, **DENSE))
    dense.init_weights()
    for name, value in source.state_dict().items():
        if not name.startswith('norm'):
            torch.testing.assert_close(dense.state_dict()[name], value)
    # without the layout allowances the same load is refused
    dense = SLaK(
        arch=tiny_arch,
        width_factor=1.0,
        out_indices=(0, 1),
        gap_before_final_norm=False,
        init_cfg=_strict(good))
    with pytest.raises(CheckpointMismatchError, match='norm0.weight'):
        dense.init_weights()

    # a checkpoint missing backbone keys fails loudly, naming them
    partial = str(tmp_path / 'partial.pth')
    _save_backbone(partial, source, drop=('stages.1', ))
    model = SLaK(
        arch=tiny_arch, width_factor=1.0, init_cfg=_strict(partial, **DENSE))
    with pytest.raises(CheckpointMismatchError) as info:
        model.init_weights()
    n_dropped = sum(k.startswith('stages.1') for k in source.state_dict())
    assert f'missing in the checkpoint {n_dropped}:' in str(info.value)
    assert 'stages.1.0.gamma' in str(info.value)

    # wrong architecture (other kernel sizes): shape mismatch names keys
    other = SLaK(
        arch=dict(tiny_arch, kernel_sizes=[9, 5]),
        width_factor=1.0,
        init_cfg=_strict(good))
    with pytest.raises(CheckpointMismatchError) as info:
        other.init_weights()
    assert 'stages.0.0.large_kernel.LoRA1.conv.weight: (8, 1, 7, 5) vs ' \
        '(8, 1, 9, 5)' in str(info.value)

    # a wrong prefix matches nothing
    model = SLaK(
        arch=tiny_arch, width_factor=1.0, init_cfg=_strict(good, 'bb.'))
    with pytest.raises(CheckpointMismatchError, match="prefix 'bb.'"):
        model.init_weights()


def test_pretrained_strict_on_any_backbone(tmp_path):
    from mmengine.model import BaseModule

    class Tiny(BaseModule):

        def __init__(self, width, init_cfg=None):
            super().__init__(init_cfg=init_cfg)
            self.conv = torch.nn.Conv2d(3, width, 3)

    path = str(tmp_path / 'tiny.pth')
    source = Tiny(4)
    torch.save(dict(state_dict=source.state_dict()), path)
    model = Tiny(4, init_cfg=_strict(path, prefix=None))
    model.init_weights()
    torch.testing.assert_close(model.conv.weight, source.conv.weight)
    # the oracle: mmengine's Pretrained (left as it is) accepts a wrong
    # width silently, the strict one refuses it
    Tiny(8, init_cfg=dict(type='Pretrained', checkpoint=path)).init_weights()
    with pytest.raises(CheckpointMismatchError, match='conv.weight'):
        Tiny(8, init_cfg=_strict(path, prefix=None)).init_weights()


def test_load_from_partial_checkpoint_fails_with_hook(runner_ckpt, tmp_path,
                                                      toy_runner):
    ckpt = load_checkpoint_file(runner_ckpt)
    partial = {
        k: v
        for k, v in ckpt['state_dict'].items()
        if not k.startswith('backbone.stages.1')
    }
    path = str(tmp_path / 'partial.pth')
    torch.save(dict(state_dict=partial), path)

    # mmengine alone: a warning in the log, training goes on
    runner = toy_runner(str(tmp_path / 'a'), False, 1, 1)
    runner.call_hook('before_run')  # EMAHook builds its model here
    runner._load_from = path
    runner.load_or_resume()

    # with the hook: a clear error naming the missing backbone keys
    runner = toy_runner(str(tmp_path / 'b'), False, 1, 1)
    runner.register_hook(dict(type='CheckpointMatchHook'))
    runner.call_hook('before_run')
    runner._load_from = path
    with pytest.raises(CheckpointMismatchError) as info:
        runner.load_or_resume()
    assert 'backbone.stages.1.0.gamma' in str(info.value)

    # the full checkpoint passes (head keys are checked for shapes only)
    runner._load_from = runner_ckpt
    runner._has_loaded = False
    runner.load_or_resume()


# ---- what the refusals say ------------------------------------------------


def test_whole_pickled_module_is_refused_with_the_state_dict_advice(tmp_path):
    whole = str(tmp_path / 'whole.pth')
    torch.save(nn.Linear(2, 2), whole)
    with pytest.raises(UnsafeCheckpointError) as info:
        load_checkpoint_file(whole)
    message = str(info.value)
    assert message.startswith(
        f'refusing to load checkpoint {whole!r}: unpickling it needs the '
        "global 'torch.nn.modules.linear.Linear', ")
    assert 'Nothing was executed. Only if you trust the file, convert it to '\
        'a weights-only checkpoint yourself. It holds a whole pickled '\
        'nn.Module: save model.state_dict() instead. (torch: ' in message
    assert 'weights_only=False' not in message
    # a global that is not a module class gets no such advice
    other = str(tmp_path / 'ns.pth')
    torch.save(dict(args=argparse.Namespace(lr=1)), other)
    with pytest.raises(UnsafeCheckpointError) as info:
        load_checkpoint_file(other)
    assert "'argparse.Namespace'" in str(info.value)
    assert 'state_dict()' not in str(info.value)


def test_special_files_and_folders_are_not_checkpoints(tmp_path):
    for path in ('/dev/null', str(tmp_path)):
        with pytest.raises(CorruptCheckpointError) as info:
            load_checkpoint_file(path)
        assert str(info.value) == (
            f'{path!r} is not a checkpoint file (a directory, device or '
            'other special file)')
    with pytest.raises(FileNotFoundError) as info:
        load_checkpoint_file(str(tmp_path / 'none.pth'))
    assert str(info.value) == (
        f"checkpoint {str(tmp_path / 'none.pth')!r} does not exist")


def test_load_weights_logs_new_layers_without_prefix(tmp_path, log):
    sd = {
        k: v
        for k, v in _filled().state_dict().items()
        if not k.startswith('norm0.')
    }
    path = _save(tmp_path, 'nonorm.pth', sd)
    load_weights(Net(), path, new_layer_prefixes=['norm0.'])
    assert log == [(f'loaded 2/4 Net tensors from checkpoint {path!r}; '
                    "newly initialised: ['norm0.']", 'current')]
