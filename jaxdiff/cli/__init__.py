"""The `jaxdiff` command line: ``jaxdiff <command> [options]``.

Each command is one private module in this package (``_demo``, ``_train``, ...), registered
in `COMMANDS`; the pieces they share (argparse types, the one-line error, ``--out`` checks, the
training run) are in ``_common``, the atomic writes of their outputs in ``_output``. A command
module defines

- ``NAME``: the command's name on the command line;
- ``HELP``: a one-line summary (shown in ``jaxdiff --help``);
- ``DESCRIPTION``: the longer text of ``jaxdiff NAME --help``;
- ``add_arguments(parser)``: adds its options to an `argparse.ArgumentParser`;
- ``run(args) -> int``: does the work and returns the exit status.

The command modules import JAX and the rest of the library, which takes seconds; so
`COMMANDS` repeats each one's ``NAME`` and ``HELP`` (tests/test_cli_faults.py checks that they
agree), and only the module of the command named on the command line is imported. ``jaxdiff
--help``, ``jaxdiff --version`` and a bare ``jaxdiff`` import none of them.

Only this layer parses, prints and writes files; the library below it computes and returns
values (the model recipes of runs are `jaxdiff.train`'s, the oracle's scoring
`jaxdiff.analytic`'s).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import sys
import threading
import warnings
from collections.abc import Iterator, Sequence
from types import ModuleType
from typing import NamedTuple

from ._common import describe_os_error, fail

__all__ = ["build_parser", "main"]


class Command(NamedTuple):
    """A registered command: what ``jaxdiff --help`` shows of it, and where it lives."""

    NAME: str
    HELP: str
    #: the command's private module in this package, imported only when the command is named
    module: str

    def load(self) -> ModuleType:
        return importlib.import_module(self.module, __name__)


#: The registered commands, in the order ``jaxdiff --help`` lists them.
COMMANDS = (
    Command(
        "demo",
        "train an MLP on a 2-D toy in about a minute, sample it with three samplers, score it",
        "._demo",
    ),
    Command(
        "train",
        "train a score or flow network (MLP or U-Net) on a 2-D toy, the digits or your .npy",
        "._train",
    ),
    Command(
        "sample",
        "sample a trained run with any sampler (k-diffusion's names) to a PNG or .npy",
        "._sample",
    ),
    Command(
        "oracle",
        "sample an exact 2-D mixture with the VP/VE reverse SDE and probability-flow ODE",
        "._oracle",
    ),
    Command(
        "bridge-train",
        "train a diffusion bridge (DDBM) on paired data: one 2-D toy to another, or digit "
        "restoration",
        "._bridge_train",
    ),
    Command(
        "bridge-sample",
        "sample a 'jaxdiff bridge-train' run from held-out x_T (DBIM or DDBM) to a PNG or .npy",
        "._bridge_sample",
    ),
    Command(
        "restore",
        "inpaint, super-resolve or denoise held-out digits with a trained prior (DPS, PiGDM, ...)",
        "._restore",
    ),
    Command(
        "bench",
        "benchmark samplers x schedules x NFE on exact problems (error vs NFE, wall time)",
        "._bench",
    ),
)

#: the options of the top-level parser that end it (argparse exits on them)
_EXITING_OPTIONS = ("-h", "--help", "--version")


def named_command(argv: Sequence[str]) -> str | None:
    """The command `argv` names: its first word that is not an option (the top-level parser's
    options take no values), or None when there is none, or ``--help``/``--version`` comes
    first (argparse answers those before it reaches a command)."""
    for word in argv:
        if word in _EXITING_OPTIONS:
            return None
        if not word.startswith("-"):
            return word
    return None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser with one subparser per entry of `COMMANDS`.

    Only the subparser of `command` (a name in `COMMANDS`) gets its module's description and
    options, and can run; the others only list their ``HELP`` (which is all that
    ``jaxdiff --help`` shows), so that building the parser imports no command module but the
    one being run.
    """
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="jaxdiff",
        description="jaxdiff: the SDEs and ODEs behind diffusion generative models, in JAX.",
        epilog="Run 'jaxdiff <command> --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"jaxdiff {__version__}")
    subparsers = parser.add_subparsers(title="commands", dest="command", metavar="<command>")
    for entry in COMMANDS:
        if entry.NAME != command:
            subparsers.add_parser(entry.NAME, help=entry.HELP)
            continue
        module = entry.load()
        sub = subparsers.add_parser(
            entry.NAME,
            help=entry.HELP,
            description=module.DESCRIPTION,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(sub)
        sub.set_defaults(_run=module.run, _parser=sub)
    return parser


@contextlib.contextmanager
def quiet_libraries(command: str | None = None, *, restore: bool = True) -> Iterator[None]:
    """Library noise muted while a command runs: its stderr is its progress bar and, on
    failure, one line. Python warnings are dropped, except jaxdiff's own (of a category
    defined in jaxdiff, e.g. a checkpoint skipped as unreadable): news to the user, printed
    as one line ``jaxdiff COMMAND: warning: ...``. Log records below CRITICAL (absl's and
    orbax's, JAX's, ...) are dropped, and so are the tracebacks of exceptions in library
    threads and of unraisable exceptions (orbax's writer threads and event loop repeat a
    failed save's error hundreds of times; the command reports it once). Everything is
    restored on exit (unless not `restore`: the `jaxdiff` program, whose library threads
    finish after `main` returns, as the interpreter shuts down), so that `main` called from a
    test or a notebook leaves the warning filters, logging and hooks as it found them."""
    prefix = f"jaxdiff {command}" if command else "jaxdiff"

    def show(message, category, filename, lineno, file=None, line=None):
        if category.__module__.split(".")[0] == "jaxdiff":
            print(f"{prefix}: warning: {message}", file=sys.stderr)

    disabled = logging.root.manager.disable
    hooks = threading.excepthook, sys.unraisablehook
    with warnings.catch_warnings():
        warnings.simplefilter("default")  # each once; `show` picks what is printed
        warnings.showwarning = show
        logging.disable(logging.ERROR)
        silence_library_threads()
        try:
            yield
        finally:
            if restore:
                logging.disable(disabled)
                threading.excepthook, sys.unraisablehook = hooks


def silence_library_threads() -> None:
    """Drops the tracebacks that library threads and finalizers print on their own (e.g.
    orbax's ``RuntimeError: Event loop is closed`` at exit after a failed save)."""
    threading.excepthook = lambda args: None
    sys.unraisablehook = lambda unraisable: None


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line with `argv` (default: ``sys.argv[1:]``); returns the exit status.

    ``--help`` and ``--version`` exit with status 0 and bad arguments with status 2, through
    `SystemExit`, as argparse does. The failures a command does not report itself end here
    as one line on stderr: an `OSError` (a full disk, a read-only file system, a permission,
    with the path and the OS's reason) with status 2, an interrupt (Ctrl-C) with status 130.
    Any other exception is a bug and keeps its traceback.
    """
    program = argv is None  # the `jaxdiff` program: its threads' noise at exit stays muted
    argv = sys.argv[1:] if argv is None else list(argv)
    command = named_command(argv)
    with quiet_libraries(command, restore=not program):
        parser = build_parser(command)
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_usage(sys.stderr)
            print("jaxdiff: error: a command is required (see 'jaxdiff --help')", file=sys.stderr)
            return 2
        try:
            return int(args._run(args))
        except KeyboardInterrupt:
            print(f"jaxdiff {args.command}: interrupted", file=sys.stderr)
            return 130
        except OSError as err:
            return fail(args.command, describe_os_error(err))
