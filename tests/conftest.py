import importlib.util
import os

import pytest
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason='needs a CUDA device')
    for item in items:
        if 'cuda' in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


PLAIN_RUNNER = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), 'plain_mmengine_runner.py')


@pytest.fixture
def plain_runner():
    """``tests/plain_mmengine_runner.py`` (a Runner of mmengine alone) as a
    module: ``.build_runner(work_dir, iters, ...)``, ``.__file__`` for
    child processes."""
    spec = importlib.util.spec_from_file_location('plain_mmengine_runner',
                                                  PLAIN_RUNNER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def repo_root():
    """The checkout under test."""
    return REPO


@pytest.fixture
def checkout_env():
    """Environment for a child process that imports THIS checkout."""
    env = dict(os.environ)
    env['PYTHONPATH'] = REPO
    return env
