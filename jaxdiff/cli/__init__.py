"""The `jaxdiff` command line: ``jaxdiff <command> [options]``.

Each command is one private module in this package (``_demo``, ``_train``, ...), registered
in `COMMANDS`; the pieces they share (argparse types, the one-line error, ``--out`` checks, the
training run) are in ``_common``. A command module defines

- ``NAME``: the command's name on the command line;
- ``HELP``: a one-line summary (shown in ``jaxdiff --help``);
- ``DESCRIPTION``: the longer text of ``jaxdiff NAME --help``;
- ``add_arguments(parser)``: adds its options to an `argparse.ArgumentParser`;
- ``run(args) -> int``: does the work and returns the exit status.

Only this layer parses, prints and writes files; the library below it computes and returns
values (the model recipes of runs are `jaxdiff.train`'s, the oracle's scoring
`jaxdiff.analytic`'s).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import _bench, _bridge_sample, _bridge_train, _demo, _oracle, _sample, _train

__all__ = ["build_parser", "main"]

#: The registered command modules, in the order ``jaxdiff --help`` lists them.
COMMANDS = (_demo, _train, _sample, _oracle, _bridge_train, _bridge_sample, _bench)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one subparser per module in `COMMANDS`."""
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="jaxdiff",
        description="jaxdiff: the SDEs and ODEs behind diffusion generative models, in JAX.",
        epilog="Run 'jaxdiff <command> --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"jaxdiff {__version__}")
    subparsers = parser.add_subparsers(title="commands", dest="command", metavar="<command>")
    for module in COMMANDS:
        sub = subparsers.add_parser(
            module.NAME,
            help=module.HELP,
            description=module.DESCRIPTION,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(sub)
        sub.set_defaults(_run=module.run, _parser=sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line with `argv` (default: ``sys.argv[1:]``); returns the exit status.

    ``--help`` and ``--version`` exit with status 0 and bad arguments with status 2, through
    `SystemExit`, as argparse does.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_usage(sys.stderr)
        print("jaxdiff: error: a command is required (see 'jaxdiff --help')", file=sys.stderr)
        return 2
    return int(args._run(args))
