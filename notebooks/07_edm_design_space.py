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
# # 7. EDM's design space: schedules, preconditioning, solvers and stochastic churn
#
# **What you will learn**
#
# - EDM's view (Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based
#   Generative Models"): every diffusion model is one ODE in **sigma-space**,
#   $dx/d\sigma = (x - D(x;\sigma))/\sigma$, and the choices that matter are separate knobs —
#   the **noise schedule** (where to put the steps), the **preconditioning** (how a network
#   is wrapped into a denoiser), the **ODE solver** and the amount of **stochasticity**;
# - to measure a sampler honestly: the global error against a converged reference solution of
#   the *same* ODE from the *same* starting noise, as a function of the number of denoiser
#   evaluations (**NFE**), with the exact denoiser of a Gaussian mixture so that every error is
#   the sampler's;
# - that Euler's method is first order and Heun's second order, that Karras' $\rho = 7$ grid
#   beats a uniform one by orders of magnitude, that the multistep DPM-Solver++ gets second
#   order for one evaluation per step, and that churn costs accuracy when the denoiser is exact.

# %%
import jax
import jax.numpy as jnp
import jax.random as jr
import matplotlib.pyplot as plt
import numpy as np

import jaxdiff as jd

# float64: the reference solution must be far more accurate than the samplers we measure
jax.config.update("jax_enable_x64", True)

gm = jd.analytic.ring(dtype=jnp.float64)  # 8 Gaussians of std 0.15 on a circle of radius 2
sigma_min, sigma_max = 0.002, 80.0
x_T = sigma_max * jr.normal(jr.key(0), (1000, 2), jnp.float64)  # one shared starting noise

# %% [markdown]
# ## The probability-flow ODE in sigma-space
#
# With $x_\sigma = x_0 + \sigma\varepsilon$ (EDM's form with $s = 1$, $t = \sigma$) the
# probability-flow ODE is
# $$\frac{dx}{d\sigma} = -\sigma\,\nabla_x\log p(x;\sigma) = \frac{x - D(x;\sigma)}{\sigma},
# \qquad D(x;\sigma) = \mathbb E[x_0 \mid x_\sigma = x],$$
# by Tweedie's formula $\nabla\log p(x;\sigma) = (D - x)/\sigma^2$. Every sampler below walks
# a decreasing grid $\sigma_0 = 80 > \sigma_1 > \dots > \sigma_{N-1} = 0.002 > \sigma_N = 0$
# (`jd.sample(denoiser, x, sigmas, solver=...)`). The last step, to $\sigma = 0$, returns
# $D(x;\sigma_{N-1})$ for every sampler, so the error we measure is the one accumulated down
# to $\sigma_{\min}$.
#
# The reference: DPM-Solver++(3M) with 1024 steps. We compare every sampler with it by the
# root-mean-square distance between the end points,
# $\mathrm{err} = \big(\tfrac1M\sum_m \lVert x^{(m)} - x^{(m)}_{\rm ref}\rVert^2\big)^{1/2}$.


# %%
def karras(n, rho=7.0):
    return jd.schedules.karras(n, sigma_min, sigma_max, rho=rho, dtype=jnp.float64)


ref = jd.sample(gm.denoiser, x_T, karras(1024), solver=jd.samplers.DPMpp3M())
ref_check = jd.sample(gm.denoiser, x_T, karras(512), solver=jd.samplers.DPMpp3M())


def rms(x):
    return float(jnp.sqrt(jnp.mean(jnp.sum((x - ref) ** 2, axis=-1))))


print(f"reference: 512 vs 1024 steps differ by {rms(ref_check):.1e}")
assert rms(ref_check) < 1e-4

# %% [markdown]
# ## Time discretization: where to put the steps
#
# The ODE is stiff near the data (the denoiser changes fast at small $\sigma$) and nearly
# linear at large $\sigma$, so steps belong at small $\sigma$. EDM's grid interpolates
# linearly in $\sigma^{1/\rho}$:
# $$\sigma_i = \Big(\sigma_{\max}^{1/\rho} + \tfrac{i}{N-1}\big(\sigma_{\min}^{1/\rho} -
# \sigma_{\max}^{1/\rho}\big)\Big)^\rho,\qquad i = 0, \dots, N-1 .$$
# $\rho = 1$ is a uniform grid, $\rho \to \infty$ the geometric grid (uniform in
# $\log\sigma$, `jd.schedules.exponential`); EDM found $\rho = 7$ best. We also try the
# VP grid (uniform in VP time) and the "KL-optimal" grid (uniform in $\arctan\sigma$).
# Changing the grid but not its length reuses the compiled sampler, so these comparisons are
# cheap.

# %%
n_sched = 20  # Heun, 20 steps = 39 NFE
schedules = {
    r"Karras $\rho=7$": karras(n_sched),
    r"uniform ($\rho=1$)": karras(n_sched, rho=1.0),
    "exponential": jd.schedules.exponential(n_sched, sigma_min, sigma_max, dtype=jnp.float64),
    "VP": jd.schedules.vp(n_sched, sigma_min, sigma_max, dtype=jnp.float64),
    "KL-optimal": jd.schedules.kl_optimal(n_sched, sigma_min, sigma_max, dtype=jnp.float64),
}
heun = jd.samplers.Heun()
sched_err = {k: rms(jd.sample(gm.denoiser, x_T, s, solver=heun)) for k, s in schedules.items()}
rhos = np.array([1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 7.0, 10.0, 15.0, 25.0, 50.0])
rho_err = np.array(
    [rms(jd.sample(gm.denoiser, x_T, karras(n_sched, r), solver=heun)) for r in rhos]
)

fig, axes = plt.subplots(1, 3, figsize=(16, 4))
for name, s in schedules.items():
    axes[0].semilogy(np.arange(n_sched), s[:-1], ".-", label=name)
axes[0].set(xlabel="step $i$", ylabel=r"$\sigma_i$", title=f"{n_sched}-step grids")
axes[0].legend(fontsize=8)
axes[1].barh(list(sched_err), list(sched_err.values()), color="C0")
axes[1].set(xscale="log", xlabel="RMS error", title=f"Heun, {heun.nfe(n_sched)} NFE")
axes[2].loglog(rhos, rho_err, "o-")
axes[2].axvline(7.0, color="k", ls=":", lw=1)
axes[2].set(xlabel=r"$\rho$", ylabel="RMS error", title=r"Karras grid: error against $\rho$")
plt.tight_layout()
plt.show()
for k, v in sched_err.items():
    print(f"{k:22s} {v:.2e}")
# rho = 7 beats the uniform grid by orders of magnitude, and sits near the optimum over rho
print("error against rho:", dict(zip(rhos, np.round(rho_err, 4), strict=True)))
assert sched_err[r"Karras $\rho=7$"] < 0.05 * sched_err[r"uniform ($\rho=1$)"]
assert rho_err[rhos == 7.0][0] < 2 * rho_err.min()

# %% [markdown]
# ## Preconditioning: what the network actually learns
#
# A network $F_\theta$ is wrapped into a denoiser
# $$D(x;\sigma) = c_{\rm skip}(\sigma)\,x + c_{\rm out}(\sigma)\,F_\theta\big(c_{\rm in}(\sigma)\,x;
# c_{\rm noise}(\sigma)\big).$$
# EDM asks that the network's input and its training target
# $F^\star = (x_0 - c_{\rm skip}\,x)/c_{\rm out}$ have **unit variance at every noise level**
# (for data of standard deviation $\sigma_d$), and picks $c_{\rm skip}$ to make $c_{\rm out}$,
# the factor by which the network's errors are amplified, as small as possible:
# $$c_{\rm skip} = \frac{\sigma_d^2}{\sigma^2 + \sigma_d^2},\quad
# c_{\rm out} = \frac{\sigma\,\sigma_d}{\sqrt{\sigma^2 + \sigma_d^2}},\quad
# c_{\rm in} = \frac{1}{\sqrt{\sigma^2 + \sigma_d^2}},\quad c_{\rm noise} = \tfrac14\ln\sigma .$$
# At small $\sigma$ the network predicts the (scaled) noise and $D \approx x$; at large
# $\sigma$ it predicts the data and $D \approx c_{\rm out} F$ with $c_{\rm out} \to \sigma_d$.
# The VE preconditioning ($c_{\rm skip} = 1$, $c_{\rm out} = \sigma$) also has a unit-variance
# target, the noise $-\varepsilon$, but multiplies the network's errors by $\sigma$, up to 80.
# We check EDM's claim by Monte Carlo on Gaussian data with the coefficients of
# `jd.parametrizations.EDMPrecond`.

# %%
sigma_d = 0.5
edm = jd.parametrizations.EDMPrecond(lambda x, c: x, sigma_data=sigma_d)
ve = jd.parametrizations.VEPrecond(lambda x, c: x)
# a quick Monte Carlo in numpy: 20k Gaussian data points, noised at 9 levels
rng = np.random.default_rng(1)
sig = np.geomspace(sigma_min, sigma_max, 9)
x0 = sigma_d * rng.standard_normal((20_000, 1))
noisy = x0 + sig * rng.standard_normal((20_000, 9))
c_skip, c_out, c_in, _ = (np.asarray(c) for c in edm.coefficients(sig))
target_var = np.var((x0 - c_skip * noisy) / c_out, axis=0)
input_var = np.var(c_in * noisy, axis=0)

s_plot = np.geomspace(sigma_min, sigma_max, 200)
fig, axes = plt.subplots(1, 2, figsize=(12, 4))
for name, c in zip(("c_skip", "c_out", "c_in"), edm.coefficients(s_plot)[:3], strict=False):
    axes[0].loglog(s_plot, c, label=f"EDM ${name[0]}_{{\\rm {name[2:]}}}$")
axes[0].loglog(s_plot, ve.coefficients(s_plot)[1], "k--", label=r"VE $c_{\rm out} = \sigma$")
axes[0].set(xlabel=r"$\sigma$", title=r"preconditioning ($\sigma_d = 0.5$)")
axes[0].legend(fontsize=8)
axes[1].semilogx(sig, target_var, "o-", label=r"Var of the target $F^\star$")
axes[1].semilogx(sig, input_var, "s--", label=r"Var of the input $c_{\rm in} x$")
axes[1].set(xlabel=r"$\sigma$", ylim=(0, 2), title="unit variance at every noise level")
axes[1].legend()
plt.show()
print("target variances:", np.round(target_var, 3))
assert np.all(np.abs(target_var - 1) < 0.05) and np.all(np.abs(input_var - 1) < 0.05)
assert float(jnp.max(edm.coefficients(s_plot)[1])) <= sigma_d  # errors are never amplified

# %% [markdown]
# ## The solvers: error against NFE
#
# - **Euler** (DDIM): $x_{i+1} = x_i + (\sigma_{i+1} - \sigma_i)\,d_i$,
#   $d_i = (x_i - D(x_i;\sigma_i))/\sigma_i$; order 1, 1 NFE per step.
# - **Heun** (EDM's Alg. 1): an Euler predictor, then the trapezoidal corrector
#   $x_{i+1} = x_i + (\sigma_{i+1} - \sigma_i)\,\tfrac12(d_i + d'_{i+1})$; order 2, 2 NFE per
#   step (1 on the last).
# - **DPM-Solver++(2M)** (Lu et al. 2022): an exponential integrator in
#   $\lambda = -\log\sigma$ that solves the linear part $x/\sigma$ exactly and extrapolates
#   the denoiser linearly from the previous step; order 2 for 1 NFE per step (the reference
#   above is its third-order sibling, DPM-Solver++(3M)).
# - **iPNDM** (Zhang & Chen 2023): Adams–Bashforth in sigma-space, extrapolating the slope
#   $d$ from up to three previous steps with fixed coefficients; 1 NFE per step.
#
# A method of order $p$ has global error $\propto \mathrm{NFE}^{-p}$: a straight line of slope
# $-p$ on log-log axes. We fit it on the three largest step counts.

# %%
solvers = {
    "Euler": jd.samplers.Euler(),
    "Heun": jd.samplers.Heun(),
    "DPM++(2M)": jd.samplers.DPMpp2M(),
    "iPNDM": jd.samplers.IPNDM(),
}
steps = {name: [10, 20, 40, 80] for name in solvers}
steps["Heun"] = [5, 10, 20, 40, 80]  # NFE 9, 19, 39, 79, 159
nfe, err = {}, {}
for name, solver in solvers.items():
    nfe[name] = np.array([solver.nfe(n) for n in steps[name]])
    err[name] = np.array(
        [rms(jd.sample(gm.denoiser, x_T, karras(n), solver=solver)) for n in steps[name]]
    )
order = {name: -np.polyfit(np.log(nfe[name][-3:]), np.log(err[name][-3:]), 1)[0] for name in err}

fig, ax = plt.subplots(figsize=(7, 5))
for name in solvers:
    ax.loglog(nfe[name], err[name], "o-", label=f"{name} (slope {-order[name]:.2f})")
ax.loglog([10, 80], [0.3, 0.3 / 8], "k:", lw=1, label="order 1")
ax.loglog([10, 80], [0.05, 0.05 / 64], "k--", lw=1, label="order 2")
ax.set(xlabel="NFE", ylabel="RMS error at the end", title="PF-ODE of the ring, Karras grid")
ax.legend(fontsize=8)
plt.show()
for name in solvers:
    print(
        f"{name:10s} fitted order {order[name]:.2f}; errors",
        np.array2string(err[name], precision=2),
    )
assert abs(order["Euler"] - 1) < 0.2
assert abs(order["Heun"] - 2) < 0.3
err_at = {name: dict(zip(nfe[name], err[name], strict=True)) for name in err}
# from 20 NFE on, DPM++(2M) beats Euler, by a factor that grows with the budget
ratio = [err_at["Euler"][n] / err_at["DPM++(2M)"][n] for n in (20, 40, 80)]
print("Euler error / DPM++(2M) error at 20, 40, 80 NFE:", np.round(ratio, 1))
assert 1 < ratio[0] < ratio[1] < ratio[2]
# at 10 NFE the sigma-space multistep method is far ahead of Euler (and of Heun's 9 NFE)
assert err_at["iPNDM"][10] < 0.3 * err_at["Euler"][10]
assert err_at["iPNDM"][10] < 0.3 * err_at["Heun"][9]

# %% [markdown]
# At 10 NFE DPM++(2M) is *not* better than Euler on this ring: its second-order term
# extrapolates the denoiser linearly in $\lambda$ across steps several units of $\lambda$
# long, and at the noise levels where $D$ switches from the mixture's mean to one of its eight
# modes that extrapolation overshoots. Its order shows once the steps are short enough. iPNDM's
# extrapolation of the slope $d = (x - D)/\sigma$, which varies more slowly, works already at
# 10 NFE. Order is an asymptotic statement; at small budgets, measure.

# %% [markdown]
# ## Stochastic churn
#
# EDM's stochastic sampler (Alg. 2, `jd.samplers.EDMStochastic`) first **raises** the noise
# level from $\sigma_i$ to $\hat\sigma_i = (1 + \gamma)\sigma_i$ by adding fresh noise,
# $\hat x = x + \sqrt{\hat\sigma_i^2 - \sigma_i^2}\,S_{\rm noise}\,\varepsilon$, then takes a
# Heun step from $\hat\sigma_i$ to $\sigma_{i+1}$; $\gamma = \min(S_{\rm churn}/N,
# \sqrt2 - 1)$ for $\sigma_i \in [S_{\rm tmin}, S_{\rm tmax}]$. Adding noise and then
# removing it by the ODE is a Langevin-like correction: it pulls the samples back towards the
# right marginal, which forgives a network's earlier errors, but each churn step is also a
# larger step of the ODE. The samples are now random, so we compare distributions: the mean
# exact log-density $\frac1M\sum_m \log p(x^{(m)})$ of 4000 samples against
# $\mathbb E_p[\log p]$ from exact samples (standard error about 0.02 nats).

# %%
x_T4 = sigma_max * jr.normal(jr.key(3), (4000, 2), jnp.float64)
ll_exact = float(jnp.mean(gm.log_prob(gm.sample(jr.key(4), 20_000))))
churns = [0.0, 5.0, 40.0]  # 40: EDM's ImageNet setting (gamma is capped at sqrt(2) - 1)
churn_steps = [16, 64]
gap = np.zeros((len(churns), len(churn_steps)))
shown = {}
for j, n in enumerate(churn_steps):
    for i, s_churn in enumerate(churns):
        # S_churn as an array: a new value reuses the compiled sampler
        solver = jd.samplers.EDMStochastic(s_churn=jnp.asarray(s_churn))
        x = jd.sample(gm.denoiser, x_T4, karras(n), solver=solver, key=jr.key(5))
        gap[i, j] = float(jnp.mean(gm.log_prob(x))) - ll_exact
        if n == 16 and s_churn in (0.0, 40.0):
            shown[s_churn] = x

fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
for i, s_churn in enumerate(churns):
    axes[0].plot(churn_steps, gap[i], "o-", label=f"$S_{{churn}} = {s_churn:g}$")
axes[0].axhline(0, color="k", lw=0.8)
axes[0].set(xlabel="steps", ylabel=r"mean $\log p$ $-$ exact", title="churn", xticks=churn_steps)
axes[0].legend()
for ax, (s_churn, x) in zip(axes[1:], shown.items(), strict=True):
    title = "Heun" if s_churn == 0 else f"$S_{{churn}} = {s_churn:g}$"
    ax.scatter(x[:, 0], x[:, 1], s=1, alpha=0.4)
    ax.set(title=f"{title}, 16 steps", aspect="equal", xlim=(-3, 3), ylim=(-3, 3))
plt.show()
print("rows: S_churn", churns, "; columns: steps", churn_steps)
print(np.round(gap, 3))
# with an exact denoiser, churn only adds discretization error: at 16 steps Heun (S_churn = 0)
# is far closer to the data than EDM's S_churn = 40; the churned sampler's error shrinks as the
# steps increase (at 64 steps the two are within a few hundredths of a nat)
assert abs(gap[0, 0]) < abs(gap[-1, 0]) - 0.1
assert abs(gap[-1, -1]) < abs(gap[-1, 0]) - 0.1
assert np.all(np.abs(gap[0]) < 0.1)

# %% [markdown]
# ## Takeaway
#
# EDM separates a diffusion sampler into independent choices, and an exact denoiser lets us
# measure each one. The grid matters most: with the same Heun solver and 39 NFE, Karras'
# $\rho = 7$ grid is nearly a hundred times more accurate than a uniform one, because it
# spends its steps at small $\sigma$ where the ODE bends. The solver's order shows as the
# slope of error against NFE — 1 for Euler, 2 for Heun — and multistep methods reach second
# order for one evaluation per step: DPM-Solver++(2M) overtakes Euler from 20 NFE on, and
# iPNDM is already several times better at 10 NFE. Preconditioning is what makes a network's
# job well scaled at every noise level. Stochastic churn is a correction for an imperfect
# denoiser: with the exact one it only costs accuracy, so deterministic higher-order solvers
# on a good grid are the baseline to beat.
