"""Null studies: a factor without effect is called significant at its nominal rate, whatever the counts
look like (the map's lattice, seeds that agree exactly, Poisson, over- and under-dispersed); planted
effects and interactions are found where they were planted."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis.design import factor_of
from analysis.effects import effects
from tests.helpers import frame

DRAWS = 200
# The false-positive rate allowed: 5% plus two Monte Carlo standard errors of a rate over DRAWS draws.
ALLOWED = 0.05 + 2 * math.sqrt(0.05 * 0.95 / DRAWS)
DEPTHS, FREQUENCIES, SEEDS = (3, 5, 7), (1, 2, 3), 6


def lattice(rng, i, n):  # the periodic map: m teeth per period, independent of the factors, 2^(i-1) periods
    m = 1 + rng.poisson(1.5, n)
    return m * 2 ** (i - 1), m


def identical(rng, i, n):  # every seed and depth gives one count per i (figure 4: "independently of the depth")
    return np.full(n, rng.poisson(3 * 2.0**i)), None


def per_configuration(rng, i, n):  # every seed of a configuration gives one count, drawn per configuration
    return np.full(n, rng.poisson(3 * 2.0**i)), None


def poisson(rng, i, n):
    return rng.poisson(0.8 * 2.0**i, n), None


def over_dispersed(rng, i, n):  # negative binomial, variance mean + mean²/2
    mean = 0.8 * 2.0**i
    return rng.negative_binomial(2, 2 / (2 + mean), n), None


def under_dispersed(rng, i, n):  # binomial, variance mean/2
    return rng.binomial(int(round(1.6 * 2.0**i)), 0.5, n), None


def null_study(rng, draw) -> pd.DataFrame:
    """Depth × i × seeds with the map on; depth has no effect."""
    counts, per_period = {}, {}
    once = {i: draw(rng, i, SEEDS) for i in FREQUENCIES}  # identical: one draw per i, shared by every depth
    for d in DEPTHS:
        for i in FREQUENCIES:
            counts[(d, i)], per_period[(d, i)] = once[i] if draw is identical else draw(rng, i, SEEDS)
    data = frame(counts)
    if draw is lattice:
        data["transitions_per_period"] = np.concatenate([per_period[k] for k in counts]).astype(float)
    return data


@pytest.mark.slow
@pytest.mark.parametrize("draw", [lattice, identical, poisson, over_dispersed, under_dispersed])
def test_a_factor_without_effect_is_significant_at_its_nominal_rate(draw):
    rng = np.random.default_rng(11)
    any_depth, main_depth = [], []
    for _ in range(DRAWS):
        found = effects(null_study(rng, draw))
        on_depth = found[found["term"].map(factor_of).eq("depth") | found["term"].eq("trend depth")]
        any_depth.append(bool((on_depth["p_holm"] < 0.05).any()))
        main = found[(found["term"] == "depth") & (found["response"] == "transitions") & (found["within"] == "")]
        main_depth.append(bool((main["p_value"] < 0.05).any()))
    assert np.mean(main_depth) <= ALLOWED, np.mean(main_depth)  # unadjusted, one test: its own level
    assert np.mean(any_depth) <= ALLOWED, np.mean(any_depth)  # Holm-adjusted, every depth term and trend


@pytest.mark.slow
def test_seeds_that_agree_within_each_configuration_do_not_count_as_independent_evidence():
    # Each configuration's count drawn once and shared by its seeds, at random across depths: the
    # common depth slope must be judged on the configurations (9), not on the runs (54).
    rng = np.random.default_rng(15)
    main = []
    for _ in range(DRAWS):
        found = effects(null_study(rng, per_configuration))
        main.append(bool((found[(found["term"] == "depth") & (found["within"] == "")]["p_value"] < 0.05).any()))
    assert np.mean(main) <= ALLOWED, np.mean(main)


def test_on_the_lattice_the_network_adds_nothing_beyond_the_maps_doubling():
    rng = np.random.default_rng(12)
    found = effects(pd.concat([null_study(rng, lattice) for _ in range(3)], ignore_index=True))
    per_period = found[(found["response"] == "transitions_per_period") & (found["term"] == "fourier_i")].iloc[0]
    assert per_period["within"] == "map=sincos" and per_period["ci_low"] <= 0 <= per_period["ci_high"]
    assert "permutation p" in per_period["model"]
    counts = found[(found["response"] == "transitions") & (found["term"] == "fourier_i") & (found["within"] == "")].iloc[0]
    assert counts["ci_low"] <= math.log(2) <= counts["ci_high"]  # ×2 per step of i: the map's own


def test_a_planted_interaction_is_found_where_it_was_planted():
    # Depth adds bands without the map (×1.4 per layer) and none with it: the paper's claim.
    rng = np.random.default_rng(13)
    counts = {(d, None): rng.poisson(1.5 * 1.4 ** ((d - 3) / 2), 16) for d in DEPTHS}  # depths 3, 5, 7: two layers a step
    counts |= {(d, i): rng.poisson(2.0**i, 16) for d in DEPTHS for i in FREQUENCIES}
    found = effects(frame(counts)).set_index(["response", "term", "within"])
    without = found.loc[("transitions", "depth", "map=none")]
    planted = math.log(1.4) / 2
    assert without["ci_low"] <= planted <= without["ci_high"] and without["ci_low"] > 0
    with_map = found.loc[("transitions", "depth", "map=sincos")]
    assert with_map["ci_low"] <= 0 <= with_map["ci_high"]


def test_two_map_types_are_never_pooled_into_one_frequency_effect():
    rng = np.random.default_rng(14)
    sincos = frame({(3, i): rng.poisson(2.0**i, 10) for i in FREQUENCIES})
    x_sincos = frame({(3, i): rng.poisson(3.0 * 1.2**i, 10) for i in FREQUENCIES}).assign(fourier_map="x_sincos")
    x_sincos["trial_id"] = x_sincos["trial_id"] + "x"
    found = effects(pd.concat([sincos, x_sincos], ignore_index=True))
    slopes = found[(found["response"] == "transitions") & (found["term"] == "fourier_i")].set_index("within")
    assert set(slopes.index) == {"map=sincos", "map=x_sincos"}
    assert slopes.loc["map=sincos", "ci_low"] <= math.log(2) <= slopes.loc["map=sincos", "ci_high"]
    assert slopes.loc["map=x_sincos", "ci_low"] <= math.log(1.2) <= slopes.loc["map=x_sincos", "ci_high"]
