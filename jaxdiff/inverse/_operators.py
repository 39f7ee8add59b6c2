r"""Linear measurement operators `A`: a dense matrix, a mask, a blur and a downsampling, each
with its forward application, its transpose (adjoint) and its dense matrix.

Every operator acts on a batch of samples `x` of shape `(batch, *sample_shape)` and returns
`(batch, *output_shape(sample_shape))`; `transpose` maps back. `as_matrix(sample_shape)` is the
`(m, d)` matrix of the operator over the flattened sample (row-major, as `x.reshape(-1)`):
for the exact oracle (`jaxdiff.analytic`'s `posterior`) and for small-dimensional methods.
`spectrum(sample_shape)` is the operator's singular value decomposition `A = U diag(S) V^T`
in the form the posterior samplers use (closed form for masks and downsampling, a dense SVD
otherwise).
"""

from __future__ import annotations

import abc
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_count, check_positive, is_traced
from ._spectrum import DenseSpectrum, DownsampleSpectrum, MaskSpectrum, Spectrum

__all__ = ["AbstractOperator", "Blur", "Dense", "Downsample", "Mask"]


def _real_array(name: str, value) -> jax.Array:
    """`value` as a real floating-point jax array (integers and booleans are converted)."""
    try:
        arr = jnp.asarray(value)
    except Exception as e:
        raise TypeError(f"{name} must be a real array, got {type(value).__name__}") from e
    if arr.dtype == jnp.bool_ or jnp.issubdtype(arr.dtype, jnp.integer):
        arr = arr.astype(jnp.result_type(float))
    if not jnp.issubdtype(arr.dtype, jnp.floating):
        raise TypeError(f"{name} must be a real array, got dtype {arr.dtype}")
    return arr


def _spatial(sample_shape: tuple[int, ...], who: str) -> None:
    """Image operators act on samples shaped `(H, W)` or `(H, W, C)` (channels last)."""
    if len(sample_shape) not in (2, 3):
        raise ValueError(
            f"{who} acts on images: samples must be shaped (H, W) or (H, W, C) (channels "
            f"last), got sample shape {sample_shape}"
        )


class AbstractOperator(eqx.Module):
    """A linear operator `A` over samples of some shape, with its transpose.

    A concrete operator implements `output_shape`, `apply`, `transpose` and `as_matrix`;
    `spectrum` defaults to the SVD of `as_matrix` (small samples only)."""

    @abc.abstractmethod
    def output_shape(self, sample_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The shape of one observation of a sample shaped `sample_shape`; a `ValueError`
        when the operator cannot act on such samples."""

    @abc.abstractmethod
    def apply(self, x: jax.Array) -> jax.Array:
        """`A x` for a batch `x` of shape `(batch, *sample_shape)`."""

    @abc.abstractmethod
    def transpose(self, y: jax.Array, sample_shape: tuple[int, ...]) -> jax.Array:
        """`A^T y` for a batch `y` of shape `(batch, *output_shape(sample_shape))`."""

    @abc.abstractmethod
    def as_matrix(self, sample_shape: tuple[int, ...]) -> jax.Array:
        """The dense `(m, d)` matrix over flattened samples (`m`, `d` the sizes of one
        observation and of one sample)."""

    def spectrum(self, sample_shape: tuple[int, ...], dtype) -> Spectrum:
        """`A = U diag(S) V^T` (see `jaxdiff.inverse._spectrum`); by default the thin SVD of
        `as_matrix(sample_shape)` (a dense `(m, d)` matrix: small samples only)."""
        return DenseSpectrum.from_matrix(self.as_matrix(sample_shape).astype(dtype), sample_shape)

    def observed(self, y: jax.Array) -> jax.Array:
        """`y` with the entries that carry no information zeroed (a mask's unobserved
        pixels); the identity for operators without such entries."""
        return y


class Dense(AbstractOperator):
    """A dense matrix `A` of shape `(m, d)` acting on the flattened sample (`x.reshape(-1)`,
    row-major) of any shape with `d` entries; observations have shape `(m,)`."""

    matrix: jax.Array

    def __init__(self, matrix):
        matrix = _real_array("A", matrix)
        if matrix.ndim != 2 or 0 in matrix.shape:
            raise ValueError(
                f"A as a matrix must be 2-D of shape (m, d) over the flattened sample, got "
                f"shape {matrix.shape}"
            )
        if not is_traced(matrix) and not bool(jnp.all(jnp.isfinite(matrix))):
            raise ValueError("A must be finite (no NaN or inf)")
        self.matrix = matrix

    def output_shape(self, sample_shape):
        d = math.prod(sample_shape)
        if d != self.matrix.shape[1]:
            raise ValueError(
                f"A has {self.matrix.shape[1]} columns but a sample of shape {sample_shape} "
                f"has {d} entries"
            )
        return (self.matrix.shape[0],)

    def apply(self, x):
        return x.reshape(x.shape[0], -1) @ self.matrix.T.astype(x.dtype)

    def transpose(self, y, sample_shape):
        return (y @ self.matrix.astype(y.dtype)).reshape(y.shape[0], *sample_shape)

    def as_matrix(self, sample_shape):
        self.output_shape(sample_shape)
        return self.matrix


class Mask(AbstractOperator):
    """Inpainting: `A x = mask * x` with a 0/1 `mask` shaped like one sample (1: observed).
    Observations are shaped like a sample; their unobserved entries are ignored. As a matrix,
    `diag(mask)` (with zero rows for the unobserved entries, which carry only noise)."""

    mask: jax.Array

    def __init__(self, mask):
        mask = _real_array("mask", mask)
        if mask.ndim < 1:
            raise ValueError("mask must be shaped like one sample (at least 1-D), got a scalar")
        if not is_traced(mask):
            values = np.asarray(mask)
            if not np.all((values == 0) | (values == 1)):
                raise ValueError("mask must hold only 0 (unobserved) and 1 (observed)")
        self.mask = mask

    def output_shape(self, sample_shape):
        if tuple(sample_shape) != self.mask.shape:
            raise ValueError(
                f"mask must be shaped like one sample {tuple(sample_shape)}, got shape "
                f"{self.mask.shape}"
            )
        return tuple(sample_shape)

    def apply(self, x):
        return x * self.mask.astype(x.dtype)

    def transpose(self, y, sample_shape):
        del sample_shape
        return y * self.mask.astype(y.dtype)

    def as_matrix(self, sample_shape):
        self.output_shape(sample_shape)
        return jnp.diag(self.mask.reshape(-1))

    def spectrum(self, sample_shape, dtype):
        self.output_shape(sample_shape)
        return MaskSpectrum(self.mask.astype(dtype))

    def observed(self, y):
        return y * self.mask.astype(y.dtype)


def gaussian_kernel(size: int, std: float) -> jax.Array:
    """A normalized 2-D Gaussian kernel of odd `size` and standard deviation `std` (pixels)."""
    size = check_count("size", size)
    if size % 2 == 0:
        raise ValueError(f"size must be odd (a centred kernel), got {size}")
    check_positive("std", std)
    r = np.arange(size) - size // 2
    g = np.exp(-(r**2) / (2.0 * float(std) ** 2))
    k = np.outer(g, g)
    return jnp.asarray(k / k.sum())


class Blur(AbstractOperator):
    """Deblurring: the 2-D convolution of every channel of an image (`(H, W)` or `(H, W, C)`)
    with `kernel` (shape `(kh, kw)`, both odd), zero 'same' padding: observations are shaped
    like the image. Its transpose is the correlation with the same kernel (the convolution with
    the flipped kernel). `Blur.gaussian(size, std)` builds a Gaussian blur."""

    kernel: jax.Array

    def __init__(self, kernel):
        kernel = _real_array("kernel", kernel)
        if kernel.ndim != 2 or any(s % 2 == 0 for s in kernel.shape):
            raise ValueError(
                f"kernel must be 2-D with odd sizes (kh, kw) (centred, 'same' padding), got "
                f"shape {kernel.shape}"
            )
        self.kernel = kernel

    @classmethod
    def gaussian(cls, size: int = 5, std: float = 1.0) -> Blur:
        """A Gaussian blur: `gaussian_kernel(size, std)`."""
        return cls(gaussian_kernel(size, std))

    def output_shape(self, sample_shape):
        _spatial(sample_shape, "Blur")
        return tuple(sample_shape)

    def _correlate(self, x, kernel):
        image = x if x.ndim == 4 else x[..., None]
        channels = image.shape[-1]
        kh, kw = kernel.shape
        rhs = jnp.broadcast_to(kernel.astype(x.dtype)[:, :, None, None], (kh, kw, 1, channels))
        out = jax.lax.conv_general_dilated(
            image,
            rhs,
            window_strides=(1, 1),
            padding=((kh // 2, kh // 2), (kw // 2, kw // 2)),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            feature_group_count=channels,
        )
        return out.reshape(x.shape)

    def apply(self, x):
        # lax.conv is a correlation: a convolution correlates with the flipped kernel
        return self._correlate(x, self.kernel[::-1, ::-1])

    def transpose(self, y, sample_shape):
        del sample_shape
        return self._correlate(y, self.kernel)

    def as_matrix(self, sample_shape):
        _spatial(sample_shape, "Blur")
        h, w = sample_shape[:2]
        c = sample_shape[2] if len(sample_shape) == 3 else 1
        kh, kw = self.kernel.shape
        rows, cols, taps = [], [], []
        index = np.arange(h * w * c).reshape(h, w, c)
        for a in range(kh):
            for b in range(kw):
                # (A x)[i, j] = sum_{a, b} k[a, b] x[i - a + kh // 2, j - b + kw // 2]
                i = np.arange(h)[:, None, None]
                j = np.arange(w)[None, :, None]
                si, sj = i - a + kh // 2, j - b + kw // 2
                ok = (si >= 0) & (si < h) & (sj >= 0) & (sj < w)
                ok = np.broadcast_to(ok, (h, w, c))
                out_idx = np.broadcast_to(index, (h, w, c))[ok]
                src = index[np.clip(si, 0, h - 1), np.clip(sj, 0, w - 1), np.arange(c)]
                rows.append(out_idx)
                cols.append(np.broadcast_to(src, (h, w, c))[ok])
                taps.append(np.full(out_idx.shape, a * kw + b))
        rows, cols, taps = (np.concatenate(v) for v in (rows, cols, taps))
        values = self.kernel.reshape(-1)[taps]
        d = h * w * c
        return jnp.zeros((d, d), self.kernel.dtype).at[rows, cols].add(values)


class Downsample(AbstractOperator):
    """Super-resolution: average pooling of an image (`(H, W)` or `(H, W, C)`) over
    non-overlapping `factor x factor` blocks (H and W divisible by `factor`): observations are
    shaped `(H / factor, W / factor[, C])`. Its transpose spreads every value back over its
    block, divided by `factor^2`."""

    factor: int = eqx.field(static=True)

    def __init__(self, factor: int):
        self.factor = check_count("factor", factor)

    def output_shape(self, sample_shape):
        _spatial(sample_shape, "Downsample")
        h, w = sample_shape[:2]
        k = self.factor
        if h % k or w % k:
            raise ValueError(
                f"Downsample(factor={k}) needs image sides divisible by {k}, got sample shape "
                f"{tuple(sample_shape)}"
            )
        return (h // k, w // k, *sample_shape[2:])

    def apply(self, x):
        k = self.factor
        b, h, w = x.shape[:3]
        blocks = x.reshape(b, h // k, k, w // k, k, *x.shape[3:])
        return blocks.mean(axis=(2, 4))

    def transpose(self, y, sample_shape):
        del sample_shape
        k = self.factor
        spread = jnp.repeat(jnp.repeat(y, k, axis=1), k, axis=2)
        return spread / (k * k)

    def as_matrix(self, sample_shape):
        out = self.output_shape(sample_shape)
        h, w = sample_shape[:2]
        c = sample_shape[2] if len(sample_shape) == 3 else 1
        k = self.factor
        i, j, ch = np.meshgrid(np.arange(h), np.arange(w), np.arange(c), indexing="ij")
        rows = ((i // k) * (w // k) + j // k) * c + ch
        cols = (i * w + j) * c + ch
        matrix = np.zeros((math.prod(out), h * w * c))
        matrix[rows.ravel(), cols.ravel()] = 1.0 / (k * k)
        return jnp.asarray(matrix)

    def spectrum(self, sample_shape, dtype):
        self.output_shape(sample_shape)
        return DownsampleSpectrum(self.factor, tuple(sample_shape), jnp.dtype(dtype))
