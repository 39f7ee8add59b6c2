"""The training loop: fresh or resumed runs, checkpoints, JSON-lines metrics."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import signal
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from .._checks import check_count, check_key
from .._deprecation import deprecated
from ._checkpoint import (
    Checkpointer,
    CheckpointError,
    _restore_state,
    latest_step,
    read_config,
    restore_model_state,
    set_aside,
)
from ._data import Dataset, batch_at
from ._optim import adamw
from ._signals import DeferredSignals
from ._step import DATA_STREAM, LossFn, TrainState, data_mesh, init_state, make_train_step

__all__ = ["FitResult", "NonFiniteLossError", "TrainingInterrupted", "fit", "load_model"]

#: what `fit` does when the loss or the weights stop being finite
ON_NONFINITE = ("stop", "continue")


class NonFiniteLossError(FloatingPointError):
    """`fit` stopped because the loss (or the weights) stopped being finite.

    Attributes:
        step: the first step seen with a non-finite loss (or weights).
        checkpoint: the newest checkpoint on disk (its weights are finite), or None.
    """

    def __init__(self, step: int, checkpoint: int | None, what: str = "loss"):
        self.step = step
        self.checkpoint = checkpoint
        saved = (
            f"the newest checkpoint is that of step {checkpoint}"
            if checkpoint is not None
            else "no checkpoint was written"
        )
        super().__init__(f"the {what} is not finite at step {step}; training stopped and {saved}")


class TrainingInterrupted(KeyboardInterrupt):
    """`fit` stopped at a step boundary on SIGINT or SIGTERM, after checkpointing.

    Attributes:
        signal: the signal received (`signal.SIGINT` or `signal.SIGTERM`).
        checkpoint: the step of the newest checkpoint on disk (the last completed step, unless
            its weights were not finite), or None.
    """

    def __init__(self, signal, checkpoint: int | None):
        self.signal = signal
        self.checkpoint = checkpoint
        super().__init__(f"{signal.name} received; newest checkpoint: step {checkpoint}")


METRICS_FILE = "metrics.jsonl"


@dataclasses.dataclass
class FitResult:
    """What `fit` returns.

    Attributes:
        state: the final `TrainState` (of step ``step``).
        graphdef: the model's graph (``nnx.merge(graphdef, state.params, state.extra)``).
        ema_model: the model with the EMA weights, the one to sample from (in eval mode:
            dropout off).
        model: the model with the raw (not averaged) weights (in eval mode).
        resumed_from: the checkpoint step the run resumed from; None for a fresh run.
        losses: the loss of every step this call ran (steps ``first_step + 1 .. step``);
            empty when the checkpoint was already at ``steps``.
        step: the final step.
        out_dir: the run directory.
        skipped: the ``(step, reason)`` of every unreadable checkpoint the run resumed past
            (newest first); each was renamed to ``checkpoints/<step>.corrupt``.
    """

    state: TrainState
    graphdef: nnx.GraphDef
    ema_model: nnx.Module
    model: nnx.Module
    resumed_from: int | None
    losses: np.ndarray
    step: int
    out_dir: Path
    skipped: list[tuple[int, str]] = dataclasses.field(default_factory=list)

    @property
    def first_step(self) -> int:
        """The step this call started from (0, or ``resumed_from``)."""
        return self.resumed_from or 0


def _rewrite_metrics(path: Path, up_to: int) -> None:
    """Keeps the metrics of steps <= ``up_to`` (those of the checkpoint resumed from)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= up_to:
                kept.append(line)
        except (ValueError, KeyError, TypeError):
            continue
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(line + "\n" for line in kept))
    tmp.replace(path)


@functools.partial(jax.jit, static_argnums=(2, 4))
def _batch(dataset, step, batch_size, key, sharding):
    return jax.lax.with_sharding_constraint(batch_at(dataset, step, batch_size, key), sharding)


def _alive(state: TrainState) -> bool:
    return not any(isinstance(x, jax.Array) and x.is_deleted() for x in jax.tree.leaves(state))


@jax.jit
def _all_finite(tree) -> jax.Array:
    leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def _finite_weights(state: TrainState) -> bool:
    """Whether the raw and EMA weights are all finite (one reduction, one host sync)."""
    return bool(_all_finite((state.params, state.ema)))


def _any_signal(signals: DeferredSignals) -> bool:
    """Whether any process of a `jax.distributed` run received SIGINT/SIGTERM (a collective:
    every process calls it at the same step). Sets `signals.received` to the one received
    (the lowest-numbered, if several processes received different ones)."""
    from jax.experimental import multihost_utils

    mine = 0 if signals.received is None else int(signals.received)
    received = np.asarray(multihost_utils.process_allgather(np.asarray(mine, np.int32)))
    received = received[received > 0]
    if received.size == 0:
        return False
    if signals.received is None:
        signals.received = signal.Signals(int(received.min()))
    return True


def _first_nonfinite(losses: np.ndarray, last_step: int) -> int | None:
    """The step of the first non-finite loss in `losses`, the losses of the steps ending at
    `last_step`; None when all are finite."""
    bad = np.flatnonzero(~np.isfinite(losses))
    return None if bad.size == 0 else last_step - losses.size + 1 + int(bad[0])


def fit(
    model: nnx.Module,
    dataset: Dataset,
    loss_fn: LossFn,
    *,
    steps: int,
    batch_size: int,
    out_dir: str | os.PathLike,
    optimizer: optax.GradientTransformation | None = None,
    ema_decay: float = 0.999,
    key: jax.Array | None = None,
    seed: int | None = None,
    ckpt_every: int = 1000,
    keep: int = 3,
    log_every: int = 100,
    config: Mapping[str, Any] | None = None,
    progress: Callable[[int, dict[str, float]], None] | None = None,
    on_nonfinite: str = "stop",
    handle_signals: bool = True,
) -> FitResult:
    """Trains ``model`` on ``dataset`` up to ``steps`` total steps, resuming when ``out_dir``
    holds a checkpoint.

    Data-parallel over all devices (`make_train_step` on `data_mesh()`); the batch of step ``k`` is
    ``batch_at(dataset, k, batch_size, key)`` and the loss key of step ``k`` derives from the
    run key and ``k``, so the same seed gives the same loss curve, and a resumed run continues
    exactly as an uninterrupted one would have (given the same optimizer, batch size and data).

    Several processes (`jax.distributed`: call `fit` in every process, with the same
    arguments): the mesh spans the devices of all processes, each computes only its rows of
    every batch, and the run equals a one-process run of the same batch size. Every process
    takes part in each checkpoint (orbax's protocol) while process 0 alone writes it and the
    metrics, so ``out_dir`` must be a directory all processes see (a shared file system). A
    SIGINT/SIGTERM stops the run at the first metrics line (``log_every``) or checkpoint after
    it reached any process, in all of them at the same step.

    Files in ``out_dir``: ``checkpoints/<step>/`` every ``ckpt_every`` steps and at the end
    (the newest ``keep`` are kept), each with ``config``; ``metrics.jsonl``, one JSON object per
    ``log_every`` steps (and the last step) with ``step``, ``loss`` (mean over the steps since
    the previous line), ``grad_norm`` and ``lr`` (of the last step), ``steps_per_s`` and
    ``time`` (seconds since this call started). Nothing here prints.

    Faults:

    - SIGINT and SIGTERM (Ctrl-C, a scheduler's stop) are deferred to the end of the step
      (`handle_signals`, in the main thread): the loop stops there, checkpoints the step and
      raises `TrainingInterrupted` (a `KeyboardInterrupt`). Saves are synchronous, so a signal
      never meets a save in flight; a third signal raises `KeyboardInterrupt` at once, and
      the previous checkpoint stays the newest.
    - A non-finite loss (checked with each metrics line) or non-finite weights (checked before
      each save) stop the run with `NonFiniteLossError` naming the first bad step
      (``on_nonfinite="stop"``); ``"continue"`` trains on. Either way no checkpoint with
      non-finite weights is ever written.
    - A save that fails (a full disk) raises `CheckpointError` and leaves the previous
      checkpoint the newest.
    - Resuming skips unreadable checkpoints for the newest one that restores, and renames each
      one skipped to ``checkpoints/<step>.corrupt`` (`FitResult.skipped` names them).
    - Any other exception in the loop checkpoints the last completed step (finite weights
      only) before it propagates.

    Arguments:
        model: the network (any flax NNX module); it is not modified.
        dataset: the training data (`load_dataset`).
        loss_fn: ``loss_fn(model, batch, key) -> scalar`` (see `make_train_step`).
        steps: the total number of steps of the run (a resumed run continues up to it).
        batch_size: examples per step, divisible by the local device count.
        out_dir: the run directory (created if needed).
        optimizer: an optax transformation; default ``adamw(2e-4, warmup_steps=min(1000,
            steps // 10), total_steps=steps)``. For an exact resume, pass the same one.
        ema_decay: the EMA decay (warmed up as ``min(decay, (1 + n) / (10 + n))``).
        key: the run's PRNG key (data order and loss noise), e.g. ``jax.random.key(0)``; a
            resumed run keeps the key stored in its checkpoint.
        seed: deprecated: an int seed, ``key=jax.random.key(seed)``. Without ``key`` and
            ``seed`` the run uses ``jax.random.key(0)``, with a ``DeprecationWarning``.
        ckpt_every: checkpoint period in steps.
        keep: checkpoints to keep.
        log_every: metrics period in steps.
        config: a JSON-serializable dict stored with every checkpoint (what the caller needs to
            rebuild the model: see `load_model`).
        progress: ``progress(step, metrics)``, called with each metrics line (host floats;
            None for a non-finite value).
        on_nonfinite: ``"stop"`` (default) or ``"continue"``: what a non-finite loss or
            non-finite weights do (see Faults).
        handle_signals: defer SIGINT and SIGTERM to the end of a step (see Faults).

    Returns:
        A `FitResult`.

    Raises:
        CheckpointError: ``out_dir`` holds checkpoints none of which can be restored into
            this model and optimizer (nothing is written then), or a save failed.
        NonFiniteLossError: the loss or the weights stopped being finite (``"stop"``).
        TrainingInterrupted: SIGINT or SIGTERM, after the checkpoint of the last step.
    """
    steps = check_count("steps", steps)
    batch_size = check_count("batch_size", batch_size)
    ckpt_every = check_count("ckpt_every", ckpt_every)
    keep = check_count("keep", keep)
    log_every = check_count("log_every", log_every)
    if on_nonfinite not in ON_NONFINITE:
        raise ValueError(f"on_nonfinite must be one of {ON_NONFINITE}; got {on_nonfinite!r}")
    if not isinstance(dataset, Dataset):
        raise TypeError(f"dataset must be a jaxdiff.train.Dataset; got {type(dataset).__name__}")
    if batch_size > len(dataset):
        raise ValueError(
            f"batch_size must be <= the {len(dataset)} examples of the dataset; got {batch_size}"
        )
    mesh = data_mesh()
    several = jax.process_count() > 1
    primary = jax.process_index() == 0
    if batch_size % mesh.size:
        raise ValueError(f"batch_size {batch_size} must be divisible by the {mesh.size} devices")
    config = dict(config or {})
    try:
        json.dumps(config)
    except (TypeError, ValueError) as err:
        raise TypeError(f"config must be JSON-serializable: {err}") from None
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"out_dir {str(out_dir)!r} exists and is not a directory")
    if optimizer is None:
        optimizer = adamw(2e-4, warmup_steps=min(1000, steps // 10), total_steps=steps)

    if key is None:
        if seed is None:
            deprecated("fit without key=", "fit(..., key=jax.random.key(0))")
            seed = 0
        else:
            deprecated("fit(..., seed=N)", "fit(..., key=jax.random.key(N))")
            seed = check_count("seed", seed, minimum=0)
        key = jax.random.key(seed)
    elif seed is not None:
        raise TypeError("pass key= or the deprecated seed=, not both")
    else:
        check_key(key)
    graphdef, state = init_state(model, optimizer, seed=key, mesh=mesh)
    resumed_from = None
    skipped: list[tuple[int, str]] = []
    if latest_step(out_dir) is not None:
        # the newest checkpoint that restores; a CheckpointError leaves everything untouched
        state, resumed_from, skipped = _restore_state(out_dir, state, step=None, fallback=True)
        for step, _ in skipped:
            if primary:
                set_aside(out_dir, step)
    start = int(state.step)

    def result(state: TrainState, losses: np.ndarray) -> FitResult:
        return FitResult(
            state=state,
            graphdef=graphdef,
            ema_model=_eval(nnx.merge(graphdef, state.ema, state.extra, copy=True)),
            model=_eval(nnx.merge(graphdef, state.params, state.extra, copy=True)),
            resumed_from=resumed_from,
            losses=losses,
            step=int(state.step),
            out_dir=out_dir,
            skipped=skipped,
        )

    if start >= steps:
        return result(state, np.zeros((0,), np.float32))

    train_step = make_train_step(graphdef, loss_fn, optimizer, ema_decay=ema_decay, mesh=mesh)
    data = jax.device_put(dataset, NamedSharding(mesh, P()))
    batch_sharding = NamedSharding(mesh, P("data"))
    data_key = state.key(DATA_STREAM)

    checkpointer = Checkpointer(out_dir, keep=keep)
    metrics_path = out_dir / METRICS_FILE
    if primary:
        _rewrite_metrics(metrics_path, start)
    losses: list[np.ndarray] = []
    window: list[jax.Array] = []
    began = last_time = time.perf_counter()
    last_logged = start
    newest = resumed_from  # the newest checkpoint on disk
    first_bad: int | None = None  # the first step seen with a non-finite loss

    def save(state: TrainState) -> None:
        """Checkpoints `state` unless its weights are not finite (then: stop, or skip)."""
        nonlocal newest, first_bad
        step = int(state.step)
        if not _finite_weights(state):
            if window and first_bad is None:
                first_bad = _first_nonfinite(np.asarray(jnp.stack(window), np.float32), step)
            if on_nonfinite == "stop":
                what = "loss" if first_bad is not None else "weights"
                raise NonFiniteLossError(first_bad or step, newest, what)
            return
        checkpointer.save(state, config)
        newest = step

    signals = DeferredSignals(enabled=handle_signals)
    stopped = False  # by a signal
    try:
        with signals:
            for k in range(start, steps):
                batch = _batch(data, k, batch_size, data_key, batch_sharding)
                state, metrics = train_step(state, batch)
                window.append(metrics["loss"])
                done = k + 1
                if done % log_every == 0 or done == steps:
                    host = np.asarray(jnp.stack(window), np.float32)
                    losses.append(host)
                    window = []
                    bad = _first_nonfinite(host, done)
                    if bad is not None and first_bad is None:
                        first_bad = bad
                        if on_nonfinite == "stop":
                            raise NonFiniteLossError(bad, newest)
                    now = time.perf_counter()
                    line = {
                        "step": done,
                        "loss": float(np.mean(host)),
                        "grad_norm": float(metrics["grad_norm"]),
                        "lr": float(metrics["lr"]),
                        "steps_per_s": (done - last_logged) / max(now - last_time, 1e-9),
                        "time": now - began,
                    }
                    line = {
                        k: (v if not isinstance(v, float) or math.isfinite(v) else None)
                        for k, v in line.items()
                    }
                    if primary:
                        with metrics_path.open("a") as f:
                            f.write(json.dumps(line) + "\n")
                    last_time, last_logged = now, done
                    if progress is not None:
                        progress(done, line)
                if done % ckpt_every == 0:
                    save(state)
                if several:  # every process stops at the same step, or none does
                    if (done % log_every == 0 or done % ckpt_every == 0) and _any_signal(signals):
                        stopped = True
                        break
                elif signals.received is not None:
                    stopped = True
                    break
            if newest != int(state.step):
                save(state)
            if stopped or (not several and signals.received is not None):
                raise TrainingInterrupted(signals.received, newest)
    except (TrainingInterrupted, NonFiniteLossError, CheckpointError):
        raise  # what could be saved is saved
    except BaseException as err:
        # keep the last completed step; a state whose buffers were donated to a step that
        # never returned is gone, and the previous checkpoint stays the newest. A forced
        # exit (the third signal) saves nothing.
        try:
            # (not in a jax.distributed run: a save takes every process, and the others are
            # elsewhere)
            if not several and not signals.forced and _alive(state) and newest != int(state.step):
                save(state)
        except Exception as save_err:  # never hide the original exception
            err.add_note(f"saving a checkpoint after the interruption failed: {save_err}")
        raise
    finally:
        checkpointer.close()
    return result(state, np.concatenate(losses) if losses else np.zeros((0,), np.float32))


def load_model(
    out_dir: str | os.PathLike,
    build_model: Callable[[dict[str, Any]], nnx.Module],
    *,
    ema: bool = True,
    step: int | None = None,
) -> tuple[nnx.Module, dict[str, Any]]:
    """Loads a trained model from a run directory, without the optimizer.

    Arguments:
        out_dir: the run directory written by `fit`.
        build_model: ``build_model(config) -> nnx.Module`` rebuilding the architecture from the
            stored config (its initial weights are replaced).
        ema: load the EMA weights (default) rather than the raw ones.
        step: the checkpoint to load; the newest by default.

    Returns:
        ``(model, config)``, the model in eval mode (dropout off).

    Raises:
        CheckpointError: no run, no checkpoint, or one that does not fit the rebuilt model.
    """
    config = read_config(out_dir, step=step)
    model = build_model(config)
    graphdef, params, extra = nnx.split(model, nnx.Param, ...)
    restored = restore_model_state(
        out_dir, {"params": params, "ema": params, "extra": extra}, step=step
    )
    weights = restored["ema"] if ema else restored["params"]
    return _eval(nnx.merge(graphdef, weights, restored["extra"])), config


def _eval(model: nnx.Module) -> nnx.Module:
    model.eval()  # inference mode: dropout off, running statistics used
    return model
