"""Tests of mask overlap (``ticketlab.analysis.overlap``) and ``ticketlab overlap``.

Every number is checked against an independent computation: Python sets of kept indices for the counts,
hand-worked small cases, scipy's hypergeometric pmf over the full support for the exact convolution, and
simulation of uniformly random masks (``numpy.random.Generator.permuted``) for the chance level and p-values.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from ticketlab import store
from ticketlab.analysis import overlap as ov
from ticketlab.analysis.overlap import counts as ov_counts
from ticketlab.errors import ConfigError
from ticketlab.masks import TensorInfo
from cli_helpers import cli

from conftest import TOY_TENSORS, make_ticket

# -- helpers -------------------------------------------------------------------------------------------------


def kept_set(mask: np.ndarray) -> set[int]:
    """Indices of kept weights, computed the slow way."""
    return {i for i, v in enumerate(mask.reshape(-1).tolist()) if v}


def random_masks(rng: np.random.Generator, draws: int, size: int, kept: int) -> np.ndarray:
    """``draws`` independent masks of ``size`` weights keeping exactly ``kept``, uniformly at random."""
    base = np.zeros((draws, size), dtype=bool)
    base[:, :kept] = True
    return rng.permuted(base, axis=1)


def write_ticket(path: Path, tensors: list[TensorInfo], levels: list[dict[str, np.ndarray]], *,
                 model: str = "toy", seed: int = 0, init: dict | None = None) -> Path:
    store.create(path, tensors=tensors, model=model, method="hand-made masks", config={"model": model}, seed=seed,
                 init_weights=init)
    writer = store.TicketWriter(path)
    for level, masks in enumerate(levels):
        writer.write_level(level, masks)
    return path




# -- counts ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 7, 8, 9, 63, 64, 65, 127, 1000, 4099])
def test_counts_match_python_sets(size):
    rng = np.random.default_rng(size)
    for da, db in [(0.1, 0.9), (0.5, 0.5), (0.0, 0.3), (1.0, 0.4)]:
        a, b = rng.random(size) < da, rng.random(size) < db
        sa, sb = kept_set(a), kept_set(b)
        want = (size, len(sa), len(sb), len(sa & sb))
        c = ov.overlap_counts(a, b)
        assert (c.size, c.kept_a, c.kept_b, c.intersection) == want
        assert c.union == len(sa | sb) and c.hamming == len(sa ^ sb)
        # the stored layout: numpy.packbits without padding, garbage in the bits past the last weight
        pa, pb = np.packbits(a), np.packbits(b)
        if size % 8:
            pa[-1] |= 0xFF >> (size % 8)
            pb[-1] |= 0xFF >> (size % 8)
        assert ov.packed_overlap_counts(pa, pb, size) == c
        assert ov.packed_overlap_counts(pa, pb, size, kept_a=len(sa), kept_b=len(sb)) == c


def test_blockwise_counting_of_a_large_mask():
    """More than one block of 64 Ki words, and a size that is not a multiple of 64."""
    rng = np.random.default_rng(0)
    n = 9_000_001
    a, b = rng.random(n) < 0.3, rng.random(n) < 0.6
    c = ov.overlap_counts(a, b)
    assert (c.kept_a, c.kept_b, c.intersection) == (a.sum(), b.sum(), np.count_nonzero(a & b))


def test_counting_without_numpy_bitwise_count(monkeypatch):
    """The byte lookup table used on numpy < 2.0 gives the same counts; so does an empty tensor."""
    rng = np.random.default_rng(5)
    a, b = rng.random(70_001) < 0.4, rng.random(70_001) < 0.7
    want = ov.overlap_counts(a, b)
    monkeypatch.setattr(ov_counts, "_HAS_BITWISE_COUNT", False)
    assert ov.overlap_counts(a, b) == want
    assert ov.overlap_counts(np.zeros(0, bool), np.zeros(0, bool)) == ov.OverlapCounts(0, 0, 0, 0)


def test_counts_validation():
    with pytest.raises(ConfigError, match="impossible"):
        ov.OverlapCounts(10, 4, 3, 4)
    with pytest.raises(ConfigError, match="impossible"):
        ov.OverlapCounts(10, 8, 8, 5)  # at least 6 must be shared
    with pytest.raises(ConfigError, match="kept counts"):
        ov.OverlapCounts(10, 11, 3, 0)
    with pytest.raises(ConfigError, match="same shape"):
        ov.overlap_counts(np.ones(3, bool), np.ones(4, bool))
    with pytest.raises(ConfigError, match="need 2"):
        ov.packed_overlap_counts(np.zeros(1, np.uint8), np.zeros(2, np.uint8), 9)


# -- a hand-worked case ------------------------------------------------------------------------------------


def test_hand_worked_pair():
    # N = 10; A keeps {0,1,2,3}, B keeps {2,3,4}
    a = np.zeros(10, bool)
    a[[0, 1, 2, 3]] = True
    b = np.zeros(10, bool)
    b[[2, 3, 4]] = True
    # layer 2: N = 4, A keeps everything, B keeps {0}
    a2, b2 = np.ones(4, bool), np.array([True, False, False, False])
    f = ov.mask_overlap({"x": a, "y": a2}, {"x": b, "y": b2})
    x, y, total = (f[f.layer == name].iloc[0] for name in ("x", "y", "total"))
    assert (x["size"], x.kept_a, x.kept_b, x.intersection, x.union, x.hamming) == (10, 4, 3, 2, 5, 3)
    assert x.jaccard == pytest.approx(2 / 5) and x.dice == pytest.approx(4 / 7)
    assert x.overlap_coefficient == pytest.approx(2 / 3)
    assert x.expected_intersection == pytest.approx(4 * 3 / 10)
    assert x.expected_jaccard == pytest.approx(1.2 / (7 - 1.2))
    assert x.ratio == pytest.approx(2 / 1.2)
    # P(X >= 2), X ~ Hypergeometric(10, 4, 3): 1 - [C(6,3) + C(4,1)C(6,2)] / C(10,3) = 1 - 80/120
    assert x.p_value == pytest.approx(1 / 3) and x.p_method == "hypergeometric"
    # layer y: the intersection is forced to 1, so it is exactly its expectation and p = 1
    assert (y.intersection, y.expected_intersection, y.p_value) == (1, 1.0, 1.0)
    # total: counts pooled, expectation summed over layers (1.2 + 1), never from pooled densities
    assert (total["size"], total.kept_a, total.kept_b, total.intersection, total.union) == (14, 8, 4, 3, 9)
    assert total.jaccard == pytest.approx(3 / 9)
    assert total.expected_intersection == pytest.approx(2.2)
    assert total.expected_intersection != pytest.approx(8 * 4 / 14)  # the pooled-density value
    assert total.expected_jaccard == pytest.approx(2.2 / (12 - 2.2))
    # P(X + 1 >= 3) = P(X >= 2) = 1/3, the second layer being constant
    assert total.p_value == pytest.approx(1 / 3) and total.p_method == "convolution"
    assert ov.total_intersection_pvalue(3, [4, 4], [3, 1], [10, 4], method="normal")[1] == "normal"


def test_jaccard_identity_disjoint_and_empty():
    rng = np.random.default_rng(1)
    a = rng.random((20, 30)) < 0.4
    same = ov.mask_overlap({"w": a}, {"w": a.copy()})
    assert same.jaccard.tolist() == [1.0, 1.0] and same.hamming.tolist() == [0, 0]
    disjoint = ov.mask_overlap({"w": a}, {"w": ~a})
    assert disjoint.jaccard.tolist() == [0.0, 0.0] and disjoint.overlap_coefficient.tolist() == [0.0, 0.0]
    empty = np.zeros(5, bool)
    both_empty = ov.mask_overlap({"w": empty}, {"w": empty})
    assert both_empty.jaccard.tolist() == [1.0, 1.0] and both_empty.expected_jaccard.tolist() == [1.0, 1.0]
    one_empty = ov.mask_overlap({"w": empty}, {"w": ~empty})
    assert one_empty.jaccard.iloc[0] == 0.0 and math.isnan(one_empty.overlap_coefficient.iloc[0])
    assert math.isnan(one_empty.ratio.iloc[0])  # nothing expected, nothing observed


def test_pairwise_frame_matches_sets_for_several_masks():
    rng = np.random.default_rng(2)
    shapes = {"conv.weight": (4, 3, 3, 3), "fc.weight": (17, 5)}
    masks = {f"m{i}": {n: rng.random(s) < d for n, s in shapes.items()} for i, d in enumerate([0.2, 0.5, 0.8])}
    f = ov.pairwise_overlap(masks, metrics=["containment", "hamming_fraction"])
    assert list(zip(f.a, f.b))[::3] == [("m0", "m1"), ("m0", "m2"), ("m1", "m2")]
    for (a, b), rows in f.groupby(["a", "b"], sort=False):
        sets_a = {(n, i) for n in shapes for i in kept_set(masks[a][n])}
        sets_b = {(n, i) for n in shapes for i in kept_set(masks[b][n])}
        tot = rows[rows.layer == "total"].iloc[0]
        assert tot.intersection == len(sets_a & sets_b) and tot.union == len(sets_a | sets_b)
        assert tot.jaccard == pytest.approx(len(sets_a & sets_b) / len(sets_a | sets_b))
        assert tot.containment == pytest.approx(len(sets_a & sets_b) / len(sets_a))
        assert tot.hamming_fraction == pytest.approx(len(sets_a ^ sets_b) / tot["size"])
        for n in shapes:
            r = rows[rows.layer == n].iloc[0]
            sa, sb = kept_set(masks[a][n]), kept_set(masks[b][n])
            assert (r.kept_a, r.kept_b, r.intersection, r.hamming) == (len(sa), len(sb), len(sa & sb), len(sa ^ sb))
            assert r.density_a == pytest.approx(len(sa) / masks[a][n].size)
    m = ov.jaccard_matrix(f)
    assert m.loc["m0", "m0"] == 1.0 and m.loc["m2", "m1"] == m.loc["m1", "m2"]
    assert m.loc["m0", "m2"] == f[(f.a == "m0") & (f.b == "m2") & (f.layer == "total")].jaccard.iloc[0]


def test_mismatched_layers_are_refused():
    a = {"w": np.ones(4, bool)}
    with pytest.raises(ConfigError, match="shape"):
        ov.mask_overlap(a, {"w": np.ones(5, bool)})
    with pytest.raises(ConfigError, match="'b' has no mask for layer 'w'"):
        ov.mask_overlap(a, {"v": np.ones(4, bool)})
    with pytest.raises(ConfigError, match="'b' has a mask for layer 'v'"):
        ov.mask_overlap(a, {"w": np.ones(4, bool), "v": np.ones(4, bool)})
    with pytest.raises(ConfigError, match="at least two"):
        ov.pairwise_overlap({"a": a})


# -- the metric registry -----------------------------------------------------------------------------------


def test_every_metric_is_classified_and_has_its_properties():
    assert {"jaccard_overlap", "overlap_coefficient", "hamming_fraction", "dice_overlap"} <= set(ov.METRICS)
    assert ov.list_metrics() == sorted(ov.METRICS)
    rng = np.random.default_rng(3)
    cases = []
    for _ in range(200):
        n = int(rng.integers(1, 40))
        a, b = rng.random(n) < rng.random(), rng.random(n) < rng.random()
        cases.append((a, b))
    cases += [(np.zeros(5, bool), np.zeros(5, bool)), (np.ones(5, bool), np.zeros(5, bool)),
              (np.ones(5, bool), np.ones(5, bool))]
    asymmetric_seen = {name: False for name in ov.METRICS}
    for name, m in ov.METRICS.items():
        # classified: every property stated, with the right types
        assert isinstance(m.symmetric, bool), name
        assert m.kind in ("similarity", "distance"), name
        lo, hi = m.bounds
        assert lo <= m.identity <= hi, name
        assert m.description, name
        assert ov.get_metric(name) is m
        for a, b in cases:
            c = ov.overlap_counts(a, b)
            v, w = m(c), m(c.swapped())
            if not (a.any() and b.any()):
                # undefined (NaN) only where a mask is empty
                assert math.isnan(v) or lo <= v <= hi, (name, c)
            else:
                assert lo <= v <= hi, (name, c, v)
            if m.symmetric:
                assert v == w or (math.isnan(v) and math.isnan(w)), (name, c)
            elif not (v == w or (math.isnan(v) and math.isnan(w))):
                asymmetric_seen[name] = True
            # identity: a mask compared with itself, empty or not
            assert m(ov.overlap_counts(a, a)) == pytest.approx(m.identity), (name, a)
        # similarities grow and distances shrink as more weights are shared
        more = ov.OverlapCounts(20, 8, 8, 6)
        less = ov.OverlapCounts(20, 8, 8, 2)
        assert (m(more) > m(less)) == (m.kind == "similarity"), name
    for name, m in ov.METRICS.items():
        assert m.symmetric or asymmetric_seen[name], f"{name} is classified asymmetric but never was"


def test_metric_registry_errors():
    with pytest.raises(ConfigError, match="unknown overlap metric 'iou'; choose one of: .*jaccard_overlap"):
        ov.get_metric("iou")
    with pytest.raises(ConfigError, match="already registered"):
        ov.register_metric("dice_overlap", symmetric=True, identity=1, bounds=(0, 1), kind="similarity",
                           description="x")(lambda c: 0.0)
    with pytest.raises(ConfigError, match="kind"):
        ov.register_metric("x", symmetric=True, identity=1, bounds=(0, 1), kind="score", description="x")


# -- chance level ------------------------------------------------------------------------------------------


def test_full_support_convolution_matches_scipy():
    ka, kb, n = [200, 30, 5, 0, 9], [300, 40, 9, 3, 9], [1000, 200, 10, 7, 9]
    full = np.ones(1)
    for a, b, s in zip(ka, kb, n):
        x = np.arange(0, min(a, b) + 1)
        full = np.convolve(full, stats.hypergeom.pmf(x, s, a, b))
    first, pmf = ov.hypergeometric_sum_pmf(ka, kb, n)
    assert full[:first].sum() < 1e-140 and full[first + pmf.size:].sum() < 1e-140
    ref = full[first:first + pmf.size]
    big = ref > 1e-120  # near the 1e-150 cut-off, the dropped terms matter relatively
    np.testing.assert_allclose(pmf[big], ref[big], rtol=1e-9)
    np.testing.assert_allclose(pmf[~big], ref[~big], rtol=1e-9, atol=1e-140)
    for i in [0, 60, 68, 75, 85, 100, 150]:
        p, how = ov.total_intersection_pvalue(i, ka, kb, n, method="convolution")
        assert how == "convolution" and p == pytest.approx(full[i:].sum(), rel=1e-9)
    # a single layer: the exact hypergeometric tail, even far out
    p, _ = ov.total_intersection_pvalue(140, [1000], [500], [5000], method="convolution")
    assert p == pytest.approx(stats.hypergeom.sf(139, 5000, 1000, 500), rel=1e-7)


@pytest.mark.parametrize("size, ka, kb", [(1000, 200, 300), (50, 10, 25), (400, 380, 350), (2000, 20, 40)])
def test_chance_level_of_one_layer_against_simulation(size, ka, kb):
    rng = np.random.default_rng(size + ka)
    draws = 20_000
    a = random_masks(rng, draws, size, ka)
    b = random_masks(rng, draws, size, kb)
    inter = np.count_nonzero(a & b, axis=1)
    jacc = inter / (ka + kb - inter)
    e = ov.expected_intersection(ka, kb, size)
    var = ov.intersection_variance(ka, kb, size)
    se = math.sqrt(var / draws)
    assert abs(inter.mean() - e) < 4 * se
    assert inter.var() == pytest.approx(var, rel=0.05)
    # expected Jaccard is the ratio of expectations: within the Jensen gap of the simulated mean
    ej = ov.expected_jaccard(ka, kb, size)
    jensen = (ka + kb) * var / (ka + kb - e) ** 3
    assert abs(jacc.mean() - ej) < 4 * jacc.std() / math.sqrt(draws) + 1.5 * jensen
    assert ej <= jacc.mean() + 4 * jacc.std() / math.sqrt(draws)  # f(E X) <= E f(X) (convex f)
    # p-value vs the empirical tail frequency, at several points of the distribution
    for q in (0.5, 0.9, 0.99):
        obs = int(np.quantile(inter, q))
        p = ov.intersection_pvalue(obs, ka, kb, size)
        freq = np.mean(inter >= obs)
        assert abs(p - freq) < 4 * math.sqrt(p * (1 - p) / draws) + 1e-3, (obs, p, freq)


def test_expected_jaccard_equal_densities():
    # E[J] = d / (2 - d) for equal densities (papers.md §12)
    for d in (0.8, 0.5, 0.2, 0.036):
        k = round(d * 100_000)
        assert ov.expected_jaccard(k, k, 100_000) == pytest.approx(d / (2 - d), rel=1e-9)


def test_total_chance_level_against_simulation():
    """Several layers of different densities: expectation summed per layer, p-value of the summed tail."""
    rng = np.random.default_rng(7)
    layers = [(300, 30, 200), (120, 100, 60), (40, 5, 5), (900, 450, 90)]  # (size, kept_a, kept_b)
    draws = 20_000
    total = np.zeros(draws, dtype=np.int64)
    for size, ka, kb in layers:
        a = random_masks(rng, draws, size, ka)
        b = random_masks(rng, draws, size, kb)
        total += np.count_nonzero(a & b, axis=1)
    n, ka, kb = ([layer[i] for layer in layers] for i in range(3))
    e = ov.expected_intersection(ka, kb, n)
    assert e == pytest.approx(sum(a * b / s for s, a, b in layers))
    assert abs(total.mean() - e) < 4 * math.sqrt(ov.intersection_variance(ka, kb, n) / draws)
    for q in (0.3, 0.8, 0.95, 0.995):
        obs = int(np.quantile(total, q))
        freq = np.mean(total >= obs)
        tol = 4 * math.sqrt(freq * (1 - freq) / draws) + 1e-3
        p_exact, how = ov.total_intersection_pvalue(obs, ka, kb, n)
        assert how == "convolution" and abs(p_exact - freq) < tol, (obs, p_exact, freq)
        p_normal, _ = ov.total_intersection_pvalue(obs, ka, kb, n, method="normal")
        assert abs(p_normal - freq) < tol + 0.01, (obs, p_normal, freq)


def test_auto_method_falls_back_to_normal_for_huge_models():
    n = [25_000_000] * 40
    k = [12_500_000] * 40
    e = ov.expected_intersection(k, k, n)
    p, how = ov.total_intersection_pvalue(int(e), k, k, n)
    assert how == "normal" and 0.49 < p < 0.51
    with pytest.raises(ConfigError, match="p-value method"):
        ov.total_intersection_pvalue(0, [1], [1], [2], method="exact")


@pytest.mark.parametrize("method", ov.PVALUE_METHODS.names())
def test_every_pvalue_method_gives_a_probability_and_names_itself(method):
    ka, kb, n = [200, 30, 5], [300, 40, 9], [1000, 200, 10]
    e = ov.expected_intersection(ka, kb, n)
    p, how = ov.total_intersection_pvalue(int(e) + 20, ka, kb, n, method=method)
    assert 0 <= p < 0.5 and how in ov.PVALUE_METHODS and how != "auto"
    assert how == method or method == "auto"


# -- the command ------------------------------------------------------------------------------------------


@pytest.fixture
def three(tmp_path):
    paths = [tmp_path / f"s{i}.h5" for i in range(3)]
    written = [make_ticket(p, levels=2, seed=i, n_test=20, with_weights=False) for i, p in enumerate(paths)]
    return paths, written


def test_cli_table_matches_the_library(capsys, three):
    (a, b, _), written = three
    code, out, err = cli(capsys, "overlap", str(a), f"{b}:1")
    assert code == 0, err
    assert f"A = {a} (level 2), B = {b} (level 1)" in out
    header = next(line for line in out.splitlines() if line.startswith("layer"))
    for col in ("size", "kept_a", "kept_b", "intersection", "union", "hamming", "jaccard", "E[jaccard]",
                "overlap_coef", "E[intersection]", "obs/exp", "p_value"):
        assert col in header.split(), col
    rows = {line.split()[0]: line.split() for line in out.splitlines()
            if line.split() and line.split()[0] in {t.name for t in TOY_TENSORS} | {"total"}}
    want = ov.mask_overlap(written[0]["masks"][2], written[1]["masks"][1])
    for _, r in want.iterrows():
        assert rows[r.layer][4] == f"{r.intersection:,}" and rows[r.layer][7] == f"{r.jaccard:.4f}"
    assert "total Jaccard" not in out  # only with more than two files


def test_cli_json_and_csv(capsys, three):
    (a, b, c), written = three
    code, out, _ = cli(capsys, "overlap", str(a), str(b), str(c), "--level", "1", "--json", "--metric", "containment")
    assert code == 0
    records = json.loads(out)
    assert len(records) == 3 * (len(TOY_TENSORS) + 1)
    keys = {"a", "b", "level_a", "level_b", "layer", "size", "kept_a", "kept_b", "intersection", "union", "jaccard",
            "hamming", "expected_intersection", "expected_jaccard", "p_value", "overlap_coefficient", "ratio",
            "containment"}
    assert keys <= set(records[0])
    assert {(r["a"], r["b"]) for r in records} == {(str(a), str(b)), (str(a), str(c)), (str(b), str(c))}
    assert {r["level_a"] for r in records} == {1} and records[-1]["layer"] == "total"
    want = ov.pairwise_overlap({str(p): w["masks"][1] for p, w in zip((a, b, c), written)},
                               metrics=["containment"])
    for r, (_, w) in zip(records, want.iterrows()):
        assert (r["a"], r["b"], r["layer"], r["intersection"]) == (w.a, w.b, w.layer, w.intersection)
        assert r["p_value"] == pytest.approx(w.p_value) and r["containment"] == pytest.approx(w.containment)
    code, out, _ = cli(capsys, "overlap", str(a), str(b), "--csv")
    lines = out.splitlines()
    assert lines[0].split(",")[:6] == ["a", "b", "level_a", "level_b", "layer", "size"]
    assert "expected_jaccard" in lines[0] and "p_value" in lines[0] and len(lines) == 1 + len(TOY_TENSORS) + 1


def test_cli_matrix_for_three_files(capsys, three):
    (a, b, c), _ = three
    code, out, _ = cli(capsys, "overlap", str(a), str(b), f"{a}:1")
    assert code == 0
    tail = out[out.index("total Jaccard"):].splitlines()
    assert tail[1].split() == ["file", "s0.h5:2", "s1.h5", "s0.h5:1"]
    assert tail[2].split()[:2] == ["s0.h5:2", "1.0000"]


def test_cli_refuses_other_models_and_bad_input(capsys, three, tmp_path):
    (a, b, _), _ = three
    other = [TensorInfo("conv1.weight", (6, 3, 3, 3), "conv"), TensorInfo("fc1.weight", (40, 25), "linear"),
             TensorInfo("fc2.weight", (10, 40), "linear")]
    path = write_ticket(tmp_path / "other.h5", other, [{t.name: np.ones(t.shape, bool) for t in other}])
    code, _, err = cli(capsys, "overlap", str(a), str(path))
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "hold different models" in err and "fc1.weight [40, 25]" in err and "fc1.weight [40, 24]" in err
    code, _, err = cli(capsys, "overlap", str(a))
    assert code == 2 and "at least two" in err
    code, _, err = cli(capsys, "overlap", str(a), str(b), "--metric", "iou")
    assert code == 2 and "unknown overlap metric 'iou'" in err
    code, _, err = cli(capsys, "overlap", str(a), f"{b}:9")
    assert code == 2 and "no level 9" in err
