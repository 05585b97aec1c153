import importlib.util
import inspect
import os
import re
import shutil

import pytest
import torch
from child_process import run_in_checkout

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A test that starts a child process (itself, through a helper function of
# its module, or through a fixture) is marked ``child_process``: the child
# imports the checkout, not a mutant, so mutation testing deselects it
# (tools/misc/mutation.py). Found from the code, not from test names.
CHILD_FIXTURES = ('checkout_run', 'run_tool', 'checkout_env')
CHILD_CALL = re.compile(r'\b(run_in_checkout|checkout_command|subprocess\.\w+|'
                        r'Popen|mp\.spawn|start_processes)\(')


def _starts_child(item) -> bool:
    if set(CHILD_FIXTURES) & set(getattr(item, 'fixturenames', ())):
        return True
    module = getattr(item, 'module', None)
    todo = [getattr(item, 'function', None)]
    info = getattr(item, '_fixtureinfo', None)
    for defs in (info.name2fixturedefs.values() if info else ()):
        todo += [d.func for d in defs]
    seen = set()
    while todo:
        func = todo.pop()
        func = inspect.unwrap(func) if inspect.isfunction(func) else None
        if func is None or func in seen:
            continue
        seen.add(func)
        try:
            source = inspect.getsource(func)
        except (OSError, TypeError):
            continue
        if CHILD_CALL.search(source):
            return True
        todo += [
            getattr(module, name) for name in func.__code__.co_names
            if inspect.isfunction(getattr(module, name, None))
            and getattr(module, name).__module__ == module.__name__
        ]
    return False


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _starts_child(item):
            item.add_marker(pytest.mark.child_process)
    # longest first (slow, then child-process tests, each in file order), so
    # that two xdist workers (make test: --dist worksteal) end together
    # instead of one finishing a long run alone
    items.sort(key=lambda item: 0 if 'slow' in item.keywords else 1
               if 'child_process' in item.keywords else 2)
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason='needs a CUDA device')
    for item in items:
        if 'cuda' in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed_and_global_modes():
    """Seed, and start and end every test with torch's default process-wide
    modes: a Runner with ``randomness=dict(deterministic=True)`` (in a test or
    in a module- or session-scoped fixture, which runs before this one) turns
    on deterministic algorithms for the whole process, so that no test depends
    on which tests or fixtures ran before it in the same worker."""

    def defaults():
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False
        torch.backends.cudnn.benchmark = False

    torch.manual_seed(0)
    defaults()
    yield
    defaults()


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


@pytest.fixture
def checkout_run():
    """:func:`run_in_checkout` as a fixture."""
    return run_in_checkout


@pytest.fixture
def run_tool(tmp_path):
    """Run ``tools/<script> args`` through :func:`run_in_checkout` from
    the working folder ``tmp_path``, ``env`` entries added to the
    environment; stdout and stderr joined in ``.output``."""

    def run(script, *args, env=None, timeout=600):
        proc = run_in_checkout(
            os.path.join(REPO, script),
            *args,
            env=dict(os.environ, **(env or {})),
            cwd=str(tmp_path),
            timeout=timeout)
        proc.output = proc.stdout + proc.stderr
        return proc

    return run


@pytest.fixture(scope='session')
def clean_toy(tmp_path_factory):
    """Toy ADE20K / VOC / COCO (3 train, 2 val samples each), made once by
    tools/dataset_converters/make_toy_datasets.py; do not modify."""
    path = os.path.join(REPO, 'tools', 'dataset_converters',
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


@pytest.fixture
def train_logged(caplog):
    """``train_logged(runner)`` trains and returns what the runner logged
    (MMLogger calls its own handlers only, so caplog must be added)."""

    def train(runner) -> str:
        runner.logger.addHandler(caplog.handler)
        try:
            runner.train()
        finally:
            runner.logger.removeHandler(caplog.handler)
        return caplog.text

    return train
