"""DPM-Solver++(3M): the third-order multistep solver in data prediction (deterministic)."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp

from ._base import AbstractSampler

_LOWER_ORDER_FINAL_STEPS = 15  # DPM-Solver++ / diffusers: lower order at the end below this
_SOLVER_TYPES = ("midpoint", "heun")


class DPMpp3M(AbstractSampler):
    r"""DPM-Solver++(3M): with $t = -\log\sigma$, $h = t_{i+1} - t_i$,
    $r_0 = (t_i - t_{i-1}) / h$ and $r_1 = (t_{i-1} - t_{i-2}) / h$ (k-diffusion's notation),
    the third-order step is

    $$x_{i+1} = e^{-h} x_i + (1 - e^{-h}) D_i + \varphi_2 d_1 - \varphi_3 d_2,$$

    where $d_{1,0} = (D_i - D_{i-1}) / r_0$, $d_{1,1} = (D_{i-1} - D_{i-2}) / r_1$,
    $d_1 = d_{1,0} + (d_{1,0} - d_{1,1}) r_0 / (r_0 + r_1)$,
    $d_2 = (d_{1,0} - d_{1,1}) / (r_0 + r_1)$,
    $\varphi_2 = (e^{-h} - 1) / h + 1$ and $\varphi_3 = \varphi_2 / h - 1/2$
    ($e^{-h} = \sigma_{i+1}/\sigma_i$). The second-order step (the warm-up step, and the step
    before the last with `lower_order_final`) depends on `solver_type`:

    - `"midpoint"` (default): $x_{i+1} = e^{-h} x_i - (e^{-h} - 1) D_i
      - \tfrac12 (e^{-h} - 1)\, d_{1,0}$, the official code's `solver_type="dpmsolver"` and
      diffusers' default `solver_type="midpoint"`; exactly `DPMpp2M`'s update (and
      k-diffusion's `sample_dpmpp_2m`'s), so on grids with no third-order step (3 steps, or
      4 with `lower_order_final`) `DPMpp3M()` equals `DPMpp2M()`;
    - `"heun"`: $x_{i+1} = e^{-h} x_i - (e^{-h} - 1) D_i + \varphi_2\, d_{1,0}$, the official
      code's `solver_type="taylor"` and diffusers' `solver_type="heun"`, and what k-diffusion's
      `sample_dpmpp_3m_sde` uses (see below).

    Both second-order forms have local error $O(h^3)$; they differ in the $h^3$ term, and the
    midpoint form measured more accurate at 5 to 10 steps. The third-order step is the same
    for both (as in the official code and diffusers).

    Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion Probabilistic
    Models" (the third-order multistep solver of its official code, `multistep_dpm_solver_update`
    with `algorithm_type="dpmsolver++"`); diffusers' `DPMSolverMultistepScheduler(solver_order=3,
    algorithm_type="dpmsolver++", solver_type=...)` on the same grid (`final_sigmas_type="zero"`)
    equals `DPMpp3M(solver_type=..., lower_order_final=...)` for both settings of each.
    Warm-up: first order at the first step, second order at the second. The last step, to
    sigma = 0, is first order (`x -> D`). Order 2 with the default (reference) coefficients,
    3 with `exact_third_order=True` (see below); 1 denoiser evaluation per step (NFE = steps).

    `lower_order_final` (default True, as in DPM-Solver++ and diffusers): on grids of fewer
    than 15 steps the step before the last uses at most second order (the last is always first
    order). k-diffusion 0.1.1 has this sampler only as `sample_dpmpp_3m_sde`, which with `eta=0`
    is deterministic, has no such option, and takes its warm-up step in the `"heun"` form: it
    equals `DPMpp3M(solver_type="heun", lower_order_final=False)` on every grid, and
    `DPMpp3M(solver_type="heun")` from 15 steps on. The default (`"midpoint"`) differs from it
    at the warm-up step (and, below 15 steps, at the step before the last).

    `exact_third_order` (default False): the formula above, shared by DPM-Solver++'s official
    code, diffusers and k-diffusion, weights $d_2 \approx h^2 D''/2$ by $-\varphi_3$, while the
    exact integral of the quadratic interpolant needs $-2\varphi_3$ (the $D''$ term of
    $\int_0^h e^{u-h} D(t_i + u)\,du$ is $-\varphi_3 h^2 D''$). The shared formula therefore
    has local error $h^3 D''/12 + O(h^4)$: its global order is 2, not 3, whatever the warm-up.
    `exact_third_order=True` uses $-2\varphi_3$ and is third order (exact for $D$ quadratic in
    $t$) once the first-order warm-up step is small enough (an $O(h^2)$ first step; with equal
    steps the warm-up alone limits any multistep method started at first order to order 2).
    It changes only the third-order steps, so it combines with either `solver_type`.

    **Fields:** `solver_type` (`"midpoint"` or `"heun"`, default `"midpoint"`),
    `lower_order_final` (default True), `exact_third_order` (default False); all static.

    From a grid that starts at `sigma = inf` (pure noise) `jaxdiff.sample` takes the exact
    limit of its first step, `x_1 = D(x, inf) + sigma_1 x`, then runs it from `sigma_1`.
    """

    solver_type: str = eqx.field(default="midpoint", static=True)
    lower_order_final: bool = eqx.field(default=True, static=True)
    exact_third_order: bool = eqx.field(default=False, static=True)

    def __check_init__(self):
        if self.solver_type not in _SOLVER_TYPES:
            raise ValueError(
                f"DPMpp3M solver_type must be 'midpoint' or 'heun', got {self.solver_type!r}"
            )

    def nfe(self, num_steps: int) -> int:
        return num_steps

    def init(self, x, sigmas):
        del sigmas
        return jnp.zeros((2, *x.shape), x.dtype)  # D at the previous two steps, newest first

    def step(self, denoise, x, carry, i, sigmas, key, *, final):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoise(x, sigma)
        history = jnp.concatenate([denoised[None], carry[:-1]])
        if final:  # first order to sigma = 0: exactly x -> D
            return denoised, history, denoised
        num_steps = sigmas.shape[0] - 1  # static
        order = jnp.minimum(i + 1, 3)
        if self.lower_order_final and num_steps < _LOWER_ORDER_FINAL_STEPS:
            order = jnp.where(i == num_steps - 2, jnp.minimum(order, 2), order)
        log_sigma = jnp.log(sigma)
        h = log_sigma - jnp.log(sigma_next)
        h_1 = jnp.log(sigmas[jnp.maximum(i - 1, 0)]) - log_sigma
        h_2 = jnp.log(sigmas[jnp.maximum(i - 2, 0)]) - jnp.log(sigmas[jnp.maximum(i - 1, 0)])
        r0 = jnp.where(order >= 2, h_1 / h, 1)
        r1 = jnp.where(order >= 3, h_2 / h, 1)
        phi_1 = jnp.expm1(-h)  # e^{-h} - 1
        phi_2 = phi_1 / h + 1
        phi_3 = phi_2 / h - 0.5
        if self.exact_third_order:
            phi_3 = 2 * phi_3  # d2 ~ h^2 D''/2 needs 2 phi_3 (see the docstring)
        # phi_2 d1 - phi_3 d2 = a d1_0 + b d1_1 (third order); the second-order term is
        # a d1_0 with a = -phi_1 / 2 (midpoint) or phi_2 (heun)
        a3 = phi_2 * (1 + r0 / (r0 + r1)) - phi_3 / (r0 + r1)
        b3 = -phi_2 * r0 / (r0 + r1) + phi_3 / (r0 + r1)
        a2 = -0.5 * phi_1 if self.solver_type == "midpoint" else phi_2
        a = jnp.where(order >= 3, a3, jnp.where(order >= 2, a2, 0))
        b = jnp.where(order >= 3, b3, 0)
        d1_0 = (denoised - carry[0]) / r0
        d1_1 = (carry[0] - carry[1]) / r1
        x_next = jnp.exp(-h) * x - phi_1 * denoised + a * d1_0 + b * d1_1
        return x_next, history, denoised
