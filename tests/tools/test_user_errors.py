"""Every user-input error ends a tool with one ``error: ...`` line naming
the file (exit status 1), the traceback only with ``MMSLAK_DEBUG=1``.

The tools run in-process (``runpy`` with their argv: their ``main`` is a
function of argv, and ``sys.exit('error: ...')`` is what makes the exit
status 1), and one child process of this checkout checks the real exit
status and stderr end to end.
"""
import os
import os.path as osp
import runpy
import sys

import pytest
import torch
import torch.nn as nn

from mmslak.apis.config_file import read_config_file

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TINY_CFG = ("default_scope = 'mmpretrain'\n"
            "model = dict(type='ImageClassifier', backbone=dict("
            "type='mmpretrain.SLaK', arch=dict(depths=[1, 1, 1, 1], "
            "channels=[8, 8, 8, 8]), kernel_sizes=[5, 5, 5, 5], "
            'small_kernel=3))\n')


class _Payload:

    def __reduce__(self):
        return (os.system, ('echo pwned', ))


def _tool(monkeypatch, script, *argv):
    """Run tools/<script> in-process; the error text it exits with (None
    when it ended with status 0)."""
    monkeypatch.setattr(sys, 'argv', [script, *map(str, argv)])
    with pytest.raises(SystemExit) as info:
        runpy.run_path(osp.join(REPO, 'tools', script), run_name='__main__')
    code = info.value.code
    if code in (0, None):
        return None
    assert isinstance(code, str) and code.startswith('error: '), code
    assert '\n' not in code or 'does not match' in code, code
    return code


@pytest.fixture
def bad(tmp_path):
    """Damaged and unsafe checkpoints."""
    good = tmp_path / 'good.pth'
    torch.save(dict(state_dict=nn.Linear(2, 2).state_dict()), good)
    paths = dict(
        truncated=tmp_path / 'cut.pth',
        payload=tmp_path / 'p.pth',
        module=tmp_path / 'whole.pth')
    paths['truncated'].write_bytes(good.read_bytes()[:200])
    torch.save(dict(state_dict=_Payload()), paths['payload'])
    torch.save(nn.Linear(2, 2), paths['module'])
    return {k: str(v) for k, v in paths.items()}


def _assert_refusal(message, path, kind):
    assert repr(path) in message
    assert 'weights_only=False' not in message
    if kind == 'truncated':
        assert 'truncated or corrupt' in message
    else:
        assert 'Nothing was executed' in message
        assert ('posix.system' if kind == 'payload' else
                'torch.nn.modules.linear.Linear') in message
        assert ('state_dict()' in message) == (kind == 'module')


@pytest.mark.parametrize('kind', ['truncated', 'payload', 'module'])
def test_test_load_from_and_resume_refuse_bad_checkpoints(
        bad, kind, tmp_path, monkeypatch):
    config = tmp_path / 'tiny.py'
    config.write_text(TINY_CFG)
    path = bad[kind]
    work = str(tmp_path / 'work')
    for script, argv in (
        ('test.py', [config, path, '--work-dir', work]),
        ('train.py',
         [config, '--work-dir', work, '--cfg-options', f'load_from={path}']),
        ('train.py', [config, '--work-dir', work, '--resume', path]),
    ):
        _assert_refusal(_tool(monkeypatch, script, *argv), path, kind)


def test_converter_refusal_same_message(bad, tmp_path, capsys):
    from mmslak.cli.converters import slak_seg2mmseg_main
    for kind, path in bad.items():
        assert slak_seg2mmseg_main([path, str(tmp_path / 'o.pth')]) == 1
        _assert_refusal(capsys.readouterr().err, path, kind)


def test_missing_or_special_file_is_not_a_checkpoint(tmp_path, monkeypatch):
    message = _tool(monkeypatch, 'test.py', tmp_path / 'x.py', '/dev/null')
    assert "'/dev/null' is not a checkpoint file" in message
    message = _tool(monkeypatch, 'test.py', tmp_path / 'x.py', tmp_path)
    assert 'is not a checkpoint file' in message
    message = _tool(monkeypatch, 'test.py', tmp_path / 'x.py', 'no/such.pth')
    assert "'no/such.pth' does not exist" in message


def test_config_errors_name_the_file(tmp_path, monkeypatch):
    base = tmp_path / 'base_bad.py'
    base.write_text('x = 1\ny = (\n')
    top = tmp_path / 'top.py'
    top.write_text("_base_ = ['./base_bad.py']\nz = 2\n")
    with pytest.raises(SyntaxError, match=f'{base}, line 2'):
        read_config_file(str(top))
    text = tmp_path / 'cfg.txt'
    text.write_text('a = 1\n')
    good = tmp_path / 'upernet_slak_tiny.py'
    good.write_text(TINY_CFG)
    for config, names in (
        (top, [str(base), 'line 2']),
        (text, [repr(str(text)), '.py']),
        (tmp_path / 'upernet_slak_tiyn.py', ['not found',
                                             str(good)]),
    ):
        message = _tool(monkeypatch, 'analysis/get_flops.py', config)
        assert all(name in message for name in names), message


def test_debug_switch_shows_the_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv('MMSLAK_DEBUG', '1')
    monkeypatch.setattr(sys, 'argv',
                        ['get_flops.py',
                         str(tmp_path / 'none.py')])
    with pytest.raises(FileNotFoundError, match='none.py'):
        runpy.run_path(
            osp.join(REPO, 'tools/analysis/get_flops.py'), run_name='__main__')


def test_onnx_into_a_missing_folder_fails_before_the_export(
        tmp_path, monkeypatch):
    out = tmp_path / 'no' / 'such' / 'm.onnx'
    message = _tool(monkeypatch, 'deployment/pytorch2onnx.py',
                    tmp_path / 'never_read.py', 'none', out)
    assert str(tmp_path / 'no' / 'such') in message  # the config: unread


def test_already_converted_and_already_deployed(tmp_path, monkeypatch, capsys):
    from mmslak.cli.converters import (mmslak2slak_main, slak2mmpretrain_main,
                                       slak_seg2mmseg_main)
    mmpre = tmp_path / 'mmpretrain.pth'
    torch.save(dict(state_dict={'backbone.w': torch.zeros(1)}), mmpre)
    ref = tmp_path / 'reference.pth'
    torch.save(dict(model={'stages.w': torch.zeros(1)}), ref)
    seg = tmp_path / 'mmseg1x.pth'
    torch.save(
        dict(
            state_dict={'backbone.w': torch.zeros(1)},
            meta=dict(dataset_meta=dict(classes=['a']))), seg)
    for main, path in ((slak2mmpretrain_main, mmpre), (mmslak2slak_main, ref),
                       (slak_seg2mmseg_main, seg)):
        assert main([str(path), str(tmp_path / 'o.pth')]) == 1
        err = capsys.readouterr().err
        assert repr(str(path)) in err and 'already in the target layout' \
            in err, err
    deployed = tmp_path / 'deploy.pth'
    torch.save(dict(state_dict={}, meta=dict(deploy=True)), deployed)
    message = _tool(monkeypatch, 'model_converters/reparameterize_model.py',
                    tmp_path / 'never_read.py', deployed, tmp_path / 'o.pth')
    assert repr(str(deployed)) in message and 'already in deploy form' \
        in message
    assert not (tmp_path / 'o.pth').exists()


@pytest.mark.child_process
def test_exit_status_and_one_line_in_a_child(bad, checkout_run, tmp_path):
    proc = checkout_run('tools/test.py', tmp_path / 'x.py', bad['truncated'])
    assert proc.returncode == 1, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith('error: ') and bad['truncated'] in lines[-1]
    assert 'Traceback' not in proc.stderr


def test_argument_check_error_is_one_line(tmp_path, monkeypatch):
    config = tmp_path / 'tiny.py'
    config.write_text(TINY_CFG)
    message = _tool(monkeypatch, 'analysis/get_flops.py', config,
                    '--cfg-options', 'model.backbone.drop_path_rate=1.5')
    assert 'drop_path_rate' in message and '1.5' in message
