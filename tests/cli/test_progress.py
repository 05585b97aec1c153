"""Progress bars of the long tools (mmengine's ``ProgressBar`` on stderr):
shown on a terminal with the count of steps, silent off a terminal and
with ``--quiet``; the results do not depend on it."""
import io
import re
import sys

import torch
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope

import mmslak  # noqa: F401
from mmslak.checkpoint import load_checkpoint_file
from mmslak.cli.converters import STEPS, mmslak2slak_main
from mmslak.cli.progress import SilentProgressBar, progress_bar


class FakeTerminal(io.StringIO):

    def isatty(self):
        return True


def test_progress_bar_only_on_a_terminal():
    term = FakeTerminal()
    bar = progress_bar(3, file=term)
    for _ in range(3):
        bar.update()
    bar.finish()
    bar.finish()  # ends the line once
    text = term.getvalue()
    assert re.search(r'\] 3/3, ', text) and text.endswith('s\n'), text
    assert text.count('\n') == 1
    assert [f'{i}/3' in text for i in (0, 1, 2, 3)] == [True] * 4
    pipe = io.StringIO()  # not a terminal
    for quiet, file in ((False, pipe), (True, term)):
        bar = progress_bar(3, quiet=quiet, file=file)
        assert isinstance(bar, SilentProgressBar)
        bar.update(2)
        bar.finish()
        assert bar.completed == 2
    assert pipe.getvalue() == '' and term.getvalue() == text


def _classifier_checkpoint(tmp_path):
    cfg = Config(
        dict(
            default_scope='mmpretrain',
            model=dict(
                type='ImageClassifier',
                backbone=dict(
                    type='SLaK',
                    arch=dict(depths=[1, 1], dims=[8, 16]),
                    kernel_sizes=[7, 5],
                    width_factor=1.0),
                head=dict(type='LinearClsHead', num_classes=3,
                          in_channels=16))))
    config = str(tmp_path / 'cls.py')
    cfg.dump(config)
    init_default_scope('mmpretrain')
    torch.manual_seed(3)
    model = MODELS.build(cfg.model)
    src = str(tmp_path / 'mm.pth')
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, src)
    return config, src, model.state_dict()


def _convert(monkeypatch, *argv):
    term = FakeTerminal()
    monkeypatch.setattr(sys, 'stderr', term)
    status = mmslak2slak_main(list(argv))
    return status, term.getvalue()


def test_converter_progress_and_same_result(tmp_path, monkeypatch):
    config, src, state_dict = _classifier_checkpoint(tmp_path)
    shown, quiet = str(tmp_path / 'a.pth'), str(tmp_path / 'b.pth')
    status, err = _convert(monkeypatch, src, shown, '--config', config)
    assert status == 0, err
    n = len(STEPS)
    assert re.search(rf'\] {n}/{n}, ', err) and err.endswith('\n'), err
    status, err = _convert(monkeypatch, src, quiet, '--config', config,
                           '--quiet')
    assert status == 0 and err == '', err
    a, b = (load_checkpoint_file(p)['model'] for p in (shown, quiet))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the reference layout: our keys without 'backbone.' / 'head.fc.'
    assert torch.equal(a['head.weight'], state_dict['head.fc.weight'])
    assert torch.equal(a['stages.0.0.gamma'],
                       state_dict['backbone.stages.0.0.gamma'])


def test_converter_error_after_the_bar_line(tmp_path, monkeypatch):
    config, src, _ = _classifier_checkpoint(tmp_path)
    other = str(tmp_path / 'other.py')
    Config.fromfile(config).dump(other)
    text = open(other).read().replace('num_classes=3', 'num_classes=4')
    with open(other, 'w') as f:
        f.write(text)
    status, err = _convert(monkeypatch, src, str(tmp_path / 'x.pth'),
                           '--config', other)
    assert status == 1
    # steps read, convert, build done; the check failed
    assert re.search(r'\] 3/5, [^\n]*\nerror: ', err), err
    assert 'head.weight' in err
