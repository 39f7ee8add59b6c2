"""Checkpoints of a training run with orbax: ``out_dir/checkpoints/<step>/``.

Each checkpoint holds the whole `TrainState` (items ``model``: params, EMA and other model
state; ``train``: optimizer state, step and key) and the caller's JSON ``config``. Orbax writes
a checkpoint into a temporary directory and renames it when complete, so an interrupted or
failed save (a full disk) never hides or damages the previous one: a failed save removes its
temporary directory and raises a `CheckpointError` saying why; leftovers of a killed process
are ignored when reading and removed by the next writer. Saves are synchronous: `save` returns
once the checkpoint is on disk, so a signal deferred to the end of a step (`fit`) never meets
a save in flight.

Reading can fall back past an unreadable checkpoint (``fallback=True``, as `fit` resumes) to
the newest one that restores, naming the ones it skipped.

Several processes (`jax.distributed`): every process calls `Checkpointer.save` (orbax's
barriers) and process 0 alone writes: the state is replicated, and it is handed to orbax as
host (numpy) arrays, which orbax writes from its primary process only (a `jax.Array` would be
written by every process holding a replica). Every process restores the whole state from the
same directory, so it must be on a file system all processes see.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import jax
import numpy as np

from ._step import TrainState

__all__ = [
    "CheckpointError",
    "CheckpointWarning",
    "Checkpointer",
    "latest_step",
    "read_config",
    "restore",
]

SUBDIR = "checkpoints"


class CheckpointError(ValueError):
    """A run directory holds no usable checkpoint (missing, empty, corrupt or mismatched), or
    a checkpoint could not be written (a full disk, a read-only file system)."""


class CheckpointWarning(UserWarning):
    """An unreadable checkpoint was skipped in favour of an older one (``fallback=True``)."""


def _ocp():
    import orbax.checkpoint as ocp

    return ocp


def _ckpt_dir(out_dir: str | os.PathLike) -> Path:
    return Path(out_dir).absolute() / SUBDIR


#: what tensorstore's status codes mean for a checkpoint being read
_STATUS = {
    "NOT_FOUND": "a file of it is missing",
    "DATA_LOSS": "a file of it is damaged",
    "OUT_OF_RANGE": "a file of it is truncated",
    "INVALID_ARGUMENT": "its files are damaged or hold other arrays",
    "FAILED_PRECONDITION": "its files are damaged or hold other arrays",
    "PERMISSION_DENIED": "permission denied",
}


def _reason(err: BaseException) -> str:
    """A short reason for an orbax / tensorstore failure, without their long reprs: the OS
    error when there is one anywhere in the chain (``No space left on device``), the meaning
    of a tensorstore status code, or the first line of the message."""
    seen: set[int] = set()
    e: BaseException | None = err
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno:
            return os.strerror(e.errno)
        code = re.search(r"os_error_code='?(\d+)", str(e))
        if code:
            return os.strerror(int(code.group(1)))
        e = e.__cause__ or e.__context__
    lines = str(err).strip().splitlines()
    line = lines[0] if lines else ""
    status = re.match(r"([A-Z_]{5,}):", line)
    if status and status.group(1) in _STATUS:
        return _STATUS[status.group(1)]
    line = line if len(line) <= 120 else line[:117] + "..."
    return f"{type(err).__name__}: {line}" if line else type(err).__name__


def _steps(out_dir: str | os.PathLike) -> list[int]:
    """The committed checkpoint steps, ascending; temporary (unfinished) saves are skipped."""
    directory = _ckpt_dir(out_dir)
    if not directory.is_dir():
        return []
    steps = []
    for entry in directory.iterdir():
        if entry.is_dir() and entry.name.isdigit():
            steps.append(int(entry.name))
    return sorted(steps)


def latest_step(out_dir: str | os.PathLike) -> int | None:
    """The step of the newest checkpoint in ``out_dir``, or None when it has none (or does not
    exist). Only complete checkpoints count; whether one is readable is checked on restore."""
    steps = _steps(out_dir)
    return steps[-1] if steps else None


@contextlib.contextmanager
def _quiet():
    """Mutes orbax's warnings (e.g. that a reading manager is read-only); errors still pass."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _manager(out_dir: str | os.PathLike, *, read_only: bool, keep: int | None = None):
    ocp = _ocp()
    options = ocp.CheckpointManagerOptions(
        save_interval_steps=0 if read_only else 1,
        max_to_keep=keep,
        create=not read_only,
        read_only=read_only,
        cleanup_tmp_directories=not read_only,
        enable_async_checkpointing=False,
    )
    return ocp.CheckpointManager(
        _ckpt_dir(out_dir), options=options, item_names=("model", "train", "config")
    )


def _pick_step(out_dir: str | os.PathLike, step: int | None) -> int:
    out = Path(out_dir)
    if not out.is_dir():
        raise CheckpointError(f"no run directory {str(out)!r}")
    steps = _steps(out)
    if not steps:
        raise CheckpointError(f"no checkpoint in {str(_ckpt_dir(out))!r}")
    if step is None:
        return steps[-1]
    if step not in steps:
        raise CheckpointError(
            f"no checkpoint of step {step} in {str(_ckpt_dir(out))!r} (it has {steps})"
        )
    return step


def _abstract(tree: Any) -> Any:
    def leaf(x):
        sharding = getattr(x, "sharding", None)
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)

    return jax.tree.map(leaf, tree)


def _restore_one(out_dir, step: int, items) -> Any:
    ocp = _ocp()
    with _quiet(), _manager(out_dir, read_only=True) as manager:
        return manager.restore(step, args=ocp.args.Composite(**items))


def _restore_items(
    out_dir, step: int | None, *, fallback: bool = False, **items
) -> tuple[int, Any, list[tuple[int, str]]]:
    """Restores the named items ({name: orbax args}) of one checkpoint, as CheckpointErrors.

    With ``step=None`` and `fallback`, an unreadable checkpoint is skipped for the next older
    one. Returns ``(step, restored, skipped)``, `skipped` the ``(step, reason)`` of every
    checkpoint passed over, newest first."""
    chosen = _pick_step(out_dir, step)
    candidates = [chosen]
    if step is None and fallback:
        candidates = sorted(_steps(out_dir), reverse=True)
    skipped: list[tuple[int, str]] = []
    for candidate in candidates:
        try:
            return candidate, _restore_one(out_dir, candidate, items), skipped
        except Exception as err:  # orbax / tensorstore raise many kinds; report them as one
            skipped.append((candidate, _reason(err)))
    newest, reason = skipped[0]
    where = str(_ckpt_dir(out_dir) / str(newest))
    older = f"; the {len(skipped) - 1} older ones fail too" if len(skipped) > 1 else ""
    raise CheckpointError(
        f"checkpoint {where!r} is unreadable, corrupt or does not match the model and "
        f"optimizer ({reason}){older}"
    )


def _warn_skipped(out_dir, skipped: list[tuple[int, str]]) -> None:
    for step, reason in skipped:
        where = str(_ckpt_dir(out_dir) / str(step))
        warnings.warn(
            f"skipped the unreadable checkpoint {where!r} ({reason})", CheckpointWarning, 3
        )


def restore(
    out_dir: str | os.PathLike,
    abstract_state: TrainState,
    *,
    step: int | None = None,
    fallback: bool = False,
) -> TrainState:
    """Restores a `TrainState` from ``out_dir``'s newest checkpoint (or that of ``step``).

    Arguments:
        out_dir: the run directory.
        abstract_state: a state of the same structure (arrays or `jax.ShapeDtypeStruct`s, e.g.
            a fresh `init_state`); the restored arrays take its shapes, dtypes and shardings.
        step: the checkpoint to restore; the newest by default.
        fallback: with ``step=None``, skip unreadable checkpoints (a `CheckpointWarning` names
            each) and restore the newest one that reads.

    Raises:
        CheckpointError: ``out_dir`` is missing, holds no checkpoint, or its checkpoint (with
            `fallback`: every checkpoint) cannot be read into ``abstract_state``.
    """
    state, _, skipped = _restore_state(out_dir, abstract_state, step=step, fallback=fallback)
    _warn_skipped(out_dir, skipped)
    return state


def _restore_state(
    out_dir, abstract_state: TrainState, *, step: int | None, fallback: bool
) -> tuple[TrainState, int, list[tuple[int, str]]]:
    """`restore`, also returning the step restored and the checkpoints skipped."""
    ocp = _ocp()
    model, train = _split_state(_abstract(abstract_state))
    step, restored, skipped = _restore_items(
        out_dir,
        step,
        fallback=fallback,
        model=ocp.args.StandardRestore(model),
        train=ocp.args.StandardRestore(train),
    )
    return _join_state(restored["model"], restored["train"]), step, skipped


def set_aside(out_dir: str | os.PathLike, step: int) -> Path:
    """Renames the checkpoint of `step` to ``<step>.corrupt`` (``<step>.corrupt-2``, ... if
    taken), so that it no longer counts as a checkpoint but stays for inspection; returns the
    new path. A writer does this to an unreadable checkpoint it resumed past, lest the run
    save its step again next to it, or keep it as the newest."""
    source = _ckpt_dir(out_dir) / str(step)
    target = source.with_name(f"{step}.corrupt")
    n = 2
    while target.exists():
        target = source.with_name(f"{step}.corrupt-{n}")
        n += 1
    source.rename(target)
    return target


def restore_model_state(
    out_dir: str | os.PathLike, abstract_model: dict[str, Any], *, step: int | None = None
) -> dict[str, Any]:
    """Restores only the model part ``{"params", "ema", "extra"}`` of a checkpoint (no
    optimizer needed)."""
    ocp = _ocp()
    _, restored, _ = _restore_items(
        out_dir, step, model=ocp.args.StandardRestore(_abstract(abstract_model))
    )
    return restored["model"]


def read_config(
    out_dir: str | os.PathLike, *, step: int | None = None, fallback: bool = False
) -> dict[str, Any]:
    """The JSON config stored with ``out_dir``'s newest checkpoint (or that of ``step``).

    With ``fallback`` (and ``step=None``), unreadable checkpoints are skipped silently: the
    config is that of the newest readable one (`restore` names what it skips).

    Raises:
        CheckpointError: ``out_dir`` is missing, holds no checkpoint, or the config is
            unreadable.
    """
    ocp = _ocp()
    step, restored, _ = _restore_items(
        out_dir, step, fallback=fallback, config=ocp.args.JsonRestore()
    )
    config = restored["config"]
    if not isinstance(config, dict):
        where = str(_ckpt_dir(out_dir) / str(step))
        raise CheckpointError(f"checkpoint {where!r} has a malformed config")
    return config


def _split_state(state: TrainState) -> tuple[dict[str, Any], dict[str, Any]]:
    model = {"params": state.params, "ema": state.ema, "extra": state.extra}
    train = {"step": state.step, "opt_state": state.opt_state, "rng": state.rng}
    return model, train


def _join_state(model: dict[str, Any], train: dict[str, Any]) -> TrainState:
    return TrainState(
        step=train["step"],
        params=model["params"],
        ema=model["ema"],
        extra=model["extra"],
        opt_state=train["opt_state"],
        rng=train["rng"],
    )


def _primary_copy(x: Any) -> Any:
    """A replicated array as a host array (orbax writes numpy leaves from its primary process
    only); typed PRNG keys stay as they are."""
    if isinstance(x, jax.Array) and not jax.numpy.issubdtype(x.dtype, jax.dtypes.prng_key):
        return np.asarray(x)
    return x


class Checkpointer:
    """Writes checkpoints of a run into ``out_dir/checkpoints``, keeping the newest ``keep``.

    Saves are synchronous: `save` returns once the checkpoint is committed (a few hundred
    milliseconds for the networks of `jaxdiff.train`), or raises a `CheckpointError` after
    removing what it had written, leaving the previous checkpoint the newest.
    """

    def __init__(self, out_dir: str | os.PathLike, *, keep: int = 3):
        if int(keep) < 1:
            raise ValueError(f"keep must be >= 1; got {keep}")
        out = Path(out_dir)
        if out.exists() and not out.is_dir():
            raise CheckpointError(f"{str(out)!r} exists and is not a directory")
        if (out / SUBDIR).exists() and not (out / SUBDIR).is_dir():
            raise CheckpointError(f"{str(out / SUBDIR)!r} exists and is not a directory")
        self.out_dir = out
        try:
            self._manager = _manager(out, read_only=False, keep=int(keep))
        except Exception as err:  # a read-only file system, a missing permission, ...
            raise CheckpointError(f"cannot create {str(_ckpt_dir(out))!r}: {_reason(err)}") from err

    def save(self, state: TrainState, config: dict[str, Any] | None = None) -> bool:
        """Saves ``state`` as the checkpoint of its step (unless that step is already saved).

        Returns:
            Whether a checkpoint was written.
        """
        ocp = _ocp()
        step = int(state.step)
        if step in self._manager.all_steps():
            return False
        if jax.process_count() > 1:  # the primary process writes the replicated state alone
            state = jax.tree.map(_primary_copy, state)
        model, train = _split_state(state)
        try:
            return self._manager.save(
                step,
                args=ocp.args.Composite(
                    model=ocp.args.StandardSave(model),
                    train=ocp.args.StandardSave(train),
                    config=ocp.args.JsonSave(dict(config or {})),
                ),
                force=True,
            )
        except Exception as err:  # a full disk, a read-only file system, ...
            try:  # let orbax's writer threads of this save end before removing their files
                self._manager.wait_until_finished()
            except Exception:
                pass
            self._remove_unfinished(step)
            where = str(_ckpt_dir(self.out_dir) / str(step))
            raise CheckpointError(f"cannot write checkpoint {where!r}: {_reason(err)}") from err

    def _remove_unfinished(self, step: int) -> None:
        """Removes the temporary directories of a failed save of `step` (the space they hold
        is what a full disk lacks)."""
        if jax.process_index() != 0:  # the primary process's files
            return
        directory = _ckpt_dir(self.out_dir)
        for entry in directory.glob(f"{step}.orbax-checkpoint-tmp*"):
            shutil.rmtree(entry, ignore_errors=True)

    def wait(self) -> None:
        """Blocks until pending saves are on disk."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        """Waits for pending work and releases the manager; after a failed save, whatever
        orbax still raises about it is dropped (the save already raised)."""
        try:
            self._manager.wait_until_finished()
            self._manager.close()
        except Exception:
            pass
        # what the writer threads of a failed save wrote after it was removed; a thread may
        # still be finishing a file (a CI run found one directory left): remove until nothing
        # is left, for up to a second
        if jax.process_index() != 0:
            return
        for _ in range(20):
            entries = list(_ckpt_dir(self.out_dir).glob("*.orbax-checkpoint-tmp*"))
            if not entries:
                break
            for entry in entries:
                shutil.rmtree(entry, ignore_errors=True)
            time.sleep(0.05)

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
