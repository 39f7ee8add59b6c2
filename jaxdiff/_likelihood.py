r"""Log-likelihoods through the probability-flow ODE (instantaneous change of variables).

Song et al. (2021), "Score-Based Generative Modeling through Stochastic Differential
Equations", Sec. 4.3 and App. D.2: along the probability-flow ODE $dx/du = v(x, u)$ the
log-density obeys $\frac{d}{du}\log p_u(x(u)) = -\nabla\!\cdot v(x(u), u)$ (Chen et al. 2018,
"Neural Ordinary Differential Equations"), so

$$\log p_{u_0}(x) = \log p_{u_1}(x(u_1)) + \int_{u_0}^{u_1} \nabla\!\cdot v(x(u), u)\,du .$$

The divergence is exact (one Jacobian-vector product per dimension, shared by the batch) or
the Skilling–Hutchinson estimate $\mathbb E_\varepsilon[\varepsilon^\top J \varepsilon]$ with
probes drawn once per solve (Skilling 1989; Hutchinson 1990; Grathwohl et al. 2019, FFJORD).
"""

from __future__ import annotations

import math
from typing import Any

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from ._checks import (
    check_callable,
    check_choice,
    check_count,
    check_finite,
    check_float_array,
    check_instance,
    check_key,
    check_model,
    check_model_output,
    check_range,
    check_tolerances,
)
from ._deprecation import process_after_state
from ._results import LikelihoodResult
from .processes import AbstractFlow, AbstractProcess
from .samplers._core import check_denoiser
from .sde._solvers import MAX_STEPS, evaluations, ode_solver

_PROBES = ("rademacher", "gaussian")

__all__ = [
    "LikelihoodResult",
    "bits_per_dim",
    "dequantize",
    "log_likelihood",
    "log_likelihood_flow",
    "log_likelihood_process",
]


# ------------------------------------------------------------------------------ checks


def _check_x(x) -> jax.Array:
    """Batch-first floating-point `x` with no NaN or inf: checked at the call when concrete,
    when the program runs when traced (`check_finite`), since a non-finite `x` would
    otherwise surface as the adaptive solver's "maximum number of steps" error."""
    return check_finite("x", check_float_array("x", x, batch=True, min_ndim=2))


def _check_options(key, num_probes, probe, steps, rtol, atol, max_steps, solver):
    check_choice("probe", probe, _PROBES)
    check_count("num_probes", num_probes)
    if key is not None:
        check_key(key)
    check_tolerances(steps, rtol, atol, max_steps)
    return ode_solver(solver, adaptive=steps is None)


def _check_range(lo_name, lo, hi_name, hi, *, allow_zero=False):
    check_range(lo_name, lo, hi_name, hi, allow_zero=allow_zero)
    return float(lo), float(hi)


# ------------------------------------------------------------------------------ the ODE


class _SigmaField(eqx.Module):
    """`dx/du = x - D(x; sigma)` with `u = log sigma` (the PF-ODE `dx/dsigma = (x - D)/sigma`
    times `sigma`), as `a x + c h(x)`: `a = 1`, `c = -1`, `h = D`."""

    denoiser: Any

    def parts(self, u, dtype):
        sigma = jnp.exp(u).astype(dtype)
        return jnp.ones((), dtype), -jnp.ones((), dtype), lambda x: self.denoiser(x, sigma)


class _ProcessField(eqx.Module):
    """`dx/dt = f(t) x - g(t)^2 score(x, t) / 2` (the PF-ODE of a process), as `a x + c h(x)`."""

    score: Any
    process: AbstractProcess

    def parts(self, t, dtype):
        f = self.process.drift_coef(t).astype(dtype)
        g = self.process.diffusion_coef(t).astype(dtype)
        return f, -0.5 * g**2, lambda x: self.score(x, t.astype(dtype))


class _VelocityField(eqx.Module):
    """`dx/dt = v(x, t)` (a flow's ODE), as `a x + c h(x)`: `a = 0`, `c = 1`, `h = v`."""

    velocity: Any

    def parts(self, t, dtype):
        return (
            jnp.zeros((), dtype),
            jnp.ones((), dtype),
            lambda x: self.velocity(x, t.astype(dtype)),
        )


def _divergence(h, x, probes):
    """`(h(x), div h(x))` per sample: exact when `probes` is None, else Hutchinson's estimate
    averaged over the probes (shape `(num_probes, *x.shape)`). Samples are assumed independent
    (no cross-sample coupling in `h`), so one tangent per dimension serves the whole batch."""
    batch = x.shape[0]
    d = math.prod(x.shape[1:])
    out, lin = jax.linearize(h, x)
    if probes is None:
        basis = jnp.eye(d, dtype=x.dtype).reshape((d, 1, *x.shape[1:]))
        tangents = jnp.broadcast_to(basis, (d, *x.shape))
        jv = jax.vmap(lin)(tangents).reshape(d, batch, d)
        return out, jnp.einsum("jbj->b", jv)
    jv = jax.vmap(lin)(probes)
    axes = tuple(range(2, probes.ndim))
    return out, jnp.mean(jnp.sum(probes * jv, axis=axes), axis=0)


def _draw_probes(key, probe, num_probes, x):
    if key is None:
        return None
    shape = (num_probes, *x.shape)
    if probe == "rademacher":
        return jr.rademacher(key, shape, x.dtype)
    return jr.normal(key, shape, x.dtype)


@eqx.filter_jit
def _solve(field, x, u0, u1, key, probe, num_probes, solver, steps, rtol, atol, max_steps):
    dtype = x.dtype
    d = math.prod(x.shape[1:])
    probes = _draw_probes(key, probe, num_probes, x)

    def vector_field(u, y, args):
        del args
        xu, _ = y
        a, c, h = field.parts(u, dtype)
        hx, div_h = _divergence(h, xu, probes)
        return a * xu + c * hx, (a * d + c * div_h).astype(dtype)

    y0 = (x, jnp.zeros(x.shape[:1], dtype))
    u0 = jnp.asarray(u0, dtype)
    u1 = jnp.asarray(u1, dtype)
    if steps is None:
        controller = dfx.PIDController(rtol=rtol, atol=atol)
        dt0 = (u1 - u0) / 64  # given, so no evaluations go into choosing it
    else:
        controller = dfx.ConstantStepSize()
        dt0 = (u1 - u0) / steps
    sol = dfx.diffeqsolve(
        dfx.ODETerm(vector_field),
        solver,
        u0,
        u1,
        dt0=dt0,
        y0=y0,
        stepsize_controller=controller,
        saveat=dfx.SaveAt(t1=True),
        max_steps=max_steps if steps is None else steps,
        adjoint=dfx.ForwardMode(),
    )
    x_T, delta = sol.ys[0][-1], sol.ys[1][-1]
    return x_T, delta, sol.stats["num_steps"]


def _gaussian_log_prob(x, std):
    axes = tuple(range(1, x.ndim))
    d = math.prod(x.shape[1:])
    std = jnp.asarray(std, x.dtype)
    return -0.5 * jnp.sum((x / std) ** 2, axis=axes) - d * (
        jnp.log(std) + 0.5 * math.log(2 * math.pi)
    )


def _result(x_T, delta, num_steps, prior_std, solver, return_info):
    prior = _gaussian_log_prob(x_T, prior_std)
    log_p = prior + delta
    if not return_info:
        return log_p
    per_step, initial = evaluations(solver)
    return LikelihoodResult(log_p, prior, delta, x_T, num_steps * per_step + initial, num_steps)


# ------------------------------------------------------------------------------ public


def log_likelihood(
    denoiser,
    x,
    *,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    key: jax.Array | None = None,
    num_probes: int = 1,
    probe: str = "rademacher",
    solver: str | dfx.AbstractSolver = "tsit5",
    steps: int | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    max_steps: int = MAX_STEPS,
    return_info: bool = False,
):
    r"""$\log p(x;\sigma_{min})$, the log-density of the model's noisy marginal at
    $\sigma_{min}$, by the probability-flow ODE in sigma-space (Song et al. 2021, Sec. 4.3;
    Karras et al. 2022, eq. 4) with the prior $\mathcal N(0, \sigma_{max}^2 I)$ at the top.

    The ODE $dx/d\sigma = (x - D(x;\sigma))/\sigma$ is integrated in $u = \log\sigma$,
    $dx/du = x - D(x; e^u)$, from $\sigma_{min}$ up to $\sigma_{max}$ together with the
    divergence $\nabla\!\cdot(x - D) = d - \operatorname{tr} \partial_x D$:

    $$\log p(x;\sigma_{min}) = \log\mathcal N(x(\sigma_{max}); 0, \sigma_{max}^2 I)
      + \int_{\log\sigma_{min}}^{\log\sigma_{max}} \big(d - \operatorname{tr}\partial_x
      D(x(u); e^u)\big)\,du .$$

    **Arguments:**

    - `denoiser`: `denoiser(x, sigma) -> E[x_0 | x]` (batched `x`, scalar `sigma`), or a
      `(fn, params)` pair; samples must not interact (the divergence is taken per sample).
    - `x`: points, shape `(batch, ...)`, finite: a NaN or inf in a concrete `x` is a
      `ValueError`; in a traced one (under an outer `jit`) an error when the program runs.
    - `sigma_min`, `sigma_max`: the noise levels at the two ends, `0 < sigma_min < sigma_max`.
    - `key`: `None` for the exact divergence (`d` Jacobian-vector products per evaluation, the
      batch sharing them; cheap for low `d`), or a PRNG key for the Skilling–Hutchinson
      estimate with `num_probes` probes (`probe="rademacher"`, or `"gaussian"`) drawn once and
      held fixed along the ODE (1 JVP per probe per evaluation; unbiased for `log_p`).
    - `solver`: an ODE solver name (`"tsit5"`, `"dopri5"`, `"dopri8"`, ...; Song et al. use
      RK45, i.e. `"dopri5"`) or a diffrax solver; `steps=None` (default) is adaptive under a
      PID controller with `rtol`, `atol` (on `x` and the log-density alike) and at most
      `max_steps` steps; an int `steps` takes that many steps uniform in `log sigma`.
    - `return_info`: return a `LikelihoodResult` instead of the array.

    **Returns:** `log_p`, nats per sample, shape `(batch,)` (in `x.dtype`); with
    `return_info=True` a `LikelihoodResult(log_p, prior_log_p, delta_log_p, x_T, nfe,
    num_steps)` where `nfe` counts vector-field evaluations (denoiser calls, each with its
    JVPs): `num_steps * stages` (+1 for a non-FSAL tableau's first evaluation), e.g.
    `6 num_steps + 1` for Tsit5. Convert to bits/dim with `bits_per_dim`.
    """
    x = _check_x(x)
    sigma_min, sigma_max = _check_range("sigma_min", sigma_min, "sigma_max", sigma_max)
    solver = _check_options(key, num_probes, probe, steps, rtol, atol, max_steps, solver)
    denoiser = check_model("denoiser", denoiser, "denoiser(x, sigma)")
    check_denoiser(denoiser, x, jnp.asarray(sigma_min, x.dtype))
    x_T, delta, n = _solve(
        _SigmaField(denoiser),
        x,
        math.log(sigma_min),
        math.log(sigma_max),
        key,
        probe,
        int(num_probes),
        solver,
        steps,
        rtol,
        atol,
        int(max_steps),
    )
    return _result(x_T, delta, n, sigma_max, solver, return_info)


def log_likelihood_process(
    score,
    x,
    process: AbstractProcess,
    *,
    t_min: float | None = None,
    t_max: float | None = None,
    key: jax.Array | None = None,
    num_probes: int = 1,
    probe: str = "rademacher",
    solver: str | dfx.AbstractSolver = "tsit5",
    steps: int | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    max_steps: int = MAX_STEPS,
) -> LikelihoodResult:
    r"""$\log p_{t_{min}}(x)$ under a process's probability-flow ODE with a process-time score
    (Song et al. 2021, Sec. 4.3 and App. D.2): integrates
    `dx/dt = f(t) x - g(t)^2 score(x, t) / 2` (`process.probability_flow(score)`) from
    `t_min` up to `t_max` with its divergence `d f(t) - g(t)^2 div score / 2`, and the prior
    $\mathcal N(0, (s(t_{max})\sigma(t_{max}))^2 I)$ at `t_max`.

    `x` lives in process space at `t_min` (data units times `s(t_min)`) and must be finite
    (as for `log_likelihood`); `t_min` defaults to
    `process.t_min` (Song et al. evaluate likelihoods at `t_min = 1e-5`), `t_max` to
    `process.t_max`. The divergence options (`key`, `num_probes`, `probe`) and the solver
    options are those of `log_likelihood`. (The old order `log_likelihood_process(score,
    process, x)` still works, with a `DeprecationWarning`.)

    **Returns:** `LikelihoodResult(log_p, prior_log_p, delta_log_p, x_T, nfe, num_steps)`,
    `log_p` in nats per sample, shape `(batch,)`.
    """
    x, process = process_after_state(
        "log_likelihood_process",
        x,
        process,
        AbstractProcess,
        "log_likelihood_process(score, x, process)",
    )
    check_callable("score", score, "score(x, t)")
    check_instance("process", process, AbstractProcess, "a jaxdiff process")
    return _time_likelihood(
        _ProcessField(score, process),
        score,
        "score(x, t)",
        x,
        process,
        t_min=t_min,
        t_max=t_max,
        key=key,
        num_probes=num_probes,
        probe=probe,
        solver=solver,
        steps=steps,
        rtol=rtol,
        atol=atol,
        max_steps=max_steps,
    )


def log_likelihood_flow(
    velocity,
    x,
    flow: AbstractFlow,
    *,
    t_min: float | None = None,
    t_max: float | None = None,
    key: jax.Array | None = None,
    num_probes: int = 1,
    probe: str = "rademacher",
    solver: str | dfx.AbstractSolver = "tsit5",
    steps: int | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    max_steps: int = MAX_STEPS,
) -> LikelihoodResult:
    r"""$\log p_{t_{min}}(x)$ of a flow model through its ODE $dx/dt = v(x, t)$ (Chen et al.
    2018; Lipman et al. 2023, Sec. 4): integrates the velocity from `t_min` (default 0, the
    data) up to `t_max` (default 1, pure noise) with its divergence, and the prior
    $\mathcal N(0, \beta(t_{max})^2 I)$ at `t_max` (the unit Gaussian at t = 1). No offsets:
    the velocity of an affine path is finite at both ends, so with the exact velocity this is
    the data's exact log-density.

    `velocity(x, t)` is a flow-matching network or any velocity field (e.g.
    `flow.velocity_from_denoiser(D)`, `gm.process_velocity(flow)`); `flow` a
    `jaxdiff.RectifiedFlow`, `TrigFlow` or `AffineFlow` (t = 0 data, t = 1 noise). The
    divergence and solver options, and the finiteness check of `x`, are those of
    `log_likelihood`.

    **Returns:** `LikelihoodResult(log_p, prior_log_p, delta_log_p, x_T, nfe, num_steps)`,
    `log_p` in nats per sample, shape `(batch,)`.
    """
    check_callable("velocity", velocity, "velocity(x, t)")
    check_instance("flow", flow, AbstractFlow, "a flow (jaxdiff.RectifiedFlow, ...)")
    return _time_likelihood(
        _VelocityField(velocity),
        velocity,
        "velocity(x, t)",
        x,
        flow,
        t_min=t_min,
        t_max=t_max,
        key=key,
        num_probes=num_probes,
        probe=probe,
        solver=solver,
        steps=steps,
        rtol=rtol,
        atol=atol,
        max_steps=max_steps,
    )


def _time_likelihood(
    field,
    model,
    call,
    x,
    process,
    *,
    t_min,
    t_max,
    key,
    num_probes,
    probe,
    solver,
    steps,
    rtol,
    atol,
    max_steps,
):
    """The likelihood of a process-time ODE `field` between `t_min` and `t_max` (the
    process's range by default) with the prior `N(0, noise_std(t_max)^2 I)`."""
    x = _check_x(x)
    t_min = float(process.t_min) if t_min is None else t_min
    t_max = float(process.t_max) if t_max is None else t_max
    t_min, t_max = _check_range("t_min", t_min, "t_max", t_max, allow_zero=True)
    if t_max > float(process.t_max):
        raise ValueError(f"t_max must be <= process.t_max = {process.t_max}, got {t_max}")
    solver = _check_options(key, num_probes, probe, steps, rtol, atol, max_steps, solver)
    check_model_output(model, (x, jnp.asarray(t_min, x.dtype)), x, call, "x")
    x_T, delta, n = _solve(
        field,
        x,
        t_min,
        t_max,
        key,
        probe,
        int(num_probes),
        solver,
        steps,
        rtol,
        atol,
        int(max_steps),
    )
    prior_std = process.noise_std(jnp.asarray(t_max, x.dtype))
    return _result(x_T, delta, n, prior_std, solver, True)


def dequantize(key: jax.Array, y, *, bins: int = 256, data_range=(-1.0, 1.0), dtype=None):
    r"""Uniform dequantization of integer data `y` in `{0, ..., bins - 1}` (Theis et al. 2016;
    Song et al. 2021's likelihood evaluation): `x = a + (b - a) (y + u) / bins` with
    `u ~ U[0, 1)` i.i.d. and `(a, b) = data_range`, so `x` is continuous on `[a, b)`.
    Evaluate `log_likelihood` at `x` and convert with `bits_per_dim(log_p, D, bins=bins,
    data_range=data_range)`."""
    a, b = _check_data_range(data_range)
    y = jnp.asarray(y)
    dtype = jnp.result_type(float) if dtype is None else dtype
    u = jr.uniform(key, y.shape, dtype)
    return (a + (b - a) * (y.astype(dtype) + u) / bins).astype(dtype)


def _check_data_range(data_range):
    try:
        a, b = (float(v) for v in data_range)
    except (TypeError, ValueError) as e:
        raise TypeError(f"data_range must be a pair (a, b), got {data_range!r}") from e
    if not (math.isfinite(a) and math.isfinite(b) and a < b):
        raise ValueError(f"data_range must be finite with a < b, got {data_range!r}")
    return a, b


def bits_per_dim(
    log_p,
    num_dims: int,
    *,
    dequantization: str | None = "uniform",
    bins: int = 256,
    data_range=(-1.0, 1.0),
) -> jax.Array:
    r"""Bits per dimension from a continuous log-density `log_p` (nats per sample) over
    `num_dims` dimensions.

    With `dequantization="uniform"` (the convention of Song et al. 2021 and of Ho et al. 2020's
    continuous comparisons): integer data $y \in \{0,\dots,\text{bins}-1\}^D$ are dequantized
    to $z = y + u$, $u \sim U[0,1)^D$, and rescaled affinely to the model's range
    $x = a + (b - a)\,z/\text{bins} \in [a, b)^D$ (`dequantize`). The change of variables
    $p_z(z) = p_x(x)\,((b-a)/\text{bins})^D$ gives the (upper bound on the) discrete
    negative log-likelihood in bits

    $$\text{bpd} = \frac{-\log p_x(x) + D \log(\text{bins}/(b - a))}{D \ln 2}
      = \frac{-\log p_x(x)}{D\ln 2} + \log_2\frac{\text{bins}}{b-a},$$

    i.e. an offset of $\log_2 128 = 7$ bits for 8-bit data in $[-1, 1]$ (score_sde's
    `offset = 7 - inverse_scaler(-1)`) and $\log_2 256 = 8$ bits for data in $[0, 1]$.
    `dequantization=None` returns the plain $-\log p / (D \ln 2)$ (continuous data).

    **Returns:** bits per dimension, shaped like `log_p`.
    """
    if isinstance(num_dims, bool) or not (isinstance(num_dims, int | np.integer) and num_dims >= 1):
        raise ValueError(f"num_dims must be a positive int, got {num_dims!r}")
    if dequantization not in ("uniform", None):
        raise ValueError(f"dequantization must be 'uniform' or None, got {dequantization!r}")
    log_p = jnp.asarray(log_p)
    bpd = -log_p / (num_dims * math.log(2))
    if dequantization is None:
        return bpd
    if isinstance(bins, bool) or not (isinstance(bins, int | np.integer) and bins >= 2):
        raise ValueError(f"bins must be an int >= 2, got {bins!r}")
    a, b = _check_data_range(data_range)
    return bpd + math.log2(bins / (b - a))
