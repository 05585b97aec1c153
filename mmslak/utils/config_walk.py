"""One walk over every dict nested in a config, for the in-place edits of
the tools (drop pretrained inits, SyncBN -> BN)."""
from typing import Callable, Union


def edit_dicts(cfg: Union[dict, list, tuple], edit: Callable[[dict],
                                                             int]) -> int:
    """Call ``edit`` on every dict nested in ``cfg`` (through dicts, lists
    and tuples; a dict before what it holds, after ``edit`` changed it);
    returns the sum of what ``edit`` returned."""
    if isinstance(cfg, dict):
        return edit(cfg) + sum(edit_dicts(v, edit) for v in cfg.values())
    if isinstance(cfg, (list, tuple)):
        return sum(edit_dicts(v, edit) for v in cfg)
    return 0
