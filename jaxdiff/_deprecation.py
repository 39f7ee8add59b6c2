"""Old spellings kept working for one release, each with a `DeprecationWarning` that names the
new one (the README's changelog lists them all)."""

from __future__ import annotations

import functools
import inspect
import warnings
from typing import Any

__all__ = ["deprecated", "keyword_key", "process_after_state"]


def deprecated(old: str, new: str) -> None:
    """Warns that the spelling `old` is deprecated in favour of `new`."""
    warnings.warn(
        f"{old} is deprecated and will be removed in the next release: use {new}",
        DeprecationWarning,
        stacklevel=3,
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
        n = sum(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in params)

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            if len(args) == n + 1 and "key" not in kwargs:
                deprecated(f"{fn_name} with a positional key", f"{fn_name}(..., key=key)")
                args = list(args)
                kwargs["key"] = args.pop(old_index)
            return fn(*args, **kwargs)

        return wrapper

    return decorate
