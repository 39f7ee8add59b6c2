"""`jaxdiff.sample`: every fixed-grid sampler as one compiled program (one `lax.scan`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from ._base import AbstractSampler


class PairDenoiser(eqx.Module):
    """A `(fn, params)` pair as a denoiser: `fn(params, x, sigma)`, with `params` traced so
    new weights do not recompile."""

    fn: Callable = eqx.field(static=True)
    params: Any

    def __call__(self, x, sigma):
        return self.fn(self.params, x, sigma)


def _is_traced(x) -> bool:
    return isinstance(x, jax.core.Tracer)


def check_sigmas(sigmas) -> jax.Array:
    """Boundary checks of a sigma grid (values only when concrete); returns it as an array."""
    if not _is_traced(sigmas):
        try:
            arr = np.asarray(sigmas, dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise TypeError(f"sigmas must be a 1-D array, got {type(sigmas).__name__}") from e
        if arr.ndim != 1 or arr.shape[0] < 2:
            raise ValueError(f"sigmas must be 1-D with at least 2 entries, got shape {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError("sigmas must be finite")
        if arr[-1] != 0:
            raise ValueError(f"sigmas must end at 0 (k-diffusion convention), got {arr[-1]}")
        if not np.all(np.diff(arr) < 0):
            raise ValueError(f"sigmas must be strictly decreasing, got {arr}")
    sigmas = jnp.asarray(sigmas)
    if sigmas.ndim != 1 or sigmas.shape[0] < 2:
        raise ValueError(f"sigmas must be 1-D with at least 2 entries, got shape {sigmas.shape}")
    return sigmas


def as_denoiser(denoiser) -> Callable:
    """A denoiser callable from a callable or a `(fn, params)` pair."""
    if isinstance(denoiser, tuple):
        if len(denoiser) != 2 or not callable(denoiser[0]):
            raise TypeError(
                "denoiser as a tuple must be a (fn, params) pair with fn(params, x, sigma)"
            )
        return PairDenoiser(denoiser[0], denoiser[1])
    if not callable(denoiser):
        raise TypeError(
            f"denoiser must be callable denoiser(x, sigma) or a (fn, params) pair, "
            f"got {type(denoiser).__name__}"
        )
    return denoiser


def _call(denoiser, x, sigma):
    return denoiser(x, sigma)


def check_denoiser(denoiser, x, sigma) -> None:
    out = eqx.filter_eval_shape(_call, denoiser, x, sigma)
    if not isinstance(out, jax.ShapeDtypeStruct) or out.shape != x.shape:
        got = getattr(out, "shape", type(out).__name__)
        raise ValueError(
            f"denoiser(x, sigma) must return an array shaped like x {x.shape}, got {got}"
        )
    if out.dtype != x.dtype:
        raise ValueError(
            f"denoiser(x, sigma) must keep the dtype of x ({x.dtype}), got {out.dtype}"
        )


def check_key(key) -> None:
    if not isinstance(key, jax.Array):
        raise TypeError(f"key must be a JAX PRNG key, got {type(key).__name__}")
    typed = jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    if not (typed or (key.dtype == jnp.uint32 and key.shape == (2,))):
        raise TypeError(f"key must be a JAX PRNG key, got an array of {key.dtype}{key.shape}")


def is_per_sample_key(key) -> bool:
    """Whether `key` is a batch of keys (one per sample): typed keys of shape `(batch,)` or
    raw uint32 keys of shape `(batch, 2)`."""
    if not isinstance(key, jax.Array):
        return False
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key.ndim == 1
    return key.dtype == jnp.uint32 and key.ndim == 2 and key.shape[1] == 2


def check_sample_key(key, x) -> bool:
    """Checks the key of `jaxdiff.sample`: one key, or one per sample of `x` (returns True)."""
    if is_per_sample_key(key):
        if x.ndim < 1 or key.shape[0] != x.shape[0]:
            raise ValueError(
                f"per-sample keys must have one key per sample: got {key.shape[0]} keys for "
                f"x of shape {x.shape}"
            )
        return True
    check_key(key)
    return False


def sample(
    denoiser,
    x,
    sigmas,
    *,
    solver: AbstractSampler | None = None,
    key: jax.Array | None = None,
    return_trajectory: bool = False,
    callback: Callable[[dict], Any] | None = None,
):
    r"""Sample by running `solver` over a decreasing sigma grid that ends at 0.

    One call is one compiled program: the steps are a `lax.scan` (the last step, to sigma = 0,
    follows it). Calling again with new weights (a denoiser that is a pytree, e.g. an equinox
    or flax NNX module, or a `(fn, params)` pair), a new key or new initial noise does not
    recompile; a new shape, dtype, step count or sampler does.

    **Arguments:**

    - `denoiser`: `denoiser(x, sigma) -> E[x_0 | x]` with batched `x` and a scalar `sigma`
      (k-diffusion/EDM convention), or a pair `(fn, params)` called as `fn(params, x, sigma)`.
    - `x`: the initial noise at `sigmas[0]`, e.g. `sigmas[0] * normal(key, shape)`.
    - `sigmas`: decreasing, `n + 1` entries, the last 0 (see `jaxdiff.schedules`).
    - `solver`: a sampler from `jaxdiff.samplers` (default `Heun()`).
    - `key`: PRNG key, required by stochastic samplers (`solver.stochastic`). A batch of keys,
      one per sample (shape `(batch,)`, e.g. from `jaxdiff.per_sample_keys`), makes the noise
      of every sample depend only on its own key, not on the batch: the sampler then runs
      under `jax.vmap` over samples (the denoiser sees batches of 1), and a sample's result is
      the same whatever batch, chunk or device it is computed in. A different noise stream
      from the single-key default; no `callback` in this mode.
    - `return_trajectory`: also return `x` at every sigma, shape `(n + 1, *x.shape)`.
    - `callback`: called on the host after every step with a dict (`i`, `sigma`,
      `sigma_next`, `x`, `denoised`); a host sync per step, for inspection only.

    **Returns:** the sample at sigma = 0, or `(sample, trajectory)`.
    """
    from .heun import Heun

    solver = Heun() if solver is None else solver
    if not isinstance(solver, AbstractSampler):
        raise TypeError(
            f"solver must be a jaxdiff.samplers sampler instance, got {type(solver).__name__}"
        )
    sigmas = check_sigmas(sigmas)
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"x must be a floating-point array, got dtype {x.dtype}")
    x = x.astype(x.dtype)  # strong dtype: a weakly typed x would compile a second program
    denoiser = as_denoiser(denoiser)
    if solver.stochastic:
        if key is None:
            raise ValueError(f"{type(solver).__name__} is stochastic: pass key=")
        if check_sample_key(key, x) and callback is not None:
            raise ValueError("callback is not supported with per-sample keys")
    elif key is not None:
        check_sample_key(key, x)
        key = None  # deterministic: the key is not used, and must not cause a recompile
    if callback is not None and not callable(callback):
        raise TypeError("callback must be callable")
    x_out, trajectory = _sample(
        denoiser, x, sigmas.astype(x.dtype), solver, key, bool(return_trajectory), callback
    )
    return (x_out, trajectory) if return_trajectory else x_out


@eqx.filter_jit
def _sample(denoiser, x, sigmas, solver, key, return_trajectory, callback):
    # the shape/dtype check runs while tracing, once per compilation, not on every call
    # (an abstract trace of the network costs milliseconds of Python per call)
    check_denoiser(denoiser, x, sigmas[0])
    if key is not None and is_per_sample_key(key):
        # one key per sample: run every sample alone (a batch of 1) under vmap, so that its
        # noise, and so its result, does not depend on the rest of the batch
        def row(x_row, key_row):
            out, traj = _run(
                denoiser, x_row[None], sigmas, solver, key_row, return_trajectory, None
            )
            return out[0], (None if traj is None else traj[:, 0])

        x_out, trajectory = jax.vmap(row)(x, key)
        return x_out, (None if trajectory is None else jnp.moveaxis(trajectory, 0, 1))
    return _run(denoiser, x, sigmas, solver, key, return_trajectory, callback)


def _run(denoiser, x, sigmas, solver, key, return_trajectory, callback):
    def denoise(x_, sigma):
        return denoiser(x_, sigma.astype(x_.dtype))

    n = sigmas.shape[0] - 1

    def one(x, carry, i, final):
        k = None if key is None else jr.fold_in(key, i)
        x_next, carry, denoised = solver.step(denoise, x, carry, i, sigmas, k, final=final)
        if callback is not None:
            info = dict(i=i, sigma=sigmas[i], sigma_next=sigmas[i + 1], x=x_next, denoised=denoised)
            jax.debug.callback(callback, info, ordered=True)
        return x_next, carry

    def body(state, i):
        x, carry = state
        x, carry = one(x, carry, i, False)
        return (x, carry), (x if return_trajectory else None)

    carry = solver.init(x, sigmas) if key is None else solver.init_with_key(x, sigmas, key)
    (x_last, carry), xs = jax.lax.scan(body, (x, carry), jnp.arange(n - 1))
    x_final, _ = one(x_last, carry, n - 1, True)
    if not return_trajectory:
        return x_final, None
    return x_final, jnp.concatenate([x[None], xs, x_final[None]])
