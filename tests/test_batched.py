"""Tests of ticketlab.batched: a batched group of K chains equals K single-chain ``train`` calls of the same specs."""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest
import torch
from torch import nn

import ticketlab.batched as B
from ticketlab.batched import ChainSpec, train_chains
from ticketlab.batched.data import ChainData
from ticketlab.errors import ConfigError
from ticketlab.training import (
    OPTIMIZER_REGISTRY,
    TrainConfig,
    batch_indices,
    list_optimizers,
    list_schedules,
    train,
)

RTOL = 1e-5  # weights after N steps, relative (norm of the difference over norm of the single path's tensor)
ACC_TOL = 0.001  # accuracies: 0.1 point


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models run fastest, and most reproducibly on a shared machine, on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ------------------------------------------------------------------------------------------------- helpers


def make_mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3))


def make_convnet(seed: int = 0) -> nn.Module:
    """Conv + batch norm + max-pool + linear: stacked buffers, grouped convolutions, augmentation. (No conv bias:
    before batch norm its gradient is 0 up to rounding, which Adam would blow up into full-size steps.)"""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(4 * 4 * 4, 3))


def blobs(sizes: tuple[int, int, int], d: int = 8, classes: int = 3, seed: int = 0,
          shape: tuple[int, ...] | None = None):
    """Train / val / test sets of well-separated Gaussian clusters (one set of centres). The evaluation sets hold
    over 1,000 examples, so that one prediction flipped by rounding moves an accuracy by less than 0.1 point."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(classes, d, generator=g) * 4
    n = sum(sizes)
    y = torch.randint(0, classes, (n,), generator=g)
    x = centers[y] + torch.randn(n, d, generator=g)
    if shape is not None:
        x = x.reshape(n, *shape)
    a, b = sizes[0], sizes[0] + sizes[1]
    return (x[:a], y[:a]), (x[a:b], y[a:b]), (x[b:], y[b:])


TRAIN, VAL, TEST = blobs((600, 1200, 1200))
IMAGES = blobs((300, 1100, 1100), d=3 * 8 * 8, shape=(3, 8, 8), seed=1)


def random_masks(model: nn.Module, density: float, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {n: rng.random(tuple(p.shape)) < density for n, p in model.named_parameters() if n.endswith("weight")
            and p.dim() > 1}


def spec_for(factory, k: int, config: TrainConfig, start: int = 0, stop: int | None = None, **kwargs) -> ChainSpec:
    model = factory(k)
    return ChainSpec(weights=model.state_dict(), config=config, seed=100 + k, masks=random_masks(model, 0.6, k),
                     start_iteration=start, stop_iteration=stop, **kwargs)


def run_single(factory, spec: ChainSpec, data=TRAIN, val=VAL, test=TEST, **kwargs):
    model = factory(0)
    model.load_state_dict(spec.weights)
    result = train(model, spec.masks, data, spec.config, start_iteration=spec.start_iteration,
                   stop_iteration=spec.stop_iteration, seed=spec.seed, val=val, test=test, state=spec.state,
                   progress=False, **kwargs)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, result


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return float((a - b).norm() / max(float(b.norm()), 1e-12))


def assert_chain_matches(batched: B.ChainResult, weights: dict, single, continued: bool = False) -> None:
    """``batched`` equals the single path's ``weights`` and ``single`` result (``continued``: one of them is the
    continuation of a cut run, so only its stop and run start match)."""
    for name, value in weights.items():
        if value.is_floating_point():
            assert rel_diff(batched.weights[name], value) <= RTOL, name
        else:
            assert torch.equal(batched.weights[name], value), name
    got = batched.result
    np.testing.assert_array_equal(got.curve["iteration"], single.curve["iteration"])
    np.testing.assert_allclose(got.curve["lr"], single.curve["lr"], rtol=1e-12)
    for column in ("val_loss", "test_loss", "train_loss"):
        np.testing.assert_allclose(got.curve[column], single.curve[column], rtol=1e-4, atol=1e-6)
    for column in ("val_accuracy", "test_accuracy"):
        np.testing.assert_allclose(got.curve[column], single.curve[column], atol=ACC_TOL)
    assert got.early_stop_iteration == single.early_stop_iteration
    if single.test_predictions is not None:
        assert abs(got.test_accuracy - single.test_accuracy) <= ACC_TOL
        mine, theirs = got.to_evaluation(), single.to_evaluation()
        assert mine.confusion.sum() == theirs.confusion.sum() and mine.iterations == theirs.iterations
        assert np.mean(mine.predictions != theirs.predictions) <= ACC_TOL
    assert (got.stop_iteration, got.run_start_iteration) == (single.stop_iteration, single.run_start_iteration)
    assert continued or got.start_iteration == single.start_iteration
    s, t = got.state, single.state
    assert (s.iteration, s.seed, s.config, s.window_steps, s.run_start) == (
        t.iteration, t.seed, t.config, t.window_steps, t.run_start)
    assert s.window_loss_sum == pytest.approx(t.window_loss_sum, rel=1e-5, abs=1e-9)
    assert torch.equal(s.rng["cpu"], t.rng["cpu"])
    assert_optimizer_states_close(s.optimizer, t.optimizer)


def _close(x, y) -> bool:
    """Equal, with floats compared within 1e-6 relative (tuples and lists element by element); newer pytest's
    approx refuses nested values such as Adam's ``betas``."""
    if isinstance(x, (tuple, list)) and isinstance(y, (tuple, list)):
        return type(x) is type(y) and len(x) == len(y) and all(_close(p, q) for p, q in zip(x, y))
    if isinstance(x, float) or isinstance(y, float):
        return not isinstance(x, bool) and not isinstance(y, bool) and x == pytest.approx(y)
    return x == y


def assert_optimizer_states_close(a: dict, b: dict) -> None:
    assert [sorted(g) for g in a["param_groups"]] == [sorted(g) for g in b["param_groups"]]
    for ga, gb in zip(a["param_groups"], b["param_groups"]):
        for key in gb:  # numbers within float tolerance, everything else (params, flags, betas' arity) exactly
            assert _close(ga[key], gb[key]), (key, ga[key], gb[key])
    assert sorted(a["state"]) == sorted(b["state"])
    for i in b["state"]:
        assert sorted(a["state"][i]) == sorted(b["state"][i])
        for key, value in b["state"][i].items():
            if key == "step":
                assert float(a["state"][i][key]) == float(value)
            else:
                assert rel_diff(a["state"][i][key], value.cpu()) <= 1e-4, (i, key)


def optimizer_cases() -> list[tuple[str, dict]]:
    """Every registered optimizer, plus the variants of its options."""
    cases = []
    for name in list_optimizers():
        if getattr(OPTIMIZER_REGISTRY.get(name), "uses_momentum", False):
            cases += [(name, dict(lr=0.05)), (name, dict(lr=0.05, momentum=0.9, weight_decay=1e-3)),
                      (name, dict(lr=0.05, momentum=0.9, nesterov=True))]
        else:
            cases += [(name, dict(lr=1e-2)), (name, dict(lr=1e-2, weight_decay=0.05, betas=(0.8, 0.99)))]
    return cases


# ------------------------------------------------------------------------------------------------- registries


def test_every_training_optimizer_has_a_stacked_counterpart():
    assert sorted(B.STACKED_OPTIMIZERS.names()) == sorted(OPTIMIZER_REGISTRY.names())
    assert set(B.PRECISIONS) == {"float32", "tf32", "bf16"}


# ------------------------------------------------------------------------------------------------- equality


@pytest.mark.parametrize("impl", ["fused", "tensor"])
@pytest.mark.parametrize("optimizer, options", optimizer_cases())
def test_group_equals_single_chains_for_every_optimizer(optimizer, options, impl):
    base = TrainConfig(optimizer=optimizer, batch_size=20, iterations=24, eval_every=8, **options)
    # per-chain learning rates: one scaled, one with warm-up and decay
    configs = [base, dataclasses.replace(base, lr=base.lr * 0.5),
               dataclasses.replace(base, warmup_iterations=5, schedule="cosine")]
    specs = [spec_for(make_mlp, k, c) for k, c in enumerate(configs)]
    results = train_chains(make_mlp(0), specs, TRAIN, val=VAL, test=TEST, progress=False, optimizer_impl=impl)
    assert [r.engine["optimizer_impl"] for r in results] == [impl] * 3
    for spec, got in zip(specs, results):
        assert_chain_matches(got, *run_single(make_mlp, spec))


def _reset_chains(config: TrainConfig, retrain: int) -> list[tuple[str, TrainConfig, tuple[int, int]]]:
    """(reset mode, its retraining config, its window) for every registered reset mode."""
    from ticketlab.lottery import RESET_MODES, RunConfig

    out = []
    for name in RESET_MODES.names():
        reset = name.replace(":K", ":7")
        run = RunConfig(model="mlp", dataset="blobs", reset=reset, train=config, retrain_iterations=retrain)
        out.append((reset, run.retrain_config(), run.retrain_window(steps_per_epoch=18)))
    return out


def test_every_reset_mode_and_control_trains_in_one_group():
    from ticketlab.lottery import CONTROLS
    from ticketlab.models import prunable_tensors

    config = TrainConfig(optimizer="sgd", lr=0.05, momentum=0.9, batch_size=20, iterations=30, eval_every=5,
                         schedule="step", milestones=(12, 24), gamma=0.5, warmup_iterations=3)
    resets = _reset_chains(config, retrain=12)
    assert {w[1] - w[0] for _, _, w in resets} == {12}
    specs = [spec_for(make_mlp, k, c, *window, name=reset) for k, (reset, c, window) in enumerate(resets)]
    tensors = prunable_tensors(make_mlp(0))
    chain = specs[0]
    for j, (name, control) in enumerate(CONTROLS.items()):
        rng = np.random.default_rng(j)
        masks = control.masks(chain.masks, tensors, rng)
        weights = control.start_weights(chain.weights, lambda s: make_mlp(s % 1000).state_dict(), 50 + j)
        specs.append(dataclasses.replace(chain, masks=masks, weights=weights, seed=200 + j, name=name))
    results = train_chains(make_mlp(0), specs, TRAIN, val=VAL, test=TEST, progress=False)
    windows = {(s.start_iteration, s.stop) for s in specs}
    assert len(windows) >= 3  # rewind-init, rewind:K, lr-rewind really run different iterations
    for spec, got in zip(specs, results):
        assert_chain_matches(got, *run_single(make_mlp, spec))


@pytest.mark.parametrize("schedule", list_schedules())
def test_every_schedule_with_different_windows(schedule):
    options = dict(milestones=(10,)) if schedule == "step" else {}
    config = TrainConfig(optimizer="adam", lr=5e-3, batch_size=20, iterations=40, eval_every=7, schedule=schedule,
                         **options)
    specs = [spec_for(make_mlp, 0, config, 0, 15), spec_for(make_mlp, 1, config, 25, 40)]
    results = train_chains(make_mlp, specs, TRAIN, val=VAL, progress=False)
    for spec, got in zip(specs, results):
        assert_chain_matches(got, *run_single(make_mlp, spec, test=None))


def test_conv_batchnorm_and_augmentation_match_the_single_path():
    from ticketlab.datasets import augment_cifar

    augment = functools.partial(augment_cifar, padding=1, fill=0.5)
    config = TrainConfig(optimizer="adam", lr=2e-3, batch_size=16, iterations=8, eval_every=4)
    specs = [spec_for(make_convnet, k, config) for k in range(3)]
    train_set, val, test = IMAGES
    results = train_chains(make_convnet(0), specs, train_set, val=val, test=test, augment=augment, progress=False)
    for spec, got in zip(specs, results):
        weights, single = run_single(make_convnet, spec, train_set, val, test, augment=augment)
        assert_chain_matches(got, weights, single)
        assert int(got.weights["1.num_batches_tracked"]) == 8


# ------------------------------------------------------------------------------------------------- data order, masks


def test_each_chain_draws_the_single_paths_batches():
    n, bs = 100, 7  # 14 steps per epoch
    data = ChainData(torch.zeros(n, 2), torch.zeros(n, dtype=torch.int64), seeds=[1, 2, 1], starts=[0, 0, 9],
                     batch_size=bs, device=torch.device("cpu"))
    loads = data.epoch_loads(20)
    seen = {k: [] for k in range(3)}
    for s in range(20):
        for k in loads.get(s, []):
            data.load_epoch(k, s)
        idx = data.indices()
        for k, (seed, start) in enumerate(zip(data.seeds, data.starts)):
            assert torch.equal(idx[k], batch_indices(seed, start + s, n, bs)), (k, s)
            seen[k].append(idx[k].clone())
        data.advance()
    assert not torch.equal(torch.stack(seen[0]), torch.stack(seen[1]))  # different seeds, different orders


def test_masks_stay_applied_and_optimizer_state_stays_zero():
    config = TrainConfig(optimizer="adam", lr=1e-2, batch_size=20, iterations=15, weight_decay=0.1)
    specs = [spec_for(make_mlp, k, config) for k in range(2)]
    for impl in ("fused", "tensor"):
        results = train_chains(make_mlp(0), specs, TRAIN, progress=False, optimizer_impl=impl)
        for spec, got in zip(specs, results):
            names = [n for n, _ in make_mlp(0).named_parameters()]
            for name, mask in spec.masks.items():
                pruned = torch.as_tensor(~mask)
                assert torch.all(got.weights[name][pruned] == 0)
                assert torch.any(got.weights[name][~pruned] != spec.weights[name][~pruned])
                entry = got.state.optimizer["state"][names.index(name)]
                assert torch.all(entry["exp_avg"][pruned] == 0) and torch.all(entry["exp_avg_sq"][pruned] == 0)


def test_level_one_masks_equal_after_pruning_with_clear_margins():
    from ticketlab.pruning import prune

    def margins(seed: int) -> nn.Module:
        """Weights with well-separated magnitudes, so that a short training cannot reorder them."""
        model = make_mlp(seed)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in model.parameters():
                mags = torch.linspace(0.05, 1.0, p.numel())[torch.randperm(p.numel(), generator=g)]
                signs = torch.randint(0, 2, (p.numel(),), generator=g) * 2 - 1
                p.copy_((mags * signs).view_as(p))
        return model

    config = TrainConfig(optimizer="adam", lr=1e-4, batch_size=20, iterations=6)
    specs = []
    for k in range(3):
        model = margins(k)
        masks = {n: np.ones(tuple(p.shape), bool) for n, p in model.named_parameters() if n.endswith("weight")}
        specs.append(ChainSpec(weights=model.state_dict(), config=config, seed=k, masks=masks))
    results = train_chains(make_mlp(0), specs, TRAIN, progress=False)
    for spec, got in zip(specs, results):
        weights, _ = run_single(make_mlp, spec, val=None, test=None)
        level1 = prune("layer_magnitude", {n: got.weights[n] for n in spec.masks}, spec.masks, 0.3)
        reference = prune("layer_magnitude", {n: weights[n] for n in spec.masks}, spec.masks, 0.3)
        for name in reference:
            np.testing.assert_array_equal(level1[name], reference[name])


# ------------------------------------------------------------------------------------------------- resume


def _assert_identical(a: list[B.ChainResult], b: list[B.ChainResult]) -> None:
    for x, y in zip(a, b):
        for name in y.weights:
            assert torch.equal(x.weights[name], y.weights[name]), name
        for column, values in y.curve.items():
            np.testing.assert_array_equal(x.curve[column], values)
        assert x.result.early_stop_iteration == y.result.early_stop_iteration
        np.testing.assert_array_equal(x.result.test_predictions, y.result.test_predictions)
        assert x.state.window_loss_sum == y.state.window_loss_sum
        assert sorted(x.snapshots) == sorted(y.snapshots)
        for it in y.snapshots:
            for name in y.snapshots[it]:
                assert torch.equal(x.snapshots[it][name], y.snapshots[it][name])


def test_a_killed_group_resumes_from_its_checkpoint_bit_for_bit(tmp_path, monkeypatch):
    config = TrainConfig(optimizer="adam", lr=3e-3, batch_size=20, iterations=30, eval_every=7)
    specs = [spec_for(make_mlp, k, config, snapshot_iterations=(5, 17)) for k in range(3)]
    kwargs = dict(val=VAL, test=TEST, progress=False)
    plain = train_chains(make_mlp(0), specs, TRAIN, **kwargs)
    path = tmp_path / "group.ckpt"
    segmented = train_chains(make_mlp(0), specs, TRAIN, checkpoint=path, checkpoint_every=8, **kwargs)
    _assert_identical(segmented, plain)
    assert not path.exists()

    calls = {"n": 0}
    real = B.train_group

    def dies_on_third_segment(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("killed")
        return real(*args, **kw)

    monkeypatch.setattr(B, "train_group", dies_on_third_segment)
    with pytest.raises(KeyboardInterrupt):
        train_chains(make_mlp(0), specs, TRAIN, checkpoint=path, checkpoint_every=8, **kwargs)
    assert path.exists()
    monkeypatch.setattr(B, "train_group", real)
    resumed = train_chains(make_mlp(0), specs, TRAIN, checkpoint=path, checkpoint_every=8, **kwargs)
    _assert_identical(resumed, plain)
    for spec, got in zip(specs, plain):  # the snapshots are the single path's callback copies
        assert sorted(got.snapshots) == [5, 17]

    saved = tmp_path / "results.ckpt"  # a finished group's results, read back whole
    B.save_checkpoint(saved, [B.chain_identity(s) for s in specs], plain)
    _assert_identical(B.load_results(saved), plain)
    assert [r.engine for r in B.load_results(saved)] == [r.engine for r in plain]

    other = [dataclasses.replace(s, seed=s.seed + 1) for s in specs]
    train_chains(make_mlp(0), specs, TRAIN, checkpoint=path, checkpoint_every=8, keep_checkpoint=True, **kwargs)
    with pytest.raises(ConfigError, match="another seed"):
        train_chains(make_mlp(0), other, TRAIN, checkpoint=path, checkpoint_every=8, **kwargs)


def test_snapshots_equal_the_single_paths_callback_copies():
    config = TrainConfig(optimizer="sgd", lr=0.05, momentum=0.9, batch_size=20, iterations=12)
    spec = spec_for(make_mlp, 0, config, snapshot_iterations=(0, 4, 12))
    got = train_chains(make_mlp(0), [spec], TRAIN, progress=False)[0]
    copies = {}
    model = make_mlp(0)
    model.load_state_dict(spec.weights)
    train(model, spec.masks, TRAIN, config, seed=spec.seed, progress=False,
          callback=lambda it, m: copies.setdefault(it, {k: v.clone() for k, v in m.state_dict().items()}))
    copies[12] = model.state_dict()
    for it in (0, 4, 12):
        for name, value in copies[it].items():
            assert rel_diff(got.snapshots[it][name], value) <= RTOL


def test_chains_move_between_the_batched_and_the_single_path():
    config = TrainConfig(optimizer="adamw", lr=3e-3, weight_decay=0.01, batch_size=20, iterations=20, eval_every=6)
    spec = spec_for(make_mlp, 1, config)
    full_weights, full = run_single(make_mlp, spec)
    # batched up to 9, single from there
    half = train_chains(make_mlp(0), [dataclasses.replace(spec, stop_iteration=9)], TRAIN, val=VAL, test=TEST,
                        progress=False)[0]
    rest = dataclasses.replace(spec, weights=half.weights, state=half.state, start_iteration=9)
    assert_chain_matches(B.ChainResult(*run_single(make_mlp, rest)), full_weights, full, continued=True)
    # single up to 9, batched from there
    weights, first = run_single(make_mlp, dataclasses.replace(spec, stop_iteration=9))
    rest = dataclasses.replace(spec, weights=weights, state=first.state, start_iteration=9)
    assert_chain_matches(train_chains(make_mlp(0), [rest], TRAIN, val=VAL, test=TEST, progress=False)[0],
                         full_weights, full, continued=True)


# ------------------------------------------------------------------------------------------------- API


def test_engine_record_and_precisions():
    config = TrainConfig(optimizer="adam", lr=3e-3, batch_size=20, iterations=4)
    specs = [spec_for(make_mlp, k, config) for k in range(2)]
    results = train_chains(make_mlp(0), specs, TRAIN, test=TEST, progress=False)
    engine = results[0].engine
    assert engine["engine"] == "batched" and engine["chains"] == 2 and engine["precision"] == "float32"
    assert engine["dtype"] == "float32" and engine["autocast"] is None and engine["cuda_graph"] is False
    low = train_chains(make_mlp(0), specs, TRAIN, test=TEST, progress=False, precision="bf16")
    assert low[0].engine["autocast"] == "bfloat16"
    assert abs(low[0].result.test_accuracy - results[0].result.test_accuracy) < 0.1


def test_grouping_and_refusals():
    config = TrainConfig(optimizer="adam", batch_size=20, iterations=10)
    a = spec_for(make_mlp, 0, config)
    shorter = dataclasses.replace(a, stop_iteration=5)
    sgd = dataclasses.replace(a, config=TrainConfig(optimizer="sgd", batch_size=20, iterations=10))
    with pytest.raises(ConfigError, match="same number of steps"):
        train_chains(make_mlp(0), [a, shorter], TRAIN)
    with pytest.raises(ConfigError, match="must share optimizer"):
        train_chains(make_mlp(0), [a, sgd], TRAIN)
    with pytest.raises(ConfigError, match="unknown precision"):
        train_chains(make_mlp(0), [a], TRAIN, precision="fp8")
    with pytest.raises(ConfigError, match="weights lack"):
        train_chains(make_mlp(0), [dataclasses.replace(a, weights={})], TRAIN)
    groups = B.plan_groups([a, a, shorter, sgd, a, a], chains_per_process=3)
    assert groups == [[0, 1], [4, 5], [2], [3]]  # balanced: 4 compatible chains in 2 groups of 2
    assert sorted(i for g in groups for i in g) == list(range(6))
    assert B.default_chains_per_process("cpu") >= 1


def test_warm_up_steps_before_a_capture_are_undone_exactly(monkeypatch):
    """What CUDA graph capture relies on, checked on CPU: after the warm-up steps, restoring the saved state
    leaves the group exactly where it was (weights, batch-norm statistics, optimizer state, loss sums, counters)."""
    from ticketlab.batched import cuda, engine

    def fake_capture(group):  # capture_step without a GPU: warm up, then restore
        saved = cuda.save_group(group)
        for _ in range(cuda.WARMUP_STEPS):
            group.step()
        cuda.restore_group(group, saved)
        return group.step

    config = TrainConfig(optimizer="sgd", lr=0.05, momentum=0.9, batch_size=16, iterations=6, eval_every=3)
    specs = [spec_for(make_convnet, k, config) for k in range(2)]
    train_set, val, test = IMAGES
    plain = train_chains(make_convnet(0), specs, train_set, val=val, test=test, progress=False)
    monkeypatch.setattr(cuda, "capture_step", fake_capture)
    monkeypatch.setattr(engine, "_check_graph_device", lambda device: None)
    warmed = train_chains(make_convnet(0), specs, train_set, val=val, test=test, progress=False, cuda_graph=True)
    assert warmed[0].engine["cuda_graph"] is True
    _assert_identical(warmed, plain)
    with pytest.raises(ConfigError, match="CUDA graphs need a CUDA device"):
        monkeypatch.undo()
        train_chains(make_convnet(0), specs, train_set, progress=False, cuda_graph=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graph_group_matches_eager_and_cpu():
    config = TrainConfig(optimizer="adam", lr=3e-3, batch_size=20, iterations=30, eval_every=10)
    specs = [spec_for(make_mlp, k, config, start=3 * k, stop=3 * k + 20) for k in range(4)]
    graph = train_chains(make_mlp(0), specs, TRAIN, val=VAL, test=TEST, device="cuda", progress=False)
    assert graph[0].engine["cuda_graph"] is True, graph[0].engine.get("cuda_graph_error")
    eager = train_chains(make_mlp(0), specs, TRAIN, val=VAL, test=TEST, device="cuda", cuda_graph=False,
                         progress=False)
    cpu = train_chains(make_mlp(0), specs, TRAIN, val=VAL, test=TEST, device="cpu", progress=False)
    for g, e, c in zip(graph, eager, cpu):
        for name in c.weights:
            assert rel_diff(g.weights[name], e.weights[name]) <= 1e-6
            assert rel_diff(g.weights[name], c.weights[name]) <= 1e-4
        np.testing.assert_array_equal(g.curve["iteration"], c.curve["iteration"])
        assert abs(g.result.test_accuracy - c.result.test_accuracy) <= ACC_TOL


@pytest.mark.parametrize("n", range(0, 23))
@pytest.mark.parametrize("at_most", [1, 2, 3, 4, 7, 32])
def test_balanced_chunks_are_the_fewest_and_differ_by_at_most_one(n, at_most):
    from ticketlab.batched.spec import balanced_chunks

    items = list(range(n))
    chunks = balanced_chunks(items, at_most)
    assert [x for c in chunks for x in c] == items          # order kept, nothing lost or repeated
    assert len(chunks) == -(-n // at_most)                   # the fewest chunks that respect the limit
    sizes = [len(c) for c in chunks]
    assert all(1 <= s <= at_most for s in sizes)
    assert not sizes or max(sizes) - min(sizes) <= 1
