"""Argument types shared by the commands: they turn a bad value into a clear argparse error
(``jaxdiff demo: error: argument --num: must be an integer >= 2, got '0'``)."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse ``type=`` accepting integers ``>= minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"must be an integer >= {minimum}, got {text!r}"
            ) from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {text!r}")
        return value

    parse.__name__ = f"int>={minimum}"
    return parse


def nonnegative_int(text: str) -> int:
    """An argparse ``type=`` accepting integers ``>= 0`` (seeds)."""
    return int_at_least(0)(text)
