"""DPM-Solver-v3: the multistep predictor-corrector on empirical model statistics (EMS)."""

from __future__ import annotations

import functools
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._checks import is_traced
from ._base import AbstractSampler

_SOLVER_TYPES = ("taylor", "midpoint")
_QUADRATURE_NODES = 32  # Chebyshev-Lobatto nodes per step for the integrals of the EMS


class DPMSolverV3Statistics(eqx.Module):
    r"""The empirical model statistics (EMS) of DPM-Solver-v3 on a grid of log-SNRs.

    In jaxdiff's sigma-space ($\alpha = 1$, $\lambda = -\log\sigma$) the statistics are, at
    every $\lambda$ of the table, three arrays shaped like one sample (or any shape that
    broadcasts to it, e.g. `()` for per-lambda scalars):

    - `l` ($l_\lambda$): the linear coefficient, $\mathbb E[\operatorname{diag}(I - \partial_x
      D)]$; the paper's $\sigma_\lambda\,\mathbb E[\operatorname{diag}\nabla_x\epsilon_\theta]$,
      the minimiser of $\mathbb E\,\|\nabla_x N_\theta\|_F^2$ with
      $N_\theta = \sigma\epsilon_\theta - l_\lambda x = (x - D) - l_\lambda x$;
    - `s`, `b` ($s_\lambda$, $b_\lambda$): the least-squares fit
      $f_\theta^{(1)} \approx s_\lambda f_\theta + b_\lambda$ of the total derivative along the
      ODE of $f_\theta = N_\theta$ (the paper's $f_\theta = N_\theta/\alpha$; $\alpha = 1$ here).

    They are the same numbers as the paper's for a VP model (its $x_t/\alpha_t$ is jaxdiff's
    `x`, its $\lambda_t = \log(\alpha_t/\sigma_t)$ is $-\log\sigma$ here), so the official
    code's files load directly: `lambdas` the uniform log-SNR grid they were computed on (from
    $\lambda_T$ up to $\lambda_0$), `l` from `l.npz`, `s`, `b` from `sb.npz`.

    The solver interpolates them piecewise linearly in $\lambda$ and holds them constant
    beyond the ends of the table. `l = 1`, `s = b = 0` (`degenerated()`) is the data
    prediction of DPM-Solver++ (Zheng et al. 2023, App. A.2).

    **Fields:** `lambdas` (shape `(M,)`, `M >= 2`, strictly increasing, finite), `l`, `s`, `b`
    (shape `(M, *shape)`, all the same). Values are checked when concrete; shapes always.
    An equinox Module: passed to a compiled function (inside the sampler), new statistics of
    the same shapes and dtypes do not recompile. Estimated by
    `jaxdiff.samplers.estimate_dpm_solver_v3_statistics` (module
    `jaxdiff.samplers._dpm_solver_v3_statistics`).
    """

    lambdas: jax.Array
    l: jax.Array  # noqa: E741 (the paper's name)
    s: jax.Array
    b: jax.Array

    def __init__(self, lambdas, l, s, b):  # noqa: E741
        arrays = {}
        for name, value in (("lambdas", lambdas), ("l", l), ("s", s), ("b", b)):
            try:
                value = jnp.asarray(value)
            except Exception as e:
                raise TypeError(f"{name} must be a floating-point array") from e
            if not jnp.issubdtype(value.dtype, jnp.floating):
                value = value.astype(jnp.result_type(float))
            arrays[name] = value
        lam = arrays["lambdas"]
        if lam.ndim != 1 or lam.shape[0] < 2:
            raise ValueError(f"lambdas must have shape (M,) with M >= 2, got shape {lam.shape}")
        for name in ("l", "s", "b"):
            shape = arrays[name].shape
            if len(shape) < 1 or shape[0] != lam.shape[0]:
                raise ValueError(
                    f"{name} must have shape (M, ...) with M = len(lambdas) = {lam.shape[0]}, "
                    f"got shape {shape}"
                )
            if shape != arrays["l"].shape:
                raise ValueError(
                    f"{name} must have the shape of l {arrays['l'].shape}, got shape {shape}"
                )
        if not is_traced(lam):
            lam_np = np.asarray(lam)
            if not np.all(np.isfinite(lam_np)) or not np.all(np.diff(lam_np) > 0):
                raise ValueError(
                    "lambdas must be finite and strictly increasing (log-SNR, "
                    f"lambda = -log sigma), got {lam_np}"
                )
        for name in ("l", "s", "b"):
            if not is_traced(arrays[name]) and not bool(jnp.all(jnp.isfinite(arrays[name]))):
                raise ValueError(f"{name} must be finite (no NaN or inf)")
        self.lambdas, self.l, self.s, self.b = (arrays[k] for k in ("lambdas", "l", "s", "b"))

    @classmethod
    def degenerated(cls, dtype=None) -> DPMSolverV3Statistics:
        """`l = 1`, `s = b = 0` (per-lambda scalars): DPM-Solver-v3 is then DPM-Solver++ in
        data prediction (the official code's `degenerated=True`)."""
        dtype = jnp.result_type(float) if dtype is None else dtype
        ones, zeros = jnp.ones((2,), dtype), jnp.zeros((2,), dtype)
        return cls(jnp.array([0.0, 1.0], dtype), ones, zeros, zeros)

    @property
    def shape(self) -> tuple[int, ...]:
        """The per-lambda shape of `l`, `s`, `b`."""
        return tuple(self.l.shape[1:])


def _interp(lambdas, table, lam):
    """`table` (shape `(M, *shape)`) piecewise linear in `lambdas`, at `lam` (any shape),
    constant beyond the ends. Shape `(*lam.shape, *shape)`; a constant table is exact."""
    m = lambdas.shape[0]
    idx = jnp.searchsorted(lambdas, lam, side="right", method="compare_all")
    idx = jnp.clip(idx - 1, 0, m - 2)
    lo, hi = lambdas[idx], lambdas[idx + 1]
    w = jnp.clip((lam - lo) / (hi - lo), 0, 1)
    w = w.reshape(w.shape + (1,) * (table.ndim - 1))
    return table[idx] + w * (table[idx + 1] - table[idx])


@functools.cache
def _chebyshev_cumulative(q: int):
    """Chebyshev-Lobatto nodes on [0, 1] (ascending, both ends included) and the matrix whose
    row k gives the integral from 0 to node k of the polynomial interpolant through the
    nodes (spectral integration; the last row holds the Clenshaw-Curtis weights)."""
    cheb = np.polynomial.chebyshev
    x = -np.cos(np.pi * np.arange(q) / (q - 1))
    vander = cheb.chebvander(x, q - 1)
    eye = np.eye(q)
    integrals = np.stack([cheb.chebval(x, cheb.chebint(eye[j], lbnd=-1)) for j in range(q)], 1)
    return (x + 1) / 2, integrals @ np.linalg.inv(vander) / 2


class _Interval(NamedTuple):
    """The integrals of the EMS over one step `[lam_s, lam_t]`, relative to `lam_s`, with
    `Lt(u) = int_s^u l`, `St(u) = int_s^u s`, `Bt(u) = int_s^u e^{-St} b`:

    - `decay`: `e^{-Lt(lam_t)}`, the factor on `x_s`;
    - `w[j]`: `int e^{Lt + St - Lt(lam_t)} (lam - lam_s)^j dlam`, `j = 0 .. J`;
    - `bias`: `int e^{Lt + St - Lt(lam_t)} Bt dlam`;
    - `ds`, `db`: `St(lam_t)`, `Bt(lam_t)`, to carry `g` across steps.
    """

    decay: jax.Array
    w: jax.Array
    bias: jax.Array
    ds: jax.Array
    db: jax.Array


def _interval(stats: DPMSolverV3Statistics, lam_s, lam_t, num_w: int) -> _Interval:
    """`_Interval` by spectral quadrature on `_QUADRATURE_NODES` Chebyshev nodes (exact to
    rounding for `l`, `s`, `b` polynomial of low degree in lambda, e.g. the degenerated ones;
    for piecewise-linear tables the error falls like the square of the table's spacing)."""
    nodes, cumulative = _chebyshev_cumulative(_QUADRATURE_NODES)
    dtype = lam_s.dtype
    h = lam_t - lam_s
    u = h * jnp.asarray(nodes, dtype)
    ch = h * jnp.asarray(cumulative, dtype)  # cumulative integrals over [0, h]
    lam = lam_s + u
    l_u, s_u, b_u = (_interp(stats.lambdas, t, lam) for t in (stats.l, stats.s, stats.b))

    def cum(v):
        return jnp.tensordot(ch, v, axes=1)

    big_l, big_s = cum(l_u), cum(s_u)
    big_b = cum(jnp.exp(-big_s) * b_u)
    e = jnp.exp(big_l + big_s - big_l[-1])
    weights = ch[-1][:, None] * u[:, None] ** jnp.arange(num_w)  # (Q, J + 1)
    w = jnp.tensordot(weights.T, e, axes=1)
    bias = jnp.tensordot(ch[-1], e * big_b, axes=1)
    return _Interval(jnp.exp(-big_l[-1]), w, bias, big_s[-1], big_b[-1])


def _taylor_coefficients(lams, g, n, pseudo: bool):
    """`c_j`, `j = 1 .. N` (`N = len(lams) - 1`, static), of `g(lam) ~ g_0 + sum_j c_j
    (lam - lams[0])^j` from the first `n + 1` points (`n` traced, `<= N`; `c_j = 0` for
    `j > n`). `pseudo=False`: the interpolating polynomial (its Taylor coefficients at
    `lams[0]`, from its Newton form); `pseudo=True`: `c_j` the `j`-th divided difference on
    points `0 .. j` (the paper's pseudo-order method, Sec. 3.3)."""
    num = len(lams) - 1
    table, divided = list(g), []
    for i in range(1, num + 1):
        table = [(table[j] - table[j + 1]) / (lams[j] - lams[j + i]) for j in range(num + 1 - i)]
        divided.append(jnp.where(i <= n, table[0], 0))
    if pseudo or num <= 1:
        return divided
    # Newton form sum_j divided[j] prod_{m < j} (u - d_m), u = lam - lams[0], in powers of u
    coeffs = [0.0] * (num + 1)
    basis = [1.0]  # the coefficients of prod_{m < j} (u - d_m) in powers of u
    for j in range(1, num + 1):
        d = lams[j - 1] - lams[0]
        basis = [
            (basis[k - 1] if k > 0 else 0.0) - (d * basis[k] if k < len(basis) else 0.0)
            for k in range(len(basis) + 1)
        ]
        for k in range(1, j + 1):
            coeffs[k] = coeffs[k] + basis[k] * divided[j - 1]
    return coeffs[1:]


def _update(iv: _Interval, x_s, lams, g, n, pseudo: bool, midpoint_h=None):
    """The paper's local approximation (Eq. 8 / Alg. 1): from `x_s` at `lams[0]` over the
    step of `iv`, with `g` at the points `lams` (`g[0]` at `lams[0]`), of order `n + 1`.
    `midpoint_h` (the step): at order 2 weight `c_1` by `h/2 w_0` instead of `w_1`."""
    c = _taylor_coefficients(lams, g, n, pseudo)
    x_t = iv.decay * x_s - iv.w[0] * g[0] - iv.bias
    for j in range(1, len(c) + 1):
        w_j = iv.w[j]
        if j == 1 and midpoint_h is not None:
            w_j = jnp.where(n == 1, 0.5 * midpoint_h * iv.w[0], w_j)
        x_t = x_t - w_j * c[j - 1]
    return x_t


class DPMSolverV3(AbstractSampler):
    r"""DPM-Solver-v3: the multistep predictor-corrector on empirical model statistics.

    Zheng, Lu, Chen & Zhu 2023, "DPM-Solver-v3: Improved Diffusion ODE Solver with Empirical
    Model Statistics" (NeurIPS 2023, arXiv 2310.13268), Alg. 1-2 and the official code
    (`DPM_Solver_v3.sample`). In jaxdiff's sigma-space ($\alpha = 1$,
    $\lambda = -\log\sigma$) the probability-flow ODE $dx/d\lambda = D - x$ is rewritten with
    the statistics $l, s, b$ (`DPMSolverV3Statistics`) as

    $$\frac{dx}{d\lambda} = -l_\lambda x - f_\theta,\qquad f_\theta = (x - D) - l_\lambda x,
    \qquad g_\theta = e^{-\int_{\lambda_s}^\lambda s}\, f_\theta
      - \int_{\lambda_s}^{\lambda} e^{-\int_{\lambda_s}^r s}\, b_r\,dr,$$

    so that with $L = \int l$ the exact solution from $\lambda_s$ to $\lambda_t$ is
    $x_t = e^{-L_{st}} x_s - \int e^{L_{s\lambda} + S_{s\lambda} - L_{st}}
    (g_\theta + B_{s\lambda})\,d\lambda$. The predictor of order $p$ expands $g_\theta$
    around $\lambda_s$ with the polynomial through $g$ at the current and the $p - 1$ previous
    points (`p_pseudo`: the paper's pseudo-order divided differences instead) and integrates
    it exactly against the statistics; the corrector (UniPC-style, Zhao et al. 2023) redoes
    the last step with the evaluation at the predicted point added to the points, order
    `p + 1` with `c_pseudo` (pseudo-order), `p` without, and keeps that evaluation
    ($f_\theta$ held fixed, as in the official code, so the corrector costs no evaluation).
    With `l = 1, s = b = 0` this is
    DPM-Solver++ in data prediction ($f_\theta = -D$, $g_\theta = -D$).

    The integrals of the statistics (interpolated piecewise linearly in $\lambda$ from their
    table, constant beyond it) are computed per step by spectral quadrature on 32
    Chebyshev nodes (cumulative integrals for the nested ones), once per call before the step
    loop; the official code instead snaps the grid to its table and integrates by trapezoids.

    **Degenerated statistics** (`DPMSolverV3.degenerated(...)`, and the default when
    `statistics` is None) integrate the Taylor polynomial exactly: without the corrector,
    order 1 is DDIM/Euler, order 2 the `"taylor"` DPM-Solver++(2M) (DPMpp3M's `"heun"`
    second-order step), order 3 `DPMpp3M(solver_type="heun", exact_third_order=True)`
    (DPMpp3M's default coefficient $\varphi_3$ is half the exact integral; see `DPMpp3M`).
    `solver_type="midpoint"` (a jaxdiff extension, not in the paper) weights the first
    derivative at order 2 by $\tfrac h2 \int e^{\dots}$ instead of $\int e^{\dots}(\lambda -
    \lambda_s)$, so `DPMSolverV3.degenerated(order=2, solver_type="midpoint",
    use_corrector=False)` is `DPMpp2M` and order 3 is
    `DPMpp3M(solver_type="midpoint", exact_third_order=True)` (to rounding in float64, on
    grids of fewer than 15 steps where both lower the order at the end alike). The corrector
    has UniC's structure (the new evaluation enters the points, the corrected `x` feeds the
    next predictor), not its coefficients: UniC weights its correction by $B(h)\rho$ with
    $\rho_1 = 1/2$, v3 integrates the (pseudo-)interpolant exactly, so no setting of `UniPC`
    equals it.

    The last step, to sigma = 0 ($\lambda = \infty$, outside every table) returns the
    denoiser output $D(x_{n-1};\sigma_{n-1})$, as the data-prediction solvers do; the
    corrector is not applied there (it would not change that output). Order `order` for the
    predictor (+1 with the corrector); 1 denoiser evaluation per step (NFE = steps).

    **Fields:** `statistics` (a `DPMSolverV3Statistics`; default None: the degenerated ones,
    so that `DPMSolverV3()` and the name `"dpm_solver_v3"` build DPM-Solver++ with this
    predictor-corrector; pass estimated statistics for DPM-Solver-v3 proper), `order` (1, 2
    or 3; default 3, the paper's choice for unconditional sampling, 2 for guided),
    `use_corrector` (default True, as the official code for few steps), `c_pseudo` (default
    False: the official EDM and ScoreSDE example scripts; its README example uses True),
    `p_pseudo` (default False; the official scripts switch it on at 5 steps),
    `lower_order_final` (default True: order `min(order, steps - i)` at step `i`, on every
    grid, as the official code), `solver_type` (`"taylor"`, the paper's, default; or
    `"midpoint"`, predictor only). The official `half` option (the corrector only for
    `t <= 0.5`, a VP time) is not provided. Statistics whose per-lambda shape does not
    broadcast to a sample's shape raise a `ValueError` (naming `statistics`) when the sampler
    is run. All options but `statistics` are static; `statistics` is a pytree of arrays, so
    new statistics of the same shapes do not recompile.

    Measured on 2-D mixtures (exact denoiser, float64, RMS error against a 2000-step Heun
    solve from the same noise `80 N(0, I)`; EMS estimated from 4096 samples on 100 to 400
    lambdas, medians over four tables), NFE 5 / 8 / 10, the defaults:

    - ring (`jaxdiff.analytic.ring()`): 0.11 / 0.094 / 0.18 on Karras grids and 0.30 / 0.11 /
      0.053 on log-SNR-uniform ones, against 1.8 / 1.15 / 0.65 and 2.1 / 0.30 / 0.24 with
      the degenerated statistics, and 0.51 / 0.52 / 0.29 and 0.65 / 0.21 / 0.092 for the best
      of `DPMpp2M`, `DPMpp3M`, `UniPC` (at NFE 5 on Karras grids the result varies with the
      table, 0.09 to 0.86);
    - 25-mode grid (`jaxdiff.analytic.grid()`): 0.63 / 0.36 / 0.18 (Karras) and 0.23 / 0.44 /
      0.22 (log-SNR), against 1.76 / 1.28 / 0.70 and 0.69 / 0.53 / 0.32 degenerated, and
      0.61 / 0.41 / 0.27 and 0.53 / 0.19 / 0.10 for the best of the others.

    Without the corrector the estimated statistics are not reliably better than the
    degenerated ones.

    From a grid that starts at `sigma = inf` (pure noise) `jaxdiff.sample` takes the exact
    limit of its first step, `x_1 = D(x, inf) + sigma_1 x` (the degenerated first step),
    then runs it from `sigma_1`.
    """

    statistics: DPMSolverV3Statistics
    order: int = eqx.field(static=True)
    use_corrector: bool = eqx.field(static=True)
    c_pseudo: bool = eqx.field(static=True)
    p_pseudo: bool = eqx.field(static=True)
    lower_order_final: bool = eqx.field(static=True)
    solver_type: str = eqx.field(static=True)

    def __init__(
        self,
        statistics: DPMSolverV3Statistics | None = None,
        *,
        order: int = 3,
        use_corrector: bool = True,
        c_pseudo: bool = False,
        p_pseudo: bool = False,
        lower_order_final: bool = True,
        solver_type: str = "taylor",
    ):
        self.statistics = DPMSolverV3Statistics.degenerated() if statistics is None else statistics
        self.order = order
        self.use_corrector = use_corrector
        self.c_pseudo = c_pseudo
        self.p_pseudo = p_pseudo
        self.lower_order_final = lower_order_final
        self.solver_type = solver_type

    def __check_init__(self):
        if not isinstance(self.statistics, DPMSolverV3Statistics):
            raise TypeError(
                "statistics must be a DPMSolverV3Statistics (or None: degenerated), "
                f"got {type(self.statistics).__name__}"
            )
        if (
            not isinstance(self.order, int | np.integer)
            or isinstance(self.order, bool)
            or (self.order not in (1, 2, 3))
        ):
            raise ValueError(f"DPMSolverV3 order must be 1, 2 or 3, got {self.order!r}")
        for name in ("use_corrector", "c_pseudo", "p_pseudo", "lower_order_final"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"DPMSolverV3 {name} must be a bool, got {getattr(self, name)!r}")
        if self.solver_type not in _SOLVER_TYPES:
            raise ValueError(
                f"DPMSolverV3 solver_type must be 'taylor' or 'midpoint', got {self.solver_type!r}"
            )

    @classmethod
    def degenerated(cls, order: int = 3, **options) -> DPMSolverV3:
        """DPM-Solver-v3 on `l = 1, s = b = 0`: DPM-Solver++ (see the class docstring)."""
        return cls(DPMSolverV3Statistics.degenerated(), order=order, **options)

    def nfe(self, num_steps: int) -> int:
        return num_steps

    # --- orders -----------------------------------------------------------------------------

    def _predictor_order(self, i, n):
        p = jnp.minimum(self.order, i + 1)
        return jnp.minimum(p, n - i) if self.lower_order_final else p

    @property
    def _corrector_points(self) -> int:
        """Static number of extra points the corrector may use (0: never corrects)."""
        if not self.use_corrector:
            return 0
        return self.order if self.c_pseudo else self.order - 1

    # --- the sampler ------------------------------------------------------------------------

    def _stats(self, x) -> DPMSolverV3Statistics:
        shape = self.statistics.shape
        sample = tuple(x.shape[1:])
        try:
            ok = np.broadcast_shapes(shape, sample) == sample
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(
                f"statistics have per-lambda shape {shape}, which does not broadcast to the "
                f"shape of a sample {sample} (x has shape {tuple(x.shape)})"
            )
        return jax.tree.map(lambda a: a.astype(x.dtype), self.statistics)

    def init(self, x, sigmas):
        stats = self._stats(x)
        n = sigmas.shape[0] - 1
        lam = -jnp.log(sigmas[:-1])  # lambda of every point but the last (sigma = 0)
        l_nodes = _interp(stats.lambdas, stats.l, lam)
        if n > 1:
            intervals = jax.vmap(lambda a, b: _interval(stats, a, b, self.order + 1))(
                lam[:-1], lam[1:]
            )
            # `order` neutral intervals in front: step i reads intervals i - order .. i
            pad = [
                (jnp.ones_like if k == 0 else jnp.zeros_like)(a[:1])
                for k, a in enumerate(intervals)
            ]
            pad = _Interval(*pad)  # decay 1, no weights, no bias
            intervals = jax.tree.map(
                lambda p_, a: jnp.concatenate([jnp.repeat(p_, self.order, axis=0), a]),
                pad,
                intervals,
            )
        else:  # one step, to sigma = 0: nothing to integrate
            intervals = None
        # (x_{i-1} after its correction, f at the previous steps, newest first)
        return intervals, l_nodes, x, jnp.zeros((self.order, *x.shape), x.dtype)

    def step(self, denoise, x, carry, i, sigmas, key, *, final):
        del key
        sigma = sigmas[i]
        denoised = denoise(x, sigma)
        if final:  # to sigma = 0 (lambda = inf): the data prediction
            return denoised, carry, denoised
        intervals, l_nodes, x_prev, hist = carry
        n = sigmas.shape[0] - 1  # static
        order = self.order
        # win[k]: the interval from grid point i - order + k (k = order: the current step)
        win = jax.tree.map(lambda a: jax.lax.dynamic_slice_in_dim(a, i, order + 1), intervals)
        iv_at = [jax.tree.map(lambda a, k=k: a[k], win) for k in range(order + 1)]

        def lam_at(j):  # lambda of grid point j; distinct stand-ins below the grid for j < 0
            return jnp.where(j >= 0, -jnp.log(sigmas[jnp.maximum(j, 0)]), -jnp.log(sigmas[0]) + j)

        def back(start, count):
            """[(St, Bt)] of grid points `i + start - k`, k = 1 .. count, relative to point
            `i + start` (start = 0 or -1)."""
            out, acc_s, acc_b = [], 0.0, 0.0
            for k in range(1, count + 1):
                iv = iv_at[order + start - k]
                acc_s = acc_s + iv.ds
                acc_b = acc_b + jnp.exp(acc_s) * iv.db
                out.append((-acc_s, -acc_b))
            return out

        def g_of(f, rel):
            return f if rel is None else jnp.exp(-rel[0]) * f - rel[1]

        f = (x - denoised) - l_nodes[i] * x  # N_theta at the evaluated point, held fixed

        # UniC-style corrector: redo step i - 1 -> i with f_i among the points
        extra = self._corrector_points
        if extra > 0:
            p_prev = jnp.where(i > 0, self._predictor_order(i - 1, n), 0)
            c_order = p_prev + (1 if self.c_pseudo else 0)
            iv = iv_at[order - 1]
            rel = [None, (iv.ds, iv.db), *back(-1, extra - 1)]
            fs = [hist[0], f] + [hist[k] for k in range(1, extra)]
            g = [g_of(fk, r) for fk, r in zip(fs, rel, strict=True)]
            lams = [lam_at(i - 1), lam_at(i)] + [lam_at(i - 1 - k) for k in range(1, extra)]
            x_corr = _update(iv, x_prev, lams, g, c_order - 1, self.c_pseudo)
            x = jnp.where(c_order > 1, x_corr, x)

        # predictor: step i -> i + 1 of order p with f at i, i - 1, ..., i - p + 1
        hist = jnp.concatenate([f[None], hist[:-1]])
        p = self._predictor_order(i, n)
        rel = [None, *back(0, order - 1)]
        g = [g_of(hist[k], rel[k]) for k in range(order)]
        lams = [lam_at(i - k) for k in range(order)]
        midpoint_h = lam_at(i + 1) - lams[0] if self.solver_type == "midpoint" else None
        x_next = _update(iv_at[order], x, lams, g, p - 1, self.p_pseudo, midpoint_h)
        return x_next, (intervals, l_nodes, x, hist), denoised
