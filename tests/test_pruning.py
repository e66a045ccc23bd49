"""Tests for ticketlab.pruning: the strategy registry, counting/nesting/tie rules, torch.nn.utils.prune parity
and the shuffle/random control masks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import prune as tprune

from ticketlab.errors import ConfigError
from ticketlab.pruning import (
    count_to_prune,
    get_strategy,
    list_strategies,
    prune,
    random_mask_like,
    register_strategy,
    shuffle_mask,
)

EXPECTED = {"global_magnitude", "layer_magnitude", "global_random", "layer_random", "ln_structured",
            "random_structured"}
STRATEGIES = list_strategies()
OPTIONS = {"ln_structured": {"norm": 2}}
SHAPES = {"conv.weight": (8, 3, 3, 3), "fc1.weight": (30, 72), "fc2.weight": (10, 30)}


def run(name, weights, masks, rate, seed=0, **kw):
    """Call a strategy with its required option and a seeded rng."""
    return prune(name, weights, masks, rate, rng=np.random.default_rng(seed), **{**OPTIONS.get(name, {}), **kw})


def make_weights(seed=0, shapes=SHAPES):
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(*s, generator=g) for k, s in shapes.items()}


def make_masks(seed=1, shapes=SHAPES):
    """Masks already partly pruned: ~30% of weights at random, plus output channel 0 entirely."""
    rng = np.random.default_rng(seed)
    out = {}
    for k, s in shapes.items():
        m = rng.random(s) > 0.3
        m[0] = False
        out[k] = m
    return out


def kept(m):
    return int(np.count_nonzero(m))


def alive_channels(m):
    return int(np.count_nonzero(m.reshape(m.shape[0], -1).any(axis=1)))


# ----------------------------------------------------------------------------------------------------------------
# Registry


def test_registry_lists_the_six_strategies_with_one_line_descriptions():
    assert set(STRATEGIES) == EXPECTED
    for name in STRATEGIES:
        s = get_strategy(name)
        assert s.name == name
        assert s.description.strip() and "\n" not in s.description
        assert s.scope in ("layer", "global")
        assert s.needs_rng == ("random" in name)
        assert s.structured == name.endswith("structured")


@pytest.mark.parametrize("name", STRATEGIES)
def test_strategy_entries_carry_their_properties(name):
    s = get_strategy(name)
    assert s.pooled == (s.scope == "global") == name.startswith("global_")
    assert set(s.required_options) <= set(s.options)
    assert s.required_options == (("norm",) if name == "ln_structured" else ())
    for option in s.required_options:
        with pytest.raises(ConfigError, match=f"needs the option {option}"):
            prune(name, make_weights(), make_masks(), 0.2, rng=np.random.default_rng(0))


def test_unknown_strategy_lists_valid_names():
    with pytest.raises(ConfigError, match=r"unknown pruning strategy 'magnitude'; choose one of: .*layer_magnitude"):
        get_strategy("magnitude")
    with pytest.raises(ConfigError, match="unknown pruning strategy"):
        prune("nope", make_weights(), make_masks(), 0.2)


def test_register_rejects_duplicate_name():
    with pytest.raises(ValueError, match="already registered"):
        register_strategy("layer_magnitude", "dup", scope="layer")(lambda *a: {})
    assert set(list_strategies()) == EXPECTED


def test_count_to_prune_matches_torch_rounding():
    for remaining in [0, 1, 2, 5, 7, 10, 25, 35, 45, 101, 1000, 12345]:
        for rate in [0.01, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.5, 0.7, 0.9, 0.99]:
            assert count_to_prune(rate, remaining) == tprune._compute_nparams_toprune(rate, remaining)
    assert count_to_prune(0.5, 5) == 2 and count_to_prune(0.5, 7) == 4  # round half to even


# ----------------------------------------------------------------------------------------------------------------
# Properties every strategy has


@pytest.mark.parametrize("name", STRATEGIES)
@pytest.mark.parametrize("rate", [0.2, 0.5, 0.9])
def test_counts_and_nesting(name, rate):
    weights, masks = make_weights(), make_masks()
    new = run(name, weights, masks, rate)
    assert list(new) == list(masks)
    for k, m in new.items():
        assert m.dtype == np.bool_ and m.shape == masks[k].shape
        assert not np.any(m & ~masks[k]), "a pruned weight came back"
        assert m is not masks[k]
    strat = get_strategy(name)
    if strat.structured:
        for k, m in new.items():
            before = alive_channels(masks[k])
            assert before - alive_channels(m) == count_to_prune(rate, before)
            rows_new, rows_old = m.reshape(m.shape[0], -1), masks[k].reshape(m.shape[0], -1)
            for c in range(m.shape[0]):  # each channel is either untouched or entirely pruned
                assert np.array_equal(rows_new[c], rows_old[c]) or not rows_new[c].any()
    elif strat.scope == "global":
        before = sum(kept(m) for m in masks.values())
        assert before - sum(kept(m) for m in new.values()) == count_to_prune(rate, before)
    else:
        for k, m in new.items():
            assert kept(masks[k]) - kept(m) == count_to_prune(rate, kept(masks[k]))


@pytest.mark.parametrize("name", STRATEGIES)
def test_deterministic_and_inputs_untouched(name):
    weights, masks = make_weights(), make_masks()
    w_copy = {k: v.clone() for k, v in weights.items()}
    m_copy = {k: v.copy() for k, v in masks.items()}
    a = run(name, weights, masks, 0.3, seed=7)
    b = run(name, weights, masks, 0.3, seed=7)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert all(torch.equal(weights[k], w_copy[k]) for k in weights)
    assert all(np.array_equal(masks[k], m_copy[k]) for k in masks)
    if get_strategy(name).needs_rng:
        c = run(name, weights, masks, 0.3, seed=8)
        assert any(not np.array_equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize("name", STRATEGIES)
@pytest.mark.parametrize("rate", [0, 0.0, 1, 1.0, -0.1, 1.5, float("nan"), float("inf"), "0.2", None, True])
def test_rate_validation(name, rate):
    with pytest.raises(ConfigError, match="rate must be a number in"):
        run(name, make_weights(), make_masks(), rate)


@pytest.mark.parametrize("name", STRATEGIES)
def test_iterated_levels_stay_nested_and_shrink(name):
    masks = {k: np.ones(s, bool) for k, s in SHAPES.items()}
    for level in range(6):
        new = run(name, make_weights(seed=level), masks, 0.2, seed=level)
        assert all(not np.any(new[k] & ~masks[k]) for k in masks)
        masks = new
    if not get_strategy(name).structured:
        total = sum(math.prod(s) for s in SHAPES.values())
        assert abs(sum(kept(m) for m in masks.values()) / total - 0.8**6) < 0.01


@pytest.mark.parametrize("name", STRATEGIES)
def test_layer_rates(name):
    weights, masks = make_weights(), make_masks()
    layer_rates = {"fc2.weight": 0.1, "conv.weight": 0.0}
    if get_strategy(name).scope == "global":
        with pytest.raises(ConfigError, match="layer_rates"):
            run(name, weights, masks, 0.4, layer_rates=layer_rates)
        return
    new = run(name, weights, masks, 0.4, layer_rates=layer_rates)
    count = alive_channels if get_strategy(name).structured else kept
    rates = {"conv.weight": 0.0, "fc1.weight": 0.4, "fc2.weight": 0.1}
    for k, r in rates.items():
        assert count(masks[k]) - count(new[k]) == count_to_prune(r, count(masks[k]))
    assert np.array_equal(new["conv.weight"], masks["conv.weight"])
    with pytest.raises(ConfigError, match="layer_rates names tensor 'fc3.weight'"):
        run(name, weights, masks, 0.4, layer_rates={"fc3.weight": 0.1})
    for bad in (1.0, -0.1, float("nan"), "x"):
        with pytest.raises(ConfigError, match=r"layer_rates\['fc2.weight'\] must be a number in \[0, 1\)"):
            run(name, weights, masks, 0.4, layer_rates={"fc2.weight": bad})


@pytest.mark.parametrize("name", STRATEGIES)
def test_input_validation(name):
    weights, masks = make_weights(), make_masks()
    with pytest.raises(ConfigError, match="shape"):
        run(name, {**weights, "fc2.weight": torch.zeros(10, 31)}, masks, 0.2)
    with pytest.raises(ConfigError, match="no weights given for masked tensor 'fc2.weight'"):
        run(name, {k: v for k, v in weights.items() if k != "fc2.weight"}, masks, 0.2)
    with pytest.raises(ConfigError, match="weights given for tensor 'fc2.weight' that has no mask"):
        run(name, weights, {k: v for k, v in masks.items() if k != "fc2.weight"}, 0.2)
    with pytest.raises(ConfigError, match="masks is empty"):
        run(name, {}, {}, 0.2)
    with pytest.raises(ConfigError, match="values other than 0 and 1"):
        run(name, weights, {**masks, "fc2.weight": np.full((10, 30), 2)}, 0.2)
    with pytest.raises(ConfigError, match="does not take option 'foo'"):
        run(name, weights, masks, 0.2, foo=1)
    with pytest.raises(ConfigError, match="numpy.random.Generator"):
        prune(name, weights, masks, 0.2, rng=42, **OPTIONS.get(name, {}))
    if get_strategy(name).needs_rng:
        with pytest.raises(ConfigError, match="needs rng"):
            prune(name, weights, masks, 0.2)
    else:  # deterministic strategies ignore rng and run without one
        a = prune(name, weights, masks, 0.2, **OPTIONS.get(name, {}))
        assert all(np.array_equal(a[k], run(name, weights, masks, 0.2, seed=3)[k]) for k in a)
    if get_strategy(name).structured:
        with pytest.raises(ConfigError, match="at least 2 dimensions"):
            run(name, {"b": torch.ones(5)}, {"b": np.ones(5, bool)}, 0.2)


@pytest.mark.parametrize("name", STRATEGIES)
def test_input_types_do_not_matter(name):
    """torch float32 / numpy float64 weights and bool / 0-1 float masks give the same masks."""
    weights, masks = make_weights(), make_masks()
    a = run(name, weights, masks, 0.3)
    as_numpy = {k: v.double().numpy() for k, v in weights.items()}
    as_float_masks = {k: m.astype(np.float32) for k, m in masks.items()}
    b = run(name, as_numpy, as_float_masks, 0.3)
    assert all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", STRATEGIES)
def test_low_precision_and_integer_weights(name):
    """bfloat16 (which numpy cannot hold) is converted exactly; integer weights are ranked like floats."""
    weights, masks = make_weights(), make_masks()
    bf = {k: v.to(torch.bfloat16) for k, v in weights.items()}
    a = run(name, bf, masks, 0.3)
    b = run(name, {k: v.float() for k, v in bf.items()}, masks, 0.3)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    ints = {k: (v * 1000).round().to(torch.int64) for k, v in weights.items()}
    a = run(name, ints, masks, 0.3)
    b = run(name, {k: v.double() for k, v in ints.items()}, masks, 0.3)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    with pytest.raises(ConfigError, match="complex"):
        run(name, {**weights, "fc2.weight": torch.zeros(10, 30, dtype=torch.complex64)}, masks, 0.3)


@pytest.mark.parametrize("name", STRATEGIES)
def test_values_at_pruned_positions_are_ignored(name):
    weights, masks = make_weights(), make_masks()
    a = run(name, weights, masks, 0.3)
    poisoned = {}
    for k, w in weights.items():
        w = w.clone()
        w[torch.from_numpy(~masks[k])] = float("nan")
        poisoned[k] = w
    b = run(name, poisoned, masks, 0.3)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    if not get_strategy(name).needs_rng:
        bad = {k: w.clone() for k, w in weights.items()}
        bad["fc1.weight"][5, 5] = float("nan")
        assert masks["fc1.weight"][5, 5]
        with pytest.raises(ConfigError, match="NaN among the kept entries"):
            run(name, bad, masks, 0.3)


# ----------------------------------------------------------------------------------------------------------------
# Parity with torch.nn.utils.prune


def make_modules(seed):
    torch.manual_seed(seed)
    return {"conv": nn.Conv2d(3, 8, 3), "fc1": nn.Linear(72, 30), "fc2": nn.Linear(30, 10)}


INPUTS = {"conv": lambda: torch.zeros(1, 3, 5, 5), "fc1": lambda: torch.zeros(1, 72), "fc2": lambda: torch.zeros(1, 30)}


def retrain(modules, seed):
    """Simulate training between levels: new values everywhere (pruned positions included), then a forward
    pass so torch's pruning hooks recompute ``weight = weight_orig * weight_mask``. Returns the raw weights."""
    g = torch.Generator().manual_seed(1000 + seed)
    raw = {}
    with torch.no_grad():
        for key, mod in modules.items():
            param = mod.weight_orig if hasattr(mod, "weight_orig") else mod.weight
            param.copy_(torch.randn(param.shape, generator=g))
            mod(INPUTS[key]())
            raw[f"{key}.weight"] = param.detach().clone()
    return raw


def torch_masks(modules):
    return {f"{k}.weight": m.weight_mask.bool().numpy() for k, m in modules.items()}


def test_layer_magnitude_equals_torch_l1_unstructured_iterated():
    modules = make_modules(0)
    masks = {f"{k}.weight": np.ones(m.weight.shape, bool) for k, m in modules.items()}
    for level, rate in enumerate([0.2, 0.2, 0.35, 0.5, 0.2, 0.1]):
        raw = retrain(modules, level)
        masks = prune("layer_magnitude", raw, masks, rate)
        for mod in modules.values():
            tprune.l1_unstructured(mod, "weight", amount=rate)
        expected = torch_masks(modules)
        for k in masks:
            assert np.array_equal(masks[k], expected[k]), (level, k)
    assert len(list(modules["fc1"]._forward_pre_hooks.values())[0]) == 6  # a PruningContainer of 6 levels


def test_global_magnitude_equals_torch_global_unstructured():
    modules = make_modules(1)
    masks = {f"{k}.weight": np.ones(m.weight.shape, bool) for k, m in modules.items()}
    for level, rate in enumerate([0.2, 0.3, 0.2, 0.5, 0.2]):
        raw = retrain(modules, level)
        masks = prune("global_magnitude", raw, masks, rate)
        tprune.global_unstructured([(m, "weight") for m in modules.values()], tprune.L1Unstructured, amount=rate)
        expected = torch_masks(modules)
        for k in masks:
            assert np.array_equal(masks[k], expected[k]), (level, k)


@pytest.mark.parametrize("norm", [1, 2, float("inf")])
@pytest.mark.parametrize("unstructured_first", [False, True])
def test_ln_structured_equals_torch_ln_structured(norm, unstructured_first):
    modules = make_modules(2)
    masks = {f"{k}.weight": np.ones(m.weight.shape, bool) for k, m in modules.items()}
    if unstructured_first:  # structured pruning on top of an unstructured mask (PruningContainer 'structured')
        raw = retrain(modules, 99)
        masks = prune("layer_magnitude", raw, masks, 0.3)
        for mod in modules.values():
            tprune.l1_unstructured(mod, "weight", amount=0.3)
    for level, rate in enumerate([0.2, 0.25, 0.5, 0.2, 0.3]):
        raw = retrain(modules, level)
        masks = prune("ln_structured", raw, masks, rate, norm=norm)
        for mod in modules.values():
            tprune.ln_structured(mod, "weight", amount=rate, n=norm, dim=0)
        expected = torch_masks(modules)
        for k in masks:
            assert np.array_equal(masks[k], expected[k]), (level, k)


def test_norm_spellings():
    weights, masks = make_weights(), make_masks()
    for spelled, value in [("l1", 1), ("L2", 2), ("linf", float("inf")), ("Linf", math.inf), (2.0, 2)]:
        a = prune("ln_structured", weights, masks, 0.3, norm=spelled)
        b = prune("ln_structured", weights, masks, 0.3, norm=value)
        assert all(np.array_equal(a[k], b[k]) for k in a)
    for bad in (3, 0, "l3", "fro", None, True):
        with pytest.raises(ConfigError, match="norm"):
            prune("ln_structured", weights, masks, 0.3, norm=bad)
    with pytest.raises(ConfigError, match="needs the option norm"):
        prune("ln_structured", weights, masks, 0.3)


# ----------------------------------------------------------------------------------------------------------------
# Brute-force ordering checks and ties


def test_magnitude_order_brute_force():
    weights, masks = make_weights(3), make_masks(4)
    new = prune("layer_magnitude", weights, masks, 0.4)
    for k, w in weights.items():
        a = w.abs().double().numpy()
        dropped, survived = a[masks[k] & ~new[k]], a[new[k]]
        assert dropped.size and dropped.max() <= survived.min()
    new = prune("global_magnitude", weights, masks, 0.4)
    dropped = np.concatenate([weights[k].abs().double().numpy()[masks[k] & ~new[k]] for k in masks])
    survived = np.concatenate([weights[k].abs().double().numpy()[new[k]] for k in masks])
    assert dropped.max() <= survived.min()
    # global pruning allocates unevenly: layers end at different densities
    densities = [kept(new[k]) / kept(masks[k]) for k in masks]
    assert max(densities) - min(densities) > 0.01


@pytest.mark.parametrize("norm", [1, 2, float("inf")])
def test_ln_structured_order_brute_force(norm):
    weights, masks = make_weights(5), make_masks(6)
    new = prune("ln_structured", weights, masks, 0.5, norm=norm)
    for k, w in weights.items():
        rows = (w.double().numpy() * masks[k]).reshape(w.shape[0], -1)
        norms = np.linalg.norm(rows, ord=norm, axis=1)
        alive_before = masks[k].reshape(w.shape[0], -1).any(axis=1)
        alive_after = new[k].reshape(w.shape[0], -1).any(axis=1)
        dropped = norms[alive_before & ~alive_after]
        assert dropped.size and dropped.max() <= norms[alive_after].min()


def test_ties_prune_lower_flat_index_first():
    w = {"a": np.array([[-1.0, 1.0, 1.0], [-1.0, 1.0, 0.5]]), "b": np.ones(4)}
    m = {"a": np.array([[True, False, True], [True, True, True]]), "b": np.ones(4, bool)}
    # layer: 'a' has 5 kept; round(0.6*5)=3 -> 0.5 first, then the tied 1s at flat 0 and 2; 'b': round(2.4)=2
    new = prune("layer_magnitude", w, m, 0.6)
    assert new["a"].tolist() == [[False, False, False], [True, True, False]]
    assert new["b"].tolist() == [False, False, True, True]
    # global: 9 kept, round(0.7*9)=6 -> 0.5, then the 1s in order: a flat 0, 2, 3, 4, then b flat 0
    new = prune("global_magnitude", w, m, 0.7)
    assert not new["a"].any()
    assert new["b"].tolist() == [False, True, True, True]
    # channels of equal norm: lower channel index first
    wc = {"c": np.ones((4, 2))}
    new = prune("ln_structured", wc, {"c": np.ones((4, 2), bool)}, 0.5, norm=1)
    assert new["c"][:, 0].tolist() == [False, False, True, True]


def test_all_tied_large_tensor_is_fast_and_exact():
    w = {"big": np.zeros((1000, 1000), np.float32)}
    m = {"big": np.ones((1000, 1000), bool)}
    new = prune("layer_magnitude", w, m, 0.25)
    flat = new["big"].ravel()
    assert not flat[:250_000].any() and flat[250_000:].all()


def test_frankle_carbin_lenet_densities():
    """LeNet-300-100, fc at 20% and the output layer at 10% per round: P_m = 51.3% after 3 rounds (the paper)."""
    shapes = {"fc1.weight": (300, 784), "fc2.weight": (100, 300), "fc3.weight": (10, 100)}
    rng = np.random.default_rng(0)
    masks = {k: np.ones(s, bool) for k, s in shapes.items()}
    for _ in range(3):
        weights = {k: rng.standard_normal(s) for k, s in shapes.items()}
        masks = prune("layer_magnitude", weights, masks, 0.2, layer_rates={"fc3.weight": 0.1})
    total = sum(m.size for m in masks.values())
    assert round(100 * sum(kept(m) for m in masks.values()) / total, 1) == 51.3
    assert kept(masks["fc3.weight"]) == 729  # 1000 -> 900 -> 810 -> 729


def test_global_random_totals_and_spread():
    weights, masks = make_weights(), make_masks()
    before = {k: kept(m) for k, m in masks.items()}
    allocations = set()
    for seed in range(5):
        new = run("global_random", weights, masks, 0.3, seed=seed)
        pruned = tuple(before[k] - kept(new[k]) for k in masks)
        assert sum(pruned) == count_to_prune(0.3, sum(before.values()))
        allocations.add(pruned)
    assert len(allocations) > 1  # hypergeometric allocation, not a fixed per-layer split


# ----------------------------------------------------------------------------------------------------------------
# Control masks


@pytest.mark.parametrize("control", [shuffle_mask, random_mask_like])
def test_controls_keep_layer_counts(control):
    masks = make_masks()
    masks["scalar"] = np.array(True)
    masks["empty_kept"] = np.zeros((3, 4), bool)
    masks["float01"] = np.array([[1.0, 0.0], [1.0, 1.0]])
    a = control(masks, np.random.default_rng(3))
    b = control(masks, np.random.default_rng(3))
    assert list(a) == list(masks)
    for k, m in masks.items():
        assert a[k].dtype == np.bool_ and a[k].shape == np.shape(m)
        assert kept(a[k]) == kept(np.asarray(m) == 1)
        assert np.array_equal(a[k], b[k])
    assert not np.array_equal(a["fc1.weight"], masks["fc1.weight"])
    with pytest.raises(ConfigError, match="rng"):
        control(masks, None)


@pytest.mark.parametrize("control", [shuffle_mask, random_mask_like])
def test_controls_are_uniform(control):
    """Overlap with the source mask is k*k/n on average and every position is kept with probability k/n."""
    n, k = 10_000, 5_000
    m = {"x": np.arange(n) < k}
    overlap = kept(control(m, np.random.default_rng(0))["x"] & m["x"])
    assert abs(overlap - k * k / n) < 200  # sd = 25
    small = {"y": np.array([True, True, False, False, False, False])}
    rng = np.random.default_rng(1)
    freq = np.mean([control(small, rng)["y"] for _ in range(3000)], axis=0)
    assert np.all(np.abs(freq - 1 / 3) < 0.04)
