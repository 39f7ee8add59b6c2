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
# # 12. Diffusion bridges: Doob's h-transform, DDBM and DBIM
#
# **What you will learn**
#
# - **Doob's h-transform**: how conditioning a diffusion on where it ends adds the drift
#   $g^2\,\nabla_x\log p(x_T \mid x_t)$ — exact for the **Brownian bridge**, whose mean and
#   variance interpolate linearly in time;
# - the VE and VP **diffusion bridges** of DDBM (Zhou et al. 2024): the same construction for
#   the processes of diffusion models, with Gaussian marginals
#   $q(x_t \mid x_0, x_T) = \mathcal N(a_t x_T + b_t x_0, c_t I)$ (`jd.bridges`);
# - how a bridge turns diffusion models into **translators** between two distributions
#   ($x_T$ = a sketch, $x_0$ = the picture): DDBM's hybrid SDE/ODE sampler and DBIM's
#   implicit sampler (Zheng et al. 2024) draw $x_0 \sim p(x_0 \mid x_T)$ given a bridge
#   denoiser $D(x_t, t, x_T) = \mathbb E[x_0 \mid x_t, x_T]$;
# - to check both samplers against an **exact oracle** — jointly Gaussian pairs
#   (`jd.bridges.GaussianPair`) — and to move a 2-D toy distribution onto another.

# %%
import jax.numpy as jnp
import jax.random as jr
import matplotlib.pyplot as plt
import numpy as np

import jaxdiff as jd

B = jd.bridges

# %% [markdown]
# ## Doob's h-transform and the Brownian bridge
#
# Let $dX = f\,dt + g\,dW$ and condition on the end point $X_T = y$. Bayes' rule on paths
# (Doob 1957) says the conditioned process is again a diffusion, with the extra drift
# $$dX = \big[f + g^2\,\nabla_x\log h(t, X)\big]\,dt + g\,dW,\qquad
# h(t, x) = p(X_T = y \mid X_t = x).$$
# For Brownian motion ($f = 0$, $g = 1$), $h = \mathcal N(y; x, T - t)$, so
# $\nabla\log h = (y - x)/(T - t)$: a pull towards $y$ that grows without bound as
# $t \to T$. The solution, started at $X_0 = x_0$, is the **Brownian bridge**, Gaussian with
# $$\mathbb E X_t = x_0 + \tfrac tT (y - x_0),\qquad \operatorname{Var} X_t = \frac{t(T - t)}{T}.$$
# We simulate 20 000 paths of the conditioned SDE with `jd.solve_sde` (Euler–Maruyama,
# $\Delta t = 10^{-3}$) up to $t = 0.95$ and compare.

# %%
T, x_start, y_end, n_paths = 1.0, 0.0, 1.0, 20_000
bridge_sde = jd.SDE(
    drift=lambda t, x, args: (y_end - x) / (T - t),  # the h-transform of Brownian motion
    diffusion=lambda t, x, args: jnp.ones_like(x),
)
ts = np.linspace(0.0, 0.95, 20)
paths = jd.solve_sde(bridge_sde, jnp.full(n_paths, x_start), ts, key=jr.key(0), dt=1e-3)
mean_exact = x_start + ts / T * (y_end - x_start)
var_exact = ts * (T - ts) / T
mean_sim, var_sim = np.asarray(paths.mean(axis=1)), np.asarray(paths.var(axis=1))

fig, axes = plt.subplots(1, 2, figsize=(12, 4))
axes[0].plot(ts, paths[:, :30], lw=0.7, alpha=0.7)
axes[0].plot([T], [y_end], "k*", ms=12)
axes[0].set(xlabel="t", title=f"Brownian motion conditioned on $X_{{{T:g}}} = {y_end:g}$")
axes[1].plot(ts, mean_sim, "C0o", ms=4, label="simulated mean")
axes[1].plot(ts, mean_exact, "C0-", label=r"$x_0 + \frac{t}{T}(y - x_0)$")
axes[1].plot(ts, var_sim, "C1o", ms=4, label="simulated variance")
axes[1].plot(ts, var_exact, "C1-", label=r"$t(T-t)/T$")
axes[1].set(xlabel="t", title="exact moments of the bridge")
axes[1].legend(fontsize=8)
plt.show()

se_mean = np.sqrt(var_exact[1:] / n_paths)
z_mean = np.abs(mean_sim[1:] - mean_exact[1:]) / se_mean
rel_var = np.abs(var_sim[1:] / var_exact[1:] - 1)
se_var = np.sqrt(2 / n_paths)
print(
    f"max |mean error| = {z_mean.max():.1f} standard errors; "
    f"max relative variance error = {rel_var.max():.3f} (standard error {se_var:.3f})"
)
assert z_mean.max() < 5
assert rel_var.max() < 5 * se_var + 0.01  # Monte Carlo, plus Euler's O(dt)

# %% [markdown]
# ## Bridges of the diffusion processes
#
# The same construction for a diffusion model's forward process
# $x_t = \alpha_t x_0 + \sigma_t\varepsilon$ ($\mathrm{SNR}_t = \alpha_t^2/\sigma_t^2$), pinned
# at $x_T$, gives (DDBM)
# $$q(x_t \mid x_0, x_T) = \mathcal N(a_t x_T + b_t x_0, c_t I),\quad
# a_t = \frac{\mathrm{SNR}_T}{\mathrm{SNR}_t}\frac{\alpha_t}{\alpha_T},\
# b_t = \alpha_t\Big(1 - \frac{\mathrm{SNR}_T}{\mathrm{SNR}_t}\Big),\
# c_t = \sigma_t^2\Big(1 - \frac{\mathrm{SNR}_T}{\mathrm{SNR}_t}\Big),$$
# and the h-transform drift $g^2 h$ with $h = \nabla_{x_t}\log p(x_T \mid x_t)$
# (`bridge.h_transform`). The **VE bridge** ($\alpha = 1$, $\sigma_t = t$, $dx = \sqrt{2t}\,dW$)
# is the Brownian bridge in the clock $s = t^2$: mean $\frac{t^2}{T^2}x_T + (1 -
# \frac{t^2}{T^2})x_0$, variance $t^2(1 - t^2/T^2)$. The **VP bridge** adds the drift
# $f(t)\,x = -\frac12\beta(t)\,x$. We simulate both forward,
# $dx = [f x + g^2 h(x, t, x_T)]\,dt + g\,dW$ from $x_0 = 0.5$ to $x_T = -1$ (starting just
# after $t = 0$, at $t_0 = 10^{-3}\,T$, from `bridge.perturb`), and check the marginals against
# `bridge.coefficients(t)`.

# %%
bridges = {"VE bridge (T = 1)": B.VE(sigma_max=1.0), "VP bridge (T = 1)": B.VP()}
x0_val, xT_val, n = 0.5, -1.0, 10_000
fig, axes = plt.subplots(1, 2, figsize=(12, 4))
for ax, (name, br) in zip(axes, bridges.items(), strict=True):
    x_T_arr = jnp.full(n, xT_val)
    sde = jd.SDE(
        drift=lambda t, x, args, br=br, x_T=x_T_arr: (
            br.f(t) * x + br.g2(t) * br.h_transform(x, t, x_T)
        ),
        diffusion=lambda t, x, args, br=br: jnp.sqrt(br.g2(t)) * jnp.ones_like(x),
    )
    t_grid = np.linspace(1e-3, 0.9, 12) * br.T
    start = br.perturb(jnp.full(n, x0_val), x_T_arr, t_grid[0], jr.key(1))
    xs = jd.solve_sde(sde, start, t_grid, key=jr.key(2), dt=1e-3 * br.T)
    a, b, c = (np.asarray(v) for v in br.coefficients(t_grid))
    mean_b, var_b = a * xT_val + b * x0_val, c
    ax.plot(t_grid, xs[:, :25], lw=0.6, alpha=0.6)
    ax.plot(t_grid, mean_b, "k-", lw=2, label=r"$a_t x_T + b_t x_0$")
    ax.plot(t_grid, mean_b + 2 * np.sqrt(var_b), "k--", lw=1, label=r"$\pm 2\sqrt{c_t}$")
    ax.plot(t_grid, mean_b - 2 * np.sqrt(var_b), "k--", lw=1)
    ax.set(xlabel="t", title=name)
    ax.legend(fontsize=8)
    z = np.abs(np.asarray(xs.mean(axis=1)) - mean_b)[1:] / np.sqrt(var_b[1:] / n)
    rv = np.abs(np.asarray(xs.var(axis=1))[1:] / var_b[1:] - 1)
    print(f"{name}: max mean error {z.max():.1f} SE, max relative variance error {rv.max():.3f}")
    assert z.max() < 5 and rv.max() < 5 * np.sqrt(2 / n) + 0.01
plt.show()

# %% [markdown]
# ## Sampling $x_0$ given $x_T$: DDBM and DBIM
#
# A bridge model learns $D(x_t, t, x_T) \approx \mathbb E[x_0 \mid x_t, x_T]$ from pairs
# $(x_0, x_T)$, as a diffusion model learns $D(x;\sigma)$; its score is
# $s = -(x_t - a_t x_T - b_t D)/c_t$. Then, starting from $x_T$ at $t = T$:
#
# - **DDBM** integrates the reverse bridge SDE $dx = [f x - g^2(s - h)]\,dt + g\,d\bar W$ for a
#   fraction (0.33) of each step, then its probability-flow ODE
#   $dx = [f x - g^2(s/2 - h)]\,dt$ by Heun's method: 3 NFE per step.
# - **DBIM** is DDIM for bridges: with $\hat x_0 = D(x_s, s, x_T)$,
#   $x_t = a_t x_T + b_t\hat x_0 + \frac{\sqrt{c_t}}{\sqrt{c_s}}(x_s - a_s x_T - b_s\hat x_0)$
#   (for $\eta = 0$), after a first "booting" step that draws $x_{t_0}$ from
#   $q(x_{t_0} \mid \hat x_0, x_T)$; 1 NFE per step, and orders 2 and 3 as exponential
#   integrators.
#
# **The oracle.** If $(x_0, x_T)$ is jointly Gaussian, $p(x_0 \mid x_T) = \mathcal N(m(x_T), v)$
# in closed form, and $x_t$ is a linear Gaussian observation of $x_0$, so the bridge denoiser
# is exact too (`jd.bridges.GaussianPair`). Each sampler should return $x_0 - m(x_T)$ with mean
# 0 and covariance $\mathrm{diag}(v)$; we measure the relative (Frobenius) error of the sampled
# covariance over 20 000 pairs (Monte Carlo error about 0.015) on DDBM's VE bridge, $T = 80$.

# %%
pair = B.GaussianPair(
    mean0=jnp.array([0.3, -0.2]),
    meanT=jnp.array([0.1, 0.4]),
    var0=jnp.array([0.25, 0.16]),
    varT=jnp.array([0.25, 0.36]),
    cov=jnp.array([0.15, -0.12]),  # x_0 and x_T correlated in each coordinate
)
ve = B.VE(sigma_max=80.0)
x_T = pair.sample_T(jr.key(3), 20_000)
m, v = pair.conditional(x_T)


def errors(solver, steps):
    x0 = B.sample(pair.denoiser(ve), x_T, ve, steps=steps, solver=solver, key=jr.key(4))
    r = np.asarray(x0 - m)
    cov, want = np.cov(r.T), np.diag(np.asarray(v))
    mean_err = float(np.max(np.abs(r.mean(axis=0)) / np.sqrt(np.asarray(v))))
    return mean_err, float(np.linalg.norm(cov - want) / np.linalg.norm(want))


runs = {
    "DDBM": (B.DDBM(), [10, 20, 40]),
    "DBIM, order 1": (B.DBIM(), [9, 29, 59]),
    "DBIM, order 3": (B.DBIM(order=3), [14, 29, 59]),
}
table = {}
fig, ax = plt.subplots(figsize=(7, 4.5))
for name, (solver, steps_list) in runs.items():
    nfes = [solver.nfe(s) for s in steps_list]
    errs = [errors(solver, s) for s in steps_list]
    table[name] = dict(zip(nfes, errs, strict=True))
    ax.loglog(nfes, [e[1] for e in errs], "o-", label=name)
ax.axhline(0.015, color="k", ls=":", label="Monte Carlo error")
ax.set(xlabel="NFE", ylabel="relative covariance error", title="p(x_0 | x_T), VE bridge, T = 80")
ax.legend()
plt.show()
for name, t in table.items():
    print(name, {nfe: f"mean {e[0]:.3f}, cov {e[1]:.3f}" for nfe, e in t.items()})

# every sampler is unbiased in the mean; with enough steps both reproduce the covariance
assert all(e[0] < 0.05 for t in table.values() for e in t.values())
assert table["DDBM"][119][1] < 0.12 and table["DBIM, order 3"][60][1] < 0.1
# at about 30 NFE, DBIM (first or third order) beats DDBM by a wide margin
assert table["DBIM, order 3"][30][1] < table["DBIM, order 1"][30][1] < table["DDBM"][29][1]

# %% [markdown]
# ## From one 2-D distribution to another
#
# A paired toy translation task: $x_T$ is a point of the two-moons distribution
# (`jd.train.toy("moons")`) and $x_0$ lands near the point of a ring of radius 2 in the same
# direction — the nearest of 8 modes by angle, with standard deviation $0.15$. So
# $p(x_0 \mid x_T) = \mathcal N(m(x_T), s^2 I)$ with a nonlinear $m$, and the bridge denoiser
# is still exact: $x_t - a_t x_T = b_t x_0 + \sqrt{c_t}\,\varepsilon$ is a Gaussian
# observation of $x_0$, so
# $$D(x_t, t, x_T) = m + \frac{s^2 b_t}{b_t^2 s^2 + c_t}\,(x_t - a_t x_T - b_t m)
# = m + \frac{s^2\alpha_t}{b_t\alpha_t s^2 + \sigma_t^2}\,(x_t - a_t x_T - b_t m),$$
# the second form finite at $t = T$. DBIM (third order, 60 NFE) on the VE bridge moves each
# moon point onto its mode.

# %%
s_mode = 0.15


def ring_target(x_T):
    """m(x_T): the ring mode (radius 2, 8 modes) closest in angle to x_T."""
    k = jnp.round(jnp.arctan2(x_T[:, 1], x_T[:, 0]) / (2 * jnp.pi / 8))
    return 2.0 * jnp.stack([jnp.cos(k * jnp.pi / 4), jnp.sin(k * jnp.pi / 4)], axis=-1)


def translation_denoiser(x_t, t, x_T):
    a, b, _ = ve.coefficients(t)
    m_t = ring_target(x_T)
    gain = s_mode**2 * ve.alpha(t) / (b * ve.alpha(t) * s_mode**2 + ve.sigma_sq(t))
    return m_t + gain * (x_t - a * x_T - b * m_t)


moons = jd.train.toy("moons", 4000, jr.key(5))
rings = B.sample(translation_denoiser, moons, ve, steps=59, solver=B.DBIM(order=3), key=jr.key(6))
resid = np.asarray(rings - ring_target(moons))

fig, ax = plt.subplots(figsize=(6.5, 6.5))
for i in range(300):
    ax.plot(*np.stack([moons[i], rings[i]]).T, "k-", lw=0.3, alpha=0.4)
ax.scatter(moons[:, 0], moons[:, 1], s=1, label="$x_T$: moons")
ax.scatter(rings[:, 0], rings[:, 1], s=1, label="$x_0$: DBIM samples")
ax.set(aspect="equal", title="a bridge from moons to a ring")
ax.legend(markerscale=8)
plt.show()
print(f"residual x_0 - m(x_T): mean {resid.mean(0).round(4)}, std {resid.std(0).round(4)}")
assert bool(jnp.all(jnp.isfinite(rings)))
assert np.all(np.abs(resid.mean(axis=0)) < 0.02)
assert np.all(np.abs(resid.std(axis=0) / s_mode - 1) < 0.1)

# %% [markdown]
# ## Takeaway
#
# Conditioning a diffusion on its end point is just another drift: Doob's h-transform adds
# $g^2\nabla\log p(x_T \mid x_t)$, and for Brownian motion it yields the Brownian bridge with
# its exactly linear mean and $t(T-t)/T$ variance. The same transform applied to the VE and
# VP processes gives the Gaussian bridges $\mathcal N(a_t x_T + b_t x_0, c_t I)$ behind
# diffusion bridge models, which translate one distribution into another given pairs. With an
# exact bridge denoiser both DDBM's hybrid sampler and DBIM reproduce $p(x_0 \mid x_T)$; DBIM,
# an implicit DDIM-like sampler with higher-order variants, gets there with a fraction of the
# evaluations.
