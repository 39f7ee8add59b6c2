"""The one fixed-grid driver: `init`, then `step` over every interval of a decreasing grid in
one `lax.scan`, the last step (to 0) after it.

Every sampler that steps over a grid runs here: the sigma-space samplers (`jaxdiff.sample`),
the diffusion-bridge solvers (`jaxdiff.bridges.sample`), and whatever steps over a grid
later. What the driver gives all of them alike:

- one `lax.scan` over steps `0 .. n-2` and the final step `n-1` outside it with `final=True`
  (samplers branch on the last step in Python; a one-step grid runs no scan at all);
- keys: the call's key goes to `init`, step `i` gets `jax.random.fold_in(key, i)`; a batch of
  keys (one per sample) runs every sample alone under `jax.vmap`, so a sample's result does
  not depend on the batch, chunk or device it is computed in;
- bulk noise, opt-in (`noise=`, one key only): step `i` gets
  `StepNoise(noise(fold_in(key, i), x))`, the draws it would make from its key, drawn for a
  chunk of steps at once (one batched call per chunk of at most `CHUNK_BYTES`, then a scan
  over the chunk): the same noise stream, without a random-number call per step (which costs
  as much as a cheap denoiser on CPU);
- the trajectory (`x` at every grid point) and a host callback after every step.

The driver is not jitted itself: callers wrap it in their own `eqx.filter_jit`, where the
shape check of the user's model runs once per compilation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import jax.random as jr

from ._checks import check_sample_key, is_per_sample_key
from .sde._solve import chunking

__all__ = ["CHUNK_BYTES", "StepNoise", "check_run_options", "run"]

#: bytes of noise drawn at once with `noise=` (a chunk of steps; speed and memory only: the
#: draws are those of the steps' own keys however the steps are chunked)
CHUNK_BYTES = 4 * 2**20


class StepNoise(NamedTuple):
    """One step's noise, drawn in bulk by the driver: what the step receives in place of its
    key when the run has `noise=`; `draws` is `noise(jax.random.fold_in(key, i), x)`."""

    draws: Any


def check_run_options(key, x: jax.Array, *, stochastic: bool, who: str, callback) -> Any:
    """Boundary checks shared by every fixed-grid entry point; returns the key to pass on
    (`None` for a deterministic sampler, so that a key never causes a recompile)."""
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable, got {type(callback).__name__}")
    if key is None:
        if stochastic:
            raise ValueError(f"{who} is stochastic: pass key=")
        return None
    per_sample = check_sample_key(key, x)
    if not stochastic:
        return None  # the key is unused: it must not cause a recompile
    if per_sample and callback is not None:
        raise ValueError("callback is not supported with per-sample keys")
    return key


def run(
    init: Callable,
    step: Callable,
    batch: Any,
    grid: jax.Array,
    *,
    key: jax.Array | None,
    return_trajectory: bool,
    callback: Callable[[dict], Any] | None = None,
    names: tuple[str, str] = ("sigma", "sigma_next"),
    noise: Callable[[jax.Array, jax.Array], Any] | None = None,
):
    """Runs a fixed-grid sampler.

    **Arguments:**

    - `init(batch, key) -> (x, carry)`: the state at `grid[0]` and the sampler's carry.
    - `step(batch, x, carry, i, key, final) -> (x_next, carry, denoised)`: one step from
      `grid[i]` to `grid[i + 1]` (0 when `final`); `denoised` is the model's output at `x`.
    - `batch`: a pytree of batch-first arrays that the run is conditioned on (the initial
      noise; a bridge's endpoints); split into samples in per-sample-key mode.
    - `grid`: the decreasing grid, `n + 1` entries ending at 0.
    - `key`: `None`, one key, or one key per sample (`jaxdiff._checks.is_per_sample_key`).
    - `return_trajectory`: also return `x` at every grid point, shape `(n + 1, *x.shape)`.
    - `callback`: called on the host after every step with a dict: `i`, the grid's two
      values under `names`, `x` (after the step) and `denoised`.
    - `noise`: `None` (steps get their keys), or `noise(step_key, x) -> draws`, the random
      draws a step makes from its key (depending on `x`'s shape and dtype only): then every
      step gets `StepNoise(draws)` in place of its key, drawn a chunk of steps at a time. The
      same numbers as the step would draw (to float rounding), whatever the chunking. Ignored
      without a key, with per-sample keys (whose results must not depend on the batch to the
      last bit) and with a callback.

    **Returns:** `(x_final, trajectory or None)`.
    """
    if key is not None and is_per_sample_key(key):

        def row(batch_row, key_row):
            one = jax.tree.map(lambda a: a[None], batch_row)
            # no bulk noise here: batched draws may round differently in the last bit from
            # one batch size to another, and a sample's result must not depend on its batch
            out, traj = _run(init, step, one, grid, key_row, return_trajectory, None, names)
            return out[0], (None if traj is None else traj[:, 0])

        x_out, trajectory = jax.vmap(row)(batch, key)
        return x_out, (None if trajectory is None else jnp.moveaxis(trajectory, 0, 1))
    return _run(init, step, batch, grid, key, return_trajectory, callback, names, noise)


def _run(init, step, batch, grid, key, return_trajectory, callback, names, noise=None):
    n = grid.shape[0] - 1
    bulk = noise is not None and key is not None and callback is None

    def key_of(i, x):
        if key is None:
            return None
        k = jr.fold_in(key, i)
        return StepNoise(noise(k, x)) if bulk else k

    def one(x, carry, i, final, k):
        x_next, carry, denoised = step(batch, x, carry, i, k, final)
        if callback is not None:
            info = {"i": i, names[0]: grid[i], names[1]: grid[i + 1]}
            info.update(x=x_next, denoised=denoised)
            jax.debug.callback(callback, info, ordered=True)
        return x_next, carry

    def body(state, i):
        x, carry = one(*state, i, False, key_of(i, state[0]))
        return (x, carry), (x if return_trajectory else None)

    x, carry = init(batch, key)
    if n > 1 and bulk:
        (x_last, carry), xs = _bulk_scan(one, noise, key, x, carry, n - 1, return_trajectory)
    elif n > 1:
        (x_last, carry), xs = jax.lax.scan(body, (x, carry), jnp.arange(n - 1))
    else:  # one step: no scan (a zero-length scan also fails under jax.disable_jit)
        x_last, xs = x, jnp.zeros((0, *x.shape), x.dtype)
    x_final, _ = one(x_last, carry, n - 1, True, key_of(n - 1, x_last))
    if not return_trajectory:
        return x_final, None
    return x_final, jnp.concatenate([x[None], xs, x_final[None]])


def _bulk_scan(one, noise, key, x, carry, steps, return_trajectory):
    """Steps `0 .. steps-1` as a scan over chunks of steps, each drawing its steps' noise in
    one batched call (`noise` vmapped over the steps' keys), then scanning the steps over it.
    A chunking that does not divide `steps` pads the last chunk with steps whose results are
    discarded (repeats of the last step: finite, never seen)."""
    draws = jax.eval_shape(noise, key, x)
    step_bytes = sum(
        math.prod(d.shape) * jnp.dtype(d.dtype).itemsize for d in jax.tree.leaves(draws)
    )
    chunks, size = chunking(steps, step_bytes, CHUNK_BYTES)
    pad = chunks * size - steps
    index = jnp.arange(chunks * size).reshape(chunks, size)

    def inner(state, step_xs):
        i, d = step_xs
        x_next, carry_next = one(*state, jnp.minimum(i, steps - 1) if pad else i, False, d)
        if pad:
            keep = i < steps
            x_next, carry_next = jax.tree.map(
                lambda a, b: jnp.where(keep, a, b), (x_next, carry_next), state
            )
        return (x_next, carry_next), (x_next if return_trajectory else None)

    def chunk(state, ids):
        d = jax.vmap(lambda i: noise(jr.fold_in(key, i), state[0]))(ids)
        return jax.lax.scan(inner, state, (ids, StepNoise(d)))

    (x, carry), xs = jax.lax.scan(chunk, (x, carry), index)
    if return_trajectory:
        xs = xs.reshape(chunks * size, *xs.shape[2:])[:steps]
    return (x, carry), xs
