"""The one home of jaxdiff's boundary checks.

Every public entry point checks its arguments here, at the Python boundary, before anything is
compiled; every error names the argument and what was expected. One rule decides the type:

- `TypeError`: the argument is of the wrong *kind*: not an integer where a count is expected
  (a float or a bool included), not an array, not a floating dtype, not callable, not a PRNG
  key, not an instance of the expected class, not a name where a name is expected.
- `ValueError`: the kind is right but the *value* is wrong: out of range, the wrong shape,
  not finite, not decreasing, an unknown name.

Value checks run only on concrete values; a traced argument (inside `jit`) passes through to
the shape checks alone (`is_traced`).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np

__all__ = [
    "PairDenoiser",
    "check_callable",
    "check_choice",
    "check_count",
    "check_finite",
    "check_float_array",
    "check_float_dtype",
    "check_grid",
    "check_grid_at_runtime",
    "check_instance",
    "check_key",
    "check_model",
    "check_model_output",
    "check_nonnegative",
    "check_number",
    "check_positive",
    "check_range",
    "check_sample_key",
    "check_tolerances",
    "is_per_sample_key",
    "is_traced",
    "lookup",
    "strong",
]


def is_traced(x: Any) -> bool:
    """Whether any leaf of `x` is a JAX tracer (then its values are unknown at the boundary)."""
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jtu.tree_leaves(x))


def check_count(name: str, value: Any, *, minimum: int = 1) -> int:
    """A Python integer `>= minimum`: a float, a bool or an array is a `TypeError` (counts fix
    shapes and loop lengths, so they must be concrete integers); a smaller one a `ValueError`."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int >= {minimum}, got {value!r}")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(
            f"{name} must be an int >= {minimum}, got {type(value).__name__} {value!r}"
        ) from None
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value}")
    return int(value)


def check_number(name: str, value: Any) -> float | None:
    """A real scalar's value as a float, `None` when traced; `TypeError` for a non-number or a
    non-scalar array, `ValueError` for a non-finite value."""
    if is_traced(value):
        if jnp.ndim(value) != 0:
            raise ValueError(f"{name} must be a scalar, got shape {jnp.shape(value)}")
        return None
    if isinstance(value, bool) or value is None:
        raise TypeError(f"{name} must be a number, got {value!r}")
    try:
        arr = np.asarray(value)
    except Exception as e:
        raise TypeError(f"{name} must be a number, got {type(value).__name__}") from e
    if not (jnp.issubdtype(arr.dtype, jnp.floating) or jnp.issubdtype(arr.dtype, jnp.integer)):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    if arr.ndim != 0:
        raise ValueError(f"{name} must be a scalar, got shape {arr.shape}")
    v = float(arr)
    if not np.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}")
    return v


def check_positive(name: str, value: Any, *, allow_zero: bool = False) -> None:
    """`value > 0` (or `>= 0` with `allow_zero`), checked when concrete."""
    v = check_number(name, value)
    if v is not None and not (v >= 0 if allow_zero else v > 0):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {v}")


def check_nonnegative(name: str, value: Any) -> None:
    """Every entry of `value` (a scalar or an array, e.g. a noise level `sigma`) is `>= 0`;
    `inf` passes, `NaN` does not. Checked only when concrete (a concrete jax array is read back
    to the host): a traced value (inside `jit`, `vmap`, `grad`) passes unchecked. A
    non-numeric or complex value is a `TypeError`."""
    if is_traced(value):
        return
    try:
        arr = np.asarray(value)
    except Exception as e:
        raise TypeError(f"{name} must be a real number or array, got {type(value).__name__}") from e
    if arr.dtype == np.bool_ or not (
        jnp.issubdtype(arr.dtype, jnp.floating) or jnp.issubdtype(arr.dtype, jnp.integer)
    ):
        raise TypeError(f"{name} must be a real number or array, got {value!r}")
    bad = arr[~(arr >= 0)]
    if bad.size and arr.ndim == 0:
        raise ValueError(f"{name} must be >= 0, got {float(arr)}")
    if bad.size:
        raise ValueError(f"{name} must be >= 0, got {bad.size} entries < 0 or NaN, e.g. {bad[0]}")


def check_range(lo_name: str, lo: Any, hi_name: str, hi: Any, *, allow_zero: bool = False):
    """`0 < lo < hi` (or `0 <= lo < hi` with `allow_zero`), both finite, checked when concrete."""
    check_positive(lo_name, lo, allow_zero=allow_zero)
    check_positive(hi_name, hi)
    if not is_traced((lo, hi)) and not float(lo) < float(hi):
        raise ValueError(
            f"{lo_name} must be < {hi_name}, got {lo_name}={float(lo)}, {hi_name}={float(hi)}"
        )


def check_tolerances(steps: Any, rtol: Any, atol: Any, max_steps: Any) -> None:
    """The options of a solve that is fixed-step (`steps`, an int) or adaptive (`steps=None`:
    positive `rtol`, `atol`, at most `max_steps` steps)."""
    if steps is not None:
        check_count("steps", steps)
    else:
        check_positive("rtol", rtol)
        check_positive("atol", atol)
    check_count("max_steps", max_steps)


def strong(x: jax.Array) -> jax.Array:
    """`x` with a strong dtype: a weakly typed input (a Python float turned array) would
    otherwise compile a second program for the same shapes."""
    return x.astype(x.dtype)


def check_float_array(name: str, x: Any, *, batch: bool = False, min_ndim: int = 0) -> jax.Array:
    """`x` as a floating-point `jax.Array` with a strong dtype; with `batch`, batch-first with
    at least one sample; at least `min_ndim` dimensions (2: a batch of vectors or more)."""
    try:
        x = jnp.asarray(x)
    except Exception as e:
        raise TypeError(f"{name} must be a floating-point array, got {type(x).__name__}") from e
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{name} must be a floating-point array, got dtype {x.dtype}")
    if (batch and (x.ndim < 1 or x.shape[0] < 1)) or x.ndim < min_ndim:
        shape = (
            "(batch, ...)"
            if min_ndim < 2
            else "(batch, " + ", ".join(["d"] * (min_ndim - 1)) + ", ...)"
        )
        raise ValueError(f"{name} must be batch-first with shape {shape}, got shape {x.shape}")
    return strong(x)


def check_finite(name: str, x: jax.Array) -> jax.Array:
    """`x` with no NaN or inf. Concrete: a `ValueError` at once (one reduction on the device
    and one boolean read back). Traced (inside the caller's `jit`): `x` wrapped in
    `equinox.error_if`, which raises when the compiled program runs (one reduction). For
    entry points that are not on a hot path, e.g. before an adaptive solve, where a non-finite
    input would otherwise surface as "maximum number of steps reached"."""
    message = f"{name} must be finite (no NaN or inf)"
    if is_traced(x):
        return eqx.error_if(x, jnp.any(~jnp.isfinite(x)), message)
    finite = jnp.isfinite(x)
    if not bool(jnp.all(finite)):
        count = int(jnp.size(finite) - jnp.sum(finite))
        raise ValueError(f"{message}, got {count} non-finite of {jnp.size(finite)} values")
    return x


def check_float_dtype(name: str, dtype: Any) -> np.dtype:
    """A floating dtype, canonicalized for the current precision (`float64` is `float32`
    without x64); `None` is the default float dtype. Anything else is a `TypeError`."""
    if dtype is None:
        return jnp.result_type(float)
    try:
        floating = jnp.issubdtype(dtype, jnp.floating)
    except TypeError:
        floating = False
    if not floating:
        raise TypeError(f"{name} must be a floating dtype, got {dtype!r}")
    return jax.dtypes.canonicalize_dtype(dtype)


def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    """One of the names `choices` (a string option such as `kind="analytic"`): a non-string is
    a `TypeError`, an unknown name a `ValueError`; both list the choices."""
    expected = ", ".join(map(repr, choices))
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of {expected}, got {type(value).__name__} {value!r}")
    if value not in choices:
        raise ValueError(f"{name} must be one of {expected}, got {value!r}")
    return value


def check_instance(name: str, value: Any, cls: type, what: str) -> None:
    """`value` must be an instance of `cls`, described to the user as `what` (e.g. "a jaxdiff
    process")."""
    if not isinstance(value, cls):
        raise TypeError(f"{name} must be {what}, got {type(value).__name__}")


def check_callable(name: str, fn: Any, signature: str) -> None:
    """`fn` must be callable as `signature` (e.g. `"denoiser(x, sigma)"`)."""
    if not callable(fn):
        raise TypeError(f"{name} must be callable as {signature}, got {type(fn).__name__}")


def check_model_output(fn: Callable, args: tuple, like: jax.Array, call: str, like_name: str):
    """Traces `fn(*args)` abstractly (no FLOPs) and checks its output with `check_output`."""
    out = eqx.filter_eval_shape(fn, *args)
    if not isinstance(out, jax.ShapeDtypeStruct) or out.shape != like.shape:
        got = getattr(out, "shape", type(out).__name__)
        raise ValueError(
            f"{call} must return an array shaped like {like_name} {like.shape}, got {got}"
        )
    if out.dtype != like.dtype:
        raise ValueError(
            f"{call} must keep the dtype of {like_name} ({like.dtype}), got {out.dtype}"
        )


class PairDenoiser(eqx.Module):
    """A `(fn, params)` pair as a model: `fn(params, *args)`, with `params` traced so that new
    weights do not recompile."""

    fn: Callable = eqx.field(static=True)
    params: Any

    def __call__(self, *args):
        return self.fn(self.params, *args)


def check_model(name: str, model: Any, signature: str) -> Callable:
    """A model callable from a callable or a `(fn, params)` pair (`fn(params, ...)`)."""
    if isinstance(model, tuple):
        if len(model) != 2 or not callable(model[0]):
            raise TypeError(
                f"{name} as a tuple must be a (fn, params) pair with fn(params, ...) "
                f"standing for {signature}"
            )
        return PairDenoiser(model[0], model[1])
    if not callable(model):
        raise TypeError(
            f"{name} must be callable as {signature} or a (fn, params) pair, "
            f"got {type(model).__name__}"
        )
    return model


_KEY_FORMS = "a typed key of shape () from jax.random.key(seed), or a raw uint32[2]"


def _key_batch_shape(key: Any) -> tuple[int, ...] | None:
    """The batch shape of an array of PRNG keys (`()` for one key), `None` if not keys."""
    if not isinstance(key, jax.Array):
        return None
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return tuple(key.shape)
    if key.dtype == jnp.uint32 and key.ndim >= 1 and key.shape[-1] == 2:
        return tuple(key.shape[:-1])
    return None


def check_key(key: Any, name: str = "key") -> None:
    """One JAX PRNG key: a typed key array of shape `()` or a raw `uint32[2]`. An int seed or
    another non-key is a `TypeError`; a batch of keys a `ValueError` (`vmap` over keys for a
    batch of calls)."""
    batch = _key_batch_shape(key)
    if batch == ():
        return
    if batch is not None:
        raise ValueError(
            f"{name} must be one PRNG key ({_KEY_FORMS}), got an array of {batch} keys; "
            "vmap over keys for a batch of calls"
        )
    if isinstance(key, jax.Array):
        got = f"an array of {key.dtype}{key.shape}"
    elif isinstance(key, int | float | np.integer) and not isinstance(key, bool):
        got = f"{type(key).__name__} {key!r} (for a seed, pass jax.random.key({key!r}))"
    else:
        got = type(key).__name__
    raise TypeError(f"{name} must be a JAX PRNG key ({_KEY_FORMS}), got {got}")


def is_per_sample_key(key: Any) -> bool:
    """Whether `key` is a batch of keys (one per sample): typed keys of shape `(batch,)` or
    raw uint32 keys of shape `(batch, 2)`."""
    batch = _key_batch_shape(key)
    return batch is not None and len(batch) == 1


def check_sample_key(key: Any, x: jax.Array, name: str = "key") -> bool:
    """One key, or one per sample of batch-first `x` (typed keys of shape `(batch,)`, raw
    uint32 keys of shape `(batch, 2)`); returns whether it is per sample."""
    batch = _key_batch_shape(key)
    if batch is None or batch == ():
        check_key(key, name)
        return False
    n = x.shape[0] if x.ndim else "batch"
    if len(batch) > 1:
        raise ValueError(
            f"{name} must be one PRNG key (shape ()) or one key per sample (shape (batch,) = "
            f"({n},); raw uint32 keys: ({n}, 2)), got an array of {batch} keys"
        )
    if x.ndim < 1 or batch[0] != x.shape[0]:
        raise ValueError(
            f"per-sample {name}s must have one key per sample: got {batch[0]} keys for x of "
            f"shape {x.shape}"
        )
    return True


def check_grid(
    grid: Any,
    *,
    name: str = "sigmas",
    unit: str = "sigma",
    below: float | None = None,
    below_name: str = "",
    infinite_start: bool = False,
) -> jax.Array:
    """A fixed-sampler grid: 1-D, at least 2 entries, finite, strictly decreasing, ending at 0
    (the k-diffusion convention); with `below`, the first entry must be smaller; with
    `infinite_start`, the first entry (only) may be `inf` (pure noise). Values are checked only
    when concrete. Returns it as an array."""
    if not is_traced(grid):
        try:
            arr = np.asarray(grid, dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise TypeError(
                f"{name} must be a 1-D array of {unit} values, got {type(grid).__name__}"
            ) from e
        if arr.ndim != 1 or arr.shape[0] < 2:
            raise ValueError(f"{name} must be 1-D with at least 2 entries, got shape {arr.shape}")
        finite = arr[1:] if infinite_start and arr[0] == np.inf else arr
        if not np.all(np.isfinite(finite)):
            where = "finite after its first entry (only the first may be inf)"
            where = where if infinite_start else "finite"
            raise ValueError(f"{name} must be {where}, got {arr}")
        if not np.all(np.diff(arr) < 0):
            raise ValueError(
                f"{name} must be strictly decreasing (from the largest {unit} down to 0), got {arr}"
            )
        if arr[-1] != 0:
            raise ValueError(f"{name} must end at {unit} = 0, got {arr[-1]}")
        if below is not None and not arr[0] < below:
            where = f"{below_name} = {below}" if below_name else f"{below}"
            raise ValueError(f"{name} must start below {where}, got {arr[0]}")
    grid = jnp.asarray(grid)
    if grid.ndim != 1 or grid.shape[0] < 2:
        raise ValueError(f"{name} must be 1-D with at least 2 entries, got shape {grid.shape}")
    return grid


def check_grid_at_runtime(grid: jax.Array, *, name: str = "sigmas", unit: str = "sigma"):
    """`grid` wrapped in `equinox.error_if` checks that run with the compiled program: strictly
    decreasing and ending at 0 (a NaN fails both). For a grid traced by an outer `jit`, whose
    values `check_grid` cannot see; one reduction over the grid, outside any step loop."""
    decreasing = jnp.all(grid[1:] < grid[:-1])
    grid = eqx.error_if(
        grid,
        ~decreasing,
        f"{name} must be strictly decreasing (from the largest {unit} down to 0)",
    )
    return eqx.error_if(grid, grid[-1] != 0, f"{name} must end at {unit} = 0")


def lookup(
    name: str,
    value: Any,
    registry: Mapping[str, Callable[[], Any]],
    instance_of: type | tuple[type, ...],
    what: str,
) -> Any:
    """A solver (or sampler) given by instance or by name: an instance of `instance_of` passes
    through, a name in `registry` (name -> zero-argument factory) is built, anything else is a
    `TypeError` (wrong kind) or a `ValueError` (unknown name, listing the known ones)."""
    if isinstance(value, instance_of):
        return value
    if isinstance(value, str):
        if value not in registry:
            raise ValueError(
                f"unknown {name} {value!r}: expected one of the {what} names: {', '.join(registry)}"
            )
        return registry[value]()
    raise TypeError(
        f"{name} must be one of the {what} names ({', '.join(registry)}) or an instance, "
        f"got {type(value).__name__}"
    )
