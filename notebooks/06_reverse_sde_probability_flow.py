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
# # 6. Forward and reverse SDEs, and the probability-flow ODE
#
# **What you will learn**
#
# - the **forward SDE** $dx = f(t)\,x\,dt + g(t)\,dW$ that turns data into noise, and its
#   three classic instances: **VP**, **VE** and **sub-VP** (Song et al. 2021);
# - **Anderson's theorem**: the same marginals run backwards in time along the
#   **reverse-time SDE** $dx = [f x - g^2 \nabla\log p_t(x)]\,dt + g\,d\bar W$;
# - the **probability-flow ODE** $dx = [f x - \tfrac12 g^2 \nabla \log p_t(x)]\,dt$, a
#   deterministic flow with the same marginals — hence invertible: an encoder and a decoder;
# - to check all of it with the **exact score** of a Gaussian mixture
#   (`gm.process_score(process)`) and its exact log-density, so that every error you see is the
#   solver's, not a network's.

# %%
import jax.numpy as jnp
import jax.random as jr
import matplotlib.pyplot as plt
import numpy as np

import jaxdiff as jd

gm = jd.analytic.ring()  # 8 equal Gaussians of std 0.15 on a circle of radius 2
processes = {"VP": jd.VP(), "VE": jd.VE(), "sub-VP": jd.SubVP()}

# %% [markdown]
# ## Three forward processes
#
# Each is linear with Gaussian transitions, written as $x_t = s(t)\,(x_0 + \sigma(t)\,\varepsilon)$:
#
# | process | drift $f x$ | $g^2$ | $s(t)$ | std of $x_t \mid x_0$ | prior |
# |---|---|---|---|---|---|
# | VP | $-\tfrac12\beta x$ | $\beta$ | $e^{-B/2}$ | $\sqrt{1 - e^{-B}}$ | $\mathcal N(0, I)$ |
# | sub-VP | $-\tfrac12\beta x$ | $\beta (1 - e^{-2B})$ | $e^{-B/2}$ | $1 - e^{-B}$ | same |
# | VE | $0$ | $d\sigma^2/dt$ | $1$ | $\sigma(t)$ | $\mathcal N(0, 50^2 I)$ |
#
# with $\beta(t) = 0.1 + 19.9\,t$, $B = \int_0^t \beta$, and for VE
# $\sigma(t) = 0.01 \cdot 5000^t$. Sub-VP's variance is always below VP's.

# %%
t_plot = jnp.linspace(1e-3, 1.0, 200)
fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
for name, proc in processes.items():
    axes[0].plot(t_plot, proc.scale(t_plot), label=name)
    axes[1].semilogy(t_plot, proc.scale(t_plot) * proc.sigma(t_plot), label=name)
axes[0].set(xlabel="t", title="scale $s(t)$")
axes[1].set(xlabel="t", title=r"noise std $s(t)\,\sigma(t)$")
axes[1].legend()
plt.show()

# %% [markdown]
# ## Data to noise: the forward VP SDE
#
# Push samples of the mixture through `vp.sde` with Euler–Maruyama and compare them with the
# exact marginal density $p_t$ (`gm.process_log_prob(x, t, vp)`): the modes blur and merge
# into the standard normal prior.

# %%
vp = processes["VP"]
num = 2000
x_data = gm.sample(jr.key(0), num)
ts_fwd = np.array([1e-3, 0.15, 0.3, 0.5, 1.0])
xs_fwd = jd.solve_sde(vp.sde, x_data, ts_fwd, key=jr.key(1), dt=2e-3)

lim = 3.2
g1 = jnp.linspace(-lim, lim, 100)
grid_pts = jnp.stack(jnp.meshgrid(g1, g1), axis=-1)
fig, axes = plt.subplots(1, len(ts_fwd), figsize=(16, 3.2))
fwd_gap = []
x_ref = gm.sample(jr.key(3), 20_000)  # for the exact E[log p_t]
for ax, t, x in zip(axes, ts_fwd, xs_fwd, strict=True):
    ax.contourf(g1, g1, jnp.exp(gm.process_log_prob(grid_pts, t, vp)), levels=20, cmap="Blues")
    ax.scatter(x[:, 0], x[:, 1], s=0.5, c="C3", alpha=0.5)
    ax.set(title=f"t = {t:g}", aspect="equal", xlim=(-lim, lim), ylim=(-lim, lim))
    exact = gm.process_log_prob(vp.perturb(jr.key(2), x_ref, t), t, vp)
    fwd_gap.append(float(jnp.mean(gm.process_log_prob(x, t, vp)) - jnp.mean(exact)))
plt.show()
print("mean log p_t(simulated) - E[log p_t]:", np.round(fwd_gap, 3))
assert max(abs(g) for g in fwd_gap) < 0.1

# %% [markdown]
# ## Noise to data: Anderson's reverse-time SDE
#
# Anderson (1982): if $x_t$ solves the forward SDE with marginals $p_t$, then solving
# $$dx = \big[f(t)\,x - g(t)^2\,\nabla_x \log p_t(x)\big]\,dt + g(t)\,d\bar W_t$$
# **backwards** from $x_T \sim p_T$ gives paths with the same marginals $p_t$, ending at the
# data. The only unknown is the score $\nabla\log p_t$; here it is exact,
# $\nabla \log p_t(x) = \nabla\log p(x/s; \sigma)/s$ (`gm.process_score`).
# `proc.reverse(score)` builds this SDE and `jd.solve_sde` solves it over decreasing times
# $t_{\max} \to t_{\min}$ (500 Euler–Maruyama steps).
#
# ## The probability-flow ODE
#
# Halve the score term and drop the noise:
# $$\frac{dx}{dt} = f(t)\,x - \tfrac12 g(t)^2\,\nabla_x \log p_t(x).$$
# Its solutions have the same marginals $p_t$: the Fokker–Planck equations of the two agree,
# since $\tfrac12 g^2 \nabla^2 p = \nabla\cdot(\tfrac12 g^2\, p\, \nabla \log p)$ moves the
# diffusion into the drift. `proc.probability_flow(score)` is a `jd.SDE` with zero
# diffusion; we solve it with Heun's method (100 steps).
#
# Both runs end at $t_{\min}$, at noise level $\sigma(t_{\min}) \le 0.01$ — negligible next to
# the modes' std $0.15$. We score every sample set with the exact data log-density and compare
# its mean with $\mathbb E_p[\log p]$ from exact samples.

# %%
ll_exact = float(jnp.mean(gm.log_prob(gm.sample(jr.key(4), 50_000))))
samples, mean_ll = {}, {}
for i, (name, proc) in enumerate(processes.items()):
    score = gm.process_score(proc)
    x_T = proc.prior_sample(jr.key(10 + i), (num, 2))
    ts_rev = jnp.array([proc.t_max, proc.t_min])
    x_sde = jd.solve_sde(proc.reverse(score), x_T, ts_rev, key=jr.key(20 + i), dt=2e-3)[-1]
    x_ode = jd.solve_sde(proc.probability_flow(score), x_T, ts_rev, dt=1e-2, solver="heun")[-1]
    for kind, x in (("reverse SDE", x_sde), ("PF-ODE", x_ode)):
        x0 = x / proc.scale(proc.t_min)
        samples[name, kind] = x0
        mean_ll[name, kind] = float(jnp.mean(gm.log_prob(x0)))

fig, axes = plt.subplots(2, 3, figsize=(12, 8))
for ax, ((name, kind), x) in zip(axes.T.ravel(), samples.items(), strict=True):
    ax.contour(g1, g1, jnp.exp(gm.log_prob(grid_pts)), levels=5, colors="k", linewidths=0.5)
    ax.scatter(x[:, 0], x[:, 1], s=1, alpha=0.4)
    ax.set(
        title=f"{name}, {kind}\nmean log p = {mean_ll[name, kind]:.3f}",
        aspect="equal",
        xlim=(-lim, lim),
        ylim=(-lim, lim),
    )
plt.show()

print(f"exact E_p[log p] = {ll_exact:.3f}")
for key, ll in mean_ll.items():
    print(f"{key[0]:7s} {key[1]:12s} mean log p = {ll:.3f}   gap = {ll - ll_exact:+.3f}")
# each mean over 2000 samples has a standard error of about 0.02 nats
for key, ll in mean_ll.items():
    assert abs(ll - ll_exact) < 0.1, key

# %% [markdown]
# ## The PF-ODE is deterministic and invertible
#
# The same $x_T$ always gives the same sample. Run forwards from data, the PF-ODE **encodes**
# each point into a latent $x_T$ distributed as the prior; running backwards **decodes** it.
# Up to the solver's error (Heun, second order) the round trip returns the data point. We
# check it for VP and VE (sub-VP behaves the same: swap it in).

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
round_trip, latent_std = {}, {}
for ax, name in zip(axes, ("VP", "VE"), strict=True):
    proc = processes[name]
    pf = proc.probability_flow(gm.process_score(proc))
    ts = np.linspace(proc.t_min, proc.t_max, 21)
    x_start = x_data * proc.scale(proc.t_min)
    path = jd.solve_sde(pf, x_start, ts, dt=1e-2, solver="heun")  # data -> noise, 21 snapshots
    ts_back = jnp.array([proc.t_max, proc.t_min])
    back = jd.solve_sde(pf, path[-1], ts_back, dt=1e-2, solver="heun")[-1]  # noise -> data
    again = jd.solve_sde(pf, path[-1], ts_back, dt=1e-2, solver="heun")[-1]
    assert jnp.array_equal(back, again)  # deterministic: same latent, same sample
    round_trip[name] = float(jnp.sqrt(jnp.mean((back - x_start) ** 2)) / jnp.std(x_start))
    latent_std[name] = float(jnp.std(path[-1]) / proc.prior_std())
    # first coordinate, divided by s(t) sqrt(1 + sigma(t)^2) (the std of x_t for unit-variance data)
    norm = proc.scale(ts) * jnp.sqrt(1.0 + proc.sigma(ts) ** 2)
    ax.plot(ts, path[:, :40, 0] / norm[:, None], "C0", lw=0.6, alpha=0.7)
    ax.plot(np.full(40, proc.t_min), x_start[:40, 0] / norm[0], "k.", ms=6, label="data")
    ax.plot(np.full(40, proc.t_min), back[:40, 0] / norm[0], "C3x", ms=6, label="decoded")
    ax.set(title=f"{name}: PF-ODE paths (first coordinate, normalized)", xlabel="t")
    ax.legend(fontsize=8)
plt.show()

print("relative round-trip RMS error:", {k: f"{v:.1e}" for k, v in round_trip.items()})
print("latent std / prior std:", {k: round(v, 3) for k, v in latent_std.items()})
for name in round_trip:
    assert round_trip[name] < 1e-2, name
    assert abs(latent_std[name] - 1.0) < 0.05, name

# %% [markdown]
# ## Takeaway
#
# A diffusion model is a forward SDE that turns data into a simple prior, and the two ways
# back that share its marginals: Anderson's reverse-time SDE, stochastic, and the
# probability-flow ODE, deterministic — both need only the score $\nabla\log p_t$. With the exact
# score of a mixture, VP, VE and sub-VP all reproduce the data distribution to within a few
# hundredths of a nat in mean log-likelihood, and the PF-ODE maps data to Gaussian latents and
# back with a round-trip error set only by the ODE solver. What remains in practice is to learn
# the score (notebook 5) and to integrate these equations in as few steps as possible.
