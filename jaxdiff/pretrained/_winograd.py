r"""Winograd's minimal filtering F(4x4, 3x3) for the U-Nets' 3x3 convolutions (Lavin & Gray
2016, "Fast Algorithms for Convolutional Neural Networks", after Winograd 1980).

A 3x3, stride-1, zero-padded ("same") convolution of `cin` to `cout` channels is computed on
6x6 input tiles that overlap by 2, each giving a 4x4 output tile:

$$Y = A^\top \big[(G g G^\top) \odot (B^\top d B)\big] A$$

per channel pair, summed over input channels. The sum over channels makes the elementwise
product 36 matrix products of `(tiles, cin) @ (cin, cout)`: 36 multiplications per 16
outputs instead of 144, 4x fewer, plus input and output transforms that are additions.
$G g G^\top$ (the kernel in the Winograd domain, `(6, 6, cin, cout)`) is computed once, when
the weights are loaded (`kernel_transform`, in float64), not in every call.

$A$, $G$, $B$ are Toom-Cook's interpolation matrices at the points 0, 1, -1, 2, -2 and
infinity (`toom_cook`, exact rationals). The result is the same convolution up to rounding:
in float64 to ~1e-15; in float32 the transforms add rounding (measured per layer: 1e-5 of
the output's largest value, against 1e-6 direct; through a whole U-Net 2.4-6.4e-6 from
diffusers' output, against 3e-6 direct).

Used by `jaxdiff.pretrained.from_diffusers(conv="winograd")` (the default on CPU), where
XLA's direct convolution is the bottleneck: 1.6-3x faster per layer on the CIFAR-10 DDPM
U-Net's shapes (`benchmarks/pretrained_speed.py`).
"""

from __future__ import annotations

from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np

#: Output tile size m of F(m x m, 3x3), and the input tile size m + 2.
TILE = 4
INPUT_TILE = TILE + 2
#: Toom-Cook's finite interpolation points for F(4, 3) (infinity is the last).
POINTS = (0, 1, -1, 2, -2)


def _times_linear(coeffs: list[Fraction], root: Fraction) -> list[Fraction]:
    """The coefficients (lowest degree first) of `poly(x) * (x - root)`."""
    out = [Fraction(0), *coeffs]
    for i in range(len(coeffs)):
        out[i] -= root * coeffs[i]
    return out


def toom_cook(m: int, r: int, points) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""`(AT, G, BT)` of the 1-D minimal filtering F(m, r) at the `m + r - 2` finite `points`
    and infinity: for an input `d` of `m + r - 1` values and a filter `g` of `r`,
    `AT @ ((G @ g) * (BT @ d))` is the correlation `y[i] = sum_k d[i + k] g[k]`, `i < m`.

    Built from exact rationals: `G` evaluates the filter polynomial at each point (divided by
    the Lagrange denominator), `BT` holds the coefficients of the other points' products,
    `AT` the output polynomial's values (a Vandermonde matrix), infinity giving the leading
    coefficients."""
    pts = [Fraction(p) for p in points]
    n = m + r - 1
    if len(pts) != n - 1 or len(set(pts)) != len(pts):
        raise ValueError(f"F({m}, {r}) needs {n - 1} distinct finite points, got {points}")
    at = [[p**i for p in pts] + [Fraction(int(i == m - 1))] for i in range(m)]
    g, bt = [], []
    for j, pj in enumerate(pts):
        others = [p for k, p in enumerate(pts) if k != j]
        denominator = Fraction(1)
        poly = [Fraction(1)]
        for p in others:
            denominator *= pj - p
            poly = _times_linear(poly, p)
        g.append([pj**k / denominator for k in range(r)])
        bt.append(poly + [Fraction(0)] * (n - len(poly)))
    g.append([Fraction(int(k == r - 1)) for k in range(r)])
    full = [Fraction(1)]
    for p in pts:
        full = _times_linear(full, p)
    bt.append(full)
    return tuple(np.array([[float(v) for v in row] for row in mat]) for mat in (at, g, bt))


AT, G, BT = toom_cook(TILE, 3, POINTS)


def kernel_transform(kernel) -> np.ndarray:
    """The Winograd-domain kernel `G g G^T`: `(3, 3, cin, cout)` -> `(6, 6, cin, cout)`,
    computed in float64 (numpy)."""
    kernel = np.asarray(kernel, np.float64)
    if kernel.shape[:2] != (3, 3):
        raise ValueError(f"kernel must have shape (3, 3, cin, cout), got {kernel.shape}")
    return np.einsum("ak,klio,bl->abio", G, kernel, G)


def _combine(parts, coeffs):
    """`sum_k coeffs[k] * parts[k]`, skipping zeros and multiplying only where needed."""
    out = None
    for c, part in zip(coeffs, parts, strict=True):
        if c == 0:
            continue
        term = part if c == 1 else -part if c == -1 else float(c) * part
        out = term if out is None else out + term
    return out


def _transform_axis(z, axis: int, tiles: int):
    """`BT` along `axis` of `z` for `tiles` overlapping tiles: the `INPUT_TILE` rows
    `z[TILE * i + k]` combined per `BT` row."""
    rows = [
        jax.lax.slice_in_dim(z, k, k + TILE * (tiles - 1) + 1, TILE, axis)
        for k in range(INPUT_TILE)
    ]
    return [_combine(rows, BT[i]) for i in range(INPUT_TILE)]


def conv3x3(x, winograd_kernel):
    """The 3x3, stride-1, padding-1 convolution of NHWC `x` with a kernel in the Winograd
    domain (`kernel_transform`'s `(6, 6, cin, cout)`): NHWC `(batch, height, width, cout)`.
    Any height and width (the tiles' remainder is zero-padded and cropped)."""
    batch, height, width, cin = x.shape
    cout = winograd_kernel.shape[-1]
    th, tw = -(-height // TILE), -(-width // TILE)
    xp = jnp.pad(x, ((0, 0), (1, 1 + th * TILE - height), (1, 1 + tw * TILE - width), (0, 0)))
    # B^T d B, one separable axis after the other: (6, batch, th, W + 2, cin), then
    # (6, 6, batch, th, tw, cin)
    rows = jnp.stack(_transform_axis(xp, 1, th), 0)
    v = jnp.stack(_transform_axis(rows, 3, tw), 1)
    v = v.reshape(INPUT_TILE * INPUT_TILE, batch * th * tw, cin)
    u = winograd_kernel.reshape(INPUT_TILE * INPUT_TILE, cin, cout)
    m = jnp.einsum("pnc,pck->pnk", v, u).reshape(INPUT_TILE, INPUT_TILE, batch, th, tw, cout)
    # A^T m A, one axis after the other: (6, batch, th, 4, tw, cout), then the columns'
    # (batch, th, 4, tw, 4, cout), which interleave the tiles back into the image
    rows = jnp.stack([_combine([m[p] for p in range(INPUT_TILE)], AT[i]) for i in range(TILE)], 3)
    cols = [rows[q] for q in range(INPUT_TILE)]
    y = jnp.stack([_combine(cols, AT[j]) for j in range(TILE)], -2)
    y = y.reshape(batch, th * TILE, tw * TILE, cout)
    return y[:, :height, :width]
