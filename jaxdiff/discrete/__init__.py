r"""The discrete-time DDPM chain, one definition of each piece: beta schedules (`linear_betas`,
`cosine_betas` and the cosine $\bar\alpha$), the cumulative $\bar\alpha$ of a chain, its noise
levels in sigma-space, evenly spaced trajectories through it, and EDM's iDDPM levels.

Used by `jaxdiff.train.ddpm_loss` (and re-exported there as `jaxdiff.train.linear_betas`,
`cosine_betas`), by `jaxdiff.analytic_dpm` (`alpha_bars_from_betas`, `sigmas_from_alpha_bars`,
`even_timesteps`) and by `jaxdiff.schedules.iddpm` (`iddpm_levels`).
"""

from ._chain import (
    alpha_bars_from_betas as alpha_bars_from_betas,
    cosine_alpha_bars as cosine_alpha_bars,
    cosine_betas as cosine_betas,
    even_timesteps as even_timesteps,
    iddpm_levels as iddpm_levels,
    linear_betas as linear_betas,
    sigmas_from_alpha_bars as sigmas_from_alpha_bars,
)

__all__ = [
    "alpha_bars_from_betas",
    "cosine_alpha_bars",
    "cosine_betas",
    "even_timesteps",
    "iddpm_levels",
    "linear_betas",
    "sigmas_from_alpha_bars",
]
