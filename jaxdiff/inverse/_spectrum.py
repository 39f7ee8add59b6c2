r"""The singular value decomposition of a measurement operator, in the form the posterior
samplers use.

With `A = U diag(S) V^T` (thin; `V^T x` the sample's coordinates along the right singular
vectors), an observation `y = A x_0 + s n` is, coordinate by coordinate,
`z_j = (U^T y)_j / S_j = (V^T x_0)_j + (s / S_j) n_j`: independent noisy views of the
coordinates `V^T x_0` (noise std `s / S_j`), and nothing about the rest of `x_0`. PiGDM's and
TMPD's solves `(A C A^T + s^2 I)^{-1}` and the SMC sampler's proposals are closed form in these
coordinates. A mask (`V` picks the observed pixels, `S = 1`) and an average pooling (`V` the
normalized block indicators, `S = 1 / factor`) have them in closed form; any other operator
gets the SVD of its dense matrix.

Coordinates are flat, `(batch, num)`; `values` is `S` with 0 where a coordinate carries no
information (`keep` False: an unobserved pixel, a null direction of a rank-deficient `A`).
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax
import jax.numpy as jnp

__all__ = ["DenseSpectrum", "DownsampleSpectrum", "MaskSpectrum", "Spectrum"]


class Spectrum(eqx.Module):
    """`A = U diag(S) V^T` in flat coordinates (see the module docstring)."""

    @property
    @abc.abstractmethod
    def values(self) -> jax.Array:
        """`S`, shape `(num,)`, 0 where `keep` is False."""

    @property
    def keep(self) -> jax.Array:
        """Which coordinates are observed (`S > 0`)."""
        return self.values > 0

    @property
    @abc.abstractmethod
    def diagonal(self) -> bool:
        """Whether `V^T diag(c) V` is diagonal for every `c` (then `weighted_gram` returns its
        diagonal)."""

    @abc.abstractmethod
    def project(self, x: jax.Array) -> jax.Array:
        """`V^T x`: `(batch, *sample_shape) -> (batch, num)`."""

    @abc.abstractmethod
    def lift(self, c: jax.Array) -> jax.Array:
        """`V c`: `(batch, num) -> (batch, *sample_shape)`."""

    @abc.abstractmethod
    def u_t(self, y: jax.Array) -> jax.Array:
        """`U^T y`: `(batch, *observation_shape) -> (batch, num)`."""

    @abc.abstractmethod
    def weighted_gram(self, c: jax.Array) -> jax.Array:
        """`V^T diag(c) V` for `c` shaped `(batch, *sample_shape)`: `(batch, num)` (its
        diagonal) when `diagonal`, else `(batch, num, num)`."""


class MaskSpectrum(Spectrum):
    """A mask: the coordinates are the pixels, `S` the mask itself."""

    mask: jax.Array

    @property
    def values(self):
        return self.mask.reshape(-1)

    @property
    def diagonal(self):
        return True

    def project(self, x):
        return (x * self.mask).reshape(x.shape[0], -1)

    def lift(self, c):
        return c.reshape(c.shape[0], *self.mask.shape) * self.mask

    def u_t(self, y):
        return (y * self.mask).reshape(y.shape[0], -1)

    def weighted_gram(self, c):
        return (c * self.mask).reshape(c.shape[0], -1)


class DownsampleSpectrum(Spectrum):
    """Average pooling over `factor x factor` blocks: the coordinates are the blocks
    (`V`'s columns the block indicators over `factor`), `S = 1 / factor`, `U = I`."""

    factor: int = eqx.field(static=True)
    sample_shape: tuple[int, ...] = eqx.field(static=True)
    dtype: jnp.dtype = eqx.field(static=True)

    @property
    def values(self):
        h, w = self.sample_shape[:2]
        k = self.factor
        num = (h // k) * (w // k) * (self.sample_shape[2] if len(self.sample_shape) == 3 else 1)
        return jnp.full((num,), 1.0 / k, self.dtype)

    @property
    def diagonal(self):
        return True

    def _block_sum(self, x):
        k = self.factor
        b, h, w = x.shape[:3]
        return x.reshape(b, h // k, k, w // k, k, *x.shape[3:]).sum(axis=(2, 4))

    def project(self, x):
        return (self._block_sum(x) / self.factor).reshape(x.shape[0], -1)

    def lift(self, c):
        k = self.factor
        h, w = self.sample_shape[:2]
        blocks = c.reshape(c.shape[0], h // k, w // k, *self.sample_shape[2:])
        return jnp.repeat(jnp.repeat(blocks, k, axis=1), k, axis=2) / k

    def u_t(self, y):
        return y.reshape(y.shape[0], -1)

    def weighted_gram(self, c):
        return (self._block_sum(c) / self.factor**2).reshape(c.shape[0], -1)


class DenseSpectrum(Spectrum):
    """The thin SVD of a dense `(m, d)` matrix; singular values below `max(m, d) eps S_max`
    count as 0 (a rank-deficient `A`)."""

    u: jax.Array  # (m, r)
    s: jax.Array  # (r,)
    vt: jax.Array  # (r, d)
    sample_shape: tuple[int, ...] = eqx.field(static=True)

    @classmethod
    def from_matrix(cls, matrix: jax.Array, sample_shape) -> DenseSpectrum:
        u, s, vt = jnp.linalg.svd(matrix, full_matrices=False)
        tol = max(matrix.shape) * jnp.finfo(matrix.dtype).eps * s[0]
        return cls(u, jnp.where(s > tol, s, 0.0), vt, tuple(sample_shape))

    @property
    def values(self):
        return self.s

    @property
    def diagonal(self):
        return False

    def project(self, x):
        return x.reshape(x.shape[0], -1) @ self.vt.T

    def lift(self, c):
        return (c @ self.vt).reshape(c.shape[0], *self.sample_shape)

    def u_t(self, y):
        return y.reshape(y.shape[0], -1) @ self.u

    def weighted_gram(self, c):
        flat = c.reshape(c.shape[0], 1, -1)
        return (self.vt[None] * flat) @ self.vt.T
