"""Old spellings kept working for one release, each with a `DeprecationWarning` that names the
new one (the README's changelog lists them all)."""

from __future__ import annotations

import functools
import inspect
import os
import sys
import warnings
from typing import Any

__all__ = ["deprecated", "keyword_key", "process_after_state"]


_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _caller_stacklevel() -> int:
    """The `stacklevel` of the first frame outside jaxdiff: the user's line, so the warning
    shows under Python's default filters (which show DeprecationWarnings from `__main__`)."""
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    return level


def deprecated(old: str, new: str) -> None:
    """Warns that the spelling `old` is deprecated in favour of `new`, at the user's line."""
    warnings.warn(
        f"{old} is deprecated and will be removed in the next release: use {new}",
        DeprecationWarning,
        stacklevel=_caller_stacklevel(),
    )


def process_after_state(
    fn: str, state: Any, process: Any, cls: type, new: str, what: str = "process"
):
    """Entry points take the model, then the state, then the process: `fn(model, state,
    process)`. The old spelling `fn(model, process, state)` is recognised by the type of its
    second argument; returns `(state, process)` in the new order."""
    if isinstance(state, cls) and not isinstance(process, cls):
        deprecated(f"{fn} with the {what} before the data", new)
        return process, state
    return state, process


def keyword_key(fn_name: str, old_index: int):
    """Decorator for an entry point whose `key` became keyword-only: a call with one more
    positional argument than the function takes is the old spelling, with the key at position
    `old_index`; it still works, with a `DeprecationWarning`."""

    def decorate(fn):
        params = inspect.signature(fn).parameters.values()
        names = [p.name for p in params if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
        n = len(names)

        def old_spelling(args, kwargs) -> bool:
            if "key" in kwargs or len(args) <= old_index:
                return False
            # one positional too many, or a positional where a later argument came by keyword
            return len(args) == n + 1 or any(p in kwargs for p in names[old_index : len(args)])

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            if old_spelling(args, kwargs):
                deprecated(f"{fn_name} with a positional key", f"{fn_name}(..., key=key)")
                args = list(args)
                kwargs["key"] = args.pop(old_index)
            return fn(*args, **kwargs)

        return wrapper

    return decorate
