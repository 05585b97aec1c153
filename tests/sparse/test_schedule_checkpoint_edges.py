"""mmslak.sparse.schedule and mmslak.sparse.checkpoint at their edges:
smallest valid batches, rounding, the exact error messages, and which
checkpoint entries count as masks. Expected values by hand."""
from collections import OrderedDict

import pytest
import torch

from mmslak.checkpoint import get_state_dict
from mmslak.sparse.checkpoint import (decode_sparsity_state,
                                      encode_sparsity_state,
                                      masks_from_checkpoint, pack_mask,
                                      unpack_mask)
from mmslak.sparse.schedule import rescaled_interval


def test_rescaled_interval_smallest_batches_and_rounding():
    assert rescaled_interval(3, 2, 1) == 6  # a total batch of 1
    assert rescaled_interval(4, 1, 2) == 2  # a base batch of 1
    assert rescaled_interval(5, 3, 4) == 4  # 3.75 rounds up
    assert rescaled_interval(2, 5, 4) == 2  # 2.5 rounds to even
    assert rescaled_interval(1, 3, 2) == 2  # 1.5 rounds to even
    assert rescaled_interval(1, 1, 3) == 1  # 0.33 -> at least one step
    assert rescaled_interval(1, None, 1) == 1


@pytest.mark.parametrize('args, message', [
    ((0, 8, 8), 'update_interval must be a positive int, got 0'),
    ((1.0, 8, 8), 'update_interval must be a positive int, got 1.0'),
    ((2, 8, 0), 'the total batch size must be a positive int, got 0'),
    ((2, 8, 8.0), 'the total batch size must be a positive int, got 8.0'),
    ((2, 0, 8), 'auto_scale_lr.base_batch_size must be a positive int, got '
     '0'),
    ((2, 8.0, 8), 'auto_scale_lr.base_batch_size must be a positive int, '
     'got 8.0'),
])
def test_rescaled_interval_errors(args, message):
    with pytest.raises(ValueError) as info:
        rescaled_interval(*args)
    assert str(info.value) == message


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
