"""Guidance transforms (`jaxdiff.guidance`) against the exact class-conditional oracle: a 2-D
mixture whose components are grouped into two classes, so the conditional denoisers, the exact
noisy class posterior and therefore every guided denoiser are known in closed form."""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from jaxdiff_test_utils import compiles

import jaxdiff as jd
from jaxdiff import guidance

SIGMAS = (0.05, 0.4, 1.5, 8.0)
LABELS = np.array([0, 0, 1, 1])


@functools.cache
def oracle():
    """The mixture, its class-conditional mixtures (built by hand from the components), the
    exact `log p(c | x_sigma)` of each class, and 64 points; float64 (call under x64)."""
    means = np.array([[-2.0, 0.0], [-1.0, 1.5], [1.5, -0.5], [2.0, 1.0]])
    variances = np.array([[0.3, 0.2], [0.1, 0.4], [0.25, 0.25], [0.2, 0.1]])
    weights = np.array([0.1, 0.3, 0.4, 0.2])
    gm = jd.analytic.GaussianMixture(means, variances, weights)
    classes = [
        jd.analytic.GaussianMixture(
            means[LABELS == c],
            variances[LABELS == c],
            weights[LABELS == c] / weights[LABELS == c].sum(),
        )
        for c in (0, 1)
    ]

    def class_log_prob(c):
        def log_prob(x, sigma):
            log_r = jnp.log(gm.responsibilities(x, sigma))
            return jax.nn.logsumexp(log_r[:, LABELS == c], axis=-1)

        return log_prob

    x = jnp.asarray(2.0 * np.random.default_rng(0).standard_normal((64, 2)))
    return gm, classes, class_log_prob, x


def close(a, b, tol=1e-12):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)


def test_classifier_free_scales_are_the_exact_denoisers(x64):
    gm, (cond, _), _, x = oracle()
    for sigma in SIGMAS:
        d_c, d_u = cond.denoiser(x, sigma), gm.denoiser(x, sigma)
        close(guidance.classifier_free(cond.denoiser, gm.denoiser, 1.0)(x, sigma), d_c)
        close(guidance.classifier_free(cond.denoiser, gm.denoiser, 0.0)(x, sigma), d_u)
        close(
            guidance.classifier_free(cond.denoiser, gm.denoiser, 3.0)(x, sigma),
            d_u + 3.0 * (d_c - d_u),
        )


def test_autoguidance_by_the_same_model_changes_nothing(x64):
    gm, _, _, x = oracle()
    for scale in (0.0, 2.5):
        for sigma in SIGMAS:
            close(
                guidance.autoguidance(gm.denoiser, gm.denoiser, scale)(x, sigma),
                gm.denoiser(x, sigma),
            )


def test_classifier_guidance_with_the_exact_class_posterior_is_the_conditional_denoiser(x64):
    gm, classes, class_log_prob, x = oracle()
    for c, cond in enumerate(classes):
        guided = guidance.classifier(gm.denoiser, class_log_prob(c), 1.0)
        for sigma in SIGMAS:
            close(guided(x, sigma), cond.denoiser(x, sigma), 1e-10)
    # scale 2 doubles the step from the unconditional to the conditional denoiser
    d_u, d_c = gm.denoiser(x, 0.4), classes[1].denoiser(x, 0.4)
    close(
        guidance.classifier(gm.denoiser, class_log_prob(1), 2.0)(x, 0.4),
        d_u + 2 * (d_c - d_u),
        1e-10,
    )


def test_interval_guides_only_inside_and_saves_the_guide_outside(x64):
    gm, (cond, _), _, x = oracle()
    calls = []

    def counted_uncond(x_, sigma):
        calls.append(1)
        return gm.denoiser(x_, sigma)

    guided = guidance.classifier_free(cond.denoiser, counted_uncond, 4.0, interval=(0.3, 2.0))
    for sigma in SIGMAS:
        d_c, d_u = cond.denoiser(x, sigma), gm.denoiser(x, sigma)
        expected = d_u + 4.0 * (d_c - d_u) if 0.3 <= sigma <= 2.0 else d_c
        close(guided(x, sigma), expected)
    # a per-sample sigma selects row by row
    sig = jnp.array([0.05, 1.5] * 32)
    rows = guided(x, sig)
    close(rows[1::2], guided(x[1::2], 1.5))
    close(rows[::2], cond.denoiser(x[::2], 0.05))
    # with a scalar sigma the guide sits in a lax.cond: skipped outside the interval
    assert jnp.allclose(jax.jit(lambda x_, s: guided(x_, s))(x, 0.05), cond.denoiser(x, 0.05))


def test_guidance_in_every_kind_of_sampler_equals_the_formula(x64):
    gm, (cond, _), class_log_prob, x = oracle()
    grid = jd.schedules.karras(8, 0.01, 10.0)
    x = 10.0 * x
    w, lo, hi = 2.0, 0.2, 3.0

    def formula(x_, sigma):
        d_c, d_u = cond.denoiser(x_, sigma), gm.denoiser(x_, sigma)
        inside = (sigma >= lo) & (sigma <= hi)
        return jnp.where(inside, d_u + w * (d_c - d_u), d_c)

    cfg = guidance.classifier_free(cond.denoiser, gm.denoiser, w, interval=(lo, hi))
    for solver in (jd.samplers.Heun(), jd.samplers.DPMpp2M(), jd.samplers.UniPC()):
        close(
            jd.sample(cfg, x, grid, solver=solver),
            jd.sample(formula, x, grid, solver=solver),
            1e-10,
        )
    key = jr.key(3)
    solver = jd.samplers.DPMpp2SAncestral()
    close(
        jd.sample(cfg, x, grid, solver=solver, key=key),
        jd.sample(formula, x, grid, solver=solver, key=key),
        1e-10,
    )
    # classifier guidance at scale 1 samples the class exactly as the conditional denoiser does
    clf = guidance.classifier(gm.denoiser, class_log_prob(0), 1.0)
    close(
        jd.sample(clf, x, grid, solver="dpmpp_2m"),
        jd.sample(cond.denoiser, x, grid, solver="dpmpp_2m"),
        1e-8,
    )


def test_empty_interval_changes_nothing_and_full_interval_is_plain_guidance(x64):
    gm, (cond, _), _, x = oracle()
    grid = jd.schedules.karras(6, 0.01, 10.0)
    x = 10.0 * x
    # no grid level lies in [5.5, 5.6]
    assert not np.any((np.asarray(grid) >= 5.5) & (np.asarray(grid) <= 5.6))
    empty = guidance.autoguidance(cond.denoiser, gm.denoiser, 3.0, interval=(5.5, 5.6))
    close(
        jd.sample(empty, x, grid, solver="euler"), jd.sample(cond.denoiser, x, grid, solver="euler")
    )
    full = guidance.classifier_free(cond.denoiser, gm.denoiser, 3.0, interval=(0.0, np.inf))
    plain = guidance.classifier_free(cond.denoiser, gm.denoiser, 3.0)
    close(jd.sample(full, x, grid, solver="euler"), jd.sample(plain, x, grid, solver="euler"))


def cfg_pp_reference(cond, uncond, x, grid, lam):
    """CFG++ on DDIM in sigma-space, written from the paper's update: the guided clean
    estimate renoised with the unconditional noise, `x' = D_lam + sigma' (x - D_u) / sigma`."""
    x = np.asarray(x)
    for sigma, sigma_next in itertools.pairwise(grid):
        d_c, d_u = np.asarray(cond(x, sigma)), np.asarray(uncond(x, sigma))
        d_lam = d_u + lam * (d_c - d_u)
        x = d_lam + sigma_next * (x - d_u) / sigma
    return x


def test_cfg_pp_on_euler_and_ddim_is_the_papers_update(x64):
    gm, (cond, _), _, x = oracle()
    grid = np.asarray(jd.schedules.karras(10, 0.01, 10.0))
    x = 10.0 * x
    pp = guidance.cfg_pp(cond.denoiser, gm.denoiser, 0.6)
    expected = cfg_pp_reference(cond.denoiser, gm.denoiser, x, grid, 0.6)
    for solver in ("euler", "ddim"):
        close(jd.sample(pp, x, grid, solver=solver), expected, 1e-10)
    # it differs from plain CFG with the same weight (which renoises with the guided noise)
    cfg = guidance.classifier_free(cond.denoiser, gm.denoiser, 0.6)
    assert not np.allclose(jd.sample(cfg, x, grid, solver="euler"), expected, atol=1e-3)
    # called as a denoiser it is CFG with weight lambda
    close(pp(x, 0.4), cfg(x, 0.4))


def test_cfg_pp_runs_in_multistep_and_ancestral_samplers(x64):
    gm, (cond, _), _, x = oracle()
    grid = np.asarray(jd.schedules.karras(10, 0.01, 10.0))
    x = 10.0 * x
    # with the unconditional model equal to the conditional one nothing moves: the sampler's
    # own result
    same = guidance.cfg_pp(cond.denoiser, cond.denoiser, 0.6)
    for solver in ("dpmpp_2m", "heun", "unipc", "ipndm"):
        close(
            jd.sample(same, x, grid, solver=solver),
            jd.sample(cond.denoiser, x, grid, solver=solver),
            1e-10,
        )
    pp = guidance.cfg_pp(cond.denoiser, gm.denoiser, 0.6)
    out = jd.sample(pp, x, grid, solver="euler_ancestral", key=jr.key(0))
    assert np.all(np.isfinite(out))
    # Euler ancestral with eta = 0 is Euler: the paper's update again
    close(
        jd.sample(pp, x, grid, solver=jd.samplers.EulerAncestral(eta=0.0), key=jr.key(0)),
        cfg_pp_reference(cond.denoiser, gm.denoiser, x, grid, 0.6),
        1e-10,
    )


def test_cfg_pp_refuses_samplers_with_churn(x64):
    gm, (cond, _), _, x = oracle()
    pp = guidance.cfg_pp(cond.denoiser, gm.denoiser, 0.6)
    grid = jd.schedules.karras(4, 0.01, 10.0)
    with pytest.raises(ValueError, match="step_start"):
        jd.sample(pp, x, grid, solver="edm", key=jr.key(0))


def test_new_scale_and_interval_do_not_recompile(x64):
    from jaxdiff.samplers._core import _sample

    gm, (cond, _), _, x = oracle()
    grid = jd.schedules.karras(4, 0.01, 10.0)
    first = guidance.classifier_free(cond.denoiser, gm.denoiser, 2.0, interval=(0.1, 1.0))
    jd.sample(first, x, grid, solver="euler")
    with compiles(_sample) as new:
        jd.sample(
            guidance.classifier_free(cond.denoiser, gm.denoiser, 3.0, interval=(0.2, 2.0)),
            x,
            grid,
            solver="euler",
        )
    assert new.count == 0


def test_bad_input_names_the_argument(x64):
    gm, (cond, _), _, x = oracle()
    with pytest.raises(ValueError, match="lo <= hi"):
        guidance.classifier_free(cond.denoiser, gm.denoiser, 2.0, interval=(2.0, 1.0))
    with pytest.raises(ValueError, match=r"interval\[0\] must be >= 0"):
        guidance.autoguidance(cond.denoiser, gm.denoiser, 2.0, interval=(-1.0, 1.0))
    with pytest.raises(TypeError, match="interval must be None or a pair"):
        guidance.cfg_pp(cond.denoiser, gm.denoiser, 0.5, interval=0.5)
    with pytest.raises(ValueError, match="scale must be a scalar"):
        guidance.classifier_free(cond.denoiser, gm.denoiser, jnp.ones(2))
    with pytest.raises(TypeError, match="uncond_denoiser must be callable"):
        guidance.classifier_free(cond.denoiser, "not a model", 2.0)
    # a guide whose output is shaped differently: the error names the guide's argument
    bad = guidance.autoguidance(cond.denoiser, lambda x_, s: x_[:, :1], 2.0)
    with pytest.raises(ValueError, match="guide must return an array shaped like"):
        jd.sample(bad, x, jd.schedules.karras(3, 0.01, 10.0), solver="euler")
    bad = guidance.classifier_free(cond.denoiser, lambda x_, s: x_[:, :1], 2.0)
    with pytest.raises(ValueError, match="uncond_denoiser must return"):
        bad(x, 1.0)
    bad = guidance.classifier(gm.denoiser, lambda x_, s: jnp.sum(x_), 1.0)
    with pytest.raises(ValueError, match="log_prob"):
        bad(x, 1.0)
