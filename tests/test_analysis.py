"""The analysis on synthetic tables with known truths: planted effects, known dispersion, known means."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from analysis import figures
from analysis.data import load
from analysis.effects import effects
from analysis.models import fit_counts
from analysis.reproduction import reproduction
from analysis.stats import bootstrap_ci, holm, wilson_ci
from analysis.summary import configuration_key, summarise
from drm.problems import get_problem
from drm.profiles import Profiles, stored
from drm.storage import Storage
from pipeline.tables import CURVES, PROFILES, TrialTables, conform, replicates_schema, write_trial
from tests.helpers import drmfm, frame, layout_1


def planted(rng: np.random.Generator, draw, seeds: int = 12, a: float = 0.6) -> pd.DataFrame:
    """Counts with mean a·2^i at every depth (no depth effect)."""
    return frame({(d, i): draw(rng, a * 2.0**i, seeds) for d in (3, 5, 7) for i in (1, 2, 3, 4)})


def poisson(rng, mean, n):
    return rng.poisson(mean, n)


def over_dispersed(rng, mean, n):  # negative binomial, variance mean + mean²/2
    return rng.negative_binomial(2, 2 / (2 + mean), n)


def under_dispersed(rng, mean, n):  # binomial, variance mean/2
    return rng.binomial(np.round(2 * mean).astype(int), 0.5, n)


def term(rows: list[dict], name: str) -> dict:
    return next(r for r in rows if r["term"] == name)


def test_a_planted_frequency_effect_is_recovered_and_depth_shows_none():
    data = planted(np.random.default_rng(1), poisson)
    linear = fit_counts(data, "transitions")
    i = term(linear, "fourier_i")
    assert i["ci_low"] <= math.log(2) <= i["ci_high"]
    assert i["ci_high"] - i["ci_low"] < 0.3
    contrasts = fit_counts(data, "transitions", depth="contrasts")
    for r in [term(linear, "depth"), term(contrasts, "depth=5"), term(contrasts, "depth=7")]:
        assert r["ci_low"] <= 0 <= r["ci_high"], r


def test_over_dispersed_counts_choose_the_negative_binomial_and_poisson_ones_do_not():
    over = fit_counts(planted(np.random.default_rng(2), over_dispersed), "transitions")
    assert term(over, "fourier_i")["model"].startswith("negative_binomial")
    plain = fit_counts(planted(np.random.default_rng(3), poisson), "transitions")
    assert term(plain, "fourier_i")["model"].startswith("quasi_poisson")


@pytest.mark.parametrize("draw", [under_dispersed, over_dispersed, poisson])
def test_intervals_keep_their_coverage_over_repeated_draws(draw):
    rng = np.random.default_rng(4)
    hits = []
    for _ in range(150):
        r = term(fit_counts(planted(rng, draw, seeds=6), "transitions"), "fourier_i")
        hits.append(r["ci_low"] <= math.log(2) <= r["ci_high"])
    coverage = np.mean(hits)
    # Nominal 0.95; 150 draws give ±0.035 (2 s.e.). Under-dispersed counts keep Poisson's errors
    # (the dispersion is floored at 1): conservative, by design.
    assert 0.89 <= coverage <= (1.0 if draw is under_dispersed else 0.99), coverage


def _poisson_errors(data: pd.DataFrame) -> tuple[list[str], np.ndarray, int]:
    import statsmodels.api as sm

    from analysis.design import design

    x = design(data)
    fit = sm.GLM(data["transitions"].astype(float).to_numpy(), sm.add_constant(x.to_numpy()), family=sm.families.Poisson()).fit()
    return list(x.columns), fit.bse[1:], int(fit.df_resid)


def test_under_dispersed_counts_keep_poissons_errors_with_t_on_the_residual_df():
    from scipy import stats

    data = planted(np.random.default_rng(5), under_dispersed)
    names, bse, df = _poisson_errors(data)
    r = term(fit_counts(data, "transitions"), "fourier_i")
    half = (r["ci_high"] - r["ci_low"]) / 2
    assert half == pytest.approx(stats.t.ppf(0.975, df) * bse[names.index("fourier_i")], rel=1e-6)
    assert "floored at 1" in r["model"] and f"t on {df} df" in r["model"]


def test_seeds_that_agree_exactly_give_no_effect_from_round_off():
    # Figure 4's counts at every depth, every seed the same: the depth effect is exactly none.
    data = frame({(d, i): np.full(8, t) for d in (5, 7, 9) for i, t in ((2, 4), (3, 8), (4, 32))}, epochs=100_000)
    found = effects(data)
    depth = found[(found["term"] == "depth") & (found["response"] == "transitions")].iloc[0]
    assert abs(depth["estimate"]) < 1e-9 and depth["ci_low"] < -0.01 and depth["ci_high"] > 0.01  # Poisson's width, not 1e-16
    assert depth["p_holm"] > 0.5
    # Seeds that agree exactly carry no seed-to-seed variance: the configurations are the unit
    # (4, 8, 32 over i is not log-linear: that lack of fit is the dispersion, on 9 - 3 df).
    assert "between configurations (lack of fit)" in depth["model"] and "t on 6 df" in depth["model"]


def test_bootstrap_intervals_cover_a_known_mean_at_their_level():
    rng = np.random.default_rng(6)
    hits = [lo <= 3.0 <= hi for lo, hi in (bootstrap_ci(rng.normal(3.0, 2.0, 40), np.mean, resamples=1000, seed=k) for k in range(300))]
    assert 0.90 <= np.mean(hits) <= 0.98
    low, high = bootstrap_ci(rng.normal(3.0, 2.0, 400), np.mean)
    assert high - low == pytest.approx(2 * 1.96 * 2.0 / math.sqrt(400), rel=0.15)


def test_wilson_and_holm_match_statsmodels():
    from statsmodels.stats.multitest import multipletests
    from statsmodels.stats.proportion import proportion_confint

    for k, n in [(0, 10), (3, 8), (8, 8), (17, 40)]:
        assert wilson_ci(k, n) == pytest.approx(proportion_confint(k, n, method="wilson"), abs=1e-9)
    p = np.array([0.01, 0.04, 0.03, 0.5, np.nan, 0.001])
    finite = np.isfinite(p)
    assert holm(p)[finite] == pytest.approx(multipletests(p[finite], method="holm")[1])
    assert np.isnan(holm(p)[4])


def test_the_p2_reference_is_the_zigzag_energy():
    assert get_problem("double_well_u2").closed_form_energy(np.array([0, 1, 2, 16]), 0.0) == pytest.approx([1.0, 1 / 12, 1 / 48, 1 / 3072])


def synthetic_folder(folder, statuses: dict[str, int] | None = None) -> Storage:
    """A results folder as a sweep writes it: P1 over depth × i, with curves and profiles."""
    rng = np.random.default_rng(7)
    results = Storage(folder)
    statuses = statuses or {}
    x = np.linspace(0, 1, 201)
    for depth in (3, 5):
        for i in (None, 2, 3):
            trial = f"d{depth}i{i}"
            n = 6
            t = rng.poisson(1 if i is None else 2.0**i, n)
            status = ["ok"] * n
            if depth == 3 and i == 2:
                status = [name for name, count in statuses.items() for _ in range(count)] + ["ok"] * (n - sum(statuses.values()))
            rows = []
            for seed in range(n):
                bad = status[seed] in ("diverged", "failed")
                rows.append({"sweep": "syn", "trial_id": trial, "seed": seed, "problem": "double_well", "dim": 1, "depth": depth,
                             "width": 128, "activation": "relu", "rho": 0.1, "fourier": i, "fourier_map": "sincos", "epsilon": 0.0,
                             "penalty": 500.0, "lr": 1e-4, "epochs": 1000, "batch": 128, "boundary_batch": 2, "dtype": "float32",
                             "energy": None if bad else float(rng.uniform(0.001, 0.01)),
                             "transitions": None if bad else int(t[seed]) + (1000 if status[seed] == "stopped" else 0),
                             "transitions_per_period": None if bad or i is None else t[seed] / 2 ** (i - 1),
                             "status": status[seed], "config_hash": trial})
            replicates = pa.Table.from_pylist(rows, schema=replicates_schema())
            curves = conform(pa.table({"sweep": ["syn"] * 20 * n, "trial_id": [trial] * 20 * n, "seed": np.repeat(np.arange(n), 20),
                               "step": np.tile(np.arange(20) * 50, n), "loss": rng.uniform(0.01, 1, 20 * n),
                               "energy_mc": rng.uniform(0.01, 1, 20 * n), "lr": np.full(20 * n, 1e-4)}), CURVES)
            u = np.abs(((x * (1 + (i or 0))) % 1) - 0.5)
            write_trial(results, TrialTables(trial, replicates, curves, PROFILES.empty_table(), b""))
            # the profiles as 0.2 wrote them (layout 1), so that the analysis is shown to read an old folder
            results.write_table(layout_1("syn", trial, list(range(n)), x, None, np.tile(u + depth, (n, 1)), np.tile(np.gradient(u, x), (n, 1))),
                                "profiles", f"{trial}.parquet")
    return results


def test_rows_that_did_not_finish_are_counted_and_kept_out_of_every_statistic(tmp_path):
    results = load([str(synthetic_folder(tmp_path / "r", {"diverged": 2, "failed": 1, "stopped": 1}).location)])
    assert results.status_counts() == {"ok": 32, "diverged": 2, "stopped": 1, "failed": 1}
    summary = summarise(results.rows)
    row = summary[(summary["depth"] == 3) & (summary["fourier_label"] == "2")].iloc[0]
    assert (row["n"], row["n_ok"], row["diverged"], row["failed"], row["stopped"]) == (6, 2, 2, 1, 1)
    assert row["transitions_median"] < 1000  # the stopped seed's count (planted at +1000) is not in it
    assert row["diverged_share"] == pytest.approx(2 / 6)
    assert effects(results.ok)["n"].max() == 32


def test_every_figure_is_drawn_from_the_rows(tmp_path):
    results = load([synthetic_folder(tmp_path / "r").location])
    ok = results.ok
    key = configuration_key(ok)
    heat = figures.heatmap(ok, "double_well")
    shown = sorted(float(t.get_text()) for t in heat.axes[0].texts)
    medians = sorted(ok.groupby(["depth", "fourier_label"])["transitions"].median().astype(float))
    assert shown == pytest.approx(medians)
    strip = figures.transitions_vs_i(ok, "double_well")
    points = np.concatenate([c.get_offsets()[:, 1] for c in strip.axes[0].collections if len(c.get_offsets())])
    assert sorted(points) == sorted(ok["transitions"].astype(float))  # every seed is a point
    scatter = figures.energy_vs_transitions(ok, "double_well")
    energies = np.concatenate([c.get_offsets()[:, 1] for c in scatter.axes[0].collections])
    assert sorted(energies) == pytest.approx(sorted(ok["energy"].astype(float)))
    panels = figures.profiles(ok, "double_well", key)
    x = np.linspace(0, 1, 201)
    stored = [(np.abs(((x * (1 + (i or 0))) % 1) - 0.5) + d).astype(np.float32) for d in (3, 5) for i in (None, 2, 3)]
    drawn = [np.asarray(ln.get_ydata()) for ax in panels.axes for ln in ax.lines if len(ln.get_ydata()) == 201 and min(ln.get_ydata()) >= 3]
    assert len(drawn) == 6 and all(any(np.allclose(y, u) for u in stored) for y in drawn)  # u of each configuration
    curves = figures.learning_curves(ok, "double_well", key)
    assert len([ln for ln in curves.axes[0].lines if len(ln.get_xdata()) == 20]) == 6


def test_analyze_writes_every_output_and_a_report_that_names_what_it_left_out(tmp_path):
    folder = synthetic_folder(tmp_path / "r", {"diverged": 1})
    result = drmfm("analyze", folder.location, "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    for name in ("summary.csv", "effects.csv", "reproduction.csv", "report.md"):
        assert (out / name).stat().st_size > 0
    pngs = sorted((out / "figures").glob("*.png"))
    assert len(pngs) == 5 and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000 for p in pngs)
    effects_csv = pd.read_csv(out / "effects.csv")
    assert {"problem", "term", "estimate", "ci_low", "ci_high", "p_value", "p_holm", "model"} <= set(effects_csv.columns)
    assert {"fourier_i", "fourier_on", "depth", "depth=5"} <= set(effects_csv["term"])
    report = (out / "report.md").read_text()
    assert "1 diverged" in report and all(f"figures/{p.name}" in report for p in pngs)
    assert not list(out.rglob("*.tmp"))


@pytest.mark.parametrize(
    "args, field",
    [(["/nonexistent/results"], "results"), ([], "results")],
)
def test_analyze_refuses_bad_input_with_one_line(args, field):
    result = drmfm("analyze", *args)
    assert result.returncode == 2 and field in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_table_without_a_needed_column_is_refused(tmp_path):
    import pyarrow.parquet as pq

    (tmp_path / "r" / "replicates").mkdir(parents=True)
    pq.write_table(pa.table({"sweep": ["s"], "seed": [0]}), tmp_path / "r" / "replicates" / "t.parquet")
    result = drmfm("analyze", str(tmp_path / "r"))
    assert result.returncode == 2 and "lack column" in result.stderr and "transitions" in result.stderr


def test_the_reproduction_table_places_the_paper_in_our_range():
    counts = np.array([4, 4, 4, 3, 5, 4, 8, 4])
    ok = frame({(5, 2): counts, (9, 4): np.array([30, 31, 32, 30, 29, 33, 31, 30])}, epochs=100_000)
    table = reproduction(ok).set_index(["depth", "fourier"])
    fig4 = table.loc[(5, 2)]
    assert fig4["figure"] == "4" and fig4["paper"] == 4 and bool(fig4["agrees"]) and not bool(fig4["shortened"])
    assert fig4["exact_share"] == pytest.approx(5 / 8)
    assert (fig4["exact_ci_low"], fig4["exact_ci_high"]) == pytest.approx(wilson_ci(5, 8))
    assert not bool(table.loc[(9, 4)]["agrees"])  # the paper's 16 lies below every seed's count
    assert table.loc[(9, 4)]["p_predictive"] == pytest.approx(2 * 0.5 / 9)  # ranked first of nine, no tie: (0 + 1/2)/9, two-sided


def test_a_paper_count_that_one_seed_gave_exactly_agrees():
    # Interpolated 2.5–97.5% quantiles of these eight seeds are [4.7, 8]: the paper's 4 would "disagree".
    ok = frame({(5, 2): np.array([4, 8, 8, 8, 8, 8, 8, 8])}, epochs=100_000)
    row = reproduction(ok).iloc[0]
    assert bool(row["agrees"]) and (row["min"], row["max"]) == (4, 8)
    assert row["p_predictive"] == pytest.approx(2 * (0 + (1 + 1) / 2) / 9)  # none below, one tie (half of it and the paper's own)
    assert row["within_one"] is None or pd.isna(row["within_one"])  # 1D: not a band count


def test_figures_5_and_6_hold_the_papers_counts_at_both_epoch_counts():
    rows = [frame({(3, 1): np.full(4, 12), (7, None): np.full(4, 11 if epochs == 200_000 else 16)}, problem="double_well_u2", epochs=epochs)
            for epochs in (200_000, 500_000)]
    table = reproduction(pd.concat(rows, ignore_index=True))
    got = {(r["figure"], r["depth"], r["epochs"]): r["paper"] for _, r in table.iterrows()}
    assert got == {("5", 7, 200_000): 11, ("5", 7, 500_000): 16, ("6", 3, 200_000): 12, ("6", 3, 500_000): 12}
    assert table["agrees"].all() and table["exact_share"].eq(1).all()


def test_a_shorter_run_of_a_paper_setting_is_a_shortened_row_and_2d_counts_within_one():
    quick = frame({(5, None): np.array([1, 1, 2, 1]), (5, 2): np.array([4, 4, 2, 4])}, epochs=10_000)  # make run's quickstart
    table = reproduction(quick).set_index("figure")
    assert set(table.index) == {"3", "4"} and table["shortened"].all()
    assert (table["epochs"] == 10_000).all() and (table["paper_epochs"] == 100_000).all()
    twin = frame({(3, 3): np.full(6, 16)}, problem="twin_branching", epochs=300_000)
    twin["activation"], twin["batch"], twin["boundary_batch"], twin["fourier_map"], twin["dim"] = "smooth_abs", 600, 400, "x_sincos", 2
    row = reproduction(twin).iloc[0]  # figure 8, i = 3: the paper's 15
    assert row["paper"] == 15 and not bool(row["agrees"]) and bool(row["within_one"])


def test_in_2d_the_epsilon_effect_is_a_log_log_slope():
    rng = np.random.default_rng(0)  # one draw; coverage over many draws is tested above
    rows = []
    for eps in (0.1 / 64, 0.1 / 16, 0.1 / 4, 0.1):
        part = frame({(3, i): rng.poisson(3 * 2.0 ** (i / 2) * (eps / 0.1) ** -0.5, 10) for i in (1, 2, 3)}, problem="twin_branching", epsilon=eps)
        part["bands"] = part["transitions"] + 1
        rows.append(part)
    data = pd.concat(rows, ignore_index=True)
    slope = term(fit_counts(data, "transitions"), "log_epsilon")
    assert slope["ci_low"] <= -0.5 <= slope["ci_high"] and slope["ci_high"] < 0
    found = effects(data)
    assert {"transitions", "bands"} <= set(found["response"])
    assert not found[(found["term"] == "trend epsilon") & (found["within"] == "fourier=2")].empty  # the cell in `within`, not in the name


def stored_2d_field(folder, field, xx, yy) -> pd.DataFrame:
    """A 2D trial whose profile is `field` (u and u_y) on the grid (xx, yy), and one row that points at it."""
    results = Storage(folder)
    field = field.reshape(1, *xx.shape)  # (1, ny, nx)
    profiles = stored(Profiles(np.array([0]), {"x": xx[0], "y": yy[:, 0]}, field, field), [0], sweep="s", trial_id="t")
    write_trial(results, TrialTables("t", replicates_schema().empty_table(), CURVES.empty_table(), profiles, b""))
    rows = frame({(3, 2): np.array([4])}, problem="twin_branching")
    rows["source"], rows["trial_id"] = results.location, "t"
    return rows


def test_2d_profiles_are_drawn_as_u_y_fields(tmp_path):
    g = np.linspace(0, 1, 17)
    yy, xx = np.meshgrid(g, g, indexing="ij")
    field = np.sign(np.sin(4 * np.pi * yy)).reshape(-1).astype(np.float32)
    rows = stored_2d_field(tmp_path / "r", field, xx, yy)
    drawn = figures.profiles(rows, "twin_branching", ["problem", "depth"])
    (image,) = drawn.axes[0].images
    assert np.array_equal(np.asarray(image.get_array()), field.reshape(17, 17))


def test_a_run_read_twice_counts_once_and_a_finished_copy_wins(tmp_path):
    failed_first = synthetic_folder(tmp_path / "b", {"failed": 6})
    finished = synthetic_folder(tmp_path / "a")
    results = load([failed_first.location, finished.location])
    assert results.duplicates == 36 and len(results.rows) == 36
    assert results.status_counts()["ok"] == 36


def test_interfaces_toward_the_wall_are_drawn_from_the_stored_field(tmp_path):
    """A field whose wavenumber along y grows toward the walls like dist^(−2/3): the figure's N(d) is
    2k(d) sign changes per line (k cycles on [0, 1]), and its guide line has the slope −2/3."""
    g = np.linspace(0, 1, 257)
    yy, xx = np.meshgrid(g, g, indexing="ij")
    k = np.round(2.0 * (np.maximum(np.minimum(xx, 1 - xx), 1 / 64) / 0.5) ** (-2 / 3)) + 0.25  # cycles, off the grid's nodes
    rows = stored_2d_field(tmp_path / "r", np.sin(2 * np.pi * k * yy), xx, yy)
    drawn = figures.interfaces_to_the_wall(rows, "twin_branching", ["problem", "depth"])
    measured, guide = drawn.axes[0].lines
    from drm.geometry import WALL_DISTANCES

    cycles = np.round(2.0 * (np.maximum(np.array(WALL_DISTANCES), 1 / 64) / 0.5) ** (-2 / 3)) + 0.25
    assert np.asarray(measured.get_xdata()) == pytest.approx(WALL_DISTANCES)
    assert np.asarray(measured.get_ydata()) == pytest.approx(np.floor(2 * cycles))  # sign changes of sin(2πky) on [0, 1]
    slope = np.polyfit(np.log(guide.get_xdata()), np.log(guide.get_ydata()), 1)[0]
    assert slope == pytest.approx(-2 / 3)


def test_each_configurations_statistics_are_numpy_over_its_ok_seeds(tmp_path):
    """summarise stacks configurations of the same ok-seed count: each figure equals numpy's over that
    configuration's ok seeds alone (exactly), whatever the count (none, one, several) and the nulls."""
    rows = load([str(synthetic_folder(tmp_path / "r", {"diverged": 2, "failed": 1, "stopped": 1}).location)]).rows
    rng = np.random.default_rng(3)
    rows["band_width_cv"] = np.where(rng.uniform(size=len(rows)) < 0.3, np.nan, rng.uniform(0, 1, len(rows)))  # a metric with nulls
    rows.loc[rows["trial_id"] == "d5i3", "band_width_cv"] = np.nan  # and a configuration without any value
    rows.loc[(rows["trial_id"] == "d5iNone") & (rows["seed"] > 0), "status"] = "failed"  # one ok seed
    rows.loc[rows["trial_id"] == "d3i3", "status"] = "diverged"  # none
    summary = summarise(rows)
    key = ["depth", "fourier_label"]
    for _, got in summary.iterrows():
        mine = rows[(rows["depth"] == got["depth"]) & (rows["fourier_label"] == got["fourier_label"])]
        ok = mine[mine["status"] == "ok"]
        assert got["n"] == len(mine) and got["n_ok"] == len(ok), got[key]
        if ok.empty:
            assert pd.isna(got["transitions_median"]) and pd.isna(got["energy_median"])
            continue
        t, e = ok["transitions"].astype(float).to_numpy(), ok["energy"].astype(float).to_numpy()
        q = np.quantile(t, [0.025, 0.25, 0.75, 0.975])
        assert (got["transitions_median"], got["transitions_mean"], got["energy_median"]) == (np.median(t), t.mean(), np.median(e))
        assert (got["transitions_p025"], got["transitions_q25"], got["transitions_q75"], got["transitions_p975"]) == tuple(q)
        assert (got["transitions_min"], got["transitions_max"], got["transitions_iqr"]) == (t.min(), t.max(), q[2] - q[1])
        assert got["transitions_all_equal"] == (len(t) > 1 and np.ptp(t) == 0)
        cv = ok["band_width_cv"].to_numpy()
        if np.isfinite(cv).any():
            assert got["band_width_cv_median"] == np.nanmedian(cv)
            low, high = bootstrap_ci(cv, np.median)
            assert (got["band_width_cv_median_ci_low"], got["band_width_cv_median_ci_high"]) == pytest.approx((low, high), nan_ok=True)
        else:
            assert pd.isna(got["band_width_cv_median"])
        assert (got["transitions_mean_ci_low"], got["transitions_mean_ci_high"]) == pytest.approx(bootstrap_ci(t, np.mean), nan_ok=True)
