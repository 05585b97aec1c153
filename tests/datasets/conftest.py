import importlib.util
import os.path as osp
import shutil

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


@pytest.fixture(scope='session')
def clean_toy(tmp_path_factory):
    """Toy ADE20K / VOC / COCO (3 train, 2 val samples each), made once."""
    path = osp.join(REPO, 'tools', 'dataset_converters',
                    'make_toy_datasets.py')
    spec = importlib.util.spec_from_file_location('make_toy', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    root = str(tmp_path_factory.mktemp('clean_toy'))
    module.make_toy_datasets(root, num_train=3, num_val=2)
    return root


@pytest.fixture
def toy(clean_toy, tmp_path):
    """A fresh copy of the toy datasets for a test to plant faults in."""
    root = str(tmp_path / 'toy')
    shutil.copytree(clean_toy, root)
    return root
