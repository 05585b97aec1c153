"""Layers only point down (DESIGN.md): every import of an mmslak module,
at the top of a file or inside a function, names a module of its own
layer or of a layer below.

Glue is exempt: ``mmslak/__init__.py`` (it imports the subpackages so
their registrations run) and ``mmslak/registry.py`` (the registry scope
mmengine imports by name; it imports nothing of mmslak's). Importing the
package root ``mmslak`` from inside the package counts as importing the
top of the library (it imports every subpackage).
"""
import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / 'mmslak'

# Bottom to top; one entry per layer, the subpackages (or modules) in it.
LAYERS = (
    ('utils', 'version'),
    ('ops', ),
    ('models', ),
    ('sparse', 'checkpoint', 'datasets'),
    ('engine', 'analysis'),
    ('apis', ),
    ('cli', ),
)
GLUE = ('mmslak', 'mmslak.registry')
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}
TOP = len(LAYERS)  # the package root: above every layer


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix('').parts
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def _rank(module: str) -> int:
    parts = module.split('.')
    if parts[0] != 'mmslak':
        raise ValueError(module)
    if len(parts) == 1:
        return TOP
    if parts[1] not in RANK:
        raise AssertionError(f'{module}: add mmslak.{parts[1]} to LAYERS')
    return RANK[parts[1]]


def _imports(path: Path):
    """(line, imported mmslak module, inside a function) of ``path``."""
    module = _module_name(path)
    package = module if path.name == '__init__.py' else module.rpartition(
        '.')[0]
    tree = ast.parse(path.read_text(), str(path))
    local = {
        id(node)
        for func in ast.walk(tree)
        if isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef))
        for node in ast.walk(func)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split('.')[:len(package.split('.')) -
                                          node.level + 1]
                base = '.'.join(base + ([node.module] if node.module else []))
            else:
                base = node.module or ''
            # `from mmslak import apis` imports mmslak.apis
            names = list(
                dict.fromkeys(
                    f'{base}.{alias.name}' if base == 'mmslak' else base
                    for alias in node.names))
        else:
            continue
        for name in names:
            if name == 'mmslak' or name.startswith('mmslak.'):
                yield node.lineno, name, id(node) in local


def _library_modules():
    return sorted(
        p for p in PACKAGE.rglob('*.py') if _module_name(p) not in GLUE)


def upward_imports(path: Path):
    own = _rank(_module_name(path))
    return [
        f'{path.relative_to(PACKAGE.parent)}:{line} imports {name}' +
        (' (inside a function)' if local else '')
        for line, name, local in _imports(path)
        if name not in GLUE[1:] and _rank(name) > own
    ]


def test_no_module_imports_from_a_layer_above():
    found = [line for p in _library_modules() for line in upward_imports(p)]
    assert not found, 'upward imports:\n' + '\n'.join(found)


def test_the_check_sees_top_level_and_local_imports(tmp_path, monkeypatch):
    """The walk could not pass vacuously: an upward import at the top of a
    file and one inside a function are both reported."""
    fake = tmp_path / 'mmslak' / 'checkpoint'
    fake.mkdir(parents=True)
    (fake / 'bad.py').write_text('from ..apis import init_model\n'
                                 'def f():\n'
                                 '    import mmslak\n'
                                 '    from mmslak.cli import dist\n'
                                 '    from ..ops import dispatch\n')
    monkeypatch.setattr(sys.modules[__name__], 'PACKAGE', tmp_path / 'mmslak')
    found = upward_imports(fake / 'bad.py')
    assert [f.split(' imports ')[1] for f in found] == [
        'mmslak.apis', 'mmslak (inside a function)',
        'mmslak.cli (inside a function)'
    ]


def _top_level_closure(root: str = 'mmslak') -> set:
    """Modules of mmslak that ``import root`` runs (top-level imports
    only, followed transitively; a package's ``__init__`` runs first)."""
    paths = {_module_name(p): p for p in PACKAGE.rglob('*.py')}
    seen, todo = set(), [root]
    while todo:
        name = todo.pop()
        parts = name.split('.')
        for i in range(1, len(parts) + 1):
            prefix = '.'.join(parts[:i])
            if prefix in paths and prefix not in seen:
                seen.add(prefix)
                todo += [
                    n for _, n, local in _imports(paths[prefix]) if not local
                ]
    return seen


def test_import_mmslak_does_not_import_the_cli_layer():
    reached = _top_level_closure()
    assert 'mmslak.apis.inference' in reached  # the walk follows imports
    assert not [m for m in reached if _rank(m) == RANK['cli']]


@pytest.mark.parametrize('layer', sorted(RANK))
def test_every_layer_exists(layer):
    assert (PACKAGE / layer).is_dir() or (PACKAGE / f'{layer}.py').is_file()
