"""Structured-like connectivity and effective sparsity (ticketlab.analysis.structure, ``ticketlab structure``).

Every number is checked against an independent computation: masks built with a known structure, exhaustive
enumeration and simulation of random placements, scipy's contingency-table test, and brute-force graph
reachability on the unit graph (and, for an MLP, the gradient of a linearised network).
"""

from __future__ import annotations

import itertools
import json
import math
from collections import deque
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ticketlab import store
from ticketlab.analysis import structure
from ticketlab.analysis.structure import (
    dispersion_statistic, effective_density, effective_masks, feedforward_chain, fully_pruned_null,
    fully_pruned_probability, group_structure,
)
from cli_helpers import cli
from ticketlab.errors import ConfigError
from ticketlab.masks import TensorInfo


def random_mask(rng: np.random.Generator, shape: tuple[int, ...], kept: int) -> np.ndarray:
    """Exactly ``kept`` True entries placed uniformly at random."""
    m = np.zeros(int(np.prod(shape)), bool)
    m[rng.choice(m.size, kept, replace=False)] = True
    return m.reshape(shape)


def row(df, layer: str, grouping: str) -> dict:
    sel = df[(df.layer == layer) & (df.grouping == grouping)]
    assert len(sel) == 1
    return sel.iloc[0].to_dict()


# ------------------------------------------------------------------------------------------ known structures


def test_known_structures_conv_and_linear():
    conv = TensorInfo("convs.0.weight", (8, 4, 3, 3), "conv")
    fc = TensorInfo("fc.weight", (5, 6), "linear")
    rng = np.random.default_rng(0)
    m = rng.random(conv.shape) < 0.9
    m[:, :, 1, 1] = True  # no accidental empty kernels: every kernel keeps its centre tap
    m[[1, 5]] = False  # two whole filters
    m[:, 2] = False  # one whole input channel
    m[0, 0] = False  # two extra whole kernels
    m[3, 1] = False
    f = np.ones(fc.shape, bool)
    f[[0, 4]] = False  # two output units
    f[:, [1, 2, 3]] = False  # three input units
    df = group_structure({conv.name: m, fc.name: f}, [conv, fc])

    assert list(df.grouping) == ["output", "input", "kernel", "output", "input"]
    r = row(df, conv.name, "output")
    assert (r["groups"], r["group_size"], r["fully_pruned"]) == (8, 36, 2)
    assert r["fully_pruned_fraction"] == 2 / 8
    r = row(df, conv.name, "input")
    assert (r["groups"], r["group_size"], r["fully_pruned"], r["fully_pruned_fraction"]) == (4, 72, 1, 1 / 4)
    # kernels: 2 filters x 4 + 1 channel x 8 - 2 counted twice + 2 single kernels = 16 of 32
    r = row(df, conv.name, "kernel")
    assert (r["groups"], r["group_size"], r["fully_pruned"], r["fully_pruned_fraction"]) == (32, 9, 16, 0.5)
    assert r["kept"] == int(m.sum()) and r["size"] == 288 and r["density"] == m.sum() / 288
    r = row(df, fc.name, "output")
    assert (r["groups"], r["group_size"], r["fully_pruned"], r["fully_pruned_fraction"]) == (5, 6, 2, 0.4)
    r = row(df, fc.name, "input")
    assert (r["groups"], r["group_size"], r["fully_pruned"], r["fully_pruned_fraction"]) == (6, 5, 3, 0.5)


def test_one_dimensional_tensors_are_skipped_and_dense_layers_have_no_dispersion():
    t = [TensorInfo("bias_like", (7,), "other"), TensorInfo("fc.weight", (3, 4), "linear", pruned=False)]
    df = group_structure({"bias_like": np.ones(7, bool), "fc.weight": np.ones((3, 4), bool)}, t)
    assert list(df.layer) == ["fc.weight", "fc.weight"]
    assert (df.fully_pruned == 0).all() and (df.expected_fully_pruned_fraction == 0).all()
    assert df.chi2.isna().all() and df.p_value.isna().all() and not df.pruned.any()


# ------------------------------------------------------------------------------ the random-placement null


@pytest.mark.parametrize("shape", [(3, 4), (2, 2, 1, 3)])
def test_expected_fraction_and_sd_equal_exhaustive_enumeration(shape):
    """Every placement of k kept weights among N = 12, for every k: exact mean and sd of the empty fraction."""
    size = int(np.prod(shape))
    kind = "conv" if len(shape) == 4 else "linear"
    t = TensorInfo("w", shape, kind)
    axes = {"output": tuple(range(1, len(shape))), "input": (0,) + tuple(range(2, len(shape))),
            "kernel": tuple(range(2, len(shape)))}
    for kept in range(size + 1):
        fractions: dict[str, list[float]] = {g: [] for g in axes}
        for combo in itertools.combinations(range(size), kept):
            m = np.zeros(size, bool)
            m[list(combo)] = True
            m = m.reshape(shape)
            for g, ax in axes.items():
                if g == "kernel" and kind != "conv":
                    continue
                fractions[g].append(float(np.mean(~m.any(axis=ax))))
        df = group_structure({"w": random_mask(np.random.default_rng(kept), shape, kept)}, [t])
        for g, values in fractions.items():
            if not values:
                continue
            r = row(df, "w", g)
            assert r["expected_fully_pruned_fraction"] == pytest.approx(np.mean(values), rel=1e-9, abs=1e-12)
            assert r["expected_fully_pruned_sd"] == pytest.approx(np.std(values), rel=1e-7, abs=1e-9)


def exact_null(n: int, g: int, k: int) -> tuple[float, float]:
    """Mean and sd of the fully-pruned fraction in exact rational arithmetic (math.comb)."""
    size, c = n * g, math.comb(n * g, k)
    p1 = Fraction(math.comb(size - g, k), c)
    p2 = Fraction(math.comb(size - 2 * g, k), c) if size >= 2 * g else Fraction(0)
    var = n * p1 * (1 - p1) + n * (n - 1) * (p2 - p1 * p1)
    return float(p1), math.sqrt(float(var)) / n


def test_probability_and_sd_match_exact_rational_arithmetic(monkeypatch):
    for size, kept, g in [(8, 3, 2), (100, 40, 10), (300, 1, 299), (50, 49, 2), (12, 0, 12)]:
        exact = math.comb(size - g, kept) / math.comb(size, kept)
        assert fully_pruned_probability(size, kept, g) == pytest.approx(exact, rel=1e-12)
    assert fully_pruned_probability(10, 6, 5) == 0.0  # cannot leave 5 of 10 empty with 6 kept
    with pytest.raises(ConfigError):
        fully_pruned_probability(10, 11, 2)
    # LeNet-300-100 / LeNet-5 / Conv-2 sized layers, output and input groupings, sparse to dense
    cases = [(300, 784, 2), (300, 784, 50), (784, 300, 2000), (784, 300, 23520), (16, 150, 120),
             (120, 400, 2400), (96, 25, 120), (256, 16384, 41943)]
    for n, g, k in cases:
        mean, sd = fully_pruned_null(n, g, k)
        e_mean, e_sd = exact_null(n, g, k)
        assert mean == pytest.approx(e_mean, rel=1e-12) and sd == pytest.approx(e_sd, rel=1e-9), (n, g, k)
    # the gammaln form used beyond 2**22 factors: right to its (coarser) rounding
    monkeypatch.setattr(structure, "_PRODUCT_TERMS", 0)
    for n, g, k in cases[2:]:
        assert fully_pruned_null(n, g, k)[0] == pytest.approx(exact_null(n, g, k)[0], rel=1e-7)


def test_expected_fraction_agrees_with_random_masks():
    """Random masks with the same per-layer count: mean empty fraction within 4 standard errors."""
    rng = np.random.default_rng(1)
    t = TensorInfo("convs.1.weight", (16, 6, 5, 5), "conv")
    kept = 120  # density 0.05: about 28% of kernels, few filters, no input channels empty
    draws = 2000
    df = group_structure({t.name: random_mask(rng, t.shape, kept)}, [t])
    observed = {g: [] for g in ("output", "input", "kernel")}
    for _ in range(draws):
        m = random_mask(rng, t.shape, kept)
        observed["output"].append(np.mean(~m.any(axis=(1, 2, 3))))
        observed["input"].append(np.mean(~m.any(axis=(0, 2, 3))))
        observed["kernel"].append(np.mean(~m.any(axis=(2, 3))))
    for g, values in observed.items():
        r = row(df, t.name, g)
        mean, sd = np.mean(values), np.std(values, ddof=1)
        se = max(sd, r["expected_fully_pruned_sd"]) / math.sqrt(draws)
        assert abs(mean - r["expected_fully_pruned_fraction"]) <= 4 * se + 1e-9, g
        if r["expected_fully_pruned_sd"] > 0.01:
            assert sd == pytest.approx(r["expected_fully_pruned_sd"], rel=0.1), g
    # close to, but below, the with-replacement value (1 - d)^g = 0.95^25 = 0.2774
    assert 0.2774 - 0.003 < row(df, t.name, "kernel")["expected_fully_pruned_fraction"] < 0.2774


# ------------------------------------------------------------------------------------------------ dispersion


def test_dispersion_statistic_is_pearsons_contingency_chi_square():
    rng = np.random.default_rng(2)
    t = TensorInfo("fc_layers.0.weight", (30, 50), "linear")
    m = rng.random(t.shape) < rng.uniform(0.1, 0.6, size=(30, 1))
    df = group_structure({t.name: m}, [t])
    for g, axis in (("output", 1), ("input", 0)):
        kept = m.sum(axis=axis)
        table = np.stack([kept, m.shape[axis] - kept], axis=1)
        chi2, p, dof, _ = stats.chi2_contingency(table, correction=False)
        r = row(df, t.name, g)
        assert r["chi2"] == pytest.approx(chi2, rel=1e-10)
        assert r["p_value"] == pytest.approx(p, rel=1e-8, abs=1e-300)
        assert r["dof"] == dof
        assert r["dispersion"] == pytest.approx(chi2 / dof, rel=1e-10)
    # vectorised form used for simulations
    counts = m.sum(axis=1)
    assert dispersion_statistic(np.stack([counts, counts[::-1]]), 50) == pytest.approx(
        [row(df, t.name, "output")["chi2"]] * 2)


def test_dispersion_p_values_are_uniform_under_random_masks():
    rng = np.random.default_rng(3)
    t = TensorInfo("fc_layers.1.weight", (40, 60), "linear")
    kept = 720  # density 0.3: expected counts 18 / 42 per unit and 12 / 28 per input
    p_out, p_in, x2 = [], [], []
    for _ in range(300):
        df = group_structure({t.name: random_mask(rng, t.shape, kept)}, [t])
        p_out.append(row(df, t.name, "output")["p_value"])
        p_in.append(row(df, t.name, "input")["p_value"])
        x2.append(row(df, t.name, "output")["chi2"])
    for p in (p_out, p_in):
        assert abs(np.mean(p) - 0.5) < 0.05
        assert stats.kstest(p, "uniform").pvalue > 1e-3
    # E[X^2] under the multivariate hypergeometric null is (n - 1) N / (N - 1)
    assert np.mean(x2) == pytest.approx(39 * 2400 / 2399, rel=0.05)


def test_clustered_mask_has_tiny_p_and_simulation_agrees():
    rng = np.random.default_rng(4)
    t = TensorInfo("convs.0.weight", (20, 8, 3, 3), "conv")
    m = rng.random(t.shape) < np.where(np.arange(20) < 10, 0.6, 0.15)[:, None, None, None]
    df = group_structure({t.name: m}, [t], simulations=199, seed=0)
    r = row(df, t.name, "output")
    assert r["p_value"] < 1e-10 and r["dispersion"] > 5
    assert r["p_value_sim"] == 1 / 200  # no simulated placement is as clustered
    assert row(df, t.name, "input")["p_value"] > 1e-3  # input channels were left homogeneous


def test_simulated_p_value_equals_exact_enumeration():
    """N = 12, k = 5: the exact permutation p-value over all 792 placements vs 20,000 simulations."""
    shape, kept = (3, 4), 5
    t = TensorInfo("w", shape, "linear")
    m = np.zeros(shape, bool)
    m[0, :3] = m[1, :2] = True  # counts 3, 2, 0
    observed = row(group_structure({"w": m}, [t]), "w", "output")["chi2"]
    all_x2 = []
    for combo in itertools.combinations(range(12), kept):
        c = np.zeros(12, bool)
        c[list(combo)] = True
        all_x2.append(float(dispersion_statistic(c.reshape(shape).sum(axis=1), 4)))
    exact = np.mean(np.asarray(all_x2) >= observed - 1e-9)
    sims = 20_000
    r = row(group_structure({"w": m}, [t], simulations=sims, seed=5), "w", "output")
    assert abs(r["p_value_sim"] - exact) < 4 * math.sqrt(exact * (1 - exact) / sims) + 1 / sims
    assert r["p_value_sim"] != pytest.approx(r["p_value"], abs=0.02)  # the chi2 approximation is poor here


def test_simulations_are_reproducible_and_validated():
    t = TensorInfo("w", (10, 10), "linear")
    m = random_mask(np.random.default_rng(6), t.shape, 40)
    a = group_structure({"w": m}, [t], simulations=99, seed=1)
    b = group_structure({"w": m}, [t], simulations=99, seed=1)
    assert a.p_value_sim.tolist() == b.p_value_sim.tolist()
    assert "p_value_sim" not in group_structure({"w": m}, [t]).columns
    with pytest.raises(ConfigError):
        group_structure({"w": m}, [t], simulations=-1)


# ----------------------------------------------------------------------------------------- effective sparsity


def brute_force_effective(masks: dict[str, np.ndarray], tensors: list[TensorInfo], image_hw: dict[int, tuple]):
    """Reachability on an explicit unit graph: BFS forward from every network input, backward from every
    output. ``image_hw[i] = (H, W)`` inserts a flatten after conv layer i: channel c -> flat feature f for
    every f whose C-order unravelled channel index is c."""
    edges: dict = {}
    weight_edges = []  # (layer, index, src, dst)
    layer_in = {0: [("x", u) for u in range(tensors[0].shape[1])]}
    for i, t in enumerate(tensors):
        src_nodes = layer_in[i]
        for idx in zip(*np.nonzero(masks[t.name])):
            src, dst = src_nodes[idx[1]], (i, idx[0])
            edges.setdefault(src, set()).add(dst)
            weight_edges.append((t.name, idx, src, dst))
        outs = [(i, o) for o in range(t.shape[0])]
        if i in image_hw:
            h, w = image_hw[i]
            flat = [("flat", i, f) for f in range(t.shape[0] * h * w)]
            for f, node in enumerate(flat):
                c = np.unravel_index(f, (t.shape[0], h, w))[0]
                edges.setdefault(outs[c], set()).add(node)
            layer_in[i + 1] = flat
        else:
            layer_in[i + 1] = outs
    reverse: dict = {}
    for a, bs in edges.items():
        for b in bs:
            reverse.setdefault(b, set()).add(a)

    def bfs(starts, adjacency):
        seen, queue = set(starts), deque(starts)
        while queue:
            for nxt in adjacency.get(queue.popleft(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    queue.append(nxt)
        return seen

    fwd = bfs(layer_in[0], edges)
    bwd = bfs([(len(tensors) - 1, o) for o in range(tensors[-1].shape[0])], reverse)
    eff = {t.name: np.zeros(t.shape, bool) for t in tensors}
    for name, idx, src, dst in weight_edges:
        if src in fwd and dst in bwd:
            eff[name][idx] = True
    return eff


MLP = [TensorInfo("fc_layers.0.weight", (8, 6), "linear"), TensorInfo("fc_layers.1.weight", (7, 8), "linear"),
       TensorInfo("fc.weight", (3, 7), "linear", pruned=False)]
CONVNET = [TensorInfo("convs.0.weight", (4, 2, 3, 3), "conv"), TensorInfo("convs.1.weight", (3, 4, 3, 3), "conv"),
           TensorInfo("fc_layers.0.weight", (5, 12), "linear"), TensorInfo("fc.weight", (2, 5), "linear")]


def test_hand_built_mlp_with_disconnected_units():
    masks = {t.name: np.ones(t.shape, bool) for t in MLP}
    masks["fc_layers.0.weight"][2, :] = False  # hidden unit 2 of layer 1: no incoming weights
    masks["fc.weight"][:, 5] = False  # hidden unit 5 of layer 2: no outgoing weights
    masks["fc_layers.0.weight"][:, 4] = False  # input 4: no outgoing weights (nothing else to kill)
    eff = effective_masks(masks, MLP)
    # unit 2's 7 outgoing weights and unit 5's 8 incoming weights are dead; everything else is effective
    expected = {k: v.copy() for k, v in masks.items()}
    expected["fc_layers.1.weight"][:, 2] = False
    expected["fc_layers.1.weight"][5, :] = False
    for t in MLP:
        np.testing.assert_array_equal(eff[t.name], expected[t.name])
    df = effective_density(masks, MLP).set_index("layer")
    assert df.loc["fc_layers.1.weight", "kept"] == 56
    assert df.loc["fc_layers.1.weight", "effective_kept"] == 56 - 7 - 8 + 1  # weight (5, 2) counted once
    assert df.loc["fc_layers.0.weight", "effective_kept"] == 48 - 6 - 8 + 1
    assert df.loc["total", "kept"] == (48 - 6 - 8 + 1) + 56 + 21 - 3
    assert df.loc["total", "effective_kept"] == 35 + 42 + 18
    assert df.loc["total", "effective_density"] == (35 + 42 + 18) / (48 + 56 + 21)
    assert df.loc["total", "effective_compression"] == (48 + 56 + 21) / (35 + 42 + 18)
    assert df.loc["fc_layers.0.weight", "inactive_in_units"] == 1
    assert df.loc["fc_layers.0.weight", "inactive_out_units"] == 1  # unit 2
    assert df.loc["fc_layers.1.weight", "inactive_in_units"] == 1
    assert df.loc["fc_layers.1.weight", "inactive_out_units"] == 1  # unit 5
    assert df.loc["fc.weight", "inactive_in_units"] == 1
    assert df.loc["fc.weight", "inactive_out_units"] == 0
    assert df.loc["total", "in_units"] is pd.NA


def test_hand_built_conv_flatten_linear():
    """CONVNET: convs.1's 3 channels of 2x2 feed fc_layers.0's 12 inputs, channel c -> inputs 4c .. 4c+3."""
    masks = {t.name: np.ones(t.shape, bool) for t in CONVNET}
    masks["convs.1.weight"][1] = False  # channel 1 gets no input: its 4 flattened features are dead
    masks["fc_layers.0.weight"][:, 8:12] = False  # channel 2 feeds nothing: its 36 incoming weights are dead
    masks["fc_layers.0.weight"][:, 0] = False  # one position of channel 0 unused: channel 0 stays alive
    eff = effective_masks(masks, CONVNET)
    expected = {k: v.copy() for k, v in masks.items()}
    expected["convs.1.weight"][2] = False
    expected["fc_layers.0.weight"][:, 4:8] = False
    for t in CONVNET:
        np.testing.assert_array_equal(eff[t.name], expected[t.name])
    df = effective_density(masks, CONVNET).set_index("layer")
    assert df.effective_kept.tolist() == [72, 36, 15, 10, 133]
    assert df.kept.tolist() == [72, 72, 35, 10, 189]
    assert df.loc["convs.1.weight", "inactive_out_units"] == 2
    assert df.loc["fc_layers.0.weight", "inactive_in_units"] == 9
    assert df.loc["fc_layers.0.weight", "in_units"] == 12


@pytest.mark.parametrize("tensors, image_hw", [(MLP, {}), (CONVNET, {1: (2, 2)})], ids=["mlp", "conv-flatten"])
def test_effective_masks_equal_brute_force_reachability(tensors, image_hw):
    rng = np.random.default_rng(7)
    for trial in range(60):
        d = rng.choice([0.1, 0.2, 0.35, 0.6])
        masks = {t.name: rng.random(t.shape) < d for t in tensors}
        eff = effective_masks(masks, tensors)
        brute = brute_force_effective(masks, tensors, image_hw)
        df = effective_density(masks, tensors).set_index("layer")
        for t in tensors:
            np.testing.assert_array_equal(eff[t.name], brute[t.name], err_msg=f"trial {trial} {t.name}")
            assert df.loc[t.name, "effective_kept"] == brute[t.name].sum()
            assert df.loc[t.name, "kept"] == masks[t.name].sum()
            # an output unit is active iff it has an effective incoming weight
            live_out = brute[t.name].reshape(t.shape[0], t.shape[1], -1).any(axis=(1, 2))
            assert df.loc[t.name, "inactive_out_units"] == t.shape[0] - live_out.sum()
        assert df.loc["total", "effective_kept"] == sum(b.sum() for b in brute.values())


def test_effective_masks_equal_gradient_of_linearised_lenet300():
    """Vysogorets & Kempe's general check: in the linear network with weights = mask and an all-ones input, a
    weight is effective iff d(sum of outputs)/dw is non-zero (no cancellation: everything is >= 0)."""
    torch = pytest.importorskip("torch")
    tensors = [TensorInfo("fc_layers.0.weight", (300, 784), "linear"),
               TensorInfo("fc_layers.1.weight", (100, 300), "linear"), TensorInfo("fc.weight", (10, 100), "linear")]
    rng = np.random.default_rng(8)
    masks = {t.name: rng.random(t.shape) < 0.02 for t in tensors}
    ws = [torch.tensor(masks[t.name], dtype=torch.float64, requires_grad=True) for t in tensors]
    x = torch.ones(784, dtype=torch.float64)
    for w in ws:
        x = w @ x
    x.sum().backward()
    eff = effective_masks(masks, tensors)
    for t, w in zip(tensors, ws):
        np.testing.assert_array_equal(eff[t.name], masks[t.name] & (w.grad.numpy() > 0))
    df = effective_density(masks, tensors).set_index("layer")
    # Vysogorets & Kempe: random LeNet-300-100 at 2% keeps far fewer effective weights (papers: ~0.7%)
    assert df.loc["total", "effective_density"] < 0.6 * df.loc["total", "density"]


def test_feedforward_chain_links_and_refusals():
    assert feedforward_chain(MLP) == [1, 1]
    assert feedforward_chain(CONVNET) == [1, 4, 1]
    bad = [
        ([TensorInfo("a", (8, 6), "linear"), TensorInfo("b", (7, 9), "linear")], "does not take"),
        ([TensorInfo("a", (4, 3, 3, 3), "conv"), TensorInfo("b", (5, 6, 3, 3), "conv")], "does not take"),
        ([TensorInfo("a", (4, 3, 3, 3), "conv"), TensorInfo("b", (5, 10), "linear")], "not a multiple"),
        ([TensorInfo("a", (8, 6), "linear"), TensorInfo("b", (4, 8, 3, 3), "conv")], "follows Linear"),
        ([TensorInfo("a", (8, 6), "other"), TensorInfo("b", (4, 8), "linear")], "not a Linear"),
        ([TensorInfo("blocks.0.conv1.weight", (4, 4, 3, 3), "conv"),
          TensorInfo("blocks.0.shortcut.0.weight", (4, 4, 1, 1), "conv")], "residual"),
    ]
    for tensors, fragment in bad:
        masks = {t.name: np.ones(t.shape, bool) for t in tensors}
        for fn in (feedforward_chain, lambda ts: effective_density(masks, ts), lambda ts: effective_masks(masks, ts)):
            with pytest.raises(ConfigError) as err:
                fn(tensors)
            assert fragment in str(err.value) and "feed-forward" in str(err.value)


def test_registry_resnet_is_refused_and_plain_nets_chain():
    from ticketlab.models import create_model, prunable_tensors

    with pytest.raises(ConfigError, match="residual|does not take"):
        feedforward_chain(prunable_tensors(create_model("resnet20")))
    for name, links in [("lenet300", [1, 1]), ("lenet5", [1, 25, 1, 1]), ("conv2", [1, 256, 1, 1]),
                        ("vgg11", [1] * 8)]:
        assert feedforward_chain(prunable_tensors(create_model(name))) == links, name


# ------------------------------------------------------------------------------------------------------- CLI


def write_ticket(path: Path, model_name: str, densities=(1.0, 0.5, 0.1), seed: int = 0):
    """A ticket file for a registry model with nested random masks (output layer unpruned)."""
    from ticketlab.models import create_model, output_layer, prunable_tensors

    model = create_model(model_name)
    tensors = prunable_tensors(model, exclude=[output_layer(model)])
    store.create(path, tensors=tensors, model=model_name, method="nested random masks", config={}, seed=seed)
    writer = store.TicketWriter(path)
    rng = np.random.default_rng(seed)
    scores = {t.name: rng.random(t.shape) for t in tensors}
    levels = []
    for level, d in enumerate(densities):
        masks = {t.name: (scores[t.name] < d) if t.pruned else np.ones(t.shape, bool) for t in tensors}
        writer.write_level(level, masks)
        levels.append(masks)
    return tensors, levels




@pytest.fixture(scope="module")
def tickets(tmp_path_factory):
    d = tmp_path_factory.mktemp("structure")
    return {name: (d / f"{name}.h5", *write_ticket(d / f"{name}.h5", name)) for name in ("lenet300", "lenet5")}


def test_cli_structure_json_matches_library(capsys, tickets):
    path, tensors, levels = tickets["lenet5"]
    code, out, _ = cli(capsys, "structure", "--json", str(path))
    assert code == 0
    records = json.loads(out)
    ref = group_structure(levels[-1], tensors)
    assert len(records) == len(ref) == 3 * 2 + 2 * 3  # 2 convs x 3 groupings, 3 linear x 2
    for rec, (_, r) in zip(records, ref.iterrows()):
        assert rec["level"] == 2 and rec["layer"] == r.layer and rec["grouping"] == r.grouping
        for key in ("groups", "group_size", "fully_pruned", "dof"):
            assert rec[key] == r[key]
        for key in ("density", "fully_pruned_fraction", "expected_fully_pruned_fraction", "chi2", "p_value"):
            assert (rec[key] is None and math.isnan(r[key])) or rec[key] == pytest.approx(r[key])
    # the independent counts, recomputed here from the written masks
    conv1 = levels[-1]["convs.0.weight"]
    rec = next(r for r in records if r["layer"] == "convs.0.weight" and r["grouping"] == "kernel")
    assert rec["fully_pruned"] == int((~conv1.any(axis=(2, 3))).sum())
    assert rec["expected_fully_pruned_fraction"] == pytest.approx(
        math.comb(conv1.size - 25, int(conv1.sum())) / math.comb(conv1.size, int(conv1.sum())))


def test_cli_structure_table_csv_level_selection_and_simulations(capsys, tickets):
    path, tensors, levels = tickets["lenet300"]
    code, out, _ = cli(capsys, "structure", f"{path}:1")
    assert code == 0
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("level"))
    assert "fully pruned" in header and "random mean" in header and "dispersion" in header
    body = lines[lines.index(header) + 1:]
    assert len(body) == 6 and all(line.split()[0] == "1" for line in body)
    code, out, _ = cli(capsys, "structure", "--csv", "--level", "0", "--simulations", "49", str(path))
    assert code == 0
    csv_lines = out.splitlines()
    assert csv_lines[0].split(",") == ["level", "layer", "grouping", "groups", "group_size", "density",
                                       "fully_pruned", "fully_pruned_fraction", "expected_fully_pruned_fraction",
                                       "expected_fully_pruned_sd", "dispersion", "chi2", "dof", "p_value",
                                       "p_value_sim"]
    assert len(csv_lines) == 7 and all(line.startswith("0,") for line in csv_lines[1:])
    # input pixels kept at density 0.1 over 300 units: the exact fully-pruned expectation
    code, out, _ = cli(capsys, "structure", "--json", str(path))
    rec = next(r for r in json.loads(out) if r["layer"] == "fc_layers.0.weight" and r["grouping"] == "input")
    m = levels[2]["fc_layers.0.weight"]
    assert rec["fully_pruned"] == int((~m.any(axis=0)).sum())
    assert rec["expected_fully_pruned_fraction"] == pytest.approx(
        math.comb(m.size - 300, int(m.sum())) / math.comb(m.size, int(m.sum())), rel=1e-9)


def test_cli_effective_all_levels_and_two_files(capsys, tickets):
    path, tensors, levels = tickets["lenet5"]
    code, out, _ = cli(capsys, "structure", "--effective", "--all-levels", "--json", str(path))
    assert code == 0
    records = json.loads(out)
    assert len(records) == 3 * (len(tensors) + 1)
    for level, masks in enumerate(levels):
        rows = [r for r in records if r["level"] == level]
        assert [r["layer"] for r in rows] == [t.name for t in tensors] + ["total"]
        brute = brute_force_effective(masks, tensors, {1: (5, 5)})
        for r in rows[:-1]:
            assert r["kept"] == masks[r["layer"]].sum()
            assert r["effective_kept"] == brute[r["layer"]].sum()
        total = rows[-1]
        size = sum(t.size for t in tensors)
        assert total["effective_kept"] == sum(b.sum() for b in brute.values())
        assert total["effective_density"] == pytest.approx(total["effective_kept"] / size)
        assert total["in_units"] is None and total["kind"] is None
    code, out, _ = cli(capsys, "structure", "--effective", str(path), str(tickets["lenet300"][0]) + ":1")
    assert code == 0
    assert "effective density" in out and "lenet300.h5" in out and "total" in out
    header = next(line for line in out.splitlines() if line.startswith("file"))
    assert "inactive in" in header


def test_cli_refusals(capsys, tickets, tmp_path):
    from ticketlab.models import create_model, prunable_tensors

    path = tmp_path / "resnet.h5"
    tensors = prunable_tensors(create_model("resnet20"))
    store.create(path, tensors=tensors, model="resnet20", method="dense", config={})
    store.TicketWriter(path).write_level(0, {t.name: np.ones(t.shape, bool) for t in tensors})
    code, _, err = cli(capsys, "structure", "--effective", str(path))
    assert code == 2 and "feed-forward" in err and len(err.strip().splitlines()) == 1
    code, out, _ = cli(capsys, "structure", str(path))  # group structure works for any layers
    assert code == 0 and "blocks.3.shortcut.0.weight" in out
    lenet = str(tickets["lenet300"][0])
    for argv, fragment in [(["--all-levels", "--level", "1", lenet], "cannot be combined"),
                           (["--all-levels", lenet + ":1"], "names one"),
                           (["--level", "7", lenet], "no level 7"),
                           (["--simulations", "-3", lenet], "--simulations")]:
        code, _, err = cli(capsys, "structure", *argv)
        assert code == 2 and fragment in err, argv
