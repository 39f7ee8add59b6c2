"""Samplers by k-diffusion's names (`jd.samplers.by_name`)."""

import pytest

import jaxdiff as jd


def test_every_public_sampler_has_a_name():
    """Every public sampler that builds with no arguments has a name; AnalyticDPM (built from
    its Gamma estimate) is the one that does not."""
    public = {
        getattr(jd.samplers, n)
        for n in dir(jd.samplers)
        if isinstance(getattr(jd.samplers, n), type)
        and issubclass(getattr(jd.samplers, n), jd.samplers.AbstractSampler)
        and n != "AbstractSampler"
    }
    assert public - {jd.samplers.AnalyticDPM} == set(jd.samplers.SAMPLERS.values())
    assert jd.samplers.AnalyticDPM in public


def test_by_name_builds_with_options():
    s = jd.samplers.by_name("euler_ancestral", eta=0.5)
    assert isinstance(s, jd.samplers.EulerAncestral) and s.eta == 0.5
    assert isinstance(jd.samplers.by_name("dpmpp_2m"), jd.samplers.DPMpp2M)
    assert isinstance(jd.samplers.by_name("edm"), jd.samplers.EDMStochastic)


def test_unknown_name():
    with pytest.raises(ValueError, match="unknown sampler 'rk4'.*dpmpp_2m"):
        jd.samplers.by_name("rk4")
