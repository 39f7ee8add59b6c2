"""The CLI reference, generated from the argparse definitions of `jaxdiff.cli` (`COMMANDS` and
`build_parser`), so that it cannot drift from what ``jaxdiff COMMAND --help`` prints.

Only the standard library and jaxdiff are imported here (no mkdocs).
"""

from __future__ import annotations

import argparse
import os
from contextlib import contextmanager

#: the width argparse wraps help at on the page (a terminal's width would make it vary)
HELP_COLUMNS = 80

INTRO = """\
# CLI reference

The `jaxdiff` program (installed with the package) runs the
library's workflows from a shell: the [quick start](guides/getting-started.md) (`demo`),
training and sampling runs, the exact-oracle demo, diffusion bridges and the benchmark
harness. This page is generated from the command line's own argparse definitions: each
section is what `jaxdiff COMMAND --help` prints, then its options as a table.

`jaxdiff --help` lists the commands: `demo` (train, sample, score: the quick start), `train`,
`sample`, `bridge-train` and `bridge-sample` (paired data: `--data moons-to-ring`, any
`A-to-B` of the 2-D toys, or `digits-restore`; DBIM or DDBM), `bench`, and `oracle` (the
reverse SDE and PF-ODE of VP and VE driven by a mixture's exact score, scored against the exact
E_p[log p]). Examples of whole workflows are in the guides: [train on your
data](guides/train-on-your-data.md) and [benchmark a solver](guides/benchmark-a-solver.md).

Every failure is one line on stderr and exit status 2; Ctrl-C exits with status 130 and
SIGTERM with 143 (a training run keeps its last checkpoint); outputs are written under a
temporary name and renamed. `jaxdiff --help` and `--version` answer without importing JAX.
"""


@contextmanager
def _columns(columns: int):
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(columns)
    try:
        yield
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[name]
    raise LookupError(f"the jaxdiff parser has no command {name!r}")


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", r"\|")


def _default(action: argparse.Action) -> str:
    if action.default in (None, argparse.SUPPRESS) or isinstance(
        action, argparse._StoreTrueAction | argparse._StoreFalseAction
    ):
        return ""
    return f"`{action.default}`"


def options_table(parser: argparse.ArgumentParser) -> list[str]:
    """A Markdown table of `parser`'s options: flags (with the value's name), choices,
    default, help."""
    rows = ["| option | choices | default | help |", "|---|---|---|---|"]
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
            continue
        flags = ", ".join(action.option_strings) or action.dest
        if action.nargs != 0:
            metavar = action.metavar or (action.dest.upper() if action.option_strings else "")
            if metavar and not action.choices:
                flags += f" {metavar}"
        choices = " \\| ".join(f"`{c}`" for c in action.choices) if action.choices else ""
        help_text = (action.help or "") % {"default": action.default, "prog": parser.prog}
        rows.append(f"| `{flags}` | {choices} | {_default(action)} | {_cell(help_text)} |")
    return rows


def cli_markdown() -> str:
    """The Markdown of the CLI reference page."""
    from jaxdiff.cli import COMMANDS, build_parser

    lines = [INTRO]
    with _columns(HELP_COLUMNS):
        top = build_parser()
        lines += ["## `jaxdiff`", "", "```text", top.format_help().rstrip(), "```", ""]
        for command in COMMANDS:
            sub = _subparser(build_parser(command.NAME), command.NAME)
            lines += [
                f"## `jaxdiff {command.NAME}`",
                "",
                f"{command.HELP[0].upper()}{command.HELP[1:]}.",
                "",
                "```text",
                sub.format_help().rstrip(),
                "```",
                "",
                *options_table(sub),
                "",
            ]
    return "\n".join(lines)
