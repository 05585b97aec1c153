"""``import mmslak`` only registers: mmengine's file backends and local
checkpoint loader stay mmengine's, and a checkpoint of a plain mmengine
Runner (saved without mmslak) loads and resumes with mmslak imported."""
import json
import os
import subprocess
import sys

import torch

SNAPSHOT = r'''
import json, sys
from mmengine.fileio.backends import registry_utils as fb
from mmengine.runner.checkpoint import CheckpointLoader
def snap():
    return dict(
        backends={k: id(v) for k, v in fb.backends.items()},
        prefixes={k: id(v) for k, v in fb.prefix_to_backends.items()},
        schemes={k: id(v) for k, v in CheckpointLoader._schemes.items()})
before = snap()
import mmslak
from mmslak.checkpoint import REMOTE_PREFIXES
after = snap()
print(json.dumps(dict(before=before, after=after, file=mmslak.__file__,
                      remote=[p for ps in REMOTE_PREFIXES for p in
                              ((ps,) if isinstance(ps, str) else ps)])))
'''


def run_child(args, env, cwd=None):
    out = subprocess.run(
        [sys.executable] + args,
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_keeps_mmengine_backends_and_loaders(repo_root, checkout_env,
                                                    tmp_path):
    got = run_child(['-c', SNAPSHOT], checkout_env, cwd=str(tmp_path))
    assert got['file'].startswith(os.path.join(repo_root, 'mmslak'))
    before, after = got['before'], got['after']
    # file backends: mmengine's objects unchanged, one new name added
    assert set(after['backends']) - set(before['backends']) == {'atomic_local'}
    assert {k: after['backends'][k] for k in before['backends']} == \
        before['backends']
    assert after['prefixes'] == before['prefixes']
    assert before['prefixes'] == after['prefixes']
    # checkpoint loaders: the local ('') one and any non-remote scheme are
    # mmengine's; only the remote schemes (security fix) are replaced
    remote = set(got['remote'])
    assert '' not in remote and set(after['schemes']) == set(before['schemes'])
    for scheme, ident in before['schemes'].items():
        if scheme in remote:
            assert after['schemes'][scheme] != ident, scheme
        else:
            assert after['schemes'][scheme] == ident, scheme
    assert remote <= set(before['schemes'])


def test_plain_runner_checkpoint_resumes_with_mmslak(plain_runner,
                                                     checkout_env, tmp_path):
    work_dir = str(tmp_path / 'plain')
    saved = run_child([plain_runner.__file__, work_dir, '2'], checkout_env)
    assert not saved['mmslak_imported']
    ckpt = os.path.join(work_dir, 'iter_2.pth')
    # the oracle: torch's weights-only default refuses it without the shim
    probe = subprocess.run(
        [sys.executable, '-c', f'import torch; torch.load({ckpt!r})'],
        env=checkout_env,
        capture_output=True,
        text=True,
        timeout=300)
    assert probe.returncode != 0 and 'HistoryBuffer' in probe.stderr

    import mmslak  # noqa: F401  (the shim)
    runner = plain_runner.build_runner(
        work_dir, 4, resume=True, load_from=ckpt)
    runner.train()
    assert runner.iter == 4
    losses = runner.message_hub.get_scalar('train/loss').data[0].tolist()
    assert len(losses) == 4 and losses[:2] == saved['losses']
    # statistics methods came back as HistoryBuffer's own functions
    buffer = runner.message_hub.get_scalar('train/loss')
    assert type(buffer)._statistics_methods['mean'] is type(buffer).mean
    # resumed == straight 4-iteration run (an independent run)
    straight = plain_runner.build_runner(str(tmp_path / 'straight'), 4)
    straight.train()
    torch.testing.assert_close(runner.model.lin.weight,
                               straight.model.lin.weight)
    assert straight.message_hub.get_scalar(
        'train/loss').data[0].tolist()[:2] == saved['losses']
