"""``--cfg-options`` (CfgOptionsAction): a malformed option stops argparse
(exit status 2) naming the option and the expected form; valid options
parse exactly as mmengine's DictAction parses them."""
import argparse

import pytest
from mmengine.config import DictAction

from mmslak.cli.cfg_options import CfgOptionsAction


def _parser(action):
    parser = argparse.ArgumentParser()
    parser.add_argument('--cfg-options', nargs='+', action=action)
    return parser


@pytest.mark.parametrize('option, reason', [
    ('model.backbone.drop_path_rate', 'it has no "=VALUE"'),
    ('=3', 'the KEY before "=" is empty'),
    ('a=', 'the VALUE after "=" is empty'),
    ('a=[1,2', 'its brackets are not balanced'),
    ('a=[1,(2]', 'its brackets are not balanced'),
    ('a=),(', 'its brackets are not balanced'),
])
def test_malformed(option, reason, capsys):
    with pytest.raises(SystemExit) as exc:
        _parser(CfgOptionsAction).parse_args(['--cfg-options', 'x=1', option])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f'--cfg-options: malformed option {option!r}: {reason}' in err
    assert 'expected KEY=VALUE' in err


@pytest.mark.parametrize('option, expected', [
    ('a=1', 1),
    ('a=None', None),
    ('a=[1,(2,3)]', [1, (2, 3)]),
    ('a=1,2', [1, 2]),
    ("a='(0.9,0.999)'", (0.9, 0.999)),
    ('a=some/path.pth', 'some/path.pth'),
    ('a=b=c', 'b=c'),
])
def test_valid_same_as_mmengine(option, expected):
    ours = _parser(CfgOptionsAction).parse_args(['--cfg-options', option])
    upstream = _parser(DictAction).parse_args(['--cfg-options', option])
    assert ours.cfg_options == upstream.cfg_options == {'a': expected}


@pytest.mark.parametrize(
    'option, error',
    [
        ('model.backbone.drop_path_rate', ValueError),  # unpack
        ('a=[1,2', AssertionError),  # imbalanced brackets
        ('a=),(', RecursionError),
    ])
def test_upstream_errors_replaced(option, error):
    """What mmengine's DictAction raises on the same options (before)."""
    with pytest.raises(error):
        _parser(DictAction).parse_args(['--cfg-options', option])
