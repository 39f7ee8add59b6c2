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


def positive_float(text: str) -> float:
    """An argparse ``type=`` accepting finite floats ``> 0``."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}") from None
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}")
    return value


def unit_interval(text: str) -> float:
    """An argparse ``type=`` accepting floats in ``[0, 1)``."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1), got {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1), got {text!r}")
    return value


def finite_float(text: str) -> float:
    """An argparse ``type=`` accepting any finite float."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def output_file_problem(path, suffixes=(".png", ".npy")) -> str | None:
    """Why `path` cannot take a command's output (wrong suffix, missing directory), or None."""
    from pathlib import Path

    path = Path(path)
    if path.suffix.lower() not in suffixes:
        return f"--out must end in {' or '.join(suffixes)}, got {str(path)!r}"
    if not path.parent.is_dir():
        return f"--out: directory {str(path.parent)!r} does not exist"
    return None
