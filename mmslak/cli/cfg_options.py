"""``--cfg-options`` parsing that names the malformed option.

mmengine's ``DictAction`` fails on ``key`` (no ``=``) with "not enough
values to unpack", on unbalanced brackets with an AssertionError and on
some values with a RecursionError; this action checks each option first
and stops through ``parser.error`` (exit status 2) saying which option is
malformed and the form expected.
"""
from mmengine.config import DictAction

__all__ = ['CfgOptionsAction', 'CFG_OPTIONS_FORM']

CFG_OPTIONS_FORM = (
    'KEY=VALUE, e.g. train_cfg.max_iters=100 model.backbone.init_cfg=None '
    "optim_wrapper.optimizer.betas='(0.9,0.999)'; VALUE is a number, "
    'True/False/None, a string, or a list/tuple with balanced brackets '
    "such as [1,2] or '[(1,2),(3,4)]'")


def _balanced(value: str) -> bool:
    depth = []
    pairs = {')': '(', ']': '['}
    for char in value:
        if char in '([':
            depth.append(char)
        elif char in pairs:
            if not depth or depth.pop() != pairs[char]:
                return False
    return not depth


def malformed_reason(option: str):
    """Why ``option`` is not a valid ``KEY=VALUE`` (None if it is)."""
    key, sep, value = option.partition('=')
    if not sep:
        return 'it has no "=VALUE"'
    if not key.strip():
        return 'the KEY before "=" is empty'
    if not value:
        return ('the VALUE after "=" is empty (write KEY=None, or '
                "KEY=\"''\" for an empty string)")
    if not _balanced(value.strip('\'"').replace(' ', '')):
        return 'its brackets are not balanced'
    try:
        DictAction._parse_iterable(value)
    except (AssertionError, RecursionError, ValueError) as e:
        return f'its VALUE cannot be parsed ({type(e).__name__})'
    return None


class CfgOptionsAction(DictAction):
    """mmengine's ``DictAction`` that rejects a malformed option with a
    message naming it and the expected form (instead of a Python error)."""

    def __call__(self, parser, namespace, values, option_string=None):
        for option in values or []:
            reason = malformed_reason(option)
            if reason is not None:
                parser.error(f'{option_string or self.dest}: malformed '
                             f'option {option!r}: {reason}; expected '
                             f'{CFG_OPTIONS_FORM}')
        super().__call__(parser, namespace, values, option_string)
