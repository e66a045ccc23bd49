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
                                         fairness_analysis, hooker_test, intensification_fit, modal_predictions,
                                         pie_counts, pruning_identified_exemplars, vote_counts)
from ticketlab.cli import main
from ticketlab.errors import ConfigError
from ticketlab.evaluation import Evaluation

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


def write_run(path: Path, seed: int, labels: np.ndarray = LABELS, levels: int = LEVELS) -> np.ndarray:
    """Write one run through the store API; return its predictions, shape (levels + 1, N)."""
    rng = np.random.default_rng(seed)
    store.create(path, tensors=TOY_TENSORS, model="toy", method="synthetic per-class degradation",
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


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


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
