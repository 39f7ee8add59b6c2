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
# # 3. Convergence of SDE solvers
#
# **What you will learn**
#
# - the two ways an SDE solver can be accurate: **strong** (path by path) and **weak**
#   (in distribution), and how to measure each;
# - that Euler–Maruyama has strong order $\tfrac12$ and weak order $1$, Milstein strong
#   order $1$, and a stochastic Runge–Kutta method (ShARK) strong order $1$ on this problem;
# - how to run an honest convergence study: every step size sees **the same Brownian paths**
#   (`jd.DiscreteBrownianPath`), the reference is the **exact** solution, and the order is the
#   **fitted slope** of a log-log plot.

# %%
import jax.numpy as jnp
import jax.random as jr
import matplotlib.pyplot as plt
import numpy as np

import jaxdiff as jd

# %% [markdown]
# ## Strong and weak error
#
# For a solver with step $h$ producing $X^h_T$, and the exact solution $X_T$ driven by the
# same Brownian motion,
# $$e_{\text{strong}}(h) = \mathbb E\,|X^h_T - X_T| \le C h^{\gamma}, \qquad
#   e_{\text{weak}}(h) = \big|\mathbb E\,\varphi(X^h_T) - \mathbb E\,\varphi(X_T)\big|
#   \le C h^{\beta}.$$
# Strong order $\gamma$ matters when you care about individual paths (a coupling, a
# Brownian path given in advance); weak order $\beta$ when you only care about the
# distribution — the usual case for sampling from a diffusion model.
#
# | scheme | update for $dX = a\,dt + b\,dW$ | strong | weak |
# |---|---|---|---|
# | Euler–Maruyama | $X + a h + b\,\Delta W$ | $1/2$ | $1$ |
# | Milstein | $\dots + \tfrac12 b\,b' (\Delta W^2 - h)$ | $1$ | $1$ |
# | ShARK (`"srk"`) | Runge–Kutta stages with $\Delta W$ and Lévy area | $1$ here | measured below |
#
# (ShARK is strong order $1$ for commutative noise, as here, and $1.5$ for additive noise.)
#
# The test problem is geometric Brownian motion $dX = \mu X\,dt + \sigma X\,dW$ with its exact
# solution $X_T = X_0 e^{(\mu - \sigma^2/2)T + \sigma W_T}$ (notebook 2). The parameters go in
# through `args` (traced arrays), so the two studies below share compiled solves.

# %%
gbm = jd.SDE(
    drift=lambda t, x, p: p["mu"] * x,
    diffusion=lambda t, x, p: p["sigma"] * x,
)
T, num_paths = 1.0, 4000
x0 = jnp.ones(num_paths)
ks = np.arange(5, 8)  # step sizes h = 2^-5, 2^-6, 2^-7
hs = 2.0**-ks
solvers = ["euler_maruyama", "milstein", "srk"]
# one stored Brownian path per sample, fine enough for every step size; it also provides
# the space-time Lévy area that the stochastic Runge–Kutta method needs
path = jd.DiscreteBrownianPath(jr.key(0), 0.0, T, int(2 ** ks.max()), gbm.noise_shape(x0))
W_T = path.evaluate(T)


def study(mu, sigma):
    """X_T^h - X_T for every solver and step size, on the shared paths."""
    p = {"mu": jnp.asarray(mu), "sigma": jnp.asarray(sigma)}
    exact = jnp.exp((mu - sigma**2 / 2) * T + sigma * W_T)
    ts = jnp.array([0.0, T])
    return {
        s: np.stack(
            [
                np.asarray(
                    jd.solve_sde(gbm, x0, ts, brownian=path, dt=h, solver=s, args=p)[-1] - exact
                )
                for h in hs
            ]
        )
        for s in solvers
    }


def slope(h, err):
    return np.polyfit(np.log(h), np.log(err), 1)[0]


# %% [markdown]
# ## Strong order
#
# Noise-dominated GBM ($\mu = 0.5$, $\sigma = 1$): the strong error is the mean absolute
# difference between the solver's endpoint and the exact one, over 4000 paths.

# %%
diffs = study(0.5, 1.0)
strong = {s: np.mean(np.abs(d), axis=1) for s, d in diffs.items()}
strong_order = {s: slope(hs, e) for s, e in strong.items()}

fig, ax = plt.subplots(figsize=(6, 4.5))
for s, e in strong.items():
    ax.loglog(hs, e, "o-", label=f"{s}: slope {strong_order[s]:.2f}")
ax.loglog(hs, 0.8 * strong["euler_maruyama"][0] * (hs / hs[0]) ** 0.5, "k:", label=r"$h^{1/2}$")
ax.loglog(hs, 0.8 * strong["milstein"][0] * (hs / hs[0]), "k--", label=r"$h^{1}$")
ax.set(xlabel="step h", ylabel=r"$\mathbb{E}|X^h_T - X_T|$", title="Strong error")
ax.legend(fontsize=8)
plt.show()
print("strong orders:", {s: round(float(o), 3) for s, o in strong_order.items()})

assert abs(strong_order["euler_maruyama"] - 0.5) < 0.1
assert abs(strong_order["milstein"] - 1.0) < 0.1
assert abs(strong_order["srk"] - 1.0) < 0.15
assert max(strong["milstein"][-1], strong["srk"][-1]) < strong["euler_maruyama"][-1] / 3

# %% [markdown]
# ## Weak order
#
# The weak error of the mean, $\mathbb E X^h_T - X_0 e^{\mu T}$, is a bias of size $O(h)$
# that a plain Monte Carlo average would drown in its own $O(N^{-1/2})$ noise. Since
# $\mathbb E X_T = X_0 e^{\mu T}$ exactly, we estimate it instead as the mean of
# $X^h_T - X_T$ over the shared paths: same expectation, far smaller variance (a *control
# variate*). A drift-dominated GBM ($\mu = 1.5$, $\sigma = 0.3$) makes the bias visible.
# (For GBM, Euler–Maruyama and Milstein have the same mean, $X_0 (1 + \mu h)^{T/h}$.)

# %%
mu_w, sigma_w = 1.5, 0.3
diffs_w = study(mu_w, sigma_w)
weak = {s: np.abs(np.mean(d, axis=1)) for s, d in diffs_w.items()}
weak_order = {s: slope(hs, e) for s, e in weak.items()}
em_mean_exact = np.exp(mu_w * T) - (1 + mu_w * hs) ** (T / hs)

fig, ax = plt.subplots(figsize=(6, 4.5))
for s, e in weak.items():
    ax.loglog(hs, e, "o-", label=f"{s}: slope {weak_order[s]:.2f}")
ax.loglog(hs, em_mean_exact, "k+", ms=10, label=r"$e^{\mu T} - (1 + \mu h)^{T/h}$")
ax.set(
    xlabel="step h", ylabel=r"$|\mathbb{E} X^h_T - \mathbb{E} X_T|$", title="Weak error of the mean"
)
ax.legend(fontsize=8)
plt.show()
print("weak orders:", {s: round(float(o), 3) for s, o in weak_order.items()})

assert abs(weak_order["euler_maruyama"] - 1.0) < 0.15
assert abs(weak_order["milstein"] - 1.0) < 0.15
assert np.allclose(weak["euler_maruyama"], em_mean_exact, rtol=0.1)

# %% [markdown]
# ## Takeaway
#
# Measure convergence the way the theory defines it: the same Brownian path for every step
# size, an exact reference, and the slope of a log-log fit. Doing so on geometric Brownian
# motion, Euler–Maruyama's strong error falls like $h^{1/2}$ — halving it costs four times the
# steps — while Milstein's correction $\tfrac12 b b'(\Delta W^2 - h)$ and the stochastic
# Runge–Kutta method reach $h^1$. In distribution Euler–Maruyama is already first order, which
# is why diffusion-model samplers, which only need the distribution, get away with it; their
# progress comes from better drift integration (notebooks on samplers) rather than higher strong
# order.
