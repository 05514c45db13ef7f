"""Every sentence template of the report, each on a synthetic table that makes it true, each checked
against the row of effects.csv whose numbers it quotes."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis import claims
from analysis.effects import effects
from analysis.report import _agreeing_seeds
from analysis.summary import summarise
from tests.helpers import frame


def row(found: pd.DataFrame, response: str, term: str, within: str = "") -> pd.Series:
    hit = found[(found["response"] == response) & (found["term"] == term) & (found["within"] == within)]
    assert len(hit) == 1, (response, term, within, found[["response", "term", "within"]].to_string())
    return hit.iloc[0]


def said(sentences: list[str], head: str) -> str:
    hit = [s for s in sentences if s.startswith(f"**{head}")]
    assert len(hit) == 1, (head, sentences)
    return hit[0]


def quotes(sentence: str, r: pd.Series) -> bool:
    """The sentence quotes this row: its rate ratio with the interval, and its Holm-adjusted p."""
    return claims.ratio(r) in sentence and claims.holm_p(r) in sentence


def lattice_study(rng, depth_effect: float = 1.0) -> pd.DataFrame:
    counts, per_period = {}, []
    for d in (3, 5, 7):
        for i in (1, 2, 3, 4):
            m = 1 + rng.poisson(2 * depth_effect ** (d - 3), 8)
            counts[(d, i)] = m * 2 ** (i - 1)
            per_period.append(m)
    data = frame(counts)
    data["transitions_per_period"] = np.concatenate(per_period).astype(float)
    return data


def test_with_the_periodic_map_the_report_says_the_doubling_is_the_maps_and_what_the_network_adds():
    data = lattice_study(np.random.default_rng(1))
    found = effects(data)
    sentences = claims.sentences(found, data, "double_well")
    text = said(sentences, "Frequency")
    assert quotes(text, row(found, "transitions", "fourier_i"))
    per_period = row(found, "transitions_per_period", "fourier_i", "map=sincos")
    assert quotes(text, per_period) and "imposed by the map itself" in text
    assert ("includes ×1" in text) == (per_period["ci_low"] <= 0 <= per_period["ci_high"])


def test_without_a_periodic_map_the_frequency_is_set_against_proportionality():
    rng = np.random.default_rng(2)
    data = frame({(3, i): rng.poisson(1.5 * 2.0**i, 10) for i in (1, 2, 3)} | {(3, None): rng.poisson(1.0, 10)})
    found = effects(data)
    sentences = claims.sentences(found, data, "double_well")
    r = row(found, "transitions", "fourier_i")
    text = said(sentences, "Frequency")
    assert quotes(text, r) and ("includes 2" in text) == (r["ci_low"] <= math.log(2) <= r["ci_high"])
    assert quotes(said(sentences, "Map on"), row(found, "transitions", "fourier_on"))


def test_depth_without_effect_is_said_as_the_largest_effect_left_open():
    data = lattice_study(np.random.default_rng(3))
    found = effects(data)
    r = row(found, "transitions", "depth")
    assert r["ci_low"] <= 0 <= r["ci_high"]
    text = said(claims.sentences(found, data, "double_well"), "Depth")
    assert quotes(text, r) and f"at most ×{math.exp(r['ci_high']):.3g} per layer" in text
    assert "neither show that depth adds bands" in text


def test_a_depth_effect_without_the_map_is_said_with_its_holm_p_and_interval():
    rng = np.random.default_rng(4)
    counts = {(d, None): rng.poisson(2.0 * 1.25 ** (d - 3), 20) for d in (3, 5, 7)}
    counts |= {(d, i): rng.poisson(2.0**i, 20) for d in (3, 5, 7) for i in (1, 2)}
    data = frame(counts)
    found = effects(data)
    sentences = claims.sentences(found, data, "double_well")
    without = row(found, "transitions", "depth", "map=none")
    assert without["p_holm"] < 0.05
    text = said(sentences, "Depth without the map")
    assert quotes(text, without) and "holds after Holm's adjustment" in text
    assert quotes(said(sentences, "Depth with the sincos map"), row(found, "transitions", "depth", "map=sincos"))


def test_an_interval_that_excludes_one_but_not_after_holm_says_so():
    r = pd.Series({"problem": "p", "response": "transitions", "term": "depth", "estimate": 0.1, "ci_low": 0.01, "ci_high": 0.19,
                   "p_value": 0.03, "p_holm": 0.2, "model": "m", "within": "", "n": 30})
    fx = claims.Effects(pd.DataFrame([r]), "p")
    text = claims.depth(fx, "", "")
    assert quotes(text, r) and "not after Holm's adjustment" in text


def test_epsilon_over_few_values_is_a_contrast_and_over_many_a_slope_beside_the_theory():
    rng = np.random.default_rng(5)
    studies = (((0.1 / 16, 0.1 / 4), "a contrast between them, not a scaling law"),
               ((0.1 / 64, 0.1 / 16, 0.1 / 4, 0.1), "a log-log slope over 4 values"))
    for values, kind in studies:
        parts = [frame({(3, i): rng.poisson(4 * 2.0 ** (i / 2) * (e / 0.1) ** (-1 / 3), 12) for i in (1, 2)}, problem="twin_branching", epsilon=e)
                 for e in values]
        data = pd.concat(parts, ignore_index=True)
        data["bands"] = data["transitions"] + 1
        found = effects(data)
        r = row(found, "transitions", "log_epsilon")
        text = said(claims.sentences(found, data, "twin_branching"), "ε")
        assert f"{r['estimate']:.2f} (95% CI {r['ci_low']:.2f} to {r['ci_high']:.2f}; {claims.holm_p(r)})" in text and kind in text
        for name, b in claims.THEORY.items():
            assert f"{name}, ε^({b:+.2f}): {'inside' if r['ci_low'] <= b <= r['ci_high'] else 'outside'}" in text


def test_training_length_energy_and_runs_stuck_at_zero_are_each_said_from_their_rows():
    rng = np.random.default_rng(6)
    parts = []
    for epochs in (100_000, 300_000):
        part = frame({(3, i): rng.poisson(2.0**i * (epochs / 1e5) ** 0.3, 10) for i in (1, 2, 3)}, problem="twin_branching", epochs=epochs)
        part["energy"] = rng.lognormal(np.log(0.05) - 0.2 * part["fourier"].astype(float), 0.1)
        parts.append(part)
    data = pd.concat(parts, ignore_index=True)
    data.loc[data.index[:7], "transitions"] = 0  # stuck at u ≡ 0
    data["bands"] = data["transitions"] + 1
    found = effects(data)
    sentences = claims.sentences(found, data, "twin_branching")
    assert quotes(said(sentences, "Training length"), row(found, "transitions", "log_epochs", "trivial=no"))
    energy = said(sentences, "Energy")
    assert quotes(energy, row(found, "log_energy", "fourier_i"))
    stuck = said(sentences, "Stuck at u ≡ 0")
    assert stuck.startswith(f"**Stuck at u ≡ 0.** 7 of {len(data)} runs")
    trivial = found[found["response"] == "trivial"]
    assert len(trivial) and (trivial["within"] == "").all()
    first = row(found, "trivial", "fourier_i")  # the first seven runs are all of i = 1: separated, no odds ratio
    assert math.isnan(first["estimate"]) and "no odds ratio exists" in stuck and claims.holm_p(first) in stuck


def test_seeds_that_agree_exactly_are_named_with_their_count():
    data = frame({(5, 2): np.full(8, 4), (5, 3): np.array([8, 8, 8, 9, 8, 8, 8, 8])})
    text = _agreeing_seeds(summarise(data))
    assert text == "**Seeds that agree exactly.** double_well, depth 5, i = 2, 10,000 epochs: all 8 seeds gave 4.\n"
    everywhere = _agreeing_seeds(summarise(frame({(5, 2): np.full(8, 4), (7, 2): np.full(8, 4)})))
    assert everywhere.startswith("**Every configuration's seeds agree exactly**") and "all 8 seeds gave 4" in everywhere


def test_runs_stuck_at_zero_get_an_odds_ratio_where_one_exists():
    rng = np.random.default_rng(7)
    data = frame({(3, i): rng.poisson(2.0**i, 30) + 1 for i in (1, 2, 3)}, problem="twin_branching")
    stuck = rng.random(len(data)) < np.where(data["fourier"].astype(float) == 1, 0.4, 0.15)
    data.loc[stuck, "transitions"] = 0
    data["bands"] = data["transitions"] + 1
    found = effects(data)
    r = row(found, "trivial", "fourier_i")
    assert np.isfinite(r["estimate"]) and "logistic" in r["model"]
    text = said(claims.sentences(found, data, "twin_branching"), "Stuck at u ≡ 0")
    assert f"The odds of it change by {claims.ratio(r)} with each step of i; {claims.holm_p(r)}." in text


def test_a_level_that_counted_zero_in_every_run_gets_no_interval_but_a_permutation_p():
    """Plain DRM at 0 in all 4 seeds, the map at 7: the log-ratio is infinite, and a Wald interval at
    wherever the fit stopped would be an artefact. The exact two-sided permutation p is 2/C(8, 4) = 1/35."""
    found = effects(frame({(3, None): np.zeros(4), (3, 2): np.full(4, 7)}))
    r = row(found, "transitions", "fourier_on")
    assert pd.isna(r["estimate"]) and pd.isna(r["ci_low"]) and pd.isna(r["ci_high"]) and "separation" in r["model"]
    assert r["p_value"] < 0.1  # Monte Carlo over 200 permutations of an exact 1/35
    sentence = said(claims.sentences(found, frame({(3, None): np.zeros(4), (3, 2): np.full(4, 7)}), "double_well"), "Map on")
    assert "no finite ratio" in sentence and "permutation test" in sentence


def test_configurations_near_the_classical_optimum_and_worse_than_trivial_are_named(tmp_path):
    from analysis.report import _configuration, _reference_energies
    from analysis.summary import with_reference
    from drm.classical import reference
    from drm.classical.judge import References
    from drm.problems import get_problem

    epsilon = 0.1 / 16
    best = reference(get_problem("double_well_u2"), epsilon, tmp_path).best  # cached, as a sweep leaves it
    data = frame({(3, 2): np.full(6, best["transitions"]), (5, 2): np.zeros(6, dtype=int)}, problem="double_well_u2", epsilon=epsilon)
    near = data["depth"] == 3
    data.loc[near, "energy"] = best["energy"] * (1.01 + 0.002 * np.arange(6))
    data.loc[~near, "energy"] = 1.0 + 0.01 * np.arange(6)  # u ≈ 0 or worse
    filled = with_reference(data, References(tmp_path, solve=False))  # from the cache alone, as analyze does
    assert filled["energy_gap"].to_numpy() == pytest.approx(data["energy"].to_numpy() / best["energy"] - 1)
    summary = summarise(filled)
    text = "\n".join(_reference_energies(summary))
    a, b = (summary[summary["depth"] == d].iloc[0] for d in (3, 5))
    gap = np.median(data.loc[near, "energy"]) / best["energy"] - 1
    assert a["energy_gap_median"] == pytest.approx(gap)
    assert f"Within 5% of the classical optimum (median seed): {_configuration(a)} ({gap:+.1%})." in text
    assert f"Worse than u ≡ 0, whose energy the trivial state has without a single band: {_configuration(b)} (100% of seeds)." in text
