r"""A sequential Monte Carlo posterior sampler for linear-Gaussian observations (MCGdiff)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jax.scipy.special import logsumexp

from .._checks import check_choice, check_count, check_number
from .._fixed_grid import StepNoise
from ..samplers._base import AbstractAncestral, AbstractSampler, ancestral_step
from ._guided import shared_y


def systematic_resample(key, log_weights, threshold):
    """One population's ancestors `(K,)` and log-weights after resampling when its effective
    sample size is below `threshold * K` (systematic resampling: one uniform, `K` evenly
    spaced points on the weights' CDF), else the identity and the normalized log-weights."""
    k = log_weights.shape[0]
    log_norm = log_weights - logsumexp(log_weights)
    w = jnp.exp(log_norm)
    ess = 1.0 / jnp.sum(w**2)
    points = (jr.uniform(key, (), w.dtype) + jnp.arange(k, dtype=w.dtype)) / k
    drawn = jnp.clip(jnp.searchsorted(jnp.cumsum(w), points), 0, k - 1)
    resample = ess < threshold * k
    ancestors = jnp.where(resample, drawn, jnp.arange(k))
    return ancestors, jnp.where(resample, jnp.zeros_like(log_norm), log_norm)


class MCGdiff(eqx.Module):
    r"""Sequential Monte Carlo for a linear-Gaussian observation, after MCGdiff: Cardoso,
    Janati El Idrissi, Le Corff & Moulines 2024, "Monte Carlo guided Denoising Diffusion
    models for Bayesian linear inverse problems" (ICLR); the twisted-SMC view of Wu, Trippe,
    Naesseth, Blei & Cunningham 2023, "Practical and Asymptotically Exact Conditional
    Sampling in Diffusion Models" (NeurIPS, the twisted diffusion sampler).

    Target: the reverse chain of an ancestral sampler, `x' ~ N(mu(x), v I)` (`mu` its
    deterministic move to `sigma_down`, `v = (s_noise sigma_up)^2`; by default
    `DPMpp2SAncestral()`, whose second-order move makes the chain's output close to the prior
    on coarse grids; `EulerAncestral()` is DDPM's step as in the papers), with its output
    `D(x_{n-1}, sigma_{n-1})` reweighted by the likelihood `N(y; A x_0, noise_std^2 I)`. In
    `A`'s singular basis `A = U S V^T` the observation is `z_j = (V^T x_0)_j + tau_j n_j`,
    `tau_j = noise_std / S_j`, and MCGdiff's potentials are the likelihood of `z` given
    `x_sigma` under a flat prior on `x_0`, `psi_sigma(x) = prod_j N(z_j; (V^T x)_j, sigma^2 +
    tau_j^2)`, Gaussian in `x`. So the locally optimal proposal
    `q(x' | x) ~ N(x'; mu(x), v) psi_{sigma'}(x')` is Gaussian and the incremental weight
    `N(z; V^T mu(x), v + sigma'^2 + tau^2) / psi_sigma(x)` depends on `x` only (a fully
    adapted auxiliary particle filter). Particles are resampled (systematically, when the
    effective sample size is below `ess_threshold * num_particles`) before they move, for an
    intermediate target that `twist` chooses: `"flat"`, MCGdiff's (the weight above, the
    paper's filter); `"denoiser"` (default), the target twisted by
    `N(z; V^T D(x, sigma), sigma^2 + tau^2)` as the twisted diffusion sampler twists by
    `p(y | D(x))` (here broadened by `sigma^2`, without its gradient): the weight is split
    at that twist, before resampling and after. Both give the same weights in the end, so the
    same limit; the twist only decides which particles are resampled. (Measured on a 2-D
    mixture, noise 0.05, 100 steps: sliced Wasserstein distance to the exact posterior over
    the floor 8.96 / 2.72 / 1.64 at 8 / 32 / 128 particles with `"denoiser"`, 6.70 / 3.76
    / 2.33 with `"flat"`.) The last step weighs the output by the exact likelihood over the
    last potential, and one particle is drawn by its weight. (For a noise-free observation
    the last weight is 1 and the output's observed coordinates are set to `z`: the posterior
    is then supported on `A x = y`.)

    Each returned sample comes from its own population of `num_particles` particles, so rows
    are independent draws, and their distribution approaches the exact posterior of the
    chain's prior as `num_particles` grows, whatever the denoiser (the potentials only steer;
    the weights correct): given the exact denoiser, the posterior of the data distribution
    as the grid refines. Why MCGdiff rather than TDS: for a linear-Gaussian observation its
    potentials make the proposal and the weights closed form, with no gradient through the
    network (TDS twists with `p(y | D(x))`, which costs a backward pass per particle and
    step). The details differ from the paper: MCGdiff matches a noisy `y` to a diffusion time
    per singular value; here the noise enters the potentials' variance.

    **Options:** `num_particles` (default 64), `ess_threshold` in [0, 1] (default 0.5; 1:
    resample every step, 0: never but at the end), `twist` (`"denoiser"` or `"flat"`, see
    above). `solver`: an ancestral sampler
    (`EulerAncestral`, `DPM2Ancestral`, `DPMpp2SAncestral`; `eta > 0`). The observation's
    singular basis comes from the operator (closed form for a mask and a downsampling, the
    dense SVD otherwise: small dimensions).

    NFE: for each returned sample, `num_particles` times the sampler's: `2 n - 1` per
    particle for `DPMpp2SAncestral` on a grid of `n` steps (2 per step, 1 on the last),
    `n` for `EulerAncestral`; no gradients.
    """

    num_particles: int = eqx.field(default=64, static=True)
    ess_threshold: float = 0.5
    twist: str = eqx.field(default="denoiser", static=True)

    def __check_init__(self):
        check_count("num_particles", self.num_particles)
        check_choice("twist", self.twist, ("denoiser", "flat"))
        threshold = check_number("ess_threshold", self.ess_threshold)
        if threshold is not None and not 0.0 <= threshold <= 1.0:
            raise ValueError(f"ess_threshold must be in [0, 1], got {threshold}")

    def check_solver(self, solver) -> None:
        """The transition must be an ancestral sampler whose step is a deterministic move
        plus `s_noise * sigma_up` times one standard normal."""
        if not (
            isinstance(solver, AbstractAncestral)
            and solver.bulk_noise
            and type(solver).step_noise is AbstractSampler.step_noise
        ):
            raise ValueError(
                "method 'smc' needs an ancestral sampler for its transitions (EulerAncestral, "
                f"DPM2Ancestral, DPMpp2SAncestral), got {type(solver).__name__}"
            )
        eta, s_noise = check_number("eta", solver.eta), check_number("s_noise", solver.s_noise)
        if (eta is not None and eta <= 0) or (s_noise is not None and s_noise <= 0):
            raise ValueError(
                f"method 'smc' needs a stochastic sampler: eta > 0 and s_noise > 0, got "
                f"eta={solver.eta}, s_noise={solver.s_noise}"
            )

    def run(self, denoiser, observation, x, sigmas, solver, key):
        batch, shape, k = x.shape[0], tuple(x.shape[1:]), self.num_particles
        n = sigmas.shape[0] - 1
        spectrum = observation.operator.spectrum(shape, x.dtype)
        s, keep = spectrum.values, spectrum.keep
        safe_s = jnp.where(keep, s, 1.0)
        z = jnp.where(keep, spectrum.u_t(shared_y(observation, x)) / safe_s, 0.0)[:, None]
        noise_var = observation.noise_std.astype(x.dtype) ** 2
        tau2 = jnp.where(keep, noise_var / safe_s**2, 0.0)
        num = s.shape[0]

        def flat(a):
            return a.reshape(batch * k, *shape)

        def coords(a):
            return spectrum.project(flat(a)).reshape(batch, k, num)

        def denoise(a, sigma):
            return denoiser(a, sigma.astype(a.dtype))

        def gaussian(u, var):  # sum_j log N(z_j; u_j, var_j) up to constants in u
            return -0.5 * jnp.sum(jnp.where(keep, (u - z) ** 2 / var, 0.0), axis=-1)

        keys = jax.vmap(lambda kk: jr.split(kk, 3))(jr.split(key, batch))
        k_init, k_steps, k_final = keys[:, 0], keys[:, 1], keys[:, 2]
        fresh = jax.vmap(lambda kk: jr.normal(kk, (k - 1, *shape), x.dtype))(k_init)
        particles = jnp.concatenate([x[:, None], sigmas[0] * fresh], axis=1)
        log_w = gaussian(coords(particles), sigmas[0] ** 2 + tau2)

        def step(carry, i):
            particles, log_w = carry
            sigma, sigma_next = sigmas[i], sigmas[i + 1]
            # the sampler's step without its fresh noise: the transition's mean
            zeros = StepNoise(jnp.zeros((batch * k, *shape), x.dtype))
            mu, _, denoised = solver.step(
                denoise, flat(particles), None, i, sigmas, zeros, final=False
            )
            mu = mu.reshape(particles.shape)
            v = (solver.s_noise * ancestral_step(sigma, sigma_next, solver.eta)[1]) ** 2
            m = coords(mu)
            var_next = sigma_next**2 + tau2
            # the potential the particles were proposed with, the move's predictive weight
            # (the next potential's integral under the transition) and the twist of the
            # target they are resampled for (flat: the predictive weight itself, MCGdiff's
            # fully adapted filter; denoiser: N(z; V^T D(x), sigma^2 + tau^2))
            log_flat = gaussian(coords(particles), sigma**2 + tau2)
            log_move = gaussian(m, v + var_next)
            if self.twist == "denoiser":
                log_twist = gaussian(coords(denoised.reshape(particles.shape)), sigma**2 + tau2)
            else:
                log_twist = log_move
            k_resample, k_move = jax.vmap(lambda kk: jr.split(jr.fold_in(kk, i)))(k_steps).T
            ancestors, log_w = jax.vmap(systematic_resample, in_axes=(0, 0, None))(
                k_resample, log_w + log_twist - log_flat, self.ess_threshold
            )
            log_w = log_w + jnp.take_along_axis(log_move - log_twist, ancestors, 1)
            mu = jnp.take_along_axis(mu, ancestors.reshape(batch, k, *([1] * len(shape))), 1)
            m = jnp.take_along_axis(m, ancestors[..., None], 1)
            # x' ~ N(mu, v) * potential at sigma_next: Gaussian, closed form per coordinate
            eps = jax.vmap(lambda kk: jr.normal(kk, (k, *shape), x.dtype))(k_move)
            precision = 1.0 / v + 1.0 / var_next
            mean = (m / v + z / var_next) / precision
            shift = mean - m + (jax.lax.rsqrt(precision) - jnp.sqrt(v)) * coords(eps)
            shift = spectrum.lift(jnp.where(keep, shift, 0.0).reshape(batch * k, num))
            return (mu + jnp.sqrt(v) * eps + shift.reshape(mu.shape), log_w), None

        if n > 1:
            (particles, log_w), _ = jax.lax.scan(step, (particles, log_w), jnp.arange(n - 1))
        sigma = sigmas[n - 1]
        denoised = denoise(flat(particles), sigma).reshape(particles.shape)
        u = coords(denoised)
        noisy = noise_var > 0
        exact = gaussian(u, jnp.where(keep & noisy, tau2, 1.0))
        final = exact - gaussian(coords(particles), sigma**2 + tau2)
        log_w = log_w + jnp.where(noisy, final, 0.0)
        # noise-free: the observed coordinates are z
        pinned = denoised + spectrum.lift(
            jnp.where(keep, z - u, 0.0).reshape(batch * k, num)
        ).reshape(denoised.shape)
        out = jnp.where(noisy, denoised, pinned)
        choice = jax.vmap(jr.categorical)(k_final, log_w)
        return out[jnp.arange(batch), choice]
