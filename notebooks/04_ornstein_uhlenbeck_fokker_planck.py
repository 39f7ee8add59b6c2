# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 4. The Ornstein–Uhlenbeck process and the Fokker–Planck equation
#
# **What you will learn**
#
# - the **Ornstein–Uhlenbeck** (OU) process $dX = -X\,dt + \sqrt 2\,dW$, its exact Gaussian
#   transition $X_t \mid X_0 \sim \mathcal N(e^{-t} X_0,\ 1 - e^{-2t})$, and that it is the
#   **VP diffusion** of diffusion models with a constant $\beta = 2$;
# - the **Fokker–Planck equation** that the density $p_t$ of any SDE obeys, checked three ways:
#   by automatic differentiation of the exact density, by a finite-difference PDE solver, and by
#   histograms of simulated paths (`jd.solve_sde`);
# - that every initial distribution flows to the **stationary** distribution
#   $\mathcal N(0, 1)$ — the reason a diffusion model can start sampling from pure noise.

# %%
import jax
import jax.numpy as jnp
import jax.random as jr
import matplotlib.pyplot as plt
import numpy as np
from jax.scipy.stats import norm

import jaxdiff as jd

# %% [markdown]
# ## OU as a VP process
#
# The VP process $dx = -\tfrac12\beta(t)\,x\,dt + \sqrt{\beta(t)}\,dW$ with constant
# $\beta = 2$ is the OU process above. jaxdiff writes every noising process in EDM's form
# $x_t = s(t)\,(x_0 + \sigma(t)\,\varepsilon)$; here $s(t) = e^{-t}$ and
# $\sigma(t) = \sqrt{e^{2t} - 1}$, so $x_t = e^{-t} x_0 + \sqrt{1 - e^{-2t}}\,\varepsilon$.
#
# Start from a two-component Gaussian mixture $p_0$ (a `jd.analytic.GaussianMixture`). A
# mixture stays a mixture under this linear flow, so the density at every time is exact:
# `gm.process_log_prob(x, t, ou)`.

# %%
ou = jd.VP(beta_min=2.0, beta_max=2.0, t_max=6.0)
print(
    "drift coefficient f(t) =",
    float(ou.drift_coef(0.5)),
    " diffusion g(t) =",
    float(ou.diffusion_coef(0.5)),
)
assert jnp.allclose(ou.drift_coef(0.5), -1.0) and jnp.allclose(ou.diffusion_coef(0.5), np.sqrt(2.0))

p0 = jd.analytic.GaussianMixture(
    means=jnp.array([[-2.0], [3.0]]),
    variances=jnp.array([[0.1], [0.3]]),
    weights=jnp.array([0.3, 0.7]),
)


def density(x, t):
    """The exact p_t(x) for scalar x and t."""
    return jnp.exp(p0.process_log_prob(jnp.reshape(x, (1,)), t, ou))


# %% [markdown]
# ## The Fokker–Planck equation
#
# For $dX = f(t, X)\,dt + g(t)\,dW$ in one dimension the density obeys
# $$\partial_t p = -\partial_x\big(f\,p\big) + \tfrac12 g^2\,\partial_x^2 p,$$
# here $\partial_t p = \partial_x(x\,p) + \partial_x^2 p$: the drift transports probability
# towards $0$, the diffusion spreads it. Its stationary solution ($\partial_t p = 0$) is
# $p_\infty \propto e^{-x^2/2}$. We check that the exact mixture density satisfies the PDE by
# differentiating it with JAX.

# %%
dp_dt = jax.grad(density, argnums=1)
dp_dx = jax.grad(density, argnums=0)
d2p_dx2 = jax.grad(dp_dx, argnums=0)
flux_term = jax.grad(lambda x, t: x * density(x, t), argnums=0)


def fp_residual(x, t):
    return dp_dt(x, t) - (flux_term(x, t) + d2p_dx2(x, t))


xs_check = jnp.linspace(-5.0, 6.0, 221)
res = jnp.stack([jax.vmap(fp_residual, (0, None))(xs_check, t) for t in (0.05, 0.3, 1.0, 3.0)])
scale = jnp.stack(
    [jnp.abs(jax.vmap(dp_dt, (0, None))(xs_check, t)).max() for t in (0.05, 0.3, 1.0, 3.0)]
)
rel_residual = float(jnp.max(jnp.abs(res).max(axis=1) / scale))
print(f"max |FP residual| / max |dp/dt| = {rel_residual:.1e}")
assert rel_residual < 1e-3

# %% [markdown]
# ## Solving the PDE directly
#
# A finite-difference scheme (explicit Euler in time, centred differences in space) evolves
# the initial density on a grid. It is the deterministic twin of simulating the SDE.

# %%
dx_grid, t_final = 0.05, 3.0
x_grid = jnp.arange(-8.0, 8.0 + dx_grid / 2, dx_grid)
dt_pde = 0.4 * dx_grid**2  # explicit scheme: stable for dt < dx^2 / 2
n_pde = int(np.ceil(t_final / dt_pde))
dt_pde = t_final / n_pde


def fp_step(p, _):
    flux = x_grid * p
    adv = (jnp.roll(flux, -1) - jnp.roll(flux, 1)) / (2 * dx_grid)
    dif = (jnp.roll(p, -1) - 2 * p + jnp.roll(p, 1)) / dx_grid**2
    p = p + dt_pde * (adv + dif)
    return p.at[0].set(0.0).at[-1].set(0.0), None


p_init = jax.vmap(density, (0, None))(x_grid, 0.0)
p_pde, _ = jax.lax.scan(fp_step, p_init, None, length=n_pde)
p_exact = jax.vmap(density, (0, None))(x_grid, t_final)
l1_pde = float(jnp.sum(jnp.abs(p_pde - p_exact)) * dx_grid)
print(
    f"finite differences ({n_pde} steps) vs exact density at t = {t_final}: L1 error {l1_pde:.1e}"
)
assert l1_pde < 5e-3

# %% [markdown]
# ## Simulating the SDE
#
# Now the particle picture: draw $20\,000$ samples of $p_0$ and push each through the forward
# SDE `ou.sde` with Euler–Maruyama. Histograms at several times sit on the exact densities;
# the Kolmogorov–Smirnov distance to the exact CDF
# ($P(X_t \le z)$ = `p0.cdf_projected` at $z / s(t)$ and noise level $\sigma(t)$) measures the fit.

# %%
num = 20_000
x0 = p0.sample(jr.key(0), num)  # (num, 1)
ts = np.array([0.0, 0.1, 0.3, 1.0, 6.0])
xt = jd.solve_sde(ou.sde, x0, ts, key=jr.key(1), dt=0.01)[..., 0]  # (len(ts), num)


def ks_distance(samples, cdf):
    z = jnp.sort(samples)
    n = z.shape[0]
    c = cdf(z)
    return float(jnp.maximum(jnp.arange(1, n + 1) / n - c, c - jnp.arange(n) / n).max())


fig, axes = plt.subplots(1, len(ts), figsize=(15, 3), sharey=True)
ks = []
for ax, t, samples in zip(axes, ts, xt, strict=True):
    s, sig = ou.scale(t), ou.sigma(t)
    ks.append(
        ks_distance(samples, lambda z, s=s, sig=sig: p0.cdf_projected(jnp.ones(1), z / s, sig))
    )
    ax.hist(np.asarray(samples), bins=80, range=(-5, 6), density=True, color="C0", alpha=0.5)
    ax.plot(x_grid, jax.vmap(density, (0, None))(x_grid, t), "k", lw=1.5)
    if t == t_final:
        ax.plot(x_grid, p_pde, "C3--", lw=1.5, label="finite differences")
    ax.set(title=f"t = {t:g}   KS = {ks[-1]:.3f}", xlim=(-5, 6))
axes[0].set_ylabel("density")
axes[-1].plot(x_grid, norm.pdf(x_grid), "C2:", lw=2, label=r"$\mathcal{N}(0, 1)$")
axes[-1].legend(fontsize=8)
plt.show()

# 1.95 / sqrt(n) is the 0.1% critical value of the KS statistic
print("KS distances:", np.round(ks, 4), f" (0.1% critical value {1.95 / np.sqrt(num):.4f})")
assert max(ks) < 1.95 / np.sqrt(num)

# %% [markdown]
# ## The stationary distribution
#
# At $t = 6$ the memory of $p_0$ has decayed like $e^{-t}$: the samples are indistinguishable
# from $\mathcal N(0, 1)$, whatever $p_0$ was. The mean and variance relax exactly as
# $m_t = e^{-t} m_0$ and $v_t = e^{-2t} v_0 + 1 - e^{-2t}$.

# %%
m0, v0 = float(p0.mean()[0]), float(p0.covariance()[0, 0])
t_fine = np.linspace(0, 6, 200)
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(t_fine, np.exp(-t_fine) * m0, "C0", label="mean $e^{-t} m_0$")
ax.plot(t_fine, np.exp(-2 * t_fine) * v0 + 1 - np.exp(-2 * t_fine), "C1", label="variance")
ax.plot(ts, xt.mean(axis=1), "C0o")
ax.plot(ts, xt.var(axis=1), "C1o", label="simulated")
ax.set(xlabel="t")
ax.legend()
plt.show()

ks_stationary = ks_distance(xt[-1], norm.cdf)
print(f"KS distance of X_6 to N(0, 1): {ks_stationary:.4f}")
assert ks_stationary < 1.95 / np.sqrt(num)
assert jnp.allclose(jax.vmap(density, (0, None))(x_grid, 6.0), norm.pdf(x_grid), atol=2e-3)

# %% [markdown]
# ## Takeaway
#
# An SDE moves probability around according to the Fokker–Planck equation
# $\partial_t p = -\partial_x(f p) + \tfrac12 g^2 \partial_x^2 p$: simulated particles, a PDE
# solver and the closed-form density all agree. For the OU process — the VP diffusion with
# constant $\beta$ — the solution forgets its start exponentially fast and converges to
# $\mathcal N(0, 1)$. Diffusion models run this flow forward to turn data into noise; the
# next notebooks run it backwards.
