"""Per-class fairness analyses (ticketlab.analysis.fairness) and ``ticketlab fairness``.

Every number is checked against an independent computation: hand-worked confusion matrices, numpy.polyfit and
the textbook OLS standard errors, scipy's Welch test and the Welch formula written out, and a brute-force loop
over examples for the modal predictions and PIEs.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from conftest import TOY_TENSORS, nested_masks
from ticketlab import store
from ticketlab.analysis.fairness import (SHIFTS, TIES, FairnessRun, check_same_test_set, class_drops,
                                         fairness_analysis, hooker_test, intensification_fit,
                                         minimum_detectable_effect, modal_predictions, pie_counts,
                                         pruning_identified_exemplars, runs_needed, vote_counts, welch_dof,
                                         welch_power)
from ticketlab.cli import main
from ticketlab.errors import ConfigError
from ticketlab.evaluation import Evaluation
from cli_helpers import cli

# -- synthetic runs -------------------------------------------------------------------------------------------

C = 4
NAMES = ("cat", "dog", "bird", "fish")
# A shared test set: 60 examples per class, in a fixed shuffled order.
LABELS = np.random.default_rng(123).permutation(np.repeat(np.arange(C), 60))
BASE = np.array([0.95, 0.92, 0.85, 0.70])       # dense recall per class: class 3 is the weak one
LOSS = np.array([0.00, 0.01, 0.03, 0.12])       # recall lost per level: the weak class loses most
LEVELS = 3


def synth_predictions(rng: np.random.Generator, labels: np.ndarray, level: int) -> np.ndarray:
    p = BASE[labels] - LOSS[labels] * level
    wrong = (labels + rng.integers(1, C, labels.size)) % C
    return np.where(rng.random(labels.size) < p, labels, wrong)


def write_run(path: Path, seed: int, labels: np.ndarray = LABELS, levels: int = LEVELS,
              method: str = "synthetic per-class degradation") -> np.ndarray:
    """Write one run through the store API; return its predictions, shape (levels + 1, N)."""
    rng = np.random.default_rng(seed)
    store.create(path, tensors=TOY_TENSORS, model="toy", method=method,
                 config={"seed": seed}, seed=seed, dataset=store.DatasetInfo("toyset", C, NAMES, labels))
    writer = store.TicketWriter(path)
    preds = []
    for level, masks in enumerate(nested_masks(rng, levels)):
        p = synth_predictions(rng, labels, level)
        writer.write_level(level, masks, evaluation=Evaluation.from_predictions(labels, p, loss=0.1, num_classes=C))
        preds.append(p)
    return np.array(preds)


def recall_by_loop(labels: np.ndarray, preds: np.ndarray, num_classes: int = C) -> np.ndarray:
    out = []
    for c in range(num_classes):
        hits = [p == c for y, p in zip(labels, preds) if y == c]
        out.append(sum(hits) / len(hits) if hits else math.nan)
    return np.array(out)


def modal_by_loop(votes: list[int], ties: str = "largest") -> int:
    counts = Counter(votes)
    best = max(counts.values())
    tied = [label for label, n in counts.items() if n == best]
    return max(tied) if ties == "largest" else min(tied)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[list[Path], list[np.ndarray]]:
    d = tmp_path_factory.mktemp("fairness")
    paths = [d / f"run_s{s}.h5" for s in range(4)]
    return paths, [write_run(p, s) for s, p in enumerate(paths)]




# -- drops -----------------------------------------------------------------------------------------------------


def expand(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels and predictions that produce the given confusion matrix."""
    labels, preds = [], []
    for i, row in enumerate(confusion):
        for j, n in enumerate(row):
            labels += [i] * n
            preds += [j] * n
    return np.array(labels), np.array(preds)


def test_class_drops_hand_worked():
    # level 0: recalls 4/5, 3/4, 4/5; accuracy 11/14.  level 1: recalls 3/5, 2/4, 5/5; accuracy 10/14.
    dense = np.array([[4, 1, 0], [0, 3, 1], [1, 0, 4]])
    pruned = np.array([[3, 1, 1], [0, 2, 2], [0, 0, 5]])
    evs = [Evaluation.from_predictions(*expand(m), loss=0.0, num_classes=3) for m in (dense, pruned)]
    np.testing.assert_allclose(evs[0].per_class_accuracy, [0.8, 0.75, 0.8])
    np.testing.assert_allclose(evs[1].per_class_accuracy, [0.6, 0.5, 1.0])
    df = class_drops(np.vstack([e.per_class_accuracy for e in evs]), [e.accuracy for e in evs],
                     density=[1.0, 0.8], class_names=["a", "b", "c"], run="r", seed=7)
    assert len(df) == 6 and list(df["class_name"]) == ["a", "b", "c"] * 2
    lv1 = df[df["level"] == 1].reset_index(drop=True)
    np.testing.assert_allclose(lv1["class_accuracy"], [0.6, 0.5, 1.0])
    np.testing.assert_allclose(lv1["dense_class_accuracy"], [0.8, 0.75, 0.8])
    np.testing.assert_allclose(lv1["drop"], [0.2, 0.25, -0.2])
    np.testing.assert_allclose(lv1["relative_drop"], [0.25, 1 / 3, -0.25])
    np.testing.assert_allclose(lv1["accuracy"], 10 / 14)
    np.testing.assert_allclose(lv1["dense_accuracy"], 11 / 14)
    np.testing.assert_allclose(lv1["overall_drop"], 1 / 14)
    np.testing.assert_allclose(lv1["overall_relative_drop"], 1 / 11)
    np.testing.assert_allclose(lv1["excess_drop"], [0.2 - 1 / 14, 0.25 - 1 / 14, -0.2 - 1 / 14])
    assert (lv1["density"] == 0.8).all() and (df["run"] == "r").all() and (df["seed"] == 7).all()
    lv0 = df[df["level"] == 0]
    assert (lv0["drop"] == 0).all() and (lv0["excess_drop"] == 0).all()


def test_class_drops_absent_class_and_zero_dense_accuracy():
    per_class = np.array([[0.0, np.nan, 0.5], [0.25, np.nan, 0.25]])
    df = class_drops(per_class, [0.4, 0.3], levels=[0, 2])
    row = df[df["level"] == 2].reset_index(drop=True)
    assert np.isnan(row.loc[0, "relative_drop"]) and row.loc[0, "drop"] == -0.25   # dense 0: no relative drop
    assert np.isnan(row.loc[1, "drop"])                                           # class absent from test set
    assert row.loc[2, "relative_drop"] == 0.5


@pytest.mark.parametrize("kwargs, fragment", [
    ({"levels": [1, 2]}, "level 0"),
    ({"levels": [0, 1, 2]}, "levels"),
    ({"class_names": ["a"]}, "class names"),
])
def test_class_drops_refuses_bad_input(kwargs, fragment):
    with pytest.raises(ConfigError, match=fragment):
        class_drops(np.ones((2, 3)), [1.0, 1.0], **kwargs)


# -- intensification fit ----------------------------------------------------------------------------------------


def hand_ols(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    n = x.size
    sxx = ((x - x.mean()) ** 2).sum()
    slope = ((x - x.mean()) * (y - y.mean())).sum() / sxx
    intercept = y.mean() - slope * x.mean()
    s2 = ((y - intercept - slope * x) ** 2).sum() / (n - 2)
    se_s, se_i = math.sqrt(s2 / sxx), math.sqrt(s2 * (1 / n + x.mean() ** 2 / sxx))
    q = stats.t.ppf(0.975, n - 2)
    return {"slope": slope, "intercept": intercept, "slope_stderr": se_s, "intercept_stderr": se_i,
            "slope_ci_low": slope - q * se_s, "slope_ci_high": slope + q * se_s,
            "intercept_ci_low": intercept - q * se_i, "intercept_ci_high": intercept + q * se_i,
            "p_slope_1": 2 * (1 - stats.t.cdf(abs(slope - 1) / se_s, n - 2))}


def test_intensification_fit_matches_polyfit_and_hand_formulas():
    rng = np.random.default_rng(0)
    x = rng.uniform(0.5, 1.0, 10)
    ys = np.vstack([x - 0.02 + rng.normal(0, 0.01, 10), 1.4 * x - 0.45 + rng.normal(0, 0.02, 10)])
    fit = intensification_fit(x, ys, levels=[2, 5], density=[0.64, 0.33], run="a")
    assert list(fit["level"]) == [2, 5] and list(fit["n_classes"]) == [10, 10]
    for row, y in zip(fit.to_dict("records"), ys):
        slope, intercept = np.polyfit(x, y, 1)
        assert row["slope"] == pytest.approx(slope, rel=1e-10)
        assert row["intercept"] == pytest.approx(intercept, rel=1e-10, abs=1e-12)
        for key, value in hand_ols(x, y).items():
            assert row[key] == pytest.approx(value, rel=1e-8), key
        assert row["r"] == pytest.approx(np.corrcoef(x, y)[0, 1])
    assert fit.loc[1, "slope_ci_low"] > 1          # the steep level: weak classes lose more
    assert fit.loc[1, "p_slope_1"] < 0.01
    assert fit.loc[0, "p_slope_1"] > 0.01


def test_intensification_fit_drops_nan_classes_and_degenerate_levels():
    x = np.array([0.9, 0.8, np.nan, 0.6, 0.5])
    y = np.array([0.85, 0.7, 0.4, 0.45, 0.3])
    fit = intensification_fit(x, y)
    ok = np.isfinite(x)
    assert fit.loc[0, "n_classes"] == 4
    assert fit.loc[0, "slope"] == pytest.approx(np.polyfit(x[ok], y[ok], 1)[0])
    two = intensification_fit(np.array([0.9, 0.5]), np.array([0.8, 0.3]))   # a line through 2 points: no CI
    assert two.loc[0, "slope"] == pytest.approx(1.25) and np.isnan(two.loc[0, "slope_ci_low"])
    flat = intensification_fit(np.full(4, 0.7), np.array([0.1, 0.2, 0.3, 0.4]))
    assert np.isnan(flat.loc[0, "slope"])


# -- Hooker et al.'s test ---------------------------------------------------------------------------------------


def welch_by_hand(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    t = (a.mean() - b.mean()) / math.sqrt(va + vb)
    dof = (va + vb) ** 2 / (va ** 2 / (a.size - 1) + vb ** 2 / (b.size - 1))
    return t, dof, 2 * stats.t.sf(abs(t), dof)


@pytest.mark.parametrize("shift", SHIFTS.names())
def test_hooker_test_matches_scipy_and_the_welch_formula(shift):
    rng = np.random.default_rng(1)
    d_cls, p_cls = rng.uniform(0.6, 0.95, (6, 5)), rng.uniform(0.5, 0.9, (5, 5))
    p_cls[:, 2] -= 0.3                                             # one class hurt much more
    d_acc, p_acc = rng.uniform(0.8, 0.85, 6), rng.uniform(0.7, 0.75, 5)
    res = hooker_test(d_cls, d_acc, p_cls, p_acc, level=4, class_names=list("abcde"), shift=shift)
    if shift == "population":
        d_gap, p_gap = d_cls - d_acc.mean(), p_cls - p_acc.mean()
    else:
        d_gap, p_gap = d_cls - d_acc[:, None], p_cls - p_acc[:, None]
    for c, row in enumerate(res.to_dict("records")):
        ref = stats.ttest_ind(p_gap[:, c], d_gap[:, c], equal_var=False)
        t, dof, p = welch_by_hand(p_gap[:, c], d_gap[:, c])
        assert row["t"] == pytest.approx(ref.statistic) == pytest.approx(t)
        assert row["p_value"] == pytest.approx(ref.pvalue) == pytest.approx(p)
        assert row["dof"] == pytest.approx(dof)
        assert row["change"] == pytest.approx(p_gap[:, c].mean() - d_gap[:, c].mean())
        assert row["dense_recall"] == pytest.approx(d_cls[:, c].mean())
        assert row["impacted"] == (p <= 0.05)
        assert (row["level"], row["class_name"], row["n_dense"], row["n_pruned"]) == (4, "abcde"[c], 6, 5)
    assert res.loc[2, "impacted"] and res.loc[2, "t"] < 0


def test_hooker_test_edge_cases():
    d = np.array([[0.5, np.nan, 0.7], [0.5, np.nan, 0.8]])
    res = hooker_test(d, [0.6, 0.6], d, [0.6, 0.6])
    assert res["t"].isna().tolist() == [True, True, False]     # constant in both populations; absent class
    assert (res.loc[2, "t"], res.loc[2, "p_value"]) == (0.0, 1.0)  # the same sample twice
    assert not res["impacted"].any()
    with pytest.raises(ConfigError, match="at least 2 models"):
        hooker_test(d[:1], [0.6], d, [0.6, 0.6])
    with pytest.raises(ConfigError, match="shift"):
        hooker_test(d, [0.6, 0.6], d, [0.6, 0.6], shift="median")


# -- PIEs --------------------------------------------------------------------------------------------------------


def test_modal_predictions_tie_breaking_by_hand():
    preds = np.array([[0, 2, 1, 3], [1, 2, 3, 3], [1, 0, 0, 1], [0, 0, 2, 1]])
    # example 0: 0,1,1,0 tie -> 1 / 0; example 1: 2,2,0,0 -> 2 / 0; example 2: 1,3,0,2 -> 3 / 0; example 3: 3,3,1,1
    np.testing.assert_array_equal(modal_predictions(preds), [1, 2, 3, 3])
    np.testing.assert_array_equal(modal_predictions(preds, ties="smallest"), [0, 0, 0, 1])
    np.testing.assert_array_equal(vote_counts(preds, 4)[0], [2, 2, 0, 0])


@pytest.mark.parametrize("ties", TIES.names())
def test_pies_match_a_brute_force_loop(ties):
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 5, 400)
    dense = np.where(rng.random((4, 400)) < 0.6, labels, rng.integers(0, 5, (4, 400)))   # even counts: ties
    pruned = np.where(rng.random((6, 400)) < 0.4, labels, rng.integers(0, 5, (6, 400)))
    ex = pruning_identified_exemplars(dense, pruned, labels, num_classes=6, level=3, ties=ties)
    n_pies, per_class = 0, np.zeros(6, int)
    for i in range(labels.size):
        dm, pm = modal_by_loop(list(dense[:, i]), ties), modal_by_loop(list(pruned[:, i]), ties)
        assert (ex.loc[i, "dense_modal"], ex.loc[i, "pruned_modal"]) == (dm, pm)
        assert ex.loc[i, "pie"] == (dm != pm)
        assert ex.loc[i, "dense_votes"] == pytest.approx(list(dense[:, i]).count(dm) / 4)
        assert ex.loc[i, "pruned_votes"] == pytest.approx(list(pruned[:, i]).count(pm) / 6)
        assert ex.loc[i, "pruned_modal_correct"] == (pm == labels[i])
        if dm != pm:
            n_pies += 1
            per_class[labels[i]] += 1
    assert 0 < n_pies < labels.size and ex["pie"].sum() == n_pies
    counts = pie_counts(ex, 6)
    np.testing.assert_array_equal(counts["pies"], per_class)
    np.testing.assert_array_equal(counts["examples"], np.bincount(labels, minlength=6))
    assert counts.loc[5, "examples"] == 0 and np.isnan(counts.loc[5, "pie_fraction"])   # a class with no examples
    assert counts.loc[0, "pie_fraction"] == pytest.approx(per_class[0] / (labels == 0).sum())
    assert (counts["level"] == 3).all()


def test_pies_refuse_misaligned_predictions():
    with pytest.raises(ConfigError, match="shape"):
        pruning_identified_exemplars(np.zeros((2, 5), int), np.zeros((2, 4), int), np.zeros(5, int))


def test_check_same_test_set_refuses_mismatches():
    a = np.array([0, 1, 2, 1])
    np.testing.assert_array_equal(check_same_test_set([a, a.copy()], ["x", "y"]), a)
    with pytest.raises(ConfigError, match="differ at 1 of 4 examples.*first at example 2"):
        check_same_test_set([a, np.array([0, 1, 0, 1])], ["x", "y"])
    with pytest.raises(ConfigError, match="3 vs 4"):
        check_same_test_set([a, a[:3]], ["x", "y"])
    with pytest.raises(ConfigError, match="no test labels"):
        check_same_test_set([a, None], ["x", "y"])


def test_fairness_analysis_sections():
    rng = np.random.default_rng(3)
    preds = [np.array([synth_predictions(rng, LABELS, lv) for lv in range(3)]) for _ in range(3)]
    runs = [FairnessRun(f"r{i}", [0, 1, 2], np.vstack([recall_by_loop(LABELS, q) for q in p]),
                        (p == LABELS).mean(axis=1), predictions={0: p[0], 2: p[2]}) for i, p in enumerate(preds)]
    out = fairness_analysis(runs, 2, labels=LABELS, class_names=NAMES)
    assert list(out) == ["drops", "fit", "hooker", "pies", "pie_examples"]
    assert len(out["drops"]) == 3 * 3 * C and len(out["fit"]) == 3 * 2 and len(out["pie_examples"]) == LABELS.size
    one = fairness_analysis(runs[:1], 2, labels=LABELS)
    assert list(one) == ["drops", "fit"]
    with pytest.raises(ConfigError, match="no level 5"):
        fairness_analysis(runs, 5, labels=LABELS)


# -- command line ------------------------------------------------------------------------------------------------


def test_cli_json_numbers_match_independent_computation(capsys, runs):
    paths, preds = runs
    code, out, err = cli(capsys, "fairness", *map(str, paths), "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert list(doc) == ["runs", "drops", "fit", "hooker", "pies"]
    assert [r["level"] for r in doc["runs"]] == [LEVELS] * 4 and [r["seed"] for r in doc["runs"]] == [0, 1, 2, 3]

    recall = [np.array([recall_by_loop(LABELS, p) for p in pr]) for pr in preds]   # per run: (levels, C)
    acc = [(pr == LABELS).mean(axis=1) for pr in preds]
    drops = pd.DataFrame(doc["drops"])
    assert len(drops) == 4 * (LEVELS + 1) * C
    for i, path in enumerate(paths):
        for lv in range(LEVELS + 1):
            rows = drops[(drops["run"] == path.name) & (drops["level"] == lv)].sort_values("class")
            np.testing.assert_allclose(rows["class_accuracy"], recall[i][lv])
            np.testing.assert_allclose(rows["drop"], recall[i][0] - recall[i][lv], atol=1e-12)
            np.testing.assert_allclose(rows["excess_drop"],
                                       recall[i][0] - recall[i][lv] - (acc[i][0] - acc[i][lv]), atol=1e-12)
            assert list(rows["class_name"]) == list(NAMES)

    fit = pd.DataFrame(doc["fit"])
    assert len(fit) == 4 * LEVELS and 0 not in set(fit["level"])
    for i, path in enumerate(paths):
        row = fit[(fit["run"] == path.name) & (fit["level"] == LEVELS)].iloc[0]
        assert row["slope"] == pytest.approx(np.polyfit(recall[i][0], recall[i][LEVELS], 1)[0])
        assert row["slope"] > 1                                # the weak class lost the most

    hooker = pd.DataFrame(doc["hooker"])
    d_acc, p_acc = np.array([a[0] for a in acc]), np.array([a[LEVELS] for a in acc])
    for c in range(C):
        d = np.array([r[0, c] for r in recall]) - d_acc.mean()
        p = np.array([r[LEVELS, c] for r in recall]) - p_acc.mean()
        ref = stats.ttest_ind(p, d, equal_var=False)
        assert hooker.loc[c, "t"] == pytest.approx(ref.statistic)
        assert hooker.loc[c, "p_value"] == pytest.approx(ref.pvalue)
    assert hooker.loc[3, "impacted"] and hooker.loc[3, "change"] < 0

    pies = pd.DataFrame(doc["pies"])
    expected = np.zeros(C, int)
    for i in range(LABELS.size):
        if modal_by_loop([p[0, i] for p in preds]) != modal_by_loop([p[LEVELS, i] for p in preds]):
            expected[LABELS[i]] += 1
    np.testing.assert_array_equal(pies["pies"], expected)
    assert pies["pies"].idxmax() == 3


def test_cli_tables_csv_and_section_choice(capsys, runs):
    paths, _ = runs
    files = list(map(str, paths))
    code, out, _ = cli(capsys, "fairness", *files)
    assert code == 0
    for title in ("runs (level 3", "per-class accuracy drops", "intensification fit", "Hooker et al.",
                  "pruning-identified exemplars"):
        assert title in out
    code, out, _ = cli(capsys, "fairness", *files, "--csv", "--what", "drops", "--level", "2")
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0].startswith("run,seed,level,density,class,class_name,class_accuracy,dense_class_accuracy,drop")
    assert len(lines) == 1 + 4 * (LEVELS + 1) * C
    code, out, _ = cli(capsys, "fairness", *files, "--json", "--what", "hooker,pie_examples", "--level", "2")
    doc = json.loads(out)
    assert list(doc) == ["hooker", "pie_examples"] and {r["level"] for r in doc["hooker"]} == {2}
    assert all(r["pie"] for r in doc["pie_examples"])
    code, _, err = cli(capsys, "fairness", *files, "--csv")
    assert code == 2 and "--what" in err


def test_cli_single_run_and_population_sections(capsys, runs):
    paths, _ = runs
    code, out, _ = cli(capsys, "fairness", str(paths[0]), "--json")
    assert code == 0 and list(json.loads(out)) == ["runs", "drops", "fit"]
    code, _, err = cli(capsys, "fairness", str(paths[0]), "--what", "hooker")
    assert code == 2 and "at least two runs" in err


def test_cli_default_level_is_last_common_and_level_0_is_refused(capsys, runs, tmp_path):
    paths, _ = runs
    short = tmp_path / "short.h5"
    write_run(short, 9, levels=2)
    code, out, err = cli(capsys, "fairness", str(paths[0]), str(short), "--json", "--what", "runs")
    assert code == 0, err
    assert {r["level"] for r in json.loads(out)["runs"]} == {2}
    code, _, err = cli(capsys, "fairness", str(paths[0]), str(short), "--level", "0")
    assert code == 2 and "dense network" in err
    code, _, err = cli(capsys, "fairness", str(paths[0]), f"{short}:1")
    assert code == 2 and "one level" in err


def test_cli_refuses_runs_with_different_test_sets(capsys, runs, tmp_path):
    paths, _ = runs
    other = tmp_path / "other.h5"
    write_run(other, 5, labels=np.roll(LABELS, 1))
    code, _, err = cli(capsys, "fairness", str(paths[0]), str(other))
    assert code == 2
    assert "different test sets" in err and "other.h5" in err and len(err.strip().splitlines()) == 1


def test_cli_html_report_is_self_contained(capsys, runs, tmp_path):
    paths, _ = runs
    report = tmp_path / "fairness.html"
    code, _, err = cli(capsys, "fairness", *map(str, paths), "--what", "runs", "--report", str(report))
    assert code == 0 and str(report) in err
    page = report.read_text(encoding="utf-8")
    for heading in ("Per-class accuracy drops", "Intensification fit", "Hooker et al. per-class test",
                    "Pruning-identified exemplars", "Definitions"):
        assert f"<h2>{heading}</h2>" in page
    assert page.count('<img src="data:image/png;base64,') >= 5
    links = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)["']""", page)
    assert links and not [u for u in links if not u.startswith("data:image/png;base64,")]
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", page)
    assert "http" not in text and "<script" not in text and "<link" not in text
    assert "fish" in page and "mode().max()" in page


# -- statistical honesty: power, caveats, populations ---------------------------------------------------------


def simulated_power(delta, sd_a, sd_b, n_a, n_b, reps=20_000, alpha=0.05, seed=0):
    """The rejection rate of scipy's Welch test on normal samples whose means differ by delta."""
    rng = np.random.default_rng(seed)
    a = rng.normal(delta, sd_a, (reps, n_a))
    b = rng.normal(0.0, sd_b, (reps, n_b))
    return float((stats.ttest_ind(a, b, axis=1, equal_var=False).pvalue <= alpha).mean())


@pytest.mark.parametrize("sd_a, sd_b, n_a, n_b", [(0.01, 0.01, 2, 2), (0.01, 0.003, 2, 3), (0.01, 0.02, 5, 4),
                                                  (0.005, 0.01, 8, 8)])
def test_welch_power_and_detectable_effect_match_a_simulation(sd_a, sd_b, n_a, n_b):
    # 20,000 simulated tests: the rejection rate has sd <= 0.0036, so 0.015 is > 4 sd
    mde = minimum_detectable_effect(sd_a, sd_b, n_a, n_b)
    assert simulated_power(mde, sd_a, sd_b, n_a, n_b) == pytest.approx(0.8, abs=0.015)
    for delta in (0.0, 0.5 * mde, 0.01):
        assert welch_power(delta, sd_a, sd_b, n_a, n_b) == pytest.approx(
            simulated_power(delta, sd_a, sd_b, n_a, n_b, seed=1), abs=0.015)
    assert welch_power(mde, sd_a, sd_b, n_a, n_b) == pytest.approx(0.8, abs=1e-6)


def test_power_with_two_runs_is_far_below_the_noncentral_t_shortcut():
    # the shortcut with df fixed at its population value promises 80% at about 5.65 sd for 2 + 2 runs; Welch's
    # test (estimated variances, estimated df) has about half that power there, and needs about 10.4 sd
    sd = 0.01
    dof = welch_dof(sd, sd, 2, 2)
    assert dof == pytest.approx(2.0)
    se = math.sqrt(2 * sd ** 2 / 2)
    crit = stats.t.ppf(0.975, dof)
    shortcut = optimize_delta(lambda d: stats.nct.sf(crit, dof, d / se))  # the far tail is < 1e-8 here
    assert shortcut == pytest.approx(0.0565, abs=0.001)
    assert simulated_power(shortcut, sd, sd, 2, 2) == pytest.approx(welch_power(shortcut, sd, sd, 2, 2), abs=0.015)
    assert welch_power(shortcut, sd, sd, 2, 2) < 0.55
    assert minimum_detectable_effect(sd, sd, 2, 2) == pytest.approx(0.104, abs=0.001)


def optimize_delta(power_of) -> float:
    from scipy import optimize

    return optimize.brentq(lambda d: power_of(d) - 0.8, 0.01, 0.1)


def test_runs_needed_is_the_fewest_runs_with_the_power():
    for delta, sd_a, sd_b in [(0.01, 0.01, 0.01), (0.01, 0.004, 0.006), (0.02, 0.01, 0.03)]:
        n = int(runs_needed(delta, sd_a, sd_b))
        assert welch_power(delta, sd_a, sd_b, n, n) >= 0.8 > welch_power(delta, sd_a, sd_b, n - 1, n - 1) or n == 2
        assert simulated_power(delta, sd_a, sd_b, n, n) == pytest.approx(welch_power(delta, sd_a, sd_b, n, n),
                                                                          abs=0.015)
    # textbook check: equal sds of 1 point and a 1-point change need 17 runs a side (normal approx. gives 16)
    assert runs_needed(0.01, 0.01, 0.01) == 17
    assert runs_needed(0.01, 0.0001, 0.0001) == 2
    assert math.isnan(runs_needed(0.01, 0.0, 0.0)) and math.isinf(runs_needed(0.0, 0.01, 0.01))
    assert math.isnan(minimum_detectable_effect(0.0, 0.0, 3, 3))
    with pytest.raises(ConfigError, match="at least 2 runs"):
        welch_power(0.01, 0.01, 0.01, 1, 3)


def test_hooker_test_states_power_and_caveats():
    rng = np.random.default_rng(5)
    d_cls = 0.9 + rng.normal(0, 0.002, (2, 3))
    p_cls = 0.85 + rng.normal(0, 0.002, (2, 3))
    p_cls[:, 1] -= 0.05                                                 # a big change: flagged with 2 runs
    d_acc, p_acc = np.full(2, 0.9), np.full(2, 0.85)
    res = hooker_test(d_cls, d_acc, p_cls, p_acc, shift="model")
    for row in res.to_dict("records"):
        a, b = p_cls[:, row["class"]] - p_acc, d_cls[:, row["class"]] - d_acc
        assert row["sd_pruned"] == pytest.approx(a.std(ddof=1)) and row["sd_dense"] == pytest.approx(b.std(ddof=1))
        assert row["mde"] == pytest.approx(minimum_detectable_effect(a.std(ddof=1), b.std(ddof=1), 2, 2))
        assert row["power"] == pytest.approx(welch_power(0.01, a.std(ddof=1), b.std(ddof=1), 2, 2))
        assert row["runs_needed"] == runs_needed(0.01, a.std(ddof=1), b.std(ddof=1))
        assert row["caveat"].startswith("2 dense + 2 pruned runs, Welch df ")    # 2 runs a side: always
    flagged = res[res["impacted"]]
    assert len(flagged) and (flagged["dof"] < 3).all() and flagged["caveat"].str.contains("80% power").all()
    # many runs with a small spread: the test can see a 1-point change, no caveat
    d_many, p_many = 0.9 + rng.normal(0, 0.002, (12, 3)), 0.85 + rng.normal(0, 0.002, (12, 3))
    many = hooker_test(d_many, np.full(12, 0.9), p_many, np.full(12, 0.85), shift="model")
    assert (many["caveat"] == "").all() and (many["power"] > 0.8).all() and (many["runs_needed"] < 12).all()
    # a large spread: underpowered even with 12 runs, and the caveat says how many a 1-point change needs
    noisy = hooker_test(0.9 + rng.normal(0, 0.02, (12, 3)), np.full(12, 0.9), p_many, np.full(12, 0.85),
                        shift="model")
    assert noisy["caveat"].str.contains("runs per side").all() and (noisy["power"] < 0.8).all()
    with pytest.raises(ConfigError, match="effect"):
        hooker_test(d_cls, d_acc, p_cls, p_acc, effect=0)


def test_pie_counts_count_ties_and_carry_a_caveat():
    labels = np.array([0, 0, 1, 1])
    dense = np.array([[0, 0, 1, 1], [0, 0, 1, 1]])
    pruned = np.array([[1, 0, 1, 0], [0, 0, 1, 1]])   # examples 0 and 3: the pruned models disagree (a tie)
    ex = pruning_identified_exemplars(dense, pruned, labels, num_classes=2)
    assert ex["pruned_tie"].tolist() == [True, False, False, True] and not ex["dense_tie"].any()
    assert ex["pie"].tolist() == [True, False, False, False]    # 0: tie 0/1 -> 1 (largest); 3: tie -> 1, no PIE
    counts = pie_counts(ex, 2)
    assert counts["pies_tied"].tolist() == [1, 0] and counts["n_dense"].tolist() == [2, 2]
    assert counts.loc[0, "caveat"].startswith("modal labels over 2 dense and 2 pruned models: 1 of 1 PIEs")
    many = pruning_identified_exemplars(np.tile(dense, (3, 1)), np.tile(dense, (3, 1)), labels, num_classes=2)
    assert (pie_counts(many, 2)["caveat"] == "").all()                  # 6 models, no ties


def test_populations_group_runs_by_method(tmp_path):
    from ticketlab import frames

    specs = [("a_s0.h5", "IMP layer_magnitude 20%/level, reset rewind-init", 0),
             ("a_s1.h5", "IMP layer_magnitude 20%/level, reset rewind-init", 1),
             ("b_s0.h5", "IMP layer_magnitude 20%/level, reset finetune", 0),
             ("c_s0.h5", "IMP layer_magnitude 20%/level, reset rewind-init, controls reinit", 0)]
    for name, method, seed in specs:
        write_run(tmp_path / name, seed, levels=1, method=method)
    with frames.opened([tmp_path / n for n, _, _ in specs]) as tickets:
        pops = frames.populations(tickets)
        assert [(p.name, p.members) for p in pops] == [
            ("rewind-init, controls none", (0, 1)), ("finetune, controls none", (2,)),
            ("rewind-init, controls reinit", (3,))]
        assert "finetune, controls none (1 run: b_s0.h5)" in frames.populations_text(pops, tickets)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory, runs) -> list[Path]:
    """The four runs of the module fixture plus two runs of another method."""
    d = tmp_path_factory.mktemp("mixed")
    other = [d / f"other_s{s}.h5" for s in (0, 1)]
    for s, p in enumerate(other):
        write_run(p, 10 + s, method="another method")
    return runs[0] + other


def test_cli_computes_population_statistics_per_method(capsys, runs, mixed):
    code, out, err = cli(capsys, "fairness", *map(str, mixed), "--json")
    assert code == 0, err
    doc = json.loads(out)
    pops = {r["run"]: r["population"] for r in doc["runs"]}
    assert set(pops.values()) == {"synthetic per-class degradation", "another method"}
    hooker = pd.DataFrame(doc["hooker"])
    assert len(hooker) == 2 * C and set(hooker["population"]) == set(pops.values())
    alone = json.loads(cli(capsys, "fairness", *map(str, runs[0]), "--json", "--what", "hooker,pies")[1])
    own = hooker[hooker["population"] == "synthetic per-class degradation"].reset_index(drop=True)
    np.testing.assert_allclose(own["p_value"], [r["p_value"] for r in alone["hooker"]])   # not pooled
    assert [r["n_dense"] for r in alone["hooker"]] == [4] * C
    pies = pd.DataFrame(doc["pies"])
    assert len(pies) == 2 * C and pies.groupby("population")["class"].count().tolist() == [C, C]
    code, out, _ = cli(capsys, "fairness", *map(str, mixed), "--what", "hooker")
    assert out.startswith("2 populations") and "population" in out.splitlines()[3]


def test_cli_caveat_for_two_runs_in_tables_and_json(capsys, runs):
    paths, _ = runs
    code, out, err = cli(capsys, "fairness", str(paths[0]), str(paths[1]), "--json", "--what", "hooker,pies")
    assert code == 0, err
    doc = json.loads(out)
    for row in doc["hooker"]:
        assert row["caveat"].startswith("2 dense + 2 pruned runs, Welch df ")
        assert row["mde"] > 0 and 0 <= row["power"] <= 1
    assert all("2 dense and 2 pruned models" in r["caveat"] for r in doc["pies"])
    code, out, _ = cli(capsys, "fairness", str(paths[0]), str(paths[1]), "--what", "hooker", "--effect", "0.05")
    assert "detectable (80%)" in out and "a change of 0.05 needs" in out


def test_cli_refuses_population_sections_when_every_method_has_one_run(capsys, runs, mixed):
    code, _, err = cli(capsys, "fairness", str(runs[0][0]), str(mixed[-1]), "--what", "hooker")
    assert code == 2 and "one run each" in err and len(err.strip().splitlines()) == 1
    code, out, err = cli(capsys, "fairness", str(runs[0][0]), *map(str, mixed[-2:]), "--json")
    assert code == 0 and "left out for synthetic per-class degradation (1 run" in err
    assert {r["population"] for r in json.loads(out)["hooker"]} == {"another method"}


def test_figures_of_one_population_refuse_several_methods(runs, mixed, tmp_path, capsys):
    from ticketlab import frames

    for kind in ("class-drops", "pies", "intensification"):
        with pytest.raises(ConfigError, match=f"plot '{kind}' shows one population .* hold 2 methods: synthetic "
                                              r"per-class degradation \(4 runs: run_s0.h5"):
            frames.plot_files(kind, [str(p) for p in mixed])
    code = main(["plot", "pies", *map(str, mixed), "--out", str(tmp_path / "p.png")])
    err = capsys.readouterr().err
    assert code == 2 and "another method (2 runs" in err and not (tmp_path / "p.png").exists()
    with pytest.raises(ConfigError, match="fairness_frames shows one population"):
        frames.fairness_frames(mixed)


def test_cli_report_has_one_part_per_population(capsys, mixed, tmp_path):
    report = tmp_path / "mixed.html"
    code, _, err = cli(capsys, "fairness", *map(str, mixed), "--what", "runs", "--report", str(report))
    assert code == 0, err
    page = report.read_text(encoding="utf-8")
    assert "<h2>Population: another method</h2>" in page
    assert "<h2>Population: synthetic per-class degradation</h2>" in page
    assert "Caveat: with 2 dense and 2 pruned runs" in page


# -- the fit under noise: null_slope, p_slope_null and the caveat (tests/test_fairness_attenuation.py has the
# statistics) ---------------------------------------------------------------------------------------------------


def test_cli_fit_carries_null_slope_and_caveat(capsys, runs):
    from ticketlab.analysis.fairness import noise_null_slope, dense_reliability

    paths, preds = runs
    files = list(map(str, paths))
    recall = np.array([[recall_by_loop(LABELS, p) for p in pr] for pr in preds])   # (runs, levels, C)
    code, out, err = cli(capsys, "fairness", *files, "--json", "--what", "fit")
    assert code == 0, err
    fit = pd.DataFrame(json.loads(out)["fit"])
    assert {"reliability", "null_slope", "p_slope_null", "caveat", "p_slope_1"} <= set(fit.columns)
    np.testing.assert_allclose(fit["reliability"], dense_reliability(recall[:, 0]))
    for lv in range(1, LEVELS + 1):
        at = fit[fit["level"] == lv]
        null = noise_null_slope(recall[:, 0], recall[:, lv])
        np.testing.assert_allclose(at["null_slope"], null)
        t = (at["slope"] - null) / at["slope_stderr"]
        np.testing.assert_allclose(at["p_slope_null"], 2 * stats.t.sf(np.abs(t), C - 2))
        assert all(c.startswith("slope attenuated by noise in the dense class accuracies (reliability ")
                   and f"a uniform shift gives about {null:.2f} here, not 1 (compare with null_slope)" in c
                   for c in at["caveat"])
    code, out, _ = cli(capsys, "fairness", *files, "--what", "fit")
    header = out.splitlines()[1]
    for label in ("null slope", "p(slope=null)", "p(slope=1)", "reliability", "caveat"):
        assert label in header
    assert "compare slope with null slope" in out.splitlines()[0]
    assert out.count("slope attenuated by noise") == 4 * LEVELS
    code, out, _ = cli(capsys, "fairness", *files, "--csv", "--what", "fit")
    head = out.splitlines()[0].split(",")
    assert {"reliability", "null_slope", "p_slope_null", "p_slope_1"} <= set(head)
    assert head[-2:] == ["caveat", "population"]


def test_cli_fit_of_one_run_says_it_cannot_measure_the_noise(capsys, runs):
    paths, _ = runs
    code, out, _ = cli(capsys, "fairness", str(paths[0]), "--json", "--what", "fit")
    assert code == 0
    for row in json.loads(out)["fit"]:
        assert row["null_slope"] is None and row["p_slope_null"] is None and row["reliability"] is None
        assert row["caveat"].startswith("one run: the slope is biased towards 0 by noise in the dense class "
                                        "accuracies (errors in variables)")
        assert "give >= 2 runs of the method" in row["caveat"]
    code, out, _ = cli(capsys, "fairness", str(paths[0]), "--what", "fit")
    assert "one run: the slope is biased" in out


def test_cli_null_slope_is_estimated_within_each_population(capsys, runs, mixed):
    code, out, err = cli(capsys, "fairness", *map(str, mixed), "--json", "--what", "fit")
    assert code == 0, err
    fit = pd.DataFrame(json.loads(out)["fit"])
    assert len(fit) == 6 * LEVELS
    alone = pd.DataFrame(json.loads(cli(capsys, "fairness", *map(str, runs[0]), "--json", "--what", "fit")[1])["fit"])
    own = fit[fit["population"] == "synthetic per-class degradation"].reset_index(drop=True)
    np.testing.assert_allclose(own["null_slope"], alone["null_slope"])              # not pooled with the other
    np.testing.assert_allclose(own["reliability"], alone["reliability"])
    assert list(own["run"]) == list(alone["run"])
    other = fit[fit["population"] == "another method"]
    assert len(other) == 2 * LEVELS and all("from 2 runs, itself rough" in c for c in other["caveat"])
    assert list(fit["run"]) == [r for p in mixed for r in [p.name] * LEVELS]       # in the order given


def test_report_compares_the_mean_slope_with_null_slope(capsys, runs, tmp_path):
    paths, _ = runs
    report = tmp_path / "fit.html"
    code, _, err = cli(capsys, "fairness", *map(str, paths), "--what", "fit", "--report", str(report))
    assert code == 0, err
    page = report.read_text(encoding="utf-8")
    assert f"Mean slope at level {LEVELS} over 4 run(s)" in page and "null slope (uniform shift)" in page
    assert "Compare slopes with this null slope, not with 1" in page
