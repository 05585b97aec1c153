"""tools/misc/mutation.py selects the tests a mutant can reach by marker,
not by test-name substrings."""
import configparser
import importlib.util
import os.path as osp
from types import SimpleNamespace

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _mutation():
    spec = importlib.util.spec_from_file_location(
        'mutation', osp.join(REPO, 'tools', 'misc', 'mutation.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cli_args(section: str) -> list:
    parser = configparser.ConfigParser()
    parser.read_string(section)
    return parser['mutmut']['pytest_add_cli_args'].split('\n')[1:]


def test_child_process_tests_deselected_by_marker():
    mutation = _mutation()
    args = SimpleNamespace(
        module='mmslak/checkpoint/atomic.py', tests=['tests/x'], deselect=None)
    cli = _cli_args(mutation._mutmut_section(args))
    assert cli[cli.index('-m') + 1] == 'not slow and not child_process'
    assert '-k' not in cli  # a test's name does not decide
    args.deselect = 'not units'
    cli = _cli_args(mutation._mutmut_section(args))
    assert cli[cli.index('-k') + 1] == 'not units'


def test_marker_registered():
    parser = configparser.ConfigParser()
    parser.read(osp.join(REPO, 'setup.cfg'))
    markers = parser['tool:pytest']['markers']
    assert any(line.strip().startswith('child_process:')
               for line in markers.splitlines())


def test_fixture_users_are_marked(request, checkout_env):
    assert request.node.get_closest_marker('child_process') is not None
