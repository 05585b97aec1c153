"""Reading a config file with errors that name the file: a missing path
with the nearest existing names, an unsupported suffix, and a syntax error
in the config or in one of its ``_base_`` files with that file and line
(mmengine reports ``File "<unknown>"``)."""
import ast
import difflib
import glob
import os.path as osp
from typing import List, Optional

from mmengine.config import Config

SUFFIXES = ('.py', '.json', '.yaml', '.yml')


def similar_configs(path: str, limit: int = 3) -> List[str]:
    """Existing config files whose paths are nearest to ``path``: in its
    folder (if that exists) and under ``configs/`` of the working
    folder."""
    folder = osp.dirname(path) or '.'
    candidates = set(glob.glob(osp.join(folder, '*.py')))
    candidates |= set(
        glob.glob(osp.join('configs', '**', '*.py'), recursive=True))
    return difflib.get_close_matches(
        path, sorted(candidates), n=limit, cutoff=0.6)


def _bases(tree: ast.Module) -> List[str]:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == '_base_'
                for t in node.targets):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                return []
            return [value] if isinstance(value, str) else list(value)
    return []


def find_syntax_error(path: str) -> Optional[str]:
    """``FILE, line N: what`` for the first Python syntax error in ``path``
    or in its local ``_base_`` files (recursively), else None."""
    if not path.endswith('.py') or not osp.isfile(path):
        return None
    with open(path, encoding='utf-8') as f:
        source = f.read()
    try:
        tree = ast.parse(source, path)
    except SyntaxError as e:
        return f'{path}, line {e.lineno}: {e.msg}'
    for base in _bases(tree):
        if isinstance(base, str) and '::' not in base:
            found = find_syntax_error(
                osp.normpath(osp.join(osp.dirname(path), base)))
            if found:
                return found
    return None


def read_config_file(path: str) -> Config:
    """``Config.fromfile(path)``, with the errors described above
    (FileNotFoundError, ValueError, SyntaxError)."""
    if not osp.exists(path):
        near = similar_configs(path)
        hint = f'; did you mean {", ".join(near)}?' if near else ''
        raise FileNotFoundError(f'config file {path!r} not found{hint}')
    if not osp.isfile(path) or not path.endswith(SUFFIXES):
        raise ValueError(f'config {path!r} is not a config file: expected '
                         f'a file ending in {", ".join(SUFFIXES)}')
    try:
        return Config.fromfile(path)
    except SyntaxError as e:
        where = find_syntax_error(path) or f'{path} (or a file it inherits)'
        raise SyntaxError(f'syntax error in config {where}') from e
