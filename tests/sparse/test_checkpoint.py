"""mmslak.sparse.checkpoint: bit-packed masks (numpy's packbits as the
oracle), both stored forms readable, the size bound of issue 16 (masks +
explored record <= 1/12 of the fp32 weights' bytes), and which checkpoint
entries are masks."""
import io
import os.path as osp
import re
from collections import OrderedDict

import numpy as np
import pytest
import torch
from child_process import REPO, run_in_checkout

from mmslak.checkpoint import CheckpointError, get_state_dict
from mmslak.sparse import masks_from_checkpoint
from mmslak.sparse.checkpoint import (decode_sparsity_state,
                                      encode_sparsity_state, pack_mask,
                                      unpack_mask)
from mmslak.sparse.summary import sparsity_table


@pytest.mark.parametrize('shape', [(1, ), (7, ), (8, ), (9, ), (3, 5),
                                   (4, 1, 31, 5), (0, 3)])
def test_pack_matches_numpy_packbits_and_unpacks(shape):
    mask = torch.rand(shape, generator=torch.Generator().manual_seed(1)) > .4
    bits = pack_mask(mask)
    expected = np.packbits(mask.numpy().reshape(-1))
    assert bits.dtype == torch.uint8
    assert bits.numpy().tobytes() == expected.tobytes()
    back = unpack_mask(bits, shape)
    assert back.dtype == torch.bool and back.shape == mask.shape
    assert torch.equal(back, mask) and torch.equal(mask, back)


def test_unpack_rejects_wrong_size():
    with pytest.raises(ValueError, match='cannot hold shape'):
        unpack_mask(torch.zeros(2, dtype=torch.uint8), (3, 8))


def _state(masks):
    return dict(
        version=1,
        masks=masks,
        explored=OrderedDict(
            (n, m | (torch.rand(m.shape) > .5)) for n, m in masks.items()),
        dense=['head.bias'],
        num_updates=3)


def test_both_forms_read_alike(tmp_path):
    masks = OrderedDict(a=torch.rand(6, 4) > .5, b=torch.rand(2, 3, 5, 7) > .5)
    old = _state(masks)
    new = encode_sparsity_state(old)
    assert new['version'] == 2 and new['mask_format'] == 'packbits'
    assert all(v.dtype == torch.uint8 for v in new['masks'].values())
    for state in (old, new):
        decoded = decode_sparsity_state(state)
        for key in ('masks', 'explored'):
            for name in masks:
                assert torch.equal(decoded[key][name], old[key][name])
        assert decoded['dense'] == ['head.bias']
        ckpt = dict(state_dict=dict(a=torch.ones(6, 4)), sparsity=state)
        path = str(tmp_path / 'c.pth')
        torch.save(ckpt, path)  # and weights-only loadable
        assert torch.equal(masks_from_checkpoint(path)['b'], masks['b'])
        table = sparsity_table(path)
        assert table['rows'][0][2] == int(masks['a'].sum())
        explored = sum(int(e.sum()) for e in old['explored'].values())
        assert table['explored'] == explored / (24 + 210)


def _saved_bytes(obj) -> int:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.tell()


def test_masks_and_explored_cost_at_most_a_twelfth_of_fp32_weights():
    # SLaK-T-like shapes: 1x1 convs (2-D), 51x5 kernels (4-D)
    shapes = dict(pw=(499, 125), lk=(125, 1, 51, 5), dw=(250, 1, 5, 5))
    weights = OrderedDict((n, torch.randn(s)) for n, s in shapes.items())
    masks = OrderedDict((n, torch.rand(s) > .4) for n, s in shapes.items())
    fp32 = _saved_bytes(weights)
    old = _saved_bytes(_state(masks))
    new = _saved_bytes(encode_sparsity_state(_state(masks)))
    numel = sum(w.numel() for w in weights.values())
    assert old > 2 * numel  # bool: a byte per element, twice
    assert new <= fp32 / 12, (new, fp32)


def test_pack_is_most_significant_bit_first_and_padded():
    mask = torch.tensor([1, 0, 0, 0, 0, 0, 0, 1, 1, 1], dtype=torch.bool)
    assert pack_mask(mask).tolist() == [0b10000001, 0b11000000]
    assert pack_mask(torch.ones(2, 4, dtype=torch.bool)).tolist() == [255]
    back = unpack_mask(
        torch.tensor([0b10000001, 0b11000000], dtype=torch.uint8), (2, 5))
    assert back.flatten().tolist() == mask.tolist()


def test_unpack_refuses_other_dtypes_and_sizes():
    for bits, shape in ((torch.zeros(2, dtype=torch.int8),
                         (2, 5)), (torch.zeros(3, dtype=torch.uint8), (2, 5)),
                        (torch.zeros(1, dtype=torch.uint8), (3, 3))):
        with pytest.raises(ValueError) as info:
            unpack_mask(bits, shape)
        assert str(info.value) == (
            f'packed mask of {bits.numel()} {bits.dtype} bytes cannot hold '
            f'shape {shape}')


def test_encode_decode_without_explored_and_leaves_no_format_keys():
    masks = OrderedDict(a=torch.tensor([[True, False, True]]))
    state = dict(version=1, masks=masks, num_updates=4)
    packed = encode_sparsity_state(state)
    assert packed['explored'] == {} and packed['num_updates'] == 4
    assert packed['shapes'] == {'a': [1, 3]}
    assert packed['masks']['a'].tolist() == [0b10100000]
    assert state['version'] == 1 and state['masks'] is masks  # untouched
    decoded = decode_sparsity_state(packed)
    assert set(decoded) == {'version', 'masks', 'explored', 'num_updates'}
    assert torch.equal(decoded['masks']['a'], masks['a'])
    assert decoded['explored'] == {}
    old = decode_sparsity_state(
        dict(masks=dict(a=torch.tensor([1, 0], dtype=torch.uint8))))
    assert old['masks']['a'].dtype == torch.bool
    assert old['masks']['a'].tolist() == [True, False]
    assert old['explored'] == {}


def test_which_checkpoint_entries_are_masks():
    w = torch.tensor([[1., 0.], [0., 2.]])
    sd = OrderedDict([
        ('conv.weight', w.view(2, 2, 1, 1)),
        ('fc.weight', w),
        ('fc.bias', torch.ones(2)),  # 1-D
        ('x.weight3d', torch.ones(2, 2, 2)),  # 3-D
        ('idx.weight', torch.ones(2, 2, dtype=torch.long)),  # integer
        ('bn.running_mean', torch.zeros(2, 2)),  # buffers
        ('bn.running_var', torch.zeros(2, 2)),
        ('bn.num_batches_tracked', torch.zeros(2, 2)),
        ('note', 'not a tensor'),
    ])
    bare = OrderedDict((k, v) for k, v in sd.items() if torch.is_tensor(v))
    for ckpt in (dict(state_dict=sd), dict(model=sd), bare,
                 dict(state_dict=sd, sparsity=dict(version=1))):
        masks = masks_from_checkpoint(ckpt)
        assert list(masks) == ['conv.weight', 'fc.weight']
        assert masks['fc.weight'].tolist() == [[True, False], [False, True]]
    # an entry that is not a dict is not the state dict
    got = get_state_dict(dict(model=sd, state_dict=1))
    assert list(got) == list(sd) and got['fc.weight'] is sd['fc.weight']
    with pytest.raises(TypeError) as info:
        masks_from_checkpoint([1, 2])
    assert str(info.value) == "expected a checkpoint dict, got <class 'list'>"


@pytest.mark.cuda
def test_pack_and_unpack_on_cuda():
    """Packing moves a CUDA mask to the CPU; unpacking keeps the bytes'
    device."""
    mask = torch.rand(3, 7, generator=torch.Generator().manual_seed(0)) > .5
    bits = pack_mask(mask.cuda())
    assert bits.device.type == 'cpu'
    assert torch.equal(bits, pack_mask(mask))
    back = unpack_mask(bits.cuda(), (3, 7))
    assert back.device.type == 'cuda' and torch.equal(back.cpu(), mask)


def _damaged_checkpoints(tmp_path):
    """Checkpoints (paths) whose saved ``fc.weight`` mask does not fit its
    weight (another shape) or whose packed bytes are cut."""
    weights = dict(**{
        'conv.weight': torch.ones(8, 2, 3, 3),
        'fc.weight': torch.ones(80, 20)
    })
    good = encode_sparsity_state(
        dict(masks=OrderedDict((n, w > 0) for n, w in weights.items())))
    wrong_shape = dict(
        good, masks=dict(good['masks']), shapes=dict(good['shapes']))
    wrong_shape['masks']['fc.weight'] = pack_mask(torch.ones(20, 80) > 0)
    wrong_shape['shapes']['fc.weight'] = [20, 80]
    cut = dict(good, masks=dict(good['masks']))
    cut['masks']['fc.weight'] = good['masks']['fc.weight'][:10]
    paths = []
    for tag, state in (('shape', wrong_shape), ('cut', cut)):
        path = tmp_path / f'{tag}.pth'
        torch.save(dict(state_dict=weights, sparsity=state), path)
        paths.append(path)
    return paths


def _names(text, word):
    """``text`` names ``word`` as a word of its own (not glued to another
    word, nor in another case)."""
    return re.search(rf'(?<!\w){re.escape(word)}(?!\w)', text) is not None


def test_damaged_masks_are_refused_naming_layer_and_file(tmp_path):
    """Issue 24 items 5 and 7: every reader of saved masks (through
    ``masks_from_checkpoint``) refuses a mask that does not fit its weight
    and a packed mask whose bytes are cut, naming the layer and the file
    (a loaded checkpoint: ``source``, by default 'checkpoint')."""
    for path in _damaged_checkpoints(tmp_path):
        for read in (masks_from_checkpoint, sparsity_table):
            with pytest.raises(CheckpointError) as info:
                read(str(path))
            assert 'fc.weight' in str(info.value)
            assert str(path) in str(info.value)
        ckpt = torch.load(path, weights_only=True)
        with pytest.raises(CheckpointError) as info:
            masks_from_checkpoint(ckpt)
        assert _names(str(info.value), 'fc.weight'), info.value
        assert _names(str(info.value), 'checkpoint'), info.value
        with pytest.raises(CheckpointError) as info:
            masks_from_checkpoint(ckpt, source='given.pth')
        assert _names(str(info.value), 'given.pth'), info.value
        assert _names(str(info.value), 'fc.weight'), info.value


def test_a_mask_of_another_shape_names_both_shapes(tmp_path):
    shape, _ = _damaged_checkpoints(tmp_path)
    with pytest.raises(CheckpointError) as info:
        masks_from_checkpoint(torch.load(shape, weights_only=True))
    assert '(20, 80)' in str(info.value)  # the mask's
    assert '(80, 20)' in str(info.value)  # the weight's


def test_a_cut_record_is_refused_naming_which_record_and_layer():
    mask = torch.ones(4, 4, dtype=torch.bool)
    good = encode_sparsity_state(
        dict(masks=dict(fc=mask), explored=dict(fc=mask)))
    for key in ('masks', 'explored'):
        cut = dict(good, **{key: dict(fc=good[key]['fc'][:1])})
        with pytest.raises(CheckpointError) as info:
            decode_sparsity_state(cut)
        message = str(info.value)
        assert _names(message, key) and _names(message, 'fc'), message
        assert _names(message, 'checkpoint'), message
        with pytest.raises(CheckpointError) as info:
            decode_sparsity_state(cut, 'run/epoch_3.pth')
        assert _names(str(info.value), 'run/epoch_3.pth'), info.value


def test_masks_are_named_as_saved_and_matched_to_weights_so():
    """A DDP checkpoint's ``module.`` names are kept: the weights' zeros are
    named as saved, and saved masks are checked against the weights of
    their own names."""
    w = torch.tensor([[1., 0.], [0., 3.]])
    masks = masks_from_checkpoint(dict(state_dict={'module.fc.weight': w}))
    assert list(masks) == ['module.fc.weight']
    assert masks['module.fc.weight'].tolist() == [[True, False], [False, True]]
    saved = dict(
        state_dict={'module.fc.weight': torch.ones(2, 3)},
        sparsity=dict(masks={'module.fc.weight': w != 0}))
    with pytest.raises(CheckpointError) as info:
        masks_from_checkpoint(saved)
    assert _names(str(info.value), 'module.fc.weight'), info.value


def test_without_saved_masks_zeros_false_names_the_checkpoint():
    ckpt = dict(state_dict={'fc.weight': torch.ones(2, 2)})
    for kwargs, named in ((dict(), 'checkpoint'), (dict(source='given.pth'),
                                                   'given.pth')):
        with pytest.raises(KeyError) as info:
            masks_from_checkpoint(ckpt, zeros=False, **kwargs)
        message = str(info.value)
        assert _names(message, named), message
        assert "['sparsity']['masks']" in message, message  # the entry


def test_the_summary_tool_ends_with_one_error_line_for_damaged_masks(tmp_path):
    """The summary tool ends with one ``error:`` line naming the layer and
    the file, exit status 1."""
    script = osp.join(REPO, 'tools/analysis/sparsity_summary.py')
    for path in _damaged_checkpoints(tmp_path):
        proc = run_in_checkout(script, path)
        assert proc.returncode == 1, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert lines[-1].startswith('error:') and 'Traceback' not in \
            proc.stderr
        assert 'fc.weight' in lines[-1] and str(path) in lines[-1]
