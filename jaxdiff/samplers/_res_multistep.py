"""RES multistep: the second-order exponential multistep solver in data prediction."""

from __future__ import annotations

import jax.numpy as jnp

from ._base import AbstractSampler


class RESMultistep(AbstractSampler):
    r"""The Refined Exponential Solver's second-order multistep method (RES multistep).

    Zhang, Song & Chen 2023, "Improved Order Analysis and Design of Exponential Integrator for
    Diffusion Models Sampling" (arXiv 2308.02157), multistep RES; ComfyUI's
    `sample_res_multistep`. In $t = -\log\sigma$ the probability-flow ODE is
    $dx/dt = D(x; \sigma) - x$, whose exact solution over $[t_i, t_{i+1}]$ is
    $x_{i+1} = e^{-h} x_i + \int_0^h e^{-(h-s)} D(t_i + s)\,ds$ with
    $h = \log(\sigma_i/\sigma_{i+1})$. RES approximates the integral by
    $h\,[b_1 D_i + b_2 D_{i-1}]$, where $D_{i-1}$ sits at the node $t_i + c\,h$,
    $c = -h_{i-1}/h$ ($h_{i-1} = \log(\sigma_{i-1}/\sigma_i)$), and the weights satisfy the
    order conditions of an exponential integrator of order 2 exactly (for every $h$, not only
    as $h \to 0$):

    $$b_1 + b_2 = \varphi_1(-h),\qquad c\,b_2 = \varphi_2(-h),$$

    $\varphi_1(z) = (e^z - 1)/z$, $\varphi_2(z) = (\varphi_1(z) - 1)/z$. So
    $b_2 = \varphi_2(-h)/c$, $b_1 = \varphi_1(-h) - \varphi_2(-h)/c$ and

    $$x_{i+1} = \frac{\sigma_{i+1}}{\sigma_i} x_i - (e^{-h} - 1) D_i
      + \frac{h + e^{-h} - 1}{h_{i-1}}\,(D_i - D_{i-1}).$$

    After the first step the update is exact when $D$ is affine in $t$ along the path;
    DPM-Solver++(2M) (`DPMpp2M`) has the same form with
    $\tfrac{1 - e^{-h}}{2} \tfrac{h}{h_{i-1}}$ as the last coefficient, whose numerator
    agrees with $h + e^{-h} - 1$ to $O(h^3)$: it meets the second condition only as
    $h \to 0$. The first step (no history) is first order (DDIM's, the exponential Euler
    step); so is the last step, to sigma = 0, where the update is `x -> D` (as in DPM-Solver++
    and ComfyUI). Order 2 (measured 2.0 on the PF-ODE of a 2-D mixture); 1 denoiser
    evaluation per step (NFE = steps). Measured against `DPMpp2M` on 2-D mixtures: about 10%
    smaller errors with small steps (geometric grids, 16 to 128 steps), but larger ones on
    Karras grids from sigma 80 at NFE 10 to 20 (e.g. 0.51 vs 0.31 RMS at NFE 10 on the ring):
    over long steps ($h \gtrsim 1$) its weight on $D_i - D_{i-1}$ is the larger one, which
    likely overshoots where `D` levels off at small sigma.

    From a grid that starts at `sigma = inf` (pure noise) `jaxdiff.sample` takes the exact
    limit of its first step, `x_1 = D(x, inf) + sigma_1 x`, then runs it from `sigma_1` (the
    weight of a `D` at `inf` in the next step, $(h + e^{-h} - 1)/h_{i-1}$, vanishes as
    $h_{i-1} \to \infty$, like $1/\log\sigma_0$).
    """

    def nfe(self, num_steps: int) -> int:
        return num_steps

    def init(self, x, sigmas):
        del sigmas
        return jnp.zeros_like(x)  # D at the previous step

    def step(self, denoise, x, carry, i, sigmas, key, *, final):
        del key
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoise(x, sigma)
        if final:  # first order to sigma = 0: exactly x -> D
            return denoised, denoised, denoised
        h = jnp.log(sigma) - jnp.log(sigma_next)
        h_last = jnp.where(i > 0, jnp.log(sigmas[jnp.maximum(i - 1, 0)]) - jnp.log(sigma), 1)
        em = jnp.expm1(-h)  # e^{-h} - 1 = -h phi_1(-h)
        # h b_2 = h phi_2(-h) / c = (h + e^{-h} - 1) / h_{i-1}; 0 at the first step (DDIM)
        c = jnp.where(i > 0, (h + em) / h_last, 0)
        x_next = (sigma_next / sigma) * x - em * denoised + c * (denoised - carry)
        return x_next, denoised, denoised
