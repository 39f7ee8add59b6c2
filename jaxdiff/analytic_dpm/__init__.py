r"""Analytic-DPM: the analytic optimal reverse variance of a discrete VP diffusion chain.

Bao, Li, Zhu & Zhang (2022), "Analytic-DPM: an Analytic Estimate of the Optimal Reverse
Variance in Diffusion Probabilistic Models" (ICLR 2022).

**Chain and indexing.** `alpha_bars` has shape `(N,)`: `alpha_bars[n]` is
$\bar\alpha$ after `n + 1` noising steps (0-based, as `jaxdiff.train.ddpm_loss`; the paper's
$\bar\alpha_{n+1}$), with $\bar\alpha = 1$ for the data. A trajectory `timesteps` is an
increasing int array of indices into `alpha_bars`. In this library's sigma-space
$\sigma_n = \sqrt{\bar\beta_n/\bar\alpha_n}$ ($\bar\beta = 1 - \bar\alpha$) and
$y = x_n/\sqrt{\bar\alpha_n} = x_0 + \sigma_n\varepsilon$, so a sigma-space denoiser
$D(y;\sigma)$ gives $\hat\varepsilon = (y - D(y;\sigma_n))/\sigma_n$ and $\hat x_0 = D$.

**Optimal variance** (Theorem 1) of the reverse step $t \to s$ ($s < t$ on the trajectory;
$\alpha_{t|s} = \bar\alpha_t/\bar\alpha_s$, $\beta_{t|s} = 1 - \alpha_{t|s}$), for the
generalised (DDIM-family) posterior with variance $\lambda^2$ and the mean
$\sqrt{\bar\alpha_s}\hat x_0 + \sqrt{\bar\beta_s - \lambda^2}\,\hat\varepsilon$:

$$\sigma^{*2} = \lambda^2 + \Big(\sqrt{\bar\beta_t/\alpha_{t|s}} -
  \sqrt{\bar\beta_s - \lambda^2}\Big)^2 (1 - \Gamma_t),\qquad
  \Gamma_t = \mathbb E_{x_t}\,\lVert\hat\varepsilon(x_t, t)\rVert^2/d,$$

with $\Gamma$ here the mean square of the *eps*-prediction (the paper writes
$\bar\beta_t\,\mathbb E\lVert s_t\rVert^2/d$ with the score
$s_t = -\hat\varepsilon/\sqrt{\bar\beta_t}$; the two agree). Equivalently
$\sigma^{*2} = \lambda^2 + \kappa^2\,\mathbb E\operatorname{tr}\operatorname{Cov}(x_0|x_t)/d$
with $\kappa = \sqrt{\bar\alpha_s} - \sqrt{\bar\beta_s - \lambda^2}
\sqrt{\bar\alpha_t/\bar\beta_t}$, the coefficient of $x_0$ in the posterior mean.
DDPM: $\lambda^2 = \tilde\beta_{t|s} = \beta_{t|s}\bar\beta_s/\bar\beta_t$ (`eta = 1`);
DDIM: $\lambda = 0$ (`eta = 0`); in general $\lambda^2 = \eta^2\tilde\beta_{t|s}$.
**Clipping** (Theorem 2, data in $[a, b]^d$): $\operatorname{Var}(x_0|x_t) \le ((b-a)/2)^2$
per dimension, so $\sigma^{*2}$ is clipped to
$[\lambda^2,\ \lambda^2 + \kappa^2((b-a)/2)^2]$ (the lower end is $\Gamma_t \le 1$).

**Optimal trajectory** (Sec. 4): with the optimal variance the DDPM bound is
$L = c + \frac d2 \sum_k J(\tau_{k-1}, \tau_k)$,
$J(s, t) = \log(1 - \beta_{t|s}\Gamma_t/\bar\beta_t)$ (the rest telescopes),
minimised over the $K$-step trajectories through the first and last index by dynamic
programming in $O(K N^2)$ (`optimal_timesteps`).

**Cost:** $\Gamma$ is estimated once per chain by Monte Carlo over data (`estimate_gamma`,
`num_samples` denoiser evaluations per level); sampling (`AnalyticDPM` with `jaxdiff.sample`,
or `sample_analytic`) then costs 1 denoiser evaluation per step, as DDPM/DDIM.

**Layout.** The chain itself (`alpha_bars_from_betas`, `sigmas_from_alpha_bars`,
`even_timesteps`) is `jaxdiff.discrete`'s; the sampler `AnalyticDPM` and its step variance
`optimal_variance_step` live with the other samplers (`jaxdiff.samplers.AnalyticDPM`); here:
`_gamma.py` ($\Gamma$), `_variances.py` (the variances and the optimal trajectory) and
`_sample.py` (sampling and the bound).
"""

from ..discrete import (
    alpha_bars_from_betas as alpha_bars_from_betas,
    even_timesteps as even_timesteps,
    sigmas_from_alpha_bars as sigmas_from_alpha_bars,
)
from ..samplers._analytic_dpm import (
    AnalyticDPM as AnalyticDPM,
    optimal_variance_step as optimal_variance_step,
)
from ._gamma import estimate_gamma as estimate_gamma
from ._sample import nll_bound as nll_bound, sample_analytic as sample_analytic
from ._variances import (
    optimal_timesteps as optimal_timesteps,
    reverse_variances as reverse_variances,
    trajectory_cost as trajectory_cost,
)

__all__ = [
    "AnalyticDPM",
    "alpha_bars_from_betas",
    "estimate_gamma",
    "even_timesteps",
    "nll_bound",
    "optimal_timesteps",
    "optimal_variance_step",
    "reverse_variances",
    "sample_analytic",
    "sigmas_from_alpha_bars",
    "trajectory_cost",
]
