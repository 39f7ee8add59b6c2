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
# # 1. Brownian motion and the Itô integral
#
# **What you will learn**
#
# - what a Brownian path looks like, and why $\mathrm{Var}\,W_t = t$;
# - **quadratic variation**: $\sum_k (\Delta W_k)^2 \to t$, the fact behind "$dW^2 = dt$";
# - the **Itô integral** $\int_0^t W\,dW = \tfrac12 (W_t^2 - t)$, and why it is *not*
#   $\tfrac12 W_t^2$ as ordinary calculus would say;
# - **Itô vs Stratonovich**: left-point vs midpoint Riemann sums differ by $t/2$;
# - the **Itô isometry** $\mathbb E\big[(\int_0^t H\,dW)^2\big] = \int_0^t \mathbb E[H^2]\,ds$;
# - that `jd.solve_sde` solves the *Itô* equation you write, whatever the solver.
#
# Every claim below is checked with an `assert`.

# %%
import diffrax
import jax
import jax.numpy as jnp
import jax.random as jr
import matplotlib.pyplot as plt
import numpy as np

import jaxdiff as jd

T = 1.0

# %% [markdown]
# ## Brownian motion
#
# A standard Brownian motion $W$ starts at $0$, has independent increments and
# $W_t - W_s \sim \mathcal N(0, t - s)$. On a grid of step $h$ it is a cumulative sum of
# independent $\mathcal N(0, h)$ draws. `jd.DiscreteBrownianPath` stores such paths on a grid
# of $2^{10}$ steps, so that we can look at **one path at several resolutions** (that is what a
# convergence study needs, and what `jd.solve_sde(brownian=...)` consumes).

# %%
num_paths, num_steps = 4000, 2**10
path = jd.DiscreteBrownianPath(
    jr.key(0), 0.0, T, num_steps, (num_paths,), levy_area=diffrax.BrownianIncrement
)
ts = jnp.linspace(0.0, T, num_steps + 1)
W = jax.vmap(path.evaluate)(ts)  # (num_steps + 1, num_paths): W at every grid time

fig, ax = plt.subplots(figsize=(7, 3.5))
ax.plot(ts, W[:, :8], lw=0.8)
ax.fill_between(
    ts, -2 * jnp.sqrt(ts), 2 * jnp.sqrt(ts), color="gray", alpha=0.2, label=r"$\pm 2\sqrt{t}$"
)
ax.set(xlabel="t", ylabel="$W_t$", title="Brownian sample paths")
ax.legend()
plt.show()

var_T = float(jnp.var(W[-1]))
print(f"Var W_T = {var_T:.4f}  (exact {T})")
# the sample variance of 4000 normals has relative standard error sqrt(2/4000) = 2.2%
assert abs(var_T - T) < 0.1 * T

# %% [markdown]
# ## Quadratic variation
#
# On a grid $0 = t_0 < \dots < t_n = t$ with step $h = t/n$,
# $$Q_n = \sum_{k=0}^{n-1} (W_{t_{k+1}} - W_{t_k})^2, \qquad
#   \mathbb E\,Q_n = t,\quad \mathrm{Var}\,Q_n = 2 t^2 / n \to 0 .$$
# So $Q_n \to t$: Brownian motion accumulates squared increments at rate one, and in Itô
# calculus we write $dW_t^2 = dt$. (A differentiable path has quadratic variation $0$.)

# %%
ns = 2 ** np.arange(1, 11)


def quadratic_variation(n):
    Wn = W[:: num_steps // n]  # the same paths, seen on a grid of n steps
    return jnp.sum(jnp.diff(Wn, axis=0) ** 2, axis=0)


qv = np.stack([np.asarray(quadratic_variation(int(n))) for n in ns])  # (len(ns), num_paths)
fig, ax = plt.subplots(figsize=(7, 3.5))
for i in range(5):
    ax.semilogx(ns, qv[:, i], "o-", ms=3, lw=0.8)
ax.axhline(T, color="k", ls="--", label="t")
ax.set(xlabel="number of steps n", ylabel="$Q_n$", title="Quadratic variation of five paths")
ax.legend()
plt.show()

spread = qv.std(axis=1)
print("std of Q_n:", np.round(spread, 4))
print("exact     :", np.round(np.sqrt(2 * T**2 / ns), 4))
assert abs(qv[-1].mean() - T) < 0.01
assert np.allclose(spread, np.sqrt(2 * T**2 / ns), rtol=0.1)

# %% [markdown]
# ## The Itô integral $\int_0^t W\,dW$
#
# The Itô integral is the limit of **left-point** Riemann sums,
# $$I_n = \sum_k W_{t_k} (W_{t_{k+1}} - W_{t_k}).$$
# Write $W_{t_k}\Delta W_k = \tfrac12 (W_{t_{k+1}}^2 - W_{t_k}^2) - \tfrac12 (\Delta W_k)^2$ and
# sum: the first terms telescope, the second is half the quadratic variation, so
# $$I_n = \tfrac12 W_t^2 - \tfrac12 Q_n \;\longrightarrow\; \tfrac12 (W_t^2 - t).$$
# The **Stratonovich** integral uses the midpoint (here the trapezoid, which is the same in
# the limit), $S_n = \sum_k \tfrac12 (W_{t_k} + W_{t_{k+1}}) \Delta W_k = \tfrac12 W_t^2$
# exactly: ordinary calculus holds, at the price of an integrand that peeks into the future.
# The two differ by $\tfrac12 \langle W \rangle_t = t/2$.

# %%
dW = jnp.diff(W, axis=0)
ito = jnp.sum(W[:-1] * dW, axis=0)
strat = jnp.sum(0.5 * (W[:-1] + W[1:]) * dW, axis=0)
WT = W[-1]

fig, ax = plt.subplots(figsize=(5, 4))
ax.plot(WT, ito, ".", ms=2, label="Itô sum (left point)")
ax.plot(WT, strat, ".", ms=2, label="Stratonovich sum (midpoint)")
w = jnp.linspace(-4, 4, 100)
ax.plot(w, 0.5 * (w**2 - T), "k--", lw=1, label=r"$(W_t^2 - t)/2$")
ax.plot(w, 0.5 * w**2, "k:", lw=1, label=r"$W_t^2/2$")
ax.set(xlabel="$W_t$", ylabel=r"$\int_0^t W\,dW$")
ax.legend(fontsize=8)
plt.show()

ito_err = float(jnp.sqrt(jnp.mean((ito - 0.5 * (WT**2 - T)) ** 2)))
ito_theory = np.sqrt(T**2 / (2 * num_steps))  # the std of (t - Q_n)/2
print(f"RMS |Itô sum - (W^2 - t)/2| = {ito_err:.4f}   (theory sqrt(t^2 / 2n) = {ito_theory:.4f})")
print(f"mean(Strat - Itô) = {float(jnp.mean(strat - ito)):.4f}   (theory t/2 = {T / 2})")
assert ito_err < 1.2 * ito_theory
assert jnp.allclose(strat, 0.5 * WT**2, atol=1e-3)
assert abs(float(jnp.mean(strat - ito)) - T / 2) < 0.005

# %% [markdown]
# ## The Itô isometry
#
# For an adapted integrand $H$,
# $\mathbb E\big[(\int_0^t H\,dW)^2\big] = \int_0^t \mathbb E[H_s^2]\,ds$. With $H = W$ the
# right side is $\int_0^t s\,ds = t^2/2$. (The left-point sums satisfy it exactly on the grid:
# $\mathbb E[I_n^2] = \sum_k t_k h = \tfrac{t^2}{2}(1 - 1/n)$, because the cross terms vanish —
# $\Delta W_k$ is independent of everything before $t_k$. That independence is the whole point
# of evaluating at the left end.) We check it by Monte Carlo at every time on the grid.

# %%
ito_running = jnp.concatenate([jnp.zeros((1, num_paths)), jnp.cumsum(W[:-1] * dW, axis=0)])
lhs = jnp.mean(ito_running**2, axis=1)

fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(ts, lhs, label=r"Monte Carlo $\mathbb{E}[(\int_0^t W\,dW)^2]$")
ax.plot(ts, ts**2 / 2, "k--", label=r"$\int_0^t \mathbb{E}[W_s^2]\,ds = t^2/2$")
ax.set(xlabel="t")
ax.legend()
plt.show()

print(f"E[I_T^2] = {float(lhs[-1]):.4f}   (exact {T**2 / 2})")
# I_T = (Z^2 - 1)/2 with Z ~ N(0, 1): Var(I_T^2) = 3.5, standard error sqrt(3.5/4000) = 0.03
assert abs(float(lhs[-1]) - T**2 / 2) < 0.1

# %% [markdown]
# ## `jd.solve_sde` always solves the Itô equation
#
# Write $Y_t = \int_0^t W\,dW$ as an SDE for the pair $(W, Y)$, driven by **one** Brownian
# motion ("scalar noise"): $dW = 1\,dB$, $dY = W\,dB$. Euler–Maruyama is an Itô scheme (it
# evaluates the diffusion at the left point). Heun is a Stratonovich scheme: fed this SDE as is,
# it would converge to $W_t^2/2$. jaxdiff hands Stratonovich solvers the corrected drift
# $f - \tfrac12 g\,\partial_x g$, so both converge to the Itô answer $\tfrac12 (W_t^2 - t)$.

# %%
pair = jd.SDE(
    drift=lambda t, y, args: jnp.zeros_like(y),
    diffusion=lambda t, y, args: jnp.stack([jnp.ones_like(y[0]), y[0]]),
    noise="scalar",
)
y0 = jnp.zeros(2)
one_path = jd.DiscreteBrownianPath(jr.key(1), 0.0, T, 2**9, pair.noise_shape(y0))
grid = jnp.linspace(0.0, T, 2**9 + 1)
sols = {
    s: jd.solve_sde(pair, y0, grid, brownian=one_path, dt=T / 2**9, solver=s)
    for s in ("euler_maruyama", "heun")
}
Wp = sols["euler_maruyama"][:, 0]
fig, ax = plt.subplots(figsize=(7, 3.5))
for s, ys in sols.items():
    ax.plot(grid, ys[:, 1], label=f"solve_sde, {s}")
ax.plot(grid, 0.5 * (Wp**2 - grid), "k--", lw=1, label=r"$(W_t^2 - t)/2$ (Itô)")
ax.plot(grid, 0.5 * Wp**2, "k:", lw=1, label=r"$W_t^2/2$ (Stratonovich)")
ax.set(xlabel="t", ylabel="$Y_t$")
ax.legend(fontsize=8)
plt.show()

errs = {
    s: float(jnp.max(jnp.abs(ys[:, 1] - 0.5 * (ys[:, 0] ** 2 - grid)))) for s, ys in sols.items()
}
print("max |Y - (W^2 - t)/2| along the path:", errs)
# Euler–Maruyama's error is (t - Q_n(t))/2, of size sqrt(t^2 / 2n) = 0.03 here; Heun (with
# the Itô correction) reproduces the trapezoid sum minus t/2, exact on the grid
assert errs["euler_maruyama"] < 5 * np.sqrt(T**2 / (2 * 2**9))
assert errs["heun"] < 1e-3

# %% [markdown]
# ## Takeaway
#
# Brownian motion is rough: its squared increments add up to elapsed time,
# $\sum (\Delta W)^2 \to t$, which is why $dW^2 = dt$ and why stochastic calculus needs a
# convention for where the integrand is evaluated. Itô's convention (left point) makes the
# integral a martingale with the isometry $\mathbb E[(\int H\,dW)^2] = \int \mathbb E[H^2]\,dt$
# and gives $\int_0^t W\,dW = (W_t^2 - t)/2$; Stratonovich's (midpoint) keeps the ordinary chain
# rule, $W_t^2/2$, and the two differ by half the quadratic variation. Diffusion models are
# written in Itô form, and `jd.solve_sde` converges to the Itô solution whichever solver you pick.
