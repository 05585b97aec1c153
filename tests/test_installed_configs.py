"""After a plain (non-editable) ``pip install .``, a user's config anywhere
inherits ``mmslak::<path>`` configs (OpenMMLab's ``.mim`` convention) and
they build through mmengine's registries, as a Runner would."""
import json
import os
import shutil
import subprocess
import sys

IGNORE = shutil.ignore_patterns('.git', 'build', 'work_dirs', 'data', '.mim',
                                '__pycache__', '*.egg-info', '.pytest_cache')

CHILD = r'''
import json, sys, warnings
import mmslak
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import HOOKS, MODELS, TRANSFORMS, init_default_scope
report = dict(file=mmslak.__file__)
cfg = Config.fromfile('seg.py')
init_default_scope(cfg.default_scope)
seg = MODELS.build(cfg.model)
report['seg'] = [type(seg).__name__, type(seg.backbone).__name__,
                 seg.decode_head.num_classes]
report['hooks'] = [type(HOOKS.build(h)).__name__ for h in cfg.custom_hooks]
wrapper = build_optim_wrapper(seg, cfg.optim_wrapper)
report['optim'] = type(wrapper.optimizer).__name__
load = TRANSFORMS.build(cfg.train_pipeline[1])
report['transform'] = type(load).__module__
cfg = Config.fromfile('cls.py')
init_default_scope(cfg.default_scope)
cls = MODELS.build(cfg.model)
report['cls'] = [type(cls).__name__, type(cls).__module__]
report['default'] = Config.fromfile('default.py').model.type
print(json.dumps(report))
'''

USER_CONFIGS = {
    'seg.py':
    "_base_ = ['mmslak::demo/upernet_slak-demo_toy-ade.py']\n"
    'model = dict(decode_head=dict(num_classes=7))\n',
    'cls.py':
    "_base_ = ['mmslak::slak/slak-tiny_4xb128-accum8_in1k.py']\n"
    "model = dict(backbone=dict(arch=dict(_delete_=True, depths=[1, 1],\n"
    "    channels=[8, 16]), kernel_sizes=[7, 5], init_cfg=None))\n",
    'default.py':
    "_base_ = ['mmslak::upernet/"
    "upernet_slak-tiny_8xb2-160k_ade20k-512x512.py']\n",
}


def _pip_install(src, site, *options):
    """``pip install [options] .`` of the copy ``src`` into ``site``."""
    install = subprocess.run([
        sys.executable, '-m', 'pip', 'install', '--no-deps',
        '--no-build-isolation', '--no-cache-dir', '--target',
        str(site), *options, '.'
    ],
                             cwd=str(src),
                             capture_output=True,
                             text=True,
                             timeout=600)
    assert install.returncode == 0, install.stderr[-3000:]


def _run_child(code, user, pythonpath, configs):
    """``code`` in a child with ``configs`` written to the folder ``user``
    and only ``pythonpath`` on PYTHONPATH; its last stdout line as JSON."""
    user.mkdir()
    for name, text in configs.items():
        (user / name).write_text(text)
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    env['PYTHONPATH'] = os.pathsep.join(map(str, pythonpath))
    out = subprocess.run([sys.executable, '-c', code],
                         cwd=str(user),
                         env=env,
                         capture_output=True,
                         text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return out, json.loads(out.stdout.strip().splitlines()[-1])


def test_plain_install_serves_configs(repo_root, tmp_path):
    src, site, user = tmp_path / 'src', tmp_path / 'site', tmp_path / 'user'
    shutil.copytree(repo_root, src, ignore=IGNORE)
    _pip_install(src, site)
    assert (site / 'mmslak' / '.mim' / 'model-index.yml').is_file()
    assert (site / 'mmslak' / '.mim' / 'configs' /
            'upernet_slak_ade20k.py').is_file()
    out, got = _run_child(CHILD, user, [site], USER_CONFIGS)
    assert got['file'] == str(site / 'mmslak' / '__init__.py')
    assert got['seg'] == ['EncoderDecoder', 'SLaK', 7]
    assert got['hooks'] == [
        'SparseTrainingHook', 'RandomStateHook', 'FiniteLossHook'
    ]
    assert got['optim'] == 'AdamW'
    assert got['transform'].startswith('mmseg.')  # mmseg's LoadAnnotations
    assert got['cls'][0] == 'ImageClassifier'
    assert got['cls'][1].startswith('mmpretrain.')
    assert got['default'] == 'EncoderDecoder'
    assert 'is not installed' not in out.stdout + out.stderr
    assert 'Failed to search registry' not in out.stdout + out.stderr


EDITABLE_CHILD = r'''
import json
import mmslak
import pkg_resources
from mmengine.config import Config
from mmengine.config.utils import MODULE2PACKAGE
report = dict(file=mmslak.__file__,
              dist=pkg_resources.get_distribution('mmslak').location)
# the oracle: the distribution name sends mmengine to the dist's location
MODULE2PACKAGE['mmslak'], ours = 'mmslak', MODULE2PACKAGE['mmslak']
try:
    Config.fromfile('default.py')
except FileNotFoundError as e:
    report['by_dist_name'] = str(e)
MODULE2PACKAGE['mmslak'] = ours
report['default'] = Config.fromfile('default.py').model.type
report['seg'] = Config.fromfile('seg.py').model.decode_head.num_classes
print(json.dumps(report))
'''


def test_editable_install_serves_configs(repo_root, tmp_path):
    """A PEP 660 editable install leaves only the dist-info (and a finder)
    in site-packages: pkg_resources places mmslak there, where no mmslak
    folder exists. The package is imported from the source tree (here by
    PYTHONPATH, as the finder would), whose ``.mim`` links to configs/."""
    src, site, user = tmp_path / 'src', tmp_path / 'site', tmp_path / 'user'
    shutil.copytree(repo_root, src, ignore=IGNORE)
    _pip_install(src, site, '-e')
    assert not (site / 'mmslak').exists()
    assert (src / 'mmslak' / '.mim' / 'configs').is_symlink()
    names = ('default.py', 'seg.py')
    # site first: pkg_resources must meet the install's dist-info before the
    # egg-info that building left in src
    _, got = _run_child(EDITABLE_CHILD, user, [site, src],
                        {n: USER_CONFIGS[n]
                         for n in names})
    assert got['file'] == str(src / 'mmslak' / '__init__.py')
    assert got['dist'] == str(site)
    assert str(site / 'mmslak' / '.mim') in got['by_dist_name']
    assert got['default'] == 'EncoderDecoder'
    assert got['seg'] == 7
