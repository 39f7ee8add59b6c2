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
# # 2. Itô's lemma and geometric Brownian motion
#
# **What you will learn**
#
# - **Itô's lemma**, the chain rule of stochastic calculus, and where its extra
#   $\tfrac12 f''\,g^2\,dt$ term comes from;
# - to solve **geometric Brownian motion** (GBM) $dX = \mu X\,dt + \sigma X\,dW$ exactly with it:
#   $X_t = X_0 \exp\big((\mu - \tfrac12\sigma^2) t + \sigma W_t\big)$;
# - to compare that exact solution with **Euler–Maruyama** (`jd.solve_sde`) on the *same*
#   Brownian path, at several step sizes;
# - why $\mathbb E X_t = X_0 e^{\mu t}$ while the typical path grows only like
#   $e^{(\mu - \sigma^2/2) t}$.

# %%
import diffrax
import jax
import jax.numpy as jnp
import jax.random as jr
import matplotlib.pyplot as plt
import numpy as np

import jaxdiff as jd

mu, sigma, x0, T = 0.5, 0.8, 1.0, 1.0

# %% [markdown]
# ## Itô's lemma
#
# Let $dX = a\,dt + b\,dW$ and $f$ smooth. Taylor-expand to second order,
# $$df = f'(X)\,dX + \tfrac12 f''(X)\,dX^2 + \dots,$$
# and use the rules of notebook 1: $dW^2 = dt$, $dt\,dW = dt^2 = 0$, so $dX^2 = b^2\,dt$:
# $$df(X_t) = \Big(f' a + \tfrac12 f'' b^2\Big)\,dt + f' b\,dW .$$
# The second-order term survives because $dW$ is of size $\sqrt{dt}$.
#
# **GBM.** With $a = \mu X$, $b = \sigma X$ and $f = \log$ ($f' = 1/x$, $f'' = -1/x^2$):
# $$d\log X = (\mu - \tfrac12\sigma^2)\,dt + \sigma\,dW
#   \quad\Longrightarrow\quad X_t = X_0\, e^{(\mu - \sigma^2/2)t + \sigma W_t}.$$
# Ordinary calculus would have said $X_0 e^{\mu t + \sigma W_t}$.

# %%
gbm = jd.SDE(drift=lambda t, x, args: mu * x, diffusion=lambda t, x, args: sigma * x)


def exact_gbm(t, w):
    return x0 * jnp.exp((mu - 0.5 * sigma**2) * t + sigma * w)


# %% [markdown]
# ## Exact solution vs Euler–Maruyama on one path
#
# Euler–Maruyama steps $X_{k+1} = X_k + \mu X_k h + \sigma X_k \Delta W_k$. To compare it with
# the exact solution *path by path* both must see the same Brownian motion: a
# `jd.DiscreteBrownianPath` on a fine grid ($2^{10}$ steps) serves every coarser step size
# exactly, and `path.evaluate(t)` gives $W_t$ for the exact formula.

# %%
fine = 2**10
grid = jnp.linspace(0.0, T, fine + 1)
X0 = jnp.full((1,), x0)
path = jd.DiscreteBrownianPath(
    jr.key(3), 0.0, T, fine, gbm.noise_shape(X0), levy_area=diffrax.BrownianIncrement
)
W = jax.vmap(path.evaluate)(grid)[:, 0]
exact = exact_gbm(grid, W)

fig, ax = plt.subplots(figsize=(8, 4))
ax.plot(grid, exact, "k", lw=2, label="exact (Itô's lemma)")
ax.plot(
    grid, x0 * jnp.exp(mu * grid + sigma * W), "k:", lw=1, label="naive $e^{\\mu t + \\sigma W}$"
)
em_final = {}
for k in (2, 4, 8):
    n = 2**k
    ts_k = jnp.linspace(0.0, T, n + 1)
    xs = jd.solve_sde(gbm, X0, ts_k, brownian=path, dt=T / n)[:, 0]
    em_final[n] = float(xs[-1])
    ax.plot(ts_k, xs, "o-" if n <= 16 else "-", ms=3, lw=1, label=f"Euler–Maruyama, h = 1/{n}")
ax.set(xlabel="t", ylabel="$X_t$", title="One Brownian path, three step sizes")
ax.legend(fontsize=8)
plt.show()

errors = {n: abs(v - float(exact[-1])) for n, v in em_final.items()}
print(f"exact X_T = {float(exact[-1]):.4f}")
for n, e in errors.items():
    print(f"h = 1/{n:<4d} X_T = {em_final[n]:.4f}   |error| = {e:.4f}")

# %% [markdown]
# On a single path the error shrinks as the step does, but not monotonically: it is random.
# Its *average* size, $\mathbb E|X^h_T - X_T|$, decays like $h^{1/2}$ (notebook 3 measures
# that). We check on many paths at once that the finest Euler–Maruyama solution is close to
# the exact one, and that the naive formula is not.

# %%
num_paths = 2000
Xs0 = jnp.full((num_paths,), x0)
paths = jd.DiscreteBrownianPath(
    jr.key(4), 0.0, T, fine, gbm.noise_shape(Xs0), levy_area=diffrax.BrownianIncrement
)
WT = paths.evaluate(T)
exact_T = exact_gbm(T, WT)
xs = jd.solve_sde(gbm, Xs0, grid, brownian=paths, dt=T / fine)  # (fine + 1, num_paths)
em_T = xs[-1]
naive_T = x0 * jnp.exp(mu * T + sigma * WT)

rel_em = float(jnp.mean(jnp.abs(em_T - exact_T) / exact_T))
rel_naive = float(jnp.mean(jnp.abs(naive_T - exact_T) / exact_T))
print(f"mean relative error, Euler–Maruyama h = 1/{fine}: {rel_em:.4f}")
naive_theory = np.expm1(sigma**2 * T / 2)  # E|e^(sigma^2 T/2) - 1| exactly
print(f"mean relative error, naive formula: {rel_naive:.4f}  (theory {naive_theory:.4f})")
assert rel_em < 0.02
assert abs(rel_naive - naive_theory) < 1e-3

# %% [markdown]
# ## Itô's lemma, checked term by term
#
# Along the fine Euler–Maruyama path, sum the two terms of the lemma for $f = \log$:
# $$\log X_T - \log X_0 \approx \sum_k \frac{\Delta X_k}{X_k}
#   - \tfrac12 \sum_k \frac{(\Delta X_k)^2}{X_k^2}.$$
# The first sum alone (the ordinary chain rule) misses by about $\tfrac12\sigma^2 T$: the
# quadratic variation of $X$ does not vanish.

# %%
dX = jnp.diff(xs, axis=0)
first = jnp.sum(dX / xs[:-1], axis=0)
second = -0.5 * jnp.sum((dX / xs[:-1]) ** 2, axis=0)
lhs = jnp.log(xs[-1] / xs[0])

fig, ax = plt.subplots(figsize=(5, 4))
ax.plot(lhs, first, ".", ms=2, label=r"$\sum f'(X)\,\Delta X$ only")
ax.plot(lhs, first + second, ".", ms=2, label=r"$+\ \frac{1}{2}\sum f''(X)\,\Delta X^2$")
lim = jnp.array([lhs.min(), lhs.max()])
ax.plot(lim, lim, "k--", lw=1)
ax.set(xlabel=r"$\log X_T - \log X_0$", ylabel="chain-rule sums")
ax.legend(fontsize=8)
plt.show()

miss_first = float(jnp.mean(lhs - first))
miss_ito = float(jnp.max(jnp.abs(lhs - first - second)))
print(f"mean(log X_T - first-order sum) = {miss_first:.4f}   (sigma^2 T / 2 = {sigma**2 * T / 2})")
print(f"max |log X_T - Itô's lemma|     = {miss_ito:.2e}")
assert abs(miss_first + sigma**2 * T / 2) < 0.01
assert miss_ito < 0.01

# %% [markdown]
# ## Mean vs typical path
#
# $\mathbb E X_t = X_0 e^{\mu t}$ (take expectations in $dX = \mu X\,dt + \sigma X\,dW$: the
# Itô integral has mean zero), but the median is $X_0 e^{(\mu - \sigma^2/2)t}$: the mean is
# carried by rare large paths. Euler–Maruyama with $10^4$ paths reproduces both.

# %%
ts_show = jnp.linspace(0.0, T, 33)
many = jd.solve_sde(gbm, jnp.full((10_000,), x0), ts_show, key=jr.key(5), dt=T / 256)
fig, ax = plt.subplots(figsize=(7, 3.5))
ax.plot(ts_show, many[:, :30], color="gray", lw=0.5, alpha=0.6)
ax.plot(ts_show, many.mean(axis=1), "C0", lw=2, label="sample mean")
ax.plot(ts_show, x0 * jnp.exp(mu * ts_show), "C0--", label=r"$e^{\mu t}$")
ax.plot(ts_show, jnp.median(many, axis=1), "C1", lw=2, label="sample median")
ax.plot(
    ts_show, x0 * jnp.exp((mu - sigma**2 / 2) * ts_show), "C1--", label=r"$e^{(\mu-\sigma^2/2)t}$"
)
ax.set(xlabel="t", ylabel="$X_t$", ylim=(0, 4))
ax.legend(fontsize=8)
plt.show()

mean_T, median_T = float(many[-1].mean()), float(jnp.median(many[-1]))
print(f"mean X_T   = {mean_T:.3f}  (exact {np.exp(mu * T):.3f})")
print(f"median X_T = {median_T:.3f}  (exact {np.exp((mu - sigma**2 / 2) * T):.3f})")
# standard errors: sd(X_T)/100 = 0.016 for the mean, about 0.012 for the median; the
# Euler–Maruyama bias of the mean, e^(mu T) - (1 + mu h)^n, is 0.002
assert abs(mean_T - np.exp(mu * T)) < 0.07
assert abs(median_T - np.exp((mu - sigma**2 / 2) * T)) < 0.05

# %% [markdown]
# ## Takeaway
#
# Itô's lemma is Taylor's theorem with $dW^2 = dt$: a smooth function of a diffusion picks up
# a drift $\tfrac12 f'' g^2$ from the noise. Applied to $\log X$ it solves geometric Brownian
# motion exactly, $X_t = X_0 e^{(\mu - \sigma^2/2)t + \sigma W_t}$, and explains why the mean
# grows like $e^{\mu t}$ while the typical path grows like $e^{(\mu - \sigma^2/2)t}$. Driven by
# the same Brownian path, Euler–Maruyama (`jd.solve_sde`) tracks the exact solution more
# closely as the step shrinks — path by path, but only on average like $\sqrt h$.
