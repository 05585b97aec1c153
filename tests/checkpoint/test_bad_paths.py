"""Bad checkpoint / output paths: a text file given as a checkpoint, a
converter writing to a directory or an unwritable place. Exit status 1,
a message naming the path, nothing left behind."""
import os
import os.path as osp

import pytest
import torch
from test_converters import TINY, ReferenceSLaKClassifier, _mmpretrain_config

from mmslak.checkpoint import (CorruptCheckpointError, atomic_write_bytes,
                               load_checkpoint_file)
from mmslak.cli.converters import slak2mmpretrain_main


def _convert(capsys, *argv):
    """slak2mmpretrain in-process: (exit status, stderr)."""
    status = slak2mmpretrain_main([str(a) for a in argv])
    return status, capsys.readouterr().err


def test_text_file_is_not_a_checkpoint(tmp_path):
    path = str(tmp_path / 'notes.pth')
    with open(path, 'w') as f:
        f.write('epoch 12: mIoU 47.1\n')
    with pytest.raises(CorruptCheckpointError) as err:
        load_checkpoint_file(path)
    assert f"{path!r} is not a PyTorch checkpoint" in str(err.value)
    # both torch formats still load (zip and legacy pickle)
    for zipped in (True, False):
        good = str(tmp_path / f'good{zipped}.pth')
        torch.save({'w': torch.ones(2)},
                   good,
                   _use_new_zipfile_serialization=zipped)
        assert torch.equal(load_checkpoint_file(good)['w'], torch.ones(2))


@pytest.fixture
def reference(tmp_path):
    src = str(tmp_path / 'ref.pth')
    torch.save(dict(model=ReferenceSLaKClassifier(TINY).state_dict()), src)
    return src, _mmpretrain_config(tmp_path)


def _files(folder):
    return sorted(
        osp.relpath(osp.join(d, f), folder) for d, _, fs in os.walk(folder)
        for f in fs)


def test_converter_text_source(capsys, tmp_path, reference):
    _, config = reference
    src = str(tmp_path / 'notes.pth')
    with open(src, 'w') as f:
        f.write('hello')
    status, err = _convert(capsys, src, tmp_path / 'out.pth', '--config',
                           config)
    assert status == 1
    assert f"{src!r} is not a PyTorch checkpoint" in err
    assert not osp.exists(tmp_path / 'out.pth')


def test_converter_output_is_a_directory(capsys, tmp_path, reference):
    src, config = reference
    out = tmp_path / 'out_dir'
    out.mkdir()
    before = _files(tmp_path)
    status, err = _convert(capsys, src, out, '--config', config)
    assert status == 1
    assert f"cannot write {str(out)!r}: it is a directory" in err
    assert 'nothing was written' in err
    assert _files(tmp_path) == before  # no temporary file left behind
    # the same converter to a file path works (the failure was the path)
    assert _convert(capsys, src, tmp_path / 'ok.pth', '--config',
                    config)[0] == 0
    assert osp.isfile(tmp_path / 'ok.pth')


def test_converter_output_under_a_file(capsys, tmp_path, reference):
    src, config = reference
    parent = tmp_path / 'plain.txt'
    parent.write_text('x')
    out = parent / 'model.pth'
    before = _files(tmp_path)
    status, err = _convert(capsys, src, out, '--config', config)
    assert status == 1
    assert f'cannot write {str(out)!r}' in err
    assert _files(tmp_path) == before


@pytest.mark.skipif(os.geteuid() == 0, reason='root writes anywhere')
def test_read_only_folder(tmp_path):
    folder = tmp_path / 'ro'
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(PermissionError) as err:
            atomic_write_bytes(b'x', folder / 'a.pth')
        assert f"cannot write {str(folder / 'a.pth')!r}" in str(err.value)
        assert os.listdir(folder) == []
    finally:
        folder.chmod(0o700)


def test_reparameterize_output_is_a_directory(tmp_path, capsys):
    import importlib.util

    from mmengine.runner import save_checkpoint

    from mmslak.apis import init_model
    root = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    spec = importlib.util.spec_from_file_location(
        'reparameterize',
        osp.join(root, 'tools', 'model_converters', 'reparameterize_model.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    config = _mmpretrain_config(tmp_path)
    src = str(tmp_path / 'train.pth')
    save_checkpoint({'state_dict': init_model(config).state_dict()}, src)
    out = tmp_path / 'deploy'
    out.mkdir()
    before = _files(tmp_path)
    assert tool.main([config, src, str(out)]) == 1
    err = capsys.readouterr().err
    assert f"cannot write {str(out)!r}: it is a directory" in err
    assert 'nothing was written' in err
    assert _files(tmp_path) == before
    assert tool.main([config, src, str(tmp_path / 'deploy.pth')]) == 0
