"""Tests of the IMP loop (ticketlab.lottery) at tiny sizes on synthetic data.

Every pruning strategy, reset mode, model and preset is run through the loop; the masks, kept counts,
learning rates, starting weights and stored results are checked against independent computations (the
expected kept counts with Python's round, :func:`lr_at`, and re-training with :func:`ticketlab.training.train`
from the starting point each mode prescribes). Determinism and resuming after Ctrl-C or SIGKILL are checked
bit for bit against uninterrupted runs.
"""

from __future__ import annotations

import dataclasses
import math
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import ticketlab.lottery.run as imp
from ticketlab import store
from ticketlab.datasets import get_dataset_spec
from ticketlab.errors import ConfigError
from ticketlab.lottery import CONTROLS, RESET_MODES, IMPRun, RunConfig, parse_reset, resolve_reset, seeds
from ticketlab.models import create_model, get_model_spec, list_models, output_layer, prunable_tensors
from ticketlab.presets import TRAIN_KEYS, build_config, list_presets
from ticketlab.pruning import get_strategy, list_strategies
from ticketlab.training import TrainConfig, derive_seed, lr_at, steps_per_epoch
from ticketlab.training import train as real_train

from imp_helpers import (
    TrainSpy,
    as_torch,
    expected_layer_kept,
    fresh_model,
    masked,
    run_tiny,
    synthetic_data,
    tiny_config,
    tiny_train,
)

TESTS_DIR = Path(__file__).parent
T = 12  # iterations of the tiny schedule


# ---------------------------------------------------------------------------------------------------- helpers


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data():
    return synthetic_data()


@pytest.fixture(scope="module")
def conv_data():
    return synthetic_data((1, 28, 28), n_train=64, n_val=16, n_test=24, seed=3)


@pytest.fixture
def spy(monkeypatch):
    s = TrainSpy(real_train)
    monkeypatch.setattr(imp, "train", s)
    return s


def read_run(path: Path) -> dict:
    """Everything a run stored, level by level (branches too)."""
    out: dict = {"levels": {}}
    with store.open_ticket(path) as t:
        out["status"] = t.status
        out["level_list"] = t.levels
        out["tensors"] = t.tensors
        out["init"] = t.weights("init")
        out["checkpoints"] = t.checkpoints()
        for level in t.levels:
            rec = {"masks": t.masks(level), "eval": t.evaluation(level), "weights": t.weights(level=level),
                   "kept": t.kept(level), "record": t.level_record(level), "branches": {}}
            for b in t.branches(level):
                rec["branches"][b] = {"masks": t.masks(level, branch=b), "eval": t.evaluation(level, branch=b),
                                      "weights": t.weights(level=level, branch=b),
                                      "init": t.weights("init", level=level, branch=b),
                                      "info": t.branch_info(level, b)}
            out["levels"][level] = rec
    return out


def assert_same_masks(a: dict, b: dict) -> None:
    assert list(a) == list(b)
    for name in a:
        assert a[name].dtype == np.bool_ and b[name].dtype == np.bool_
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def assert_same_weights(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for name in a:
        np.testing.assert_array_equal(np.asarray(a[name]), np.asarray(b[name]), err_msg=name)


def assert_same_evaluation(a, b) -> None:
    np.testing.assert_array_equal(a.predictions, b.predictions)
    np.testing.assert_array_equal(a.confusion, b.confusion)
    assert a.loss == b.loss
    assert a.early_stop_iteration == b.early_stop_iteration
    assert a.iterations == b.iterations
    assert sorted(a.curve) == sorted(b.curve)
    for k in a.curve:
        np.testing.assert_array_equal(a.curve[k], b.curve[k], err_msg=k)  # NaN positions must agree too


def assert_same_run(a: dict, b: dict) -> None:
    assert a["level_list"] == b["level_list"]
    assert_same_weights(a["init"], b["init"])
    for level in a["level_list"]:
        ra, rb = a["levels"][level], b["levels"][level]
        assert_same_masks(ra["masks"], rb["masks"])
        assert_same_evaluation(ra["eval"], rb["eval"])
        assert_same_weights(ra["weights"], rb["weights"])
        assert sorted(ra["branches"]) == sorted(rb["branches"])
        for name in ra["branches"]:
            assert_same_masks(ra["branches"][name]["masks"], rb["branches"][name]["masks"])
            assert_same_evaluation(ra["branches"][name]["eval"], rb["branches"][name]["eval"])
            assert_same_weights(ra["branches"][name]["weights"], rb["branches"][name]["weights"])


def is_subset(inner: np.ndarray, outer: np.ndarray) -> bool:
    return not np.any(inner & ~outer)


def counts(masks: dict) -> dict[str, int]:
    return {k: int(np.count_nonzero(v)) for k, v in masks.items()}


def pruned_names(run: dict) -> list[str]:
    return [t.name for t in run["tensors"] if t.pruned]


def retrain_independently(config: RunConfig, data, start: dict, masks: dict, window: tuple[int, int],
                          train_config: TrainConfig) -> dict[str, np.ndarray]:
    """Train a fresh registry model from ``start`` with ``ticketlab.training.train`` (no IMP involved)."""
    model = fresh_model(config, data, 12345)
    model.load_state_dict(as_torch(start))
    real_train(model, masks, data.train, train_config, start_iteration=window[0], stop_iteration=window[1],
               seed=config.seed, device="cpu", progress=False)
    return {k: v.detach().numpy() for k, v in model.state_dict().items()}


def rewind_iteration_attr(path: Path) -> int:
    with h5py.File(path, "r") as f:
        return int(f["weights"]["rewind"].attrs["iteration"])


# ---------------------------------------------------------------------------------------------- strategies


def _strategy_cases():
    cases = []
    for name in list_strategies():
        if "norm" in get_strategy(name).options:
            cases += [pytest.param(name, norm, id=f"{name}-{norm}") for norm in ("l1", "l2", "linf")]
        else:
            cases.append(pytest.param(name, None, id=name))
    return cases


@pytest.mark.parametrize("strategy,norm", _strategy_cases())
def test_every_strategy_runs_two_levels(tmp_path, data, conv_data, strategy, norm):
    spec = get_strategy(strategy)
    structured = spec.structured
    # structured strategies on a conv model (LeNet-5: conv and linear weights, channels along dim 0)
    model = "lenet5" if structured else "lenet300"
    d = conv_data if structured else data
    rate = 0.25
    config = tiny_config(model=model, strategy=strategy, norm=norm, rate=rate, levels=2,
                         train=tiny_train(iterations=6, eval_every=3))
    path = run_tiny(tmp_path / "s.h5", config, d)
    run = read_run(path)
    assert run["level_list"] == [0, 1, 2] and run["status"] == "complete"
    names = pruned_names(run)
    assert names == [t.name for t in prunable_tensors(create_model(model, input_shape=d.input_shape))]
    for level in (1, 2):
        prev, cur = run["levels"][level - 1]["masks"], run["levels"][level]["masks"]
        trained = run["levels"][level - 1]["weights"]  # pruning ranks the previous level's trained weights
        for n in names:
            assert is_subset(cur[n], prev[n]), f"level {level} {n}: masks are not nested"
        if structured:
            for n in names:
                rows_prev = prev[n].reshape(prev[n].shape[0], -1)
                rows = cur[n].reshape(cur[n].shape[0], -1)
                assert np.all(rows.all(axis=1) | ~rows.any(axis=1)), f"{n}: a channel is partly pruned"
                alive_prev = int(rows_prev.any(axis=1).sum())
                alive = int(rows.any(axis=1).sum())
                assert alive == alive_prev - round(rate * alive_prev), n
                if strategy == "ln_structured":
                    p = {"l1": 1, "l2": 2, "linf": np.inf}[norm]
                    w = np.abs(trained[n].reshape(rows.shape[0], -1).astype(np.float64)) * rows_prev
                    norms = np.linalg.norm(w, ord=p, axis=1)
                    removed = rows_prev.any(axis=1) & ~rows.any(axis=1)
                    kept = rows.any(axis=1)
                    assert norms[removed].max() <= norms[kept].min(), n
        elif spec.scope == "layer":
            for n in names:
                k = int(prev[n].sum())
                assert int(cur[n].sum()) == k - round(rate * k), n
        else:
            k = sum(int(prev[n].sum()) for n in names)
            assert sum(int(cur[n].sum()) for n in names) == k - round(rate * k)
        if strategy in ("layer_magnitude", "global_magnitude"):
            pools = [[n] for n in names] if spec.scope == "layer" else [names]
            for pool in pools:
                removed = np.concatenate([np.abs(trained[n][prev[n] & ~cur[n]]) for n in pool])
                kept = np.concatenate([np.abs(trained[n][cur[n]]) for n in pool])
                assert removed.max() <= kept.min(), pool
    # the stored kept counts and level densities agree with the masks
    with store.open_ticket(path) as t:
        for level in (0, 1, 2):
            m = run["levels"][level]["masks"]
            assert t.kept(level) == counts(m)
            total = sum(v.size for v in m.values())
            assert run["levels"][level]["record"]["density"] == pytest.approx(sum(counts(m).values()) / total)


def test_strategy_cases_cover_the_registry():
    covered = {p.values[0] for p in _strategy_cases()}
    assert covered == set(list_strategies())


# ------------------------------------------------------------------------------------ densities and rates


def test_layer_magnitude_density_follows_the_rate_per_layer(tmp_path, data):
    rate, out_rate, levels = 0.2, 0.1, 3
    config = tiny_config(rate=rate, output_rate=out_rate, levels=levels, train=tiny_train(iterations=4, eval_every=0))
    path = run_tiny(tmp_path / "d.h5", config, data)
    run = read_run(path)
    sizes = {t.name: math.prod(t.shape) for t in run["tensors"]}
    out = output_layer(create_model("lenet300"))
    assert out == "fc.weight"
    rates = {n: (out_rate if n == out else rate) for n in sizes}
    expected = expected_layer_kept(sizes, rates, levels)
    for level in range(levels + 1):
        got = counts(run["levels"][level]["masks"])
        assert got == expected[level], level
        for n, k in got.items():
            r = rates[n]
            # density within rounding of (1 - rate)^L: each level's round() moves at most half a weight
            assert abs(k / sizes[n] - (1 - r) ** level) <= level * 0.5 / sizes[n] + 1e-12
        total = sum(sizes.values())
        assert run["levels"][level]["record"]["density"] == pytest.approx(sum(got.values()) / total)
        assert run["levels"][level]["record"]["kept"] == sum(got.values())
    # the output layer is pruned at its own rate, not the global one
    assert counts(run["levels"][1]["masks"])[out] == sizes[out] - round(out_rate * sizes[out])
    assert counts(run["levels"][1]["masks"])[out] != sizes[out] - round(rate * sizes[out])


@pytest.mark.parametrize("strategy", ["layer_magnitude", "global_magnitude"])
def test_output_rate_zero_leaves_the_output_layer_dense(tmp_path, data, strategy):
    config = tiny_config(strategy=strategy, output_rate=0.0, levels=2, train=tiny_train(iterations=4, eval_every=0))
    path = run_tiny(tmp_path / "o.h5", config, data)
    run = read_run(path)
    table = {t.name: t.pruned for t in run["tensors"]}
    assert table == {"fc_layers.0.weight": True, "fc_layers.1.weight": True, "fc.weight": False}
    for level in (0, 1, 2):
        m = run["levels"][level]["masks"]
        assert m["fc.weight"].all()
        if level:
            assert not m["fc_layers.0.weight"].all()
    # the rate applies to the pruned tensors alone
    k1 = sum(counts(run["levels"][1]["masks"])[n] for n in ("fc_layers.0.weight", "fc_layers.1.weight"))
    k0 = sum(counts(run["levels"][0]["masks"])[n] for n in ("fc_layers.0.weight", "fc_layers.1.weight"))
    assert k1 == k0 - round(0.2 * k0)


def test_layer_rates_patterns_exclude_and_output_rate(tmp_path, conv_data):
    # first matching pattern wins; output_rate overrides the patterns for the output layer; exclude leaves dense
    config = tiny_config(model="lenet5", rate=0.2, output_rate=0.1,
                         layer_rates=(("convs.0.*", 0.5), ("convs.*", 0.1), ("fc*", 0.3)),
                         exclude=("fc_layers.1.*",), levels=2, train=tiny_train(iterations=4, eval_every=0))
    assert config.layer_rates == (("convs.0.*", 0.5), ("convs.*", 0.1), ("fc*", 0.3))
    path = run_tiny(tmp_path / "lr.h5", config, conv_data)
    run = read_run(path)
    table = {t.name: t.pruned for t in run["tensors"]}
    assert table == {"convs.0.weight": True, "convs.1.weight": True, "fc_layers.0.weight": True,
                     "fc_layers.1.weight": False, "fc.weight": True}
    sizes = {t.name: math.prod(t.shape) for t in run["tensors"]}
    rates = {"convs.0.weight": 0.5, "convs.1.weight": 0.1, "fc_layers.0.weight": 0.3, "fc_layers.1.weight": 0.0,
             "fc.weight": 0.1}
    expected = expected_layer_kept(sizes, rates, 2)
    for level in (0, 1, 2):
        assert counts(run["levels"][level]["masks"]) == expected[level], level
    assert run["levels"][2]["masks"]["fc_layers.1.weight"].all()
    with store.open_ticket(path) as t:
        assert "convs.0.* 50%" in t.method and "output 10%" in t.method


def test_a_layer_rate_pattern_matching_nothing_is_refused(tmp_path, data):
    config = tiny_config(layer_rates=(("convs.*", 0.1),))
    with pytest.raises(ConfigError, match=r"'convs\.\*' matches no prunable tensor.*fc_layers\.0\.weight"):
        IMPRun(config, tmp_path / "x.h5", data=data, device="cpu", progress=False)
    assert not (tmp_path / "x.h5").exists()


@pytest.mark.parametrize("overrides,message", [
    (dict(rate=0.0), r"rate must be a number in \(0, 1\)"),
    (dict(rate=1.0), r"rate must be a number in \(0, 1\)"),
    (dict(rate=1.5), r"rate must be a number in \(0, 1\)"),
    (dict(rate=True), r"rate must be a number in \(0, 1\)"),
    (dict(output_rate=1.0), r"output_rate must be in \[0, 1\)"),
    (dict(strategy="global_magnitude", output_rate=0.1), "output_rate applies to layer-wise strategies"),
    (dict(strategy="global_magnitude", layer_rates=(("fc*", 0.1),)), "layer_rates apply to layer-wise"),
    (dict(layer_rates=(("fc*", 1.0),)), r"layer rate for 'fc\*' must be in \[0, 1\)"),
    (dict(strategy="ln_structured"), "needs a norm: l1, l2 or linf"),
    (dict(norm="l2"), "norm is used only by the ln_structured strategy"),
    (dict(controls=("reinit", "bogus")), "unknown control 'bogus'; choose from: reinit, shuffle, random"),
    (dict(controls=("reinit", "reinit")), "controls listed twice"),
    (dict(levels=-1), "levels must be an integer >= 0"),
    (dict(reset="rewind"), "unknown reset mode 'rewind'; choose one of: rewind-init, rewind:K"),
    (dict(reset="rewind:12"), "rewinds to iteration 12, which is not before the end of training"),
    (dict(reset="rewind:2ep", val_size=60000 - 96), "rewinds to iteration 12"),  # 2 epochs of 6 steps
    (dict(retrain_iterations=13), r"retrain_iterations must be in \[1, 12\]"),
    (dict(reset="rewind:4", retrain_iterations=9), r"retrain_iterations must be in \[1, 8\]"),
    (dict(reset="finetune", retrain_iterations=0), "retrain_iterations must be >= 1"),
    (dict(strategy="magnitude"), "unknown pruning strategy 'magnitude'; choose one of: global_magnitude"),
])
def test_bad_run_options_are_refused_with_a_message(overrides, message):
    with pytest.raises(ConfigError, match=message):
        tiny_config(**overrides)


@pytest.mark.parametrize("overrides, message", [
    (dict(model="lenet"), "unknown model 'lenet'; choose one of: conv2"),
    (dict(dataset="svhn"), "unknown dataset 'svhn'; choose one of: mnist"),
])
def test_unknown_registry_names_are_refused_before_anything_is_written(tmp_path, overrides, message):
    path = tmp_path / "x.h5"
    with pytest.raises(ConfigError, match=message):
        IMPRun(tiny_config(**overrides), path, device="cpu", progress=False)
    assert not path.exists()


def test_any_module_and_data_through_the_python_api(tmp_path):
    """A model and a dataset that are in no registry: their names are labels; Linear/Conv weights are pruned."""

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 4, 3)
            self.head = torch.nn.Linear(4 * 26 * 26, 10)

        def forward(self, x):
            return self.head(torch.relu(self.conv(x)).flatten(1))

    def factory(seed: int) -> torch.nn.Module:  # ignores its seed: IMPRun seeds torch before calling it
        return Tiny()

    data = synthetic_data(n_train=64)  # 64 examples, batch 16: 4 steps per epoch
    config = tiny_config(model="my-convnet", dataset="my-data", reset="rewind:1ep", rate=0.5, controls=("reinit",),
                         train=tiny_train(iterations=8, eval_every=4))
    path = IMPRun(config, tmp_path / "mine.h5", model_factory=factory, data=data, device="cpu",
                  progress=False).run()
    with store.open_ticket(path) as t:
        assert [(x.name, x.kind) for x in t.tensors] == [("conv.weight", "conv"), ("head.weight", "linear")]
        assert t.model == "my-convnet" and t.dataset.name == "my-data" and t.levels == [0, 1, 2]
        # rewind:1ep counts epochs of the data given: 64 // 16 = 4 iterations
        assert t.status == "complete"
        assert t.evaluation(1).curve["iteration"][0] == 4
        # the reinit control starts from other initial values than the run, although the factory ignores seeds
        init, fresh = t.weights("init"), t.weights("init", level=1, branch="reinit")
        kept = t.mask(1, "head.weight")
        assert not np.array_equal(init["head.weight"][kept], fresh["head.weight"][kept])
        assert t.level_record(2)["density"] == pytest.approx(0.25, abs=0.01)
    with pytest.raises(ConfigError, match="rewinds to iteration 8, which is not before the end"):
        IMPRun(dataclasses.replace(config, reset="rewind:2ep"), tmp_path / "late.h5", model_factory=factory,
               data=data, device="cpu", progress=False)


def test_finetune_may_retrain_longer_than_the_schedule():
    c = tiny_config(reset="finetune", retrain_iterations=3 * T)
    assert c.finetune_config().iterations == 3 * T


# ------------------------------------------------------------------------------------------- reset modes


RESET_CASES = ["rewind-init", "rewind:4", "rewind:4it", "rewind:1ep", "lr-rewind", "finetune", "reinit", "shuffle"]
#: retraining length R per case (None: the default)
RETRAIN = {"lr-rewind": 8, "finetune": 6}


def test_reset_cases_cover_every_reset_mode():
    modes = {("rewind:K" if parse_reset(c)[0] == "rewind" else parse_reset(c)[0]) for c in RESET_CASES}
    assert modes == set(RESET_MODES)
    units = {parse_reset(c)[2] for c in RESET_CASES if parse_reset(c)[0] == "rewind"}
    assert units == {"it", "ep"}


@pytest.mark.parametrize("name", RESET_MODES.names())
def test_every_reset_mode_entry_parses_and_answers_for_its_mode(name):
    entry = RESET_MODES.get(name)
    assert entry.description and "\n" not in entry.description
    text = name.replace(":K", ":3")  # rewind:K stands for any K
    assert resolve_reset(text)[0] is entry and parse_reset(text)[0] == entry.mode
    config = tiny_config(reset=text, retrain_iterations=5)
    k = config.rewind_iteration()
    assert (k == 3) == (entry.checkpoint is not None)
    start, stop = entry.window(config, k)
    assert stop - start == 5 and config.retrain_window() == (start, stop)
    assert entry.train_config(config) == config.retrain_config()
    assert entry.train_config(config).iterations >= stop


def test_a_reset_mode_names_the_choices_with_the_form_of_k():
    with pytest.raises(ConfigError, match=r"unknown reset mode 'rewind:K'; choose one of: rewind-init, "
                                          r"rewind:K \(K iterations, e.g. rewind:500"):
        parse_reset("rewind:K")


@pytest.mark.parametrize("name", CONTROLS.names())
def test_every_control_entry_keeps_the_per_layer_counts_and_draws_from_its_own_stream(name, data):
    entry = CONTROLS.get(name)
    assert entry.description and "\n" not in entry.description
    streams = [CONTROLS.get(n).stream for n in CONTROLS.names()]
    assert len(set(streams)) == len(streams) and entry.stream in seeds.STREAMS.values()
    model = fresh_model(tiny_config(), data, 0)
    tensors = prunable_tensors(model)
    rng = np.random.default_rng(0)
    masks = {t.name: rng.random(t.shape) < 0.5 for t in tensors}
    new = entry.masks(masks, tensors, np.random.default_rng(1))
    assert list(new) == list(masks) and counts(new) == counts(masks)


@pytest.mark.parametrize("reset", RESET_CASES)
def test_reset_mode(tmp_path, data, spy, reset):
    mode, k, unit = parse_reset(reset)
    # a step schedule, so learning-rate replay is observable; 96 training examples in batches of 16 = 6 steps
    # per epoch, which val_size reproduces for the dataset spec (so '1ep' means one epoch of the real data)
    train = tiny_train(iterations=T, eval_every=2, schedule="step", milestones=(6, 9), gamma=0.5)
    val_size = get_dataset_spec("mnist").train_size - len(data.train[1])
    config = tiny_config(reset=reset, levels=2, train=train, retrain_iterations=RETRAIN.get(reset), val_size=val_size)
    assert config.steps_per_epoch() == steps_per_epoch(len(data.train[1]), train.batch_size) == 6
    path = run_tiny(tmp_path / "r.h5", config, data)
    run = read_run(path)
    assert run["level_list"] == [0, 1, 2] and run["status"] == "complete"
    init = run["init"]
    names = pruned_names(run)
    sizes = {t.name: math.prod(t.shape) for t in run["tensors"]}
    expected = expected_layer_kept(sizes, {n: 0.2 for n in names}, 2)
    assert len(spy.calls) == 3  # one training per level (no controls)

    # level 0: the dense network from theta_0 over the full schedule
    c0 = spy.calls[0]
    assert (c0.start, c0.stop, c0.config) == (0, T, train)
    assert_same_weights(c0.start_weights, init)
    assert all(m.all() for m in c0.masks.values())

    K = None
    if mode == "rewind":
        K = k * 6 if unit == "ep" else k
        assert config.rewind_iteration() == K
        assert "rewind" in run["checkpoints"] and rewind_iteration_attr(path) == K
        with store.open_ticket(path) as t:
            rewind = t.weights("rewind")
        # independently: the weights after K steps of the dense training
        assert_same_weights(rewind, retrain_independently(config, data, init, c0.masks, (0, K), train))
    else:
        assert run["checkpoints"] == ["init"]

    for level in (1, 2):
        rec = run["levels"][level]
        masks, prev = rec["masks"], run["levels"][level - 1]
        assert counts(masks) == expected[level]
        if mode != "shuffle":
            assert all(is_subset(masks[n], prev["masks"][n]) for n in masks), "masks must be nested"
        call = spy.calls[level]
        assert_same_masks(call.masks, masks)
        # the starting weights and the schedule window each mode prescribes
        if mode in ("rewind-init", "shuffle"):
            start, window, cfg = masked(init, masks), (0, T), train
        elif mode == "rewind":
            start, window, cfg = masked(rewind, masks), (K, T), train
        elif mode == "lr-rewind":
            start, window, cfg = masked(prev["weights"], masks), (T - 8, T), train
        elif mode == "finetune":
            final = lr_at(train, T - 1)
            assert final == pytest.approx(2e-3 * 0.25)
            cfg = TrainConfig(**{**train.to_dict(), "lr": final, "schedule": "constant", "milestones": (),
                                 "warmup_iterations": 0, "iterations": 6, "betas": tuple(train.betas)})
            start, window = masked(prev["weights"], masks), (0, 6)
        else:  # reinit: fresh initial values from the level's own seed stream
            fresh = {k2: v.detach().numpy() for k2, v in
                     fresh_model(config, data, derive_seed(config.seed, seeds.REINIT, level)).state_dict().items()}
            start, window, cfg = masked(fresh, masks), (0, T), train
            for n in names:
                both = masks[n]
                assert not np.array_equal(start[n][both], init[n][both]), "reinit must not reuse theta_0"
        assert (call.start, call.stop) == window
        assert call.config == cfg
        assert_same_weights(call.start_weights, start)
        # independently re-train from that start: the stored level is exactly that network
        assert_same_weights(rec["weights"], retrain_independently(config, data, start, masks, window, cfg))
        # the curve: starts at the window's start, lr column is the schedule's learning rate
        curve = rec["eval"].curve
        assert curve["iteration"][0] == window[0] and curve["iteration"][-1] == window[1]
        assert rec["eval"].iterations == window[1]
        np.testing.assert_allclose(curve["lr"], [lr_at(cfg, int(i)) for i in curve["iteration"]], rtol=0, atol=0)
        if mode == "lr-rewind":
            np.testing.assert_array_equal(curve["lr"], [lr_at(train, int(i)) for i in curve["iteration"]])
            assert curve["lr"][0] == 2e-3 and curve["lr"][-1] == 2e-3 * 0.25
        if mode == "finetune":
            assert np.all(curve["lr"] == lr_at(train, T - 1))
        if mode == "rewind":
            assert curve["iteration"][0] == K and np.all(curve["iteration"] >= K)

    if mode == "shuffle":
        nested = all(is_subset(run["levels"][2]["masks"][n], run["levels"][1]["masks"][n]) for n in names) and all(
            is_subset(run["levels"][1]["masks"][n], run["levels"][0]["masks"][n]) for n in names)
        assert not nested, "the shuffle reset permutes each layer's mask, so its masks are not nested"
    if mode == "reinit":
        a, b = spy.calls[1].start_weights, spy.calls[2].start_weights
        both = run["levels"][2]["masks"]["fc_layers.0.weight"]
        assert not np.array_equal(a["fc_layers.0.weight"][both], b["fc_layers.0.weight"][both]), \
            "every level draws fresh initial values"


def test_reinit_level_one_shares_the_mask_but_not_the_start_of_rewind_init(tmp_path, data):
    cfg = dict(levels=1, train=tiny_train(iterations=6, eval_every=3))
    a = read_run(run_tiny(tmp_path / "a.h5", tiny_config(reset="rewind-init", **cfg), data))
    b = read_run(run_tiny(tmp_path / "b.h5", tiny_config(reset="reinit", **cfg), data))
    assert_same_weights(a["levels"][0]["weights"], b["levels"][0]["weights"])
    assert_same_masks(a["levels"][1]["masks"], b["levels"][1]["masks"])
    w_a, w_b = a["levels"][1]["weights"]["fc_layers.0.weight"], b["levels"][1]["weights"]["fc_layers.0.weight"]
    assert not np.array_equal(w_a, w_b)


# ----------------------------------------------------------------------------------- trained weights, controls


def test_trained_weights_are_exactly_zero_where_pruned(tmp_path, data, spy):
    config = tiny_config(levels=2, controls=("random",), train=tiny_train(iterations=6, eval_every=3))
    path = run_tiny(tmp_path / "z.h5", config, data)
    run = read_run(path)
    assert len(spy.calls) == 1 + 2 * 2
    for call in spy.calls:  # what training returned, before the store's kept-values layout
        for n, m in call.masks.items():
            assert np.all(call.end_weights[n][~m] == 0), n
            assert np.count_nonzero(call.end_weights[n][m]) > 0.99 * m.sum(), n
    for level in (1, 2):
        rec = run["levels"][level]
        chain_call = spy.calls[1 + 2 * (level - 1)]
        assert_same_weights(rec["weights"], chain_call.end_weights)
        for n, m in rec["masks"].items():
            assert np.all(rec["weights"][n][~m] == 0)
        # unmasked tensors (biases) are stored in full
        assert np.count_nonzero(rec["weights"]["fc.bias"]) > 0
        br = rec["branches"]["random"]
        for n, m in br["masks"].items():
            assert np.all(br["weights"][n][~m] == 0) and np.all(br["init"][n][~m] == 0)


def test_controls_are_stored_as_branches(tmp_path, data, spy):
    train = tiny_train(iterations=T, eval_every=2)
    config = tiny_config(levels=2, reset="rewind:4", output_rate=0.0, controls=tuple(CONTROLS), train=train)
    assert set(config.controls) == {"reinit", "shuffle", "random"}
    path = run_tiny(tmp_path / "c.h5", config, data)
    run = read_run(path)
    with store.open_ticket(path) as t:
        rewind = t.weights("rewind")
    assert run["levels"][0]["branches"] == {}
    assert len(spy.calls) == 1 + 2 * (1 + 3)
    for level in (1, 2):
        rec = run["levels"][level]
        chain = rec["masks"]
        assert sorted(rec["branches"]) == sorted(CONTROLS)
        chain_start = masked(rewind, chain)
        for i, name in enumerate(config.controls):
            br = rec["branches"][name]
            assert br["info"]["kind"] == name
            assert counts(br["masks"]) == counts(chain), f"{name}: per-layer kept counts differ from the level's"
            assert br["masks"]["fc.weight"].all()  # not pruned, so never shuffled
            if name == "reinit":
                assert_same_masks(br["masks"], chain)
            else:
                assert any(not np.array_equal(br["masks"][n], chain[n]) for n in chain), name
            assert br["eval"] is not None and br["eval"].iterations == T
            assert br["eval"].curve["iteration"][0] == 4  # same iterations as the chain's retraining
            call = spy.calls[1 + 4 * (level - 1) + 1 + i]
            assert (call.start, call.stop) == (4, T)
            assert_same_masks(call.masks, br["masks"])
            assert_same_weights(call.start_weights, br["init"])
            assert_same_weights(call.end_weights, br["weights"])
            if name == "shuffle":  # the chain's starting weights on the shuffled mask
                assert_same_weights(br["init"], masked(rewind, br["masks"]))
            else:  # fresh initial values
                n = "fc_layers.0.weight"
                both = br["masks"][n] & chain[n]
                assert not np.array_equal(br["init"][n][both], chain_start[n][both]), name
        assert not np.array_equal(rec["branches"]["reinit"]["init"]["fc_layers.0.weight"],
                                  rec["branches"]["random"]["init"]["fc_layers.0.weight"])
    # the controls of both levels differ from each other
    assert not np.array_equal(run["levels"][1]["branches"]["random"]["masks"]["fc_layers.1.weight"],
                              run["levels"][2]["branches"]["random"]["masks"]["fc_layers.1.weight"])


# ---------------------------------------------------------------------------------------------- start mask


def test_start_mask_becomes_level_zero(tmp_path, data, spy):
    cfg = dict(train=tiny_train(iterations=4, eval_every=0))
    a = read_run(run_tiny(tmp_path / "a.h5", tiny_config(levels=2, **cfg), data))
    start = a["levels"][2]["masks"]
    n_calls = len(spy.calls)
    path = run_tiny(tmp_path / "b.h5", tiny_config(levels=1, **cfg), data, start_mask=start)
    b = read_run(path)
    assert_same_masks(b["levels"][0]["masks"], start)
    c0 = spy.calls[n_calls]
    assert_same_masks(c0.masks, start)
    assert_same_weights(c0.start_weights, masked(b["init"], start))
    k0 = counts(start)
    assert counts(b["levels"][1]["masks"]) == {n: k - round(0.2 * k) for n, k in k0.items()}
    assert all(is_subset(b["levels"][1]["masks"][n], start[n]) for n in start)
    # given through the API (no source named), the start is recorded all the same: never taken for a dense start
    with store.open_ticket(path) as t:
        assert t.config["start"] == {"mask": "a given mask", "init": "fresh"}
        assert t.method.endswith(", from the mask of a given mask with fresh initial weights")


def test_a_refused_start_mask_leaves_no_file(tmp_path, data):
    bad = {"fc_layers.0.weight": np.ones((300, 784), bool)}
    with pytest.raises(ConfigError):
        run_tiny(tmp_path / "b.h5", tiny_config(levels=0), data, start_mask=bad)
    assert not (tmp_path / "b.h5").exists()


def test_a_start_mask_of_another_model_is_refused(tmp_path, data):
    bad = {"fc_layers.0.weight": np.ones((300, 784), bool)}
    with pytest.raises(ConfigError, match="no mask given for tensor 'fc_layers.1.weight'"):
        run_tiny(tmp_path / "b.h5", tiny_config(levels=0), data, start_mask=bad)
    conv = {t.name: np.ones(t.shape, bool) for t in prunable_tensors(create_model("lenet5"))}
    with pytest.raises(ConfigError, match="mask names a tensor the model does not have: 'convs.0.weight'"):
        run_tiny(tmp_path / "c.h5", tiny_config(levels=0), data, start_mask=conv)


# ------------------------------------------------------------------------------------------------- determinism


def test_same_seed_same_run_bit_for_bit_and_other_seed_differs(tmp_path, data):
    cfg = dict(levels=2, reset="reinit", controls=("random", "shuffle"), train=tiny_train(iterations=6, eval_every=3))
    torch.manual_seed(1)  # the global generator's state must not matter
    a = read_run(run_tiny(tmp_path / "a.h5", tiny_config(seed=3, **cfg), data))
    torch.manual_seed(999)
    np.random.seed(5)
    torch.rand(17)
    b = read_run(run_tiny(tmp_path / "b.h5", tiny_config(seed=3, **cfg), data))
    assert_same_run(a, b)
    c = read_run(run_tiny(tmp_path / "c.h5", tiny_config(seed=4, **cfg), data))
    for level in (1, 2):
        ma, mc = a["levels"][level]["masks"], c["levels"][level]["masks"]
        assert any(not np.array_equal(ma[n], mc[n]) for n in ma), f"seed 3 and 4 gave the same level-{level} mask"
        assert not np.array_equal(a["levels"][level]["branches"]["random"]["masks"]["fc_layers.0.weight"],
                                  c["levels"][level]["branches"]["random"]["masks"]["fc_layers.0.weight"])
    assert not np.array_equal(a["init"]["fc_layers.0.weight"], c["init"]["fc_layers.0.weight"])
    with store.open_ticket(tmp_path / "a.h5") as t:
        assert t.seed == 3
        assert t.config["seeds"]["init"] == derive_seed(3, seeds.INIT, 0)


# ------------------------------------------------------------------------------------------------------ resume


def test_resume_after_ctrl_c_mid_level_matches_an_uninterrupted_run(tmp_path, data, monkeypatch):
    config = tiny_config(levels=3, controls=("reinit",), train=tiny_train(iterations=6, eval_every=3))
    reference = read_run(run_tiny(tmp_path / "ref.h5", config, data))
    path = tmp_path / "run.h5"
    # calls: 0 = level 0, 1 = level 1, 2 = level 1's reinit control, 3 = level 2, ...
    for interrupt_at, levels_left in [(2, [0, 1]), (3, [0, 1])]:
        if path.exists():
            path.unlink()
        spy = TrainSpy(real_train, interrupt_at=interrupt_at)
        monkeypatch.setattr(imp, "train", spy)
        with pytest.raises(KeyboardInterrupt):
            run_tiny(path, config, data)
        with store.open_ticket(path) as t:
            assert t.levels == levels_left and t.status == "in_progress"
            assert t.branches(1) == ([] if interrupt_at == 2 else ["reinit"])
        assert not list(tmp_path.glob(".run.h5.tmp-*"))
        monkeypatch.setattr(imp, "train", real_train)
        run_tiny(path, config, data, resume=True)
        resumed = read_run(path)
        assert resumed["status"] == "complete"
        assert_same_run(resumed, reference)


def test_resume_of_a_complete_run_trains_nothing(tmp_path, data, spy):
    config = tiny_config(levels=1, train=tiny_train(iterations=4, eval_every=0))
    path = run_tiny(tmp_path / "r.h5", config, data)
    before = read_run(path)
    n = len(spy.calls)
    run_tiny(path, config, data, resume=True)
    assert len(spy.calls) == n
    assert_same_run(read_run(path), before)


def test_resume_with_another_setting_is_refused_naming_it(tmp_path, data):
    config = tiny_config(levels=2, train=tiny_train(iterations=4, eval_every=0))
    path = run_tiny(tmp_path / "r.h5", config, data)
    before = path.read_bytes()
    for changed, pattern in [(dict(rate=0.3), r"rate: 0\.2 in the file, 0\.3 now"),
                             (dict(strategy="global_magnitude"), "strategy: 'layer_magnitude' in the file"),
                             (dict(seed=1), "seed: 0 in the file, 1 now"),
                             (dict(levels=1), "levels: 2 in the file, 1 now")]:  # more levels extends the run
        other = tiny_config(**{**dict(levels=2, train=config.train), **changed})
        with pytest.raises(ConfigError, match=pattern) as err:
            run_tiny(path, other, data, resume=True)
        assert "--overwrite" in str(err.value)
    assert path.read_bytes() == before
    # data_dir is not part of the run's identity
    run_tiny(path, tiny_config(levels=2, train=config.train, data_dir=str(tmp_path)), data, resume=True)


def test_resume_with_more_levels_extends_a_finished_run(tmp_path, data):
    train = tiny_train(iterations=4, eval_every=0)
    short = run_tiny(tmp_path / "short.h5", tiny_config(levels=1, train=train, controls=("reinit",)), data)
    assert store.open_ticket(short).status == "complete"
    run_tiny(short, tiny_config(levels=3, train=train, controls=("reinit",)), data, resume=True)
    reference = run_tiny(tmp_path / "long.h5", tiny_config(levels=3, train=train, controls=("reinit",)), data)
    extended, uninterrupted = read_run(short), read_run(reference)
    assert extended["level_list"] == [0, 1, 2, 3] and extended["status"] == "complete"
    assert_same_run(extended, uninterrupted)
    assert store.open_ticket(short).config["levels"] == 3  # the file records what it now holds


def test_resume_with_another_training_setting_names_that_setting(tmp_path, data):
    config = tiny_config(levels=0, train=tiny_train(iterations=4, eval_every=0))
    path = run_tiny(tmp_path / "r.h5", config, data)
    other = tiny_config(levels=0, train=tiny_train(iterations=5, eval_every=0))
    with pytest.raises(ConfigError) as err:
        run_tiny(path, other, data, resume=True)
    message = str(err.value)
    assert "iterations" in message and "4" in message and "5" in message
    assert "betas" not in message, f"the message should name only the differing setting: {message}"


def test_existing_file_needs_resume_or_overwrite(tmp_path, data):
    config = tiny_config(levels=0, train=tiny_train(iterations=4, eval_every=0))
    path = run_tiny(tmp_path / "r.h5", config, data)
    with pytest.raises(ConfigError, match="already exists; use --resume to continue it or --overwrite"):
        run_tiny(path, config, data)
    other = tiny_config(levels=1, seed=2, train=tiny_train(iterations=4, eval_every=0))
    run_tiny(path, other, data, overwrite=True)
    with store.open_ticket(path) as t:
        assert t.levels == [0, 1] and t.seed == 2


KILLED_RUN = textwrap.dedent(
    """
    import sys
    import torch
    torch.set_num_threads(1)  # as the test process, so that the runs compare bit for bit
    sys.path.insert(0, {tests!r})
    from imp_helpers import run_tiny, synthetic_data, tiny_config, tiny_train
    config = tiny_config(levels={levels}, controls=("shuffle",), train=tiny_train(iterations={iterations}, eval_every=50))
    data = synthetic_data(n_train=256, seed=7)
    run_tiny({path!r}, config, data)
    print("finished without being killed")
    """
)


def test_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path):
    levels, iterations = 3, 150
    path = tmp_path / "killed.h5"
    script = KILLED_RUN.format(tests=str(TESTS_DIR), levels=levels, iterations=iterations, path=str(path))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if path.exists():
                try:
                    with store.open_ticket(path) as t:
                        level_one_done = 1 in t.levels and t.branches(1) == ["shuffle"]
                except Exception:  # noqa: BLE001 - a reader racing the first commit
                    level_one_done = False
                if level_one_done:  # level 1 and its control were written by the process we kill
                    break
            time.sleep(0.02)
        assert proc.poll() is None, f"the run ended before level 1 was seen: {proc.communicate()}"
        time.sleep(0.05)  # into level 2's training
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    with store.open_ticket(path) as t:
        done = t.levels
        assert t.status == "in_progress"
    assert done[:2] == [0, 1] and done == list(range(len(done))) and len(done) <= levels

    config = tiny_config(levels=levels, controls=("shuffle",), train=tiny_train(iterations=iterations, eval_every=50))
    data = synthetic_data(n_train=256, seed=7)
    run_tiny(path, config, data, resume=True)
    resumed = read_run(path)
    reference = read_run(run_tiny(tmp_path / "reference.h5", config, data))
    assert resumed["status"] == "complete" and resumed["level_list"] == list(range(levels + 1))
    assert_same_run(resumed, reference)
    assert not list(tmp_path.glob(".killed.h5.tmp-*"))


# ------------------------------------------------------------------------------------------------------ models


@pytest.mark.parametrize("name", [spec.name for spec in list_models()])
def test_every_model_runs_one_level(tmp_path, name):
    spec = get_model_spec(name)
    dataset = "cifar10" if spec.input_shape[0] == 3 else "mnist"
    d = synthetic_data(spec.input_shape, n_train=8, n_val=None, n_test=4, seed=1)
    config = tiny_config(model=name, dataset=dataset, levels=1, rate=0.2,
                         train=tiny_train(iterations=2, batch_size=4, eval_every=0))
    path = run_tiny(tmp_path / f"{name}.h5", config, d)
    run = read_run(path)
    assert run["level_list"] == [0, 1]
    model = create_model(name, num_classes=10, input_shape=spec.input_shape)
    table = prunable_tensors(model)
    assert [(t.name, t.shape) for t in run["tensors"]] == [(t.name, t.shape) for t in table]
    assert output_layer(model) in {t.name for t in table}
    sizes = {t.name: t.size for t in table}
    assert counts(run["levels"][1]["masks"]) == expected_layer_kept(sizes, {n: 0.2 for n in sizes}, 1)[1]
    assert run["levels"][1]["eval"].predictions.shape == (4,)
    with store.open_ticket(path) as t:
        assert t.model == name


# ----------------------------------------------------------------------------------------------------- presets


@pytest.mark.parametrize("name", [p.name for p in list_presets()])
def test_every_preset_resolves_to_its_options(name):
    preset = {p.name: p for p in list_presets()}[name]
    opts = dict(preset.options)
    config = build_config(name)
    spec = get_dataset_spec(opts["dataset"])
    spe = (spec.train_size - opts.get("val_size", 5000)) // opts["batch_size"]
    for key, value in opts.items():
        if key == "epochs":
            assert config.train.iterations == round(value * spe)
        elif key == "milestones":
            assert config.train.milestones == tuple(int(str(m)[:-2]) * spe if str(m).endswith("ep") else int(m)
                                                    for m in value)
        elif key in TRAIN_KEYS:
            assert getattr(config.train, key) == value, key
        elif key == "layer_rates":
            assert config.layer_rates == tuple((p, float(r)) for p, r in value)
        elif isinstance(value, list):
            assert getattr(config, key) == tuple(value), key
        else:
            assert getattr(config, key) == value, key
    assert build_config(name, seed=7).seed == 7


@pytest.mark.parametrize("name", [p.name for p in list_presets()])
def test_every_preset_runs_at_tiny_size(tmp_path, name):
    preset = {p.name: p for p in list_presets()}[name]
    overrides = dict(iterations=4, levels=1, batch_size=4, eval_every=2)
    if "milestones" in preset.options:
        overrides["milestones"] = [2]  # scaled into the 4-iteration schedule
    config = build_config(name, **overrides)
    assert config.train.iterations == 4 and config.levels == 1
    spec = get_dataset_spec(config.dataset)
    d = synthetic_data(spec.input_shape, spec.num_classes, n_train=8, n_val=4, n_test=4, seed=2)
    path = run_tiny(tmp_path / f"{name}.h5", config, d)
    run = read_run(path)
    assert run["level_list"] == [0, 1] and run["status"] == "complete"
    assert sorted(run["levels"][1]["branches"]) == sorted(config.controls)
    with store.open_ticket(path) as t:
        assert t.method == config.method()
        stored = t.config
    assert RunConfig.from_dict({k: v for k, v in stored.items() if k != "seeds"}) == config
    if config.output_rate == 0:
        assert all(run["levels"][1]["masks"]["fc.weight"].ravel())
    if config.augment:
        assert config.dataset == "cifar10"


def test_build_config_needs_a_registry_dataset_only_to_count_epochs():
    config = build_config("quickstart", model="my-net", dataset="my-data")  # lengths in iterations: labels only
    assert (config.model, config.dataset, config.train.iterations) == ("my-net", "my-data", 2500)
    with pytest.raises(ConfigError, match="unknown dataset 'my-data'.*Lengths in epochs need"):
        build_config("renda-resnet20", dataset="my-data")  # 182 epochs, milestones in epochs
