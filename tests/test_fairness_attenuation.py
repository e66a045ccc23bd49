"""The intensification fit under noise: one run's dense class accuracies are noisy measurements of the classes'
accuracies, which biases the OLS slope towards 0 (errors in variables). ``dense_reliability`` and
``noise_null_slope`` estimate by how much from several runs of a method, and ``p_slope_null`` tests the slope
against what a uniform shift gives under that noise.

Checked against a hand-worked 3 runs × 3 classes case and a simulation of true class accuracies a_c observed with
noise by K runs, where the slope a uniform shift gives is known: var(a) / (var(a) + s²) when the pruned network's
noise is independent of its dense parent's, (var(a) + ρ s²) / (var(a) + s²) when it is correlated ρ with it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ticketlab.analysis.fairness import (ONE_RUN_CAVEAT, FairnessRun, dense_reliability, fairness_analysis,
                                         fit_noise, intensification_fit, noise_null_slope)
from ticketlab.errors import ConfigError

# -- the reliability, by hand ------------------------------------------------------------------------------------

# Dense class accuracy (in points) of 3 runs (rows) × 3 classes (columns).
HAND = np.array([[90.0, 80.0, 70.0],
                 [92.0, 78.0, 70.0],
                 [91.0, 83.0, 69.0]])


def test_reliability_hand_worked():
    # B: each run's variance across classes (ddof 1), then their mean.
    #   run 1: mean 80, squares 100 + 0 + 100 = 200, / 2 = 100
    #   run 2: mean 80, squares 144 + 4 + 100 = 248, / 2 = 124
    #   run 3: mean 81, squares 100 + 4 + 144 = 248, / 2 = 124          B = 348 / 3 = 116
    # N: the two-way residual x - run mean - class mean + grand mean. Class means 91, 241/3, 209/3; grand 241/3.
    #   run 1: 90 - 80 - 91 + 241/3 = -2/3,  80 - 80 - 241/3 + 241/3 = 0,  70 - 80 - 209/3 + 241/3 = 2/3
    #   run 2: 92 - 80 - 91 + 241/3 = 4/3,   78 - 80 = -2,                 70 - 80 - 209/3 + 241/3 = 2/3
    #   run 3: 91 - 81 - 91 + 241/3 = -2/3,  83 - 81 = 2,                  69 - 81 - 209/3 + 241/3 = -4/3
    #   squares: (4 + 0 + 4 + 16 + 36 + 4 + 4 + 36 + 16) / 9 = 120 / 9 = 40 / 3, over (3-1)(3-1) = 4 dof: N = 10/3
    expected = 1 - (10 / 3) / 116                                      # = 338 / 348
    assert dense_reliability(HAND) == pytest.approx(expected, rel=1e-12)
    assert dense_reliability(HAND / 100) == pytest.approx(expected, rel=1e-12)   # fractions or points alike
    # A seed that lifts every class alike does not tilt any run's fit, so it is not noise: the reliability stays.
    lifted = HAND + np.array([[0.0], [0.0], [5.0]])
    assert dense_reliability(lifted) == pytest.approx(expected, rel=1e-12)
    # ... whereas the plain mean over classes of the run-to-run variance (ddof 1) would count it.
    naive = 1 - lifted.var(axis=0, ddof=1).mean() / lifted.var(axis=1, ddof=1).mean()
    assert naive < expected - 0.05


def test_reliability_edge_cases():
    assert np.isnan(dense_reliability(HAND[:1]))                          # one run: nothing to measure noise by
    assert np.isnan(dense_reliability(np.full((3, 4), 0.9)))              # no class differs from another
    with_nan = np.column_stack([HAND, [np.nan, 50.0, 60.0]])              # a class absent from one run's test set
    assert dense_reliability(with_nan) == pytest.approx(dense_reliability(HAND))
    # Two runs whose classes swap places: all of the across-class variance is noise; clipped at 0.
    assert dense_reliability(np.array([[0.9, 0.8], [0.8, 0.9]])) == 0.0


def test_null_slope_between_reliability_and_one():
    rel = dense_reliability(HAND)
    shifts = np.array([[-3.0], [-5.0], [-4.0]])
    # The pruned network keeps its dense parent's quirks exactly: y = x - shift gives slope 1 in every run.
    assert noise_null_slope(HAND, HAND + shifts) == pytest.approx(1.0)
    # The pruned network's accuracies have no run-specific part at all: only the dense noise attenuates.
    assert noise_null_slope(HAND, np.array([85.0, 75.0, 60.0]) + shifts) == pytest.approx(rel)
    # A run without the level is a row of NaN and drops out with its dense row.
    missing = np.vstack([HAND + shifts, np.full(3, np.nan)])
    assert noise_null_slope(np.vstack([HAND, [95.0, 60.0, 62.0]]), missing) == pytest.approx(1.0)
    assert np.isnan(noise_null_slope(HAND[:2], np.vstack([HAND[0], np.full(3, np.nan)])))   # one run left
    with pytest.raises(ConfigError, match="one row"):
        noise_null_slope(HAND, HAND[:2])


# -- p_slope_null and the caveat ---------------------------------------------------------------------------------


def test_p_slope_null_is_the_t_test_against_null_slope():
    rng = np.random.default_rng(4)
    x = rng.uniform(0.8, 1.0, 10)
    ys = np.vstack([0.5 * x + 0.4 + rng.normal(0, 0.01, 10), 1.5 * x - 0.5 + rng.normal(0, 0.01, 10)])
    fit = intensification_fit(x, ys, null_slope=[0.6, np.nan], reliability=0.45, runs=[5, 5])
    row = fit.loc[0]
    t = (row["slope"] - 0.6) / row["slope_stderr"]
    assert row["p_slope_null"] == pytest.approx(2 * (1 - stats.t.cdf(abs(t), 8)))
    assert row["null_slope"] == 0.6 and row["reliability"] == 0.45
    assert row["caveat"] == ("slope attenuated by noise in the dense class accuracies (reliability 0.45 from 5 "
                             "runs): a uniform shift gives about 0.60 here, not 1 (compare with null_slope)")
    assert np.isnan(fit.loc[1, "p_slope_null"]) and "cannot estimate" in fit.loc[1, "caveat"]
    one = intensification_fit(x, ys, null_slope=0.6, runs=2)             # one value for every level
    assert list(one["null_slope"]) == [0.6, 0.6] and one.loc[0, "p_slope_null"] == pytest.approx(
        row["p_slope_null"])
    assert "from 2 runs, itself rough" in one.loc[0, "caveat"]
    alone = intensification_fit(x, ys)                                    # one run
    assert alone[["reliability", "null_slope", "p_slope_null"]].isna().all().all()
    assert list(alone["caveat"]) == [ONE_RUN_CAVEAT] * 2
    assert ONE_RUN_CAVEAT.startswith("one run: the slope is biased towards 0 by noise in the dense class "
                                     "accuracies (errors in variables)")
    assert intensification_fit(np.full(4, 0.7), np.arange(4) / 10).loc[0, "caveat"] == ""   # no slope: no caveat
    with pytest.raises(ConfigError, match="null_slope has 3 values"):
        intensification_fit(x, ys, null_slope=[0.5, 0.5, 0.5])


def test_fairness_analysis_estimates_the_null_within_the_runs():
    rng = np.random.default_rng(5)
    a = np.linspace(0.85, 0.99, 6)
    x = a + rng.normal(0, 0.01, (3, 6))
    y = a - 0.03 + rng.normal(0, 0.01, (3, 2, 6))
    runs = [FairnessRun(f"r{k}", [0, 1, 2], np.vstack([x[k], y[k]]), np.array([0.9, 0.88, 0.86]))
            for k in range(3)]
    runs[2] = FairnessRun("r2", [0, 1], np.vstack([x[2], y[2, 0]]), np.array([0.9, 0.88]))   # a shorter chain
    fit = fairness_analysis(runs, 1, sections=["fit"])["fit"]
    rel, nulls = fit_noise(runs)
    assert rel == pytest.approx(dense_reliability(x))
    assert nulls[1] == (pytest.approx(noise_null_slope(x, y[:, 0])), 3)
    assert nulls[2] == (pytest.approx(noise_null_slope(x[:2], y[:2, 1])), 2)
    np.testing.assert_allclose(fit["reliability"], rel)
    at2 = fit[fit["level"] == 2]
    assert len(at2) == 2
    np.testing.assert_allclose(at2["null_slope"], nulls[2][0])
    assert all("from 2 runs, itself rough" in c for c in at2["caveat"])
    assert all("from 3 runs)" in c for c in fit[fit["level"] == 1]["caveat"])
    alone = fairness_analysis(runs[:1], 1, sections=["fit"])["fit"]
    assert alone["null_slope"].isna().all() and set(alone["caveat"]) == {ONE_RUN_CAVEAT}


# -- a simulation where the answer is known ------------------------------------------------------------------------

C, K, S = 10, 5, 0.01                      # classes, runs per population, noise sd of a class accuracy
_z = np.linspace(-1, 1, C)
A = 0.9 + 0.01 * (_z - _z.mean()) / _z.std(ddof=1)    # true class accuracies: var(A, ddof=1) = 1e-4 = S²
POPULATIONS = 400
ALPHA = 0.05


def simulate(rho: float, beta: float, seed: int) -> pd.DataFrame:
    """POPULATIONS populations of K runs: level 0 observes A + e, level 1 a uniform shift A − 0.05 + f with f
    correlated rho with e, level 2 an intensification A − 0.05 + beta (A − mean A) + independent noise."""
    rng = np.random.default_rng(seed)
    out = []
    for p in range(POPULATIONS):
        e = S * rng.standard_normal((K, C))
        f = rho * e + np.sqrt(1 - rho ** 2) * S * rng.standard_normal((K, C))
        levels = [A + e, A - 0.05 + f, A - 0.05 + beta * (A - A.mean()) + S * rng.standard_normal((K, C))]
        runs = [FairnessRun(f"r{k}", [0, 1, 2], np.vstack([m[k] for m in levels]), np.array([0.9, 0.85, 0.8]))
                for k in range(K)]
        out.append(fairness_analysis(runs, 1, sections=["fit"])["fit"].assign(population=p))
    return pd.concat(out, ignore_index=True)


@pytest.mark.parametrize("rho", [0.0, 0.5])
def test_simulated_uniform_shift_gives_null_slope_and_p_slope_null_is_calibrated(rho):
    fit = simulate(rho, beta=3.0, seed=int(10 * rho))
    var_a = A.var(ddof=1)
    reliability = var_a / (var_a + S ** 2)                         # 0.5
    expected = (var_a + rho * S ** 2) / (var_a + S ** 2)            # the slope a uniform shift gives
    shift, intense = fit[fit["level"] == 1], fit[fit["level"] == 2]
    per_pop = shift.groupby("population").first()

    # The OLS slope of a uniform shift is attenuated to `expected`, not 1, up to Monte Carlo error and the
    # O(1/C) bias of a ratio over C fixed classes (2 λ² (1 − λ) / (C − 1) to second order, 0.03 at C = 10).
    se = shift["slope"].std() / np.sqrt(len(shift))
    ratio_bias = 2 * expected ** 2 * (1 - expected) / (C - 1)
    assert abs(shift["slope"].mean() - expected) < 4 * se + ratio_bias
    assert shift["slope"].mean() < 1 - 0.2
    # ... and the estimates from K runs find it on average.
    for column, truth in (("null_slope", expected), ("reliability", reliability)):
        est = per_pop[column]
        assert abs(est.mean() - truth) < 4 * est.std() / np.sqrt(len(est)) + 0.02, column

    # p_slope_null is roughly uniform: its rejection rate at ALPHA lies in the binomial band of POPULATIONS
    # independent tests (the K rows of one population share a null_slope, so they count as at least one).
    band = 3 * np.sqrt(ALPHA * (1 - ALPHA) / POPULATIONS)
    rejects_null = (shift["p_slope_null"] < ALPHA).mean()
    assert ALPHA - band < rejects_null < ALPHA + band
    # p_slope_1 rejects a uniform shift far more often: it mistakes noise for de-intensification.
    rejects_1 = (shift["p_slope_1"] < ALPHA).mean()
    assert rejects_1 > ALPHA + band and rejects_1 > 3 * rejects_null
    # Testing against the reliability alone ignores the noise the pruned network shares with its parent.
    t = (shift["slope"] - shift["reliability"]) / shift["slope_stderr"]
    rejects_rel = (2 * stats.t.sf(np.abs(t), C - 2) < ALPHA).mean()
    assert (rejects_rel > ALPHA + band) == (rho > 0)

    # A real intensification (level 2: weak classes lose 3× their distance below the mean more) shows as a slope
    # above null_slope that p_slope_null rejects far more often than ALPHA.
    assert intense["slope"].mean() > intense["null_slope"].mean() + 1
    assert (intense["p_slope_null"] < ALPHA).mean() > 0.3
    assert (intense["slope"] > intense["null_slope"]).mean() > 0.95


def test_wrong_shapes_are_one_line_config_errors():
    from ticketlab.analysis.fairness import intensification_fit
    from ticketlab.analysis.fairness.population import FairnessRun, fit_noise
    from ticketlab.errors import ConfigError

    dense, pruned = np.linspace(0.9, 0.99, 5), np.linspace(0.9, 0.99, 5)[None, :].repeat(3, axis=0)
    with pytest.raises(ConfigError, match="runs has 2 values"):
        intensification_fit(dense, pruned, null_slope=0.5, runs=[3, 3])
    a = FairnessRun("a", np.array([0, 1]), np.full((2, 4), 0.9), np.full(2, 0.9))
    b = FairnessRun("b", np.array([0, 1]), np.full((2, 5), 0.9), np.full(2, 0.9))
    with pytest.raises(ConfigError, match="different numbers of classes"):
        fit_noise([a, b])
