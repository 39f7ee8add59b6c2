"""The pieces the commands share.

- argparse types: they turn a bad value into a clear argparse error
  (``jaxdiff demo: error: argument --num: must be an integer >= 2, got '0'``);
- `fail`: a command's one-line error (``jaxdiff sample: error: ...`` on stderr) and its exit
  status;
- checks of ``--out`` paths, and the lazy pyplot import (Agg backend) of the figures;
- the training run of ``jaxdiff train`` and ``jaxdiff bridge-train``: their shared options,
  resuming a run directory, the progress bar, and the fit with its report.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# ---------------------------------------------------------------------------- argparse types


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
    """An argparse ``type=`` accepting integers ``>= 0``."""
    return int_at_least(0)(text)


#: the largest seed `jax.random.key` takes (a signed 64-bit integer)
MAX_SEED = 2**63 - 1


def seed(text: str) -> int:
    """An argparse ``type=`` accepting seeds: integers in ``[0, 2**63 - 1]``."""
    value = int_at_least(0)(text)
    if value > MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be an integer in [0, 2**63 - 1], got {text!r}")
    return value


def _float(text: str, what: str, accept: Callable[[float], bool], rejected: str = "") -> float:
    """`text` as a float that `accept`s; otherwise an argparse error saying it must be `what`
    (or `rejected`, for a number that is not accepted)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    if not accept(value):
        raise argparse.ArgumentTypeError(f"must be {rejected or what}, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """An argparse ``type=`` accepting finite floats ``> 0``."""
    return _float(text, "a number > 0", lambda v: 0 < v < math.inf)


def unit_interval(text: str) -> float:
    """An argparse ``type=`` accepting floats in ``[0, 1)``."""
    return _float(text, "a number in [0, 1)", lambda v: 0 <= v < 1)


def finite_float(text: str) -> float:
    """An argparse ``type=`` accepting any finite float."""
    return _float(text, "a number", math.isfinite, "a finite number")


# ------------------------------------------------------------------------ errors and paths


def fail(command: str, message: str, status: int = 2) -> int:
    """Prints ``jaxdiff COMMAND: error: MESSAGE`` (one line) to stderr; returns `status`."""
    print(f"jaxdiff {command}: error: {message}", file=sys.stderr)
    return status


def describe_os_error(err: OSError) -> str:
    """`err` as ``'PATH': REASON`` (``'out/x.npy': No space left on device``): the file it
    names and the OS's reason, without the ``[Errno N]`` of ``str(err)``."""
    reason = err.strerror or str(err)
    paths = [str(p) for p in (err.filename, err.filename2) if p is not None]
    if not paths:
        return reason
    return f"{' -> '.join(repr(p) for p in paths)}: {reason}"


def fail_write(command: str, path, err: OSError, status: int = 2) -> int:
    """`fail` for an output that could not be written: names the file that failed (`err`'s
    own, e.g. a companion ``.labels.npy``, else `path`) and the OS's reason."""
    where = err.filename if err.filename is not None else path
    return fail(command, f"cannot write {str(where)!r}: {err.strerror or err}", status)


def _alternatives(suffixes) -> str:
    """``.png or .npy``; ``.png, .pdf or .svg``."""
    *first, last = suffixes
    return f"{', '.join(first)} or {last}" if first else last


def missing_directory(path) -> str | None:
    """The error of an ``--out`` file whose directory does not exist, or is (under) a file,
    or None."""
    parent = Path(path).parent
    if parent.is_dir():
        return None
    return _not_a_directory(parent) or f"--out: directory {str(parent)!r} does not exist"


def _not_a_directory(path: Path) -> str | None:
    """The error of an ``--out`` at or under an existing file (``a.txt/x.png``), or None."""
    for ancestor in (path, *path.parents):
        if ancestor.exists():
            if ancestor.is_dir():
                return None
            return f"--out: {str(ancestor)!r} is a file, not a directory"
    return None


def unwritable_directory(directory) -> str | None:
    """The error of an output directory in which no file can be created, or None.

    Creates and deletes an empty file there: the one test that sees a read-only file system,
    a missing permission and root alike (`os.access` looks at the mode bits only, which root
    bypasses, and knows nothing of read-only mounts). Checked before any work, so that a
    sampling run does not end in an error it could have had at once."""
    import os

    try:
        handle, name = tempfile.mkstemp(dir=directory, prefix=".jaxdiff-probe-")
    except OSError as err:
        return f"--out: cannot write in {str(directory)!r}: {err.strerror or err}"
    os.close(handle)
    os.unlink(name)
    return None


def output_file_problem(path, suffixes=(".png", ".npy")) -> str | None:
    """Why `path` cannot take a command's output (wrong suffix, missing or unwritable
    directory, an existing directory), or None."""
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        return f"--out must end in {_alternatives(suffixes)}, got {str(path)!r}"
    problem = missing_directory(path)
    if problem:
        return problem
    if path.is_dir():
        return f"--out {str(path)!r} is a directory"
    return unwritable_directory(path.parent)


def output_dir_problem(path) -> str | None:
    """Why `path` cannot be a command's output directory (it is a file), or None."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        return f"--out {str(path)!r} exists and is not a directory"
    return None


def results_dir_problem(path) -> str | None:
    """Why a command cannot write its results into the directory `path` (`output_dir_problem`,
    or it is under a file, or the directory it is or will be created in is not writable), or
    None. (A training run checks its run directory itself: resuming a finished run writes
    nothing, and may be read-only.)"""
    path = Path(path)
    problem = output_dir_problem(path) or _not_a_directory(path)
    if problem:
        return problem
    existing = next(p for p in (path, *path.parents) if p.is_dir())
    return unwritable_directory(existing)


def class_labels(num: int, klass: int | None, num_classes: int):
    """The labels of `num` samples of a model with `num_classes` classes: `--class K` for all
    of them, or every class in turn; a `ValueError` (the one-line message) when `klass` is not
    one of the model's classes."""
    import numpy as np

    if klass is not None and klass >= num_classes:
        raise ValueError(f"--class {klass}: the model has classes 0..{num_classes - 1}")
    if klass is not None:
        return np.full(num, klass, np.int32)
    return np.arange(num, dtype=np.int32) % num_classes


def pyplot():
    """`matplotlib.pyplot` on the Agg backend (imported on first use: it is slow)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# ---------------------------------------------------------------------------- training runs


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every training command shares (``jaxdiff train`` and ``jaxdiff
    bridge-train``): batch size, learning rate, warm-up, EMA, width, checkpointing, seed and
    progress bar."""
    parser.add_argument(
        "--batch-size",
        type=int_at_least(1),
        default=None,
        metavar="B",
        help="batch size (default: 256 for 2-D data, 64 for images)",
    )
    parser.add_argument(
        "--lr",
        type=positive_float,
        default=None,
        help="peak learning rate (default: 2e-3 for 2-D data, 1e-3 for images)",
    )
    parser.add_argument(
        "--warmup",
        type=nonnegative_int,
        default=None,
        metavar="N",
        help="warm-up steps (default: min(500, steps / 10))",
    )
    parser.add_argument(
        "--ema",
        type=unit_interval,
        default=0.999,
        metavar="DECAY",
        help="EMA decay of the weights (default: %(default)s)",
    )
    parser.add_argument(
        "--width",
        type=int_at_least(1),
        default=None,
        metavar="W",
        help="network width: the MLP's hidden size (default 128) or the U-Net's base channels "
        "(default 32)",
    )
    parser.add_argument(
        "--ckpt-every",
        type=int_at_least(1),
        default=1000,
        metavar="N",
        help="checkpoint every N steps (default: %(default)s)",
    )
    parser.add_argument(
        "--keep",
        type=int_at_least(1),
        default=3,
        metavar="K",
        help="checkpoints to keep (default: %(default)s)",
    )
    parser.add_argument("--seed", type=seed, default=0, help="random seed (default: %(default)s)")
    parser.add_argument(
        "--on-nonfinite",
        choices=("stop", "continue"),
        default="stop",
        help="a non-finite loss stops the run with an error naming the step (stop), or "
        "training goes on (continue); non-finite weights are never checkpointed "
        "(default: %(default)s)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run_defaults(args, images: bool) -> dict[str, Any]:
    """The training settings of a run's config from the shared options: batch size and
    learning rate default by data kind, the warm-up stays None (resolved at fit time)."""
    return {
        "batch_size": args.batch_size or (64 if images else 256),
        "lr": args.lr or (1e-3 if images else 2e-3),
        "warmup": args.warmup,
        "ema": args.ema,
    }


def merge_resumed(out, config: dict, args, keys) -> tuple[dict, str | None]:
    """The config of a run in `out`, if there is one, merged with `config` (from the command
    line): options not given (batch size, learning rate, warm-up, width) come from the stored
    run; `keys` must agree, and a disagreement names the stored and the given values.
    Returns `(config, None)` or `(config, error message)`."""
    from .. import train as jt
    from ..train._recipe import with_width_of

    if jt.latest_step(out) is None:
        return config, None
    try:
        resumed = jt.read_config(out, fallback=True)
    except ValueError as err:
        return config, str(err)
    for name in ("batch_size", "lr", "warmup"):
        if getattr(args, name) is None:
            config[name] = resumed.get(name, config[name])
    if args.width is None and isinstance(resumed.get("network"), dict):
        config["network"] = with_width_of(config["network"], resumed["network"])
    differ = [
        difference
        for k in keys
        if resumed.get(k) != config.get(k)
        for difference in _differences(k, resumed.get(k), config.get(k))
    ]
    if differ:
        return config, (
            f"{str(out)!r} holds a run with other settings ({'; '.join(differ)}); "
            "use another --out or the same options"
        )
    return resumed | {"warmup": config["warmup"]}, None


def _differences(key: str, stored, given) -> list[str]:
    """``key: stored X, given Y`` for a setting, one per differing entry of a dict."""
    if isinstance(stored, dict) and isinstance(given, dict):
        return [
            f"{key}.{sub}: stored {stored.get(sub)!r}, given {given.get(sub)!r}"
            for sub in sorted(set(stored) | set(given))
            if stored.get(sub) != given.get(sub)
        ]
    return [f"{key}: stored {stored!r}, given {given!r}"]


def progress_bar(steps: int, desc: str, *, quiet: bool):
    """A tqdm bar over `steps` (None when quiet) and the `progress(step, metrics)` callback of
    `jaxdiff.train.fit` that moves it (a non-finite loss shows as nan)."""
    bar = None
    if not quiet:
        from tqdm import tqdm

        # leave=False: a closed bar clears its line, so an error stays the only line;
        # disable=None: no bar when stderr is not a terminal (a log file)
        bar = tqdm(
            total=steps, desc=desc, unit="step", dynamic_ncols=True, leave=False, disable=None
        )

    def progress(step, metrics):
        if bar is not None:
            loss = metrics["loss"]
            bar.n = step
            bar.set_postfix(loss="nan" if loss is None else f"{loss:.4f}", refresh=False)
            bar.refresh()

    return bar, progress


#: the settings of a run that must agree with the run directory being resumed, whatever the
#: command (a command adds its own)
RESUME_KEYS = ("data", "kind", "shape", "network", "batch_size", "lr", "ema", "seed")


def train_and_report(
    name: str,
    args: argparse.Namespace,
    dataset,
    config: dict[str, Any],
    *,
    resume_keys: tuple[str, ...],
    build: Callable[[dict[str, Any]], Any],
    loss_fn: Callable[[dict[str, Any]], Callable],
    examples: str = "examples",
) -> int:
    """The training run of command `name` on `dataset` into ``args.out``, after the command's
    own checks: resumes (`merge_resumed`: `RESUME_KEYS` and the command's `resume_keys` must
    agree), builds the network (`build(config)`) and the loss (`loss_fn(config)`), checks the
    batch size against the `examples`, fits with a progress bar (`jaxdiff.train.fit`) and
    prints one line of report. Returns the exit status: 0, 130 when interrupted (the last
    checkpoint is kept and named), 2 after a one-line error."""
    import jax

    from .. import train as jt

    out = Path(args.out)
    config, problem = merge_resumed(out, config, args, resume_keys + RESUME_KEYS)
    if problem:
        return fail(name, problem)
    try:
        network = build(config)
    except ValueError as err:  # e.g. an image size the U-Net cannot downsample
        return fail(name, f"--data: {err}")
    if config["batch_size"] > len(dataset):
        return fail(
            name, f"--batch-size {config['batch_size']} exceeds the {len(dataset)} {examples}"
        )
    if config["batch_size"] % jax.device_count():
        return fail(
            name,
            f"--batch-size {config['batch_size']} must be divisible by the "
            f"{jax.device_count()} devices",
        )

    steps = args.steps
    if config["warmup"] is not None and config["warmup"] > steps:
        return fail(name, f"--warmup {config['warmup']} exceeds --steps {steps}")
    last = jt.latest_step(out)
    primary = jax.process_index() == 0  # the one process that writes (jax.distributed)
    if primary and (last is None or last < steps):  # work to do: the directory must take it
        problem = results_dir_problem(out)
        if problem:
            return fail(name, problem)
    warmup = config["warmup"] if config["warmup"] is not None else min(500, steps // 10)
    optimizer = jt.adamw(config["lr"], warmup_steps=warmup, total_steps=steps)
    start = time.perf_counter()
    bar, progress = progress_bar(steps, name, quiet=args.quiet or not primary)
    try:
        result = jt.fit(
            network,
            dataset,
            loss_fn(config),
            steps=steps,
            batch_size=config["batch_size"],
            out_dir=out,
            optimizer=optimizer,
            ema_decay=config["ema"],
            key=jax.random.key(config["seed"]),
            ckpt_every=args.ckpt_every,
            keep=args.keep,
            config=config,
            progress=progress,
            on_nonfinite=args.on_nonfinite,
        )
    except KeyboardInterrupt as err:  # jt.TrainingInterrupted, or a forced third Ctrl-C
        if bar is not None:
            bar.close()
        signal = getattr(err, "signal", None)
        newest = getattr(err, "checkpoint", None) if signal else jt.latest_step(out)
        what = (
            "terminated (SIGTERM)"
            if signal is not None and signal.name == "SIGTERM"
            else ("interrupted")
        )
        saved = f"last checkpoint at step {newest}" if newest is not None else "no checkpoint"
        print(f"jaxdiff {name}: {what}; {saved} in {out}", file=sys.stderr)
        return 143 if what.startswith("terminated") else 130
    except jt.NonFiniteLossError as err:
        return fail(
            name,
            f"{err} in {out}; lower --lr or rescale the data (--on-nonfinite continue trains on)",
        )
    except ValueError as err:  # a CheckpointError: unreadable run, failed save
        return fail(name, str(err))
    except OSError as err:  # metrics.jsonl on a full or read-only disk
        return fail_write(name, err.filename or out, err)
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - start
    if not primary:
        return 0
    for step, reason in result.skipped:
        print(
            f"skipped the unreadable checkpoint of step {step} ({reason}); "
            f"set aside as {out / 'checkpoints' / f'{step}.corrupt'}"
        )
    if result.resumed_from is not None:
        print(f"resumed from step {result.resumed_from} in {out}")
    done = len(result.losses)
    if done:
        newest = jt.latest_step(out)
        saved = (
            f"checkpoint at step {newest}"
            if newest is not None
            else "no checkpoint (non-finite weights are not saved)"
        )
        print(
            f"trained {done} steps in {seconds:.1f} s ({done / seconds:.1f} steps/s); "
            f"final loss {result.losses[-1]:.4f}; {saved} in {out}"
        )
    else:
        print(f"already at step {result.resumed_from} >= --steps {steps}; nothing to do")
    return 0
