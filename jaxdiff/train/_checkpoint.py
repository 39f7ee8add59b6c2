"""Checkpoints of a training run with orbax: ``out_dir/checkpoints/<step>/``.

Each checkpoint holds the whole `TrainState` (items ``model``: params, EMA and other model
state; ``train``: optimizer state, step and key) and the caller's JSON ``config``. Orbax writes
a checkpoint into a temporary directory and renames it when complete, so an interrupted save
never hides or damages the previous one; leftover temporary directories are ignored when
reading and removed by the next writer.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any

import jax

from ._step import TrainState

__all__ = ["CheckpointError", "Checkpointer", "latest_step", "read_config", "restore"]

SUBDIR = "checkpoints"


class CheckpointError(ValueError):
    """A run directory holds no usable checkpoint (missing, empty, corrupt or mismatched)."""


def _ocp():
    import orbax.checkpoint as ocp

    return ocp


def _ckpt_dir(out_dir: str | os.PathLike) -> Path:
    return Path(out_dir).absolute() / SUBDIR


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    line = text[0] if text else ""
    line = line if len(line) <= 200 else line[:197] + "..."
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
        enable_async_checkpointing=not read_only,
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


def _restore_items(out_dir, step: int | None, **items) -> tuple[int, Any]:
    """Restores the named items ({name: orbax args}) of one checkpoint, as CheckpointErrors."""
    ocp = _ocp()
    step = _pick_step(out_dir, step)
    where = str(_ckpt_dir(out_dir) / str(step))
    try:
        with _quiet(), _manager(out_dir, read_only=True) as manager:
            restored = manager.restore(step, args=ocp.args.Composite(**items))
    except Exception as err:  # orbax / tensorstore raise many kinds; report them all as one
        raise CheckpointError(
            f"checkpoint {where!r} is unreadable, corrupt or does not match the model and "
            f"optimizer ({_first_line(err)})"
        ) from None
    return step, restored


def restore(
    out_dir: str | os.PathLike, abstract_state: TrainState, *, step: int | None = None
) -> TrainState:
    """Restores a `TrainState` from ``out_dir``'s newest checkpoint (or that of ``step``).

    Arguments:
        out_dir: the run directory.
        abstract_state: a state of the same structure (arrays or `jax.ShapeDtypeStruct`s, e.g.
            a fresh `init_state`); the restored arrays take its shapes, dtypes and shardings.
        step: the checkpoint to restore; the newest by default.

    Raises:
        CheckpointError: ``out_dir`` is missing, holds no checkpoint, or its checkpoint cannot
            be read into ``abstract_state``.
    """
    ocp = _ocp()
    model, train = _split_state(_abstract(abstract_state))
    _, restored = _restore_items(
        out_dir,
        step,
        model=ocp.args.StandardRestore(model),
        train=ocp.args.StandardRestore(train),
    )
    return _join_state(restored["model"], restored["train"])


def restore_model_state(
    out_dir: str | os.PathLike, abstract_model: dict[str, Any], *, step: int | None = None
) -> dict[str, Any]:
    """Restores only the model part ``{"params", "ema", "extra"}`` of a checkpoint (no
    optimizer needed)."""
    ocp = _ocp()
    _, restored = _restore_items(
        out_dir, step, model=ocp.args.StandardRestore(_abstract(abstract_model))
    )
    return restored["model"]


def read_config(out_dir: str | os.PathLike, *, step: int | None = None) -> dict[str, Any]:
    """The JSON config stored with ``out_dir``'s newest checkpoint (or that of ``step``).

    Raises:
        CheckpointError: ``out_dir`` is missing, holds no checkpoint, or the config is
            unreadable.
    """
    ocp = _ocp()
    step, restored = _restore_items(out_dir, step, config=ocp.args.JsonRestore())
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


class Checkpointer:
    """Writes checkpoints of a run into ``out_dir/checkpoints``, keeping the newest ``keep``.

    Saves are asynchronous (the arrays are copied off the device before `save` returns, so the
    state may be donated right after); `close` (or leaving the ``with`` block) waits for them.
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
        self._manager = _manager(out, read_only=False, keep=int(keep))

    def save(self, state: TrainState, config: dict[str, Any] | None = None) -> bool:
        """Saves ``state`` as the checkpoint of its step (unless that step is already saved).

        Returns:
            Whether a checkpoint was written.
        """
        ocp = _ocp()
        step = int(state.step)
        if step in self._manager.all_steps():
            return False
        model, train = _split_state(state)
        return self._manager.save(
            step,
            args=ocp.args.Composite(
                model=ocp.args.StandardSave(model),
                train=ocp.args.StandardSave(train),
                config=ocp.args.JsonSave(dict(config or {})),
            ),
            force=True,
        )

    def wait(self) -> None:
        """Blocks until pending saves are on disk."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
