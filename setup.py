import os
import os.path as osp
import shutil
import sys
from setuptools import setup

# What ships in mmslak/.mim (OpenMMLab's convention): mmengine resolves
# `mmslak::<path>` configs in <installed mmslak>/.mim/configs and needs
# <installed mmslak>/.mim/model-index.yml.
MIM_FILES = ('configs', 'model-index.yml')


def add_mim_extension():
    """Copy (links for an editable install) configs/ and model-index.yml
    into mmslak/.mim, as mmpretrain's / mmdet's setup.py do."""
    if 'develop' in sys.argv or 'editable_wheel' in sys.argv:
        mode = 'symlink'
    elif {'sdist', 'bdist_wheel', 'build', 'install'} & set(sys.argv):
        mode = 'copy'
    else:
        return
    repo = osp.dirname(osp.abspath(__file__))
    mim = osp.join(repo, 'mmslak', '.mim')
    os.makedirs(mim, exist_ok=True)
    for name in MIM_FILES:
        src, dst = osp.join(repo, name), osp.join(mim, name)
        if osp.islink(dst) or osp.isfile(dst):
            os.remove(dst)
        elif osp.isdir(dst):
            shutil.rmtree(dst)
        if mode == 'symlink':
            os.symlink(osp.relpath(src, mim), dst)
        elif osp.isdir(src):
            shutil.copytree(src, dst)
        else:
            shutil.copyfile(src, dst)


if __name__ == '__main__':
    add_mim_extension()
    # All other metadata lives in setup.cfg.
    setup()
