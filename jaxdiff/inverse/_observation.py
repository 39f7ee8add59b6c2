r"""A linear observation with Gaussian noise, `y = A x_0 + noise_std * n`, `n ~ N(0, I)`."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from .._checks import check_float_array, check_positive
from ._operators import AbstractOperator, Dense, Mask

__all__ = ["LinearObservation"]


class LinearObservation(eqx.Module):
    r"""The observation `y = A x_0 + noise_std * n` of a sample `x_0`, `n ~ N(0, I)`.

    **Arguments:**

    - `A`: a matrix of shape `(m, d)` over the flattened sample (`x_0.reshape(-1)`), or an
      operator from `jaxdiff.inverse`: `Dense(matrix)`, `Mask(mask)` (inpainting),
      `Blur(kernel)` / `Blur.gaussian(size, std)` (deblurring), `Downsample(factor)`
      (super-resolution).
    - `y`: one observation (shape `A`'s output for one sample, e.g. `(m,)` for a matrix, the
      sample's shape for a mask or a blur), broadcast to every sample; or one per sample,
      `(batch, ...)`, matched to the rows of `x` in `jaxdiff.inverse.sample`. A mask's
      unobserved entries are ignored (zeroed).
    - `noise_std`: the noise's standard deviation, `>= 0`.

    An observation is a pytree whose `y` and `noise_std` are leaves: a new observation of the
    same shape reuses the compiled sampler. `dense(sample_shape)` gives `(A, y)` as a dense
    matrix and flat observations: with `noise_std`, the arguments of the exact posterior
    `mixture.posterior(A, y, noise_std)` of `jaxdiff.analytic`.
    """

    operator: AbstractOperator
    y: jax.Array
    noise_std: jax.Array

    def __init__(self, A, y, noise_std):
        if isinstance(A, AbstractOperator):
            operator = A
        elif isinstance(A, eqx.Module) or callable(A):
            raise TypeError(
                "A must be a matrix of shape (m, d) or a jaxdiff.inverse operator (Dense, "
                f"Mask, Blur, Downsample), got {type(A).__name__}"
            )
        else:
            operator = Dense(A)
        y = check_float_array("y", y)
        check_positive("noise_std", noise_std, allow_zero=True)
        if isinstance(operator, Dense):
            m = operator.matrix.shape[0]
            if y.ndim not in (1, 2) or y.shape[-1] != m:
                raise ValueError(
                    f"y must have shape (m,) = ({m},) (one observation) or (batch, {m}) (one "
                    f"per sample) to match A of shape {operator.matrix.shape}, got shape "
                    f"{y.shape}"
                )
        if isinstance(operator, Mask):
            shape = operator.mask.shape
            if y.shape[y.ndim - len(shape) :] != shape or y.ndim > len(shape) + 1:
                raise ValueError(
                    f"y must be shaped like the mask {shape} (one observation) or (batch, "
                    f"*{shape}) (one per sample), got shape {y.shape}"
                )
        self.operator = operator
        self.y = operator.observed(y)
        self.noise_std = jnp.asarray(noise_std, y.dtype)

    def observation_shape(self, sample_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The shape of one observation of a sample shaped `sample_shape`."""
        return self.operator.output_shape(tuple(sample_shape))

    def per_sample(self, x: jax.Array) -> bool:
        """Checks `y` against a batch `x` of samples: whether `y` holds one observation per
        sample (else one, shared). A `ValueError` naming what does not match."""
        sample_shape = tuple(x.shape[1:])
        try:
            shape = self.observation_shape(sample_shape)
        except ValueError as e:
            raise ValueError(f"observation: {e}") from None
        if self.y.shape == shape:
            return False
        if self.y.shape == (x.shape[0], *shape):
            return True
        raise ValueError(
            f"observation: y must have shape {shape} (one observation of a sample shaped "
            f"{sample_shape}) or {(x.shape[0], *shape)} (one per row of x), got {self.y.shape}"
        )

    def dense(self, sample_shape: tuple[int, ...]) -> tuple[jax.Array, jax.Array]:
        """`(A, y)` over flattened samples of shape `sample_shape`: `A` the dense `(m, d)`
        matrix, `y` of shape `(m,)` (one observation) or `(batch, m)` (one per sample). With
        `noise_std`, the arguments of the exact posterior `mixture.posterior(A, y, noise_std)`
        (`jaxdiff.analytic`). A mask's unobserved entries are rows of zeros in `A` (and zeros
        in `y`): they carry only noise, so they change no posterior when `noise_std > 0`."""
        sample_shape = tuple(sample_shape)
        shape = self.observation_shape(sample_shape)
        y = self.y.reshape(-1) if self.y.shape == shape else self.y.reshape(self.y.shape[0], -1)
        return self.operator.as_matrix(sample_shape), y

    def residual(self, x: jax.Array) -> jax.Array:
        """`y - A x` for a batch `x` (`y` broadcast or matched per row)."""
        return self.y - self.operator.apply(x)

    def with_y(self, y: jax.Array) -> LinearObservation:
        """The same observation with `y` replaced (no checks: for use inside `vmap`)."""
        return eqx.tree_at(lambda o: o.y, self, y)
