"""Mutation testing of one module with the fast tests that cover it.

    python tools/misc/mutation.py mmslak/sparse/prune_grow.py tests/sparse
    make mutation MODULE=mmslak/sparse/prune_grow.py TESTS=tests/sparse

mutmut (3.x) mutates the module in a copy of the checkout
(``work_dirs/mutation/<module>/``, so the checkout and its ``setup.cfg`` are
left alone), runs the given tests against each mutant and prints the kill
rate and the surviving mutants. Every survivor is either killed by a new
test or listed as equivalent, with one line why, in ``tests/MUTATION.md``.

Tests that start a child process import the unmutated checkout, so they
cannot see a mutant: they are deselected by their pytest marker
(``child_process``, registered in setup.cfg), as are slow tests. Not run
in CI (minutes per module).
"""
import argparse
import json
import os
import os.path as osp
import shutil
import subprocess
import sys

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
MARKERS = 'not slow and not child_process'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        'module', help='file to mutate, e.g. '
        'mmslak/sparse/prune_grow.py')
    parser.add_argument(
        'tests', nargs='+', help='test files or folders that cover it')
    parser.add_argument('--max-children', type=int, default=2)
    parser.add_argument(
        '--deselect',
        default=None,
        help='pytest -k expression narrowing the tests run (always with '
        f'-m {MARKERS!r}; default: no -k)')
    parser.add_argument(
        '--work-dir', help='default: work_dirs/mutation/<module>')
    args = parser.parse_args(argv)
    if not osp.isfile(osp.join(ROOT, args.module)) or not (
            args.module.startswith('mmslak/') and args.module.endswith('.py')):
        parser.error(f'module must be a file under mmslak/, got '
                     f'{args.module!r}')
    for path in args.tests:
        if not osp.exists(osp.join(ROOT, path)):
            parser.error(f'no such test path: {path!r}')
    return args


def _mutmut_section(args) -> str:
    lines = [
        '', '[mutmut]', 'source_paths = mmslak', 'only_mutate =',
        f'    {args.module}', 'also_copy ='
    ]
    lines += [f'    {p}' for p in ('mmslak/', 'tests/', 'tools/', 'configs/')]
    lines.append('pytest_add_cli_args =')
    selection = ['-m', MARKERS]
    if args.deselect:
        selection += ['-k', args.deselect]
    lines += [
        f'    {a}' for a in ['-x', '-q', '-p', 'no:cacheprovider'] + selection
    ]
    lines.append('pytest_add_cli_args_test_selection =')
    lines += [f'    {t}' for t in args.tests]
    return '\n'.join(lines) + '\n'


def prepare_copy(args) -> str:
    """A copy of the tracked (and untracked, not ignored) files, with a
    ``[mutmut]`` section appended to its setup.cfg."""
    name = args.module[len('mmslak/'):-len('.py')].replace('/', '.')
    work_dir = args.work_dir or osp.join(ROOT, 'work_dirs', 'mutation', name)
    if osp.isdir(work_dir):
        shutil.rmtree(work_dir)
    files = subprocess.run(['git', 'ls-files', '-co', '--exclude-standard'],
                           cwd=ROOT,
                           check=True,
                           capture_output=True,
                           text=True).stdout.split('\n')
    for rel in filter(None, files):
        if osp.isfile(osp.join(ROOT, rel)):
            os.makedirs(osp.join(work_dir, osp.dirname(rel)), exist_ok=True)
            shutil.copy2(osp.join(ROOT, rel), osp.join(work_dir, rel))
    with open(osp.join(work_dir, 'setup.cfg'), 'a') as f:
        f.write(_mutmut_section(args))
    return work_dir


def kill_rates(work_dir: str) -> dict:
    subprocess.run([sys.executable, '-m', 'mutmut', 'export-cicd-stats'],
                   cwd=work_dir,
                   check=True,
                   capture_output=True)
    with open(osp.join(work_dir, 'mutants', 'mutmut-cicd-stats.json')) as f:
        return json.load(f)


def main(argv=None):
    args = parse_args(argv)
    work_dir = prepare_copy(args)
    # One intra-op thread: mutmut forks its workers from a process that has
    # started torch's OpenMP pool, and a forked pool spins until mutmut's
    # CPU-time limit kills it (every mutant reads as a timeout).
    env = dict(
        os.environ,
        PYTHONPATH=work_dir,
        OMP_NUM_THREADS=os.environ.get('OMP_NUM_THREADS', '1'))
    subprocess.run([
        sys.executable, '-m', 'mutmut', 'run', '--max-children',
        str(args.max_children)
    ],
                   cwd=work_dir,
                   env=env,
                   check=True)
    stats = kill_rates(work_dir)
    survivors = subprocess.run([sys.executable, '-m', 'mutmut', 'results'],
                               cwd=work_dir,
                               capture_output=True,
                               text=True).stdout
    total = stats['total'] - stats.get('skipped', 0)
    caught = stats['killed'] + stats.get('timeout', 0)
    print(f'\n{args.module}: killed {caught} of {total} mutants '
          f'({100 * caught / max(total, 1):.1f}%; timeouts count as killed: '
          f'check one really hangs); stats: {json.dumps(stats)}')
    print('not killed (kill with a test or list as equivalent in '
          'tests/MUTATION.md; `mutmut show NAME` in ' + work_dir + '):')
    print(survivors)


if __name__ == '__main__':
    main()
