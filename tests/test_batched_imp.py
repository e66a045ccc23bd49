"""Tests of IMP for several runs at once (ticketlab.lottery.group, ``ticketlab train --seeds``): a batched set of runs
equals the same runs made one by one, for every reset mode, control and optimizer; each chain keeps its own data
order; a set killed between two file writes or by SIGKILL resumes to the files of an uninterrupted set.

Most runs use a small MLP on synthetic data (IMPRun's own-model path), so that every registry entry fits in a few
seconds; the command-line tests use LeNet-300-100 on two classes of the shipped MNIST.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import ticketlab.batched as batched
from ticketlab import store
from ticketlab.batched.data import ChainData
from ticketlab.cli import main
from ticketlab.errors import ConfigError
from ticketlab.lottery import CONTROLS, RESET_MODES, IMPRun, RunConfig, run_imp, run_imps
from ticketlab.training import OPTIMIZER_REGISTRY, TrainConfig, batch_indices, list_optimizers

from imp_helpers import synthetic_data

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = str(REPO / "data")
RTOL = 1e-5  # weights, relative per tensor
ACC_TOL = 0.001  # accuracies: 0.1 point
# LeNet-300-100 on digits 0 and 1 of the shipped MNIST: a test set of 2,115 examples keeps evaluations cheap
MNIST = ["--data-dir", DATA_DIR, "--classes", "0-1", "--val-size", "500", "--eval-every", "0", "--device", "cpu",
         "--quiet"]


pytestmark = pytest.mark.usefixtures("one_thread")


def mlp(seed: int) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))


@pytest.fixture(scope="module")
def data():
    # evaluation sets over 1,000 examples: one prediction flipped by rounding moves an accuracy by < 0.1 point
    return synthetic_data((1, 8, 8), 4, n_train=192, n_val=1200, n_test=1200, seed=5, separation=0.6)


def train_config(optimizer: str, **overrides) -> TrainConfig:
    base = dict(optimizer=optimizer, batch_size=16, iterations=12, eval_every=4)
    if getattr(OPTIMIZER_REGISTRY.get(optimizer), "uses_momentum", False):
        base.update(lr=0.05, momentum=0.9, weight_decay=1e-4)
    else:
        base.update(lr=2e-3, weight_decay=1e-2 if optimizer == "adamw" else 0.0)
    base.update(overrides)
    return TrainConfig(**base)


def config(reset: str = "rewind-init", optimizer: str = "adam", seed: int = 0, **overrides) -> RunConfig:
    base = dict(model="mlp", dataset="blobs", rate=0.2, levels=2, reset=reset, seed=seed,
                controls=tuple(CONTROLS.names()), train=train_config(optimizer))
    base.update(overrides)
    return RunConfig(**base)


def single(cfg: RunConfig, path: Path, data) -> Path:
    return IMPRun(cfg, path, model_factory=mlp, data=data, device="cpu", progress=False).run()


def together(cfgs, paths, data, k: int, **kwargs) -> list[Path]:
    return run_imps(cfgs, paths, model_factory=mlp, data=data, device="cpu", progress=False, chains_per_process=k,
                    **kwargs)


def entries(path: Path):
    """(level, branch) of every training in a file, in order."""
    with store.open_ticket(path) as t:
        return [(level, b) for level in t.levels for b in [None, *t.branches(level)]]


def attrs_of(path: Path, level: int, branch: str | None) -> dict:
    """A level's or branch's attributes."""
    with store.open_ticket(path) as t:
        return t.level_attrs(level, branch=branch)


def rel(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12))


def assert_close_runs(got: Path, want: Path, *, chains: int) -> None:
    """``got`` (a batched run) equals ``want`` (the same run alone) up to float rounding."""
    assert entries(got) == entries(want)
    with store.open_ticket(got) as a, store.open_ticket(want) as b:
        assert a.status == b.status == "complete" and a.config == b.config
        assert a.checkpoints() == b.checkpoints()
        for point in b.checkpoints():
            wa, wb = a.weights(point), b.weights(point)
            assert all(rel(wa[k], wb[k]) <= RTOL for k in wb), point
        for level, branch in entries(want):
            where = f"{want.name} level {level} {branch or 'chain'}"
            if level <= 1:  # clear margins at level 1: the same weights are pruned
                ma, mb = a.masks(level, branch=branch), b.masks(level, branch=branch)
                assert all(np.array_equal(ma[n], mb[n]) for n in mb), where
            wa, wb = a.weights(level=level, branch=branch), b.weights(level=level, branch=branch)
            worst = max(rel(wa[k], wb[k]) for k in wb)
            assert worst <= RTOL, (where, worst)
            ra, rb = a.level_record(level, branch=branch), b.level_record(level, branch=branch)
            assert abs(ra["accuracy"] - rb["accuracy"]) <= ACC_TOL, where
            assert ra["early_stop_iteration"] == rb["early_stop_iteration"], where
            ca, cb = a.evaluation(level, branch=branch).curve, b.evaluation(level, branch=branch).curve
            np.testing.assert_array_equal(ca["iteration"], cb["iteration"])
            np.testing.assert_allclose(ca["val_accuracy"], cb["val_accuracy"], atol=ACC_TOL)
            attrs = attrs_of(got, level, branch)
            assert attrs["engine"] == "batched" and attrs["precision"] == "float32", where
            info = json.loads(attrs["engine_info"])
            assert 1 <= info["chains"] <= chains and info["device"] == "cpu", where
            assert "engine" not in attrs_of(want, level, branch)  # the single path records none


# ------------------------------------------------------------------------------------ batched equals single


def test_a_batched_set_equals_single_runs_for_every_reset_mode_control_and_optimizer(tmp_path, data):
    """Every reset mode (two seeds each, every control beside each chain) with the optimizers in turn, all in one
    set: each level's chains and controls train in groups of 3 (different windows and optimizers group apart)."""
    optimizers = list_optimizers()
    cfgs = []
    for i, name in enumerate(RESET_MODES.names()):
        reset = name.replace(":K", ":4")
        cfgs += [config(reset, optimizers[i % len(optimizers)], seed=s) for s in (0, 1)]
    paths = [tmp_path / f"batched{i}.h5" for i in range(len(cfgs))]
    assert together(cfgs, paths, data, 3) == paths
    for i, (cfg, path) in enumerate(zip(cfgs, paths)):
        assert_close_runs(path, single(cfg, tmp_path / f"single{i}.h5", data), chains=3)


def test_one_chain_per_process_is_the_single_path_bit_for_bit(tmp_path, data):
    cfgs = [config("rewind:4", seed=s, levels=1) for s in (0, 1)]
    paths = together(cfgs, [tmp_path / "a.h5", tmp_path / "b.h5"], data, 1)
    for i, (cfg, path) in enumerate(zip(cfgs, paths)):
        alone = single(cfg, tmp_path / f"alone{i}.h5", data)
        assert entries(path) == entries(alone)
        with store.open_ticket(path) as a, store.open_ticket(alone) as b:
            for level, branch in entries(alone):
                wa, wb = a.weights(level=level, branch=branch), b.weights(level=level, branch=branch)
                assert all(np.array_equal(wa[k], wb[k]) for k in wb)
                assert "engine" not in attrs_of(path, level, branch)


def test_chains_with_different_seeds_get_different_data_orders(tmp_path, data, monkeypatch):
    seen = []
    real = ChainData.indices

    def spy(self):
        idx = real(self)
        seen.append((list(self.seeds), self.iteration.tolist(), idx.clone()))
        return idx

    monkeypatch.setattr(ChainData, "indices", spy)
    cfgs = [config(seed=s, levels=0, controls=()) for s in (0, 1, 2)]
    together(cfgs, [tmp_path / f"s{s}.h5" for s in (0, 1, 2)], data, 3)
    assert len(seen) == 12 and all(sorted(seeds) == [0, 1, 2] for seeds, _, _ in seen)
    n = len(data.train[1])
    for seeds, iterations, idx in seen:  # each chain's batch is the single path's batch of its seed
        for k, (seed, it) in enumerate(zip(seeds, iterations)):
            assert torch.equal(idx[k], batch_indices(seed, it, n, 16))
        assert not any(torch.equal(idx[a], idx[b]) for a in range(3) for b in range(a + 1, 3))


def test_refusals(tmp_path, data):
    cfg = config(levels=0, controls=())
    with pytest.raises(ConfigError, match="same file"):
        together([cfg, cfg], [tmp_path / "x.h5", tmp_path / "x.h5"], data, 2)
    with pytest.raises(ConfigError, match="one path per config"):
        together([cfg, cfg], [tmp_path / "x.h5"], data, 2)
    (tmp_path / "b.h5").write_bytes(b"")
    with pytest.raises(ConfigError, match="already exists"):
        together([cfg, config(seed=1, levels=0)], [tmp_path / "a.h5", tmp_path / "b.h5"], data, 2)
    assert not (tmp_path / "a.h5").exists()  # refused before any file was made


# ------------------------------------------------------------------------------------------------- resuming


def test_a_kill_between_file_writes_is_completed_from_the_group_checkpoint(tmp_path, data, monkeypatch):
    cfgs = [config("rewind:4", seed=s, controls=("reinit",)) for s in (0, 1)]
    reference = together(cfgs, [tmp_path / "ref0.h5", tmp_path / "ref1.h5"], data, 4)
    paths = [tmp_path / "run0.h5", tmp_path / "run1.h5"]

    def log(line: str) -> None:
        if line.startswith("run0.h5: level 1"):  # run 0's level 1 is written, run 1's not yet
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        together(cfgs, paths, data, 4, log=log)
    assert [len(entries(p)) for p in paths] == [3, 1]  # run 0: level 0, level 1 and its control
    assert len(list(tmp_path.glob(".run0.h5.batched-L1-*.pt"))) == 1

    trained = []
    real = batched.train_chains
    monkeypatch.setattr(batched, "train_chains", lambda *a, **k: trained.append(len(a[1])) or real(*a, **k))
    together(cfgs, paths, data, 4, resume=True)
    assert trained == [4]  # level 1 came from the checkpoint; level 2 trained its four chains
    assert not list(tmp_path.glob(".*.pt"))
    for got, want in zip(paths, reference):
        assert entries(got) == entries(want)
        with store.open_ticket(got) as a, store.open_ticket(want) as b:
            assert a.status == "complete"
            for level, branch in entries(want):
                wa, wb = a.weights(level=level, branch=branch), b.weights(level=level, branch=branch)
                assert all(np.array_equal(wa[k], wb[k]) for k in wb), (got.name, level, branch)


KILLED = ["--seeds", "0-1", "--chains-per-process", "2", "--levels", "3", "--iterations", "30", "--rate", "0.3",
          "--controls", "reinit", *MNIST]


def test_a_killed_batched_train_resumes_to_the_files_of_an_uninterrupted_one(tmp_path, capsys):
    pattern = str(tmp_path / "k_seed{seed}.h5")
    paths = [tmp_path / "k_seed0.h5", tmp_path / "k_seed1.h5"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "ticketlab", "train", *KILLED, "--out", pattern], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def level_one_done() -> bool:
        try:
            return all(p.exists() and (1, "reinit") in entries(p) for p in paths)
        except Exception:  # noqa: BLE001 - a reader racing a commit
            return False

    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None and not level_one_done():
            time.sleep(0.02)
        assert proc.poll() is None, f"the run ended before level 1 was seen: {proc.communicate()}"
        time.sleep(0.3)  # into level 2
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert all(store.open_ticket(p).status == "in_progress" for p in paths)

    assert main(["train", *KILLED, "--out", pattern, "--resume"]) == 0
    assert main(["train", *KILLED, "--out", str(tmp_path / "u_seed{seed}.h5")]) == 0
    out = capsys.readouterr().out
    assert "k_seed1.h5" in out and "u_seed0.h5" in out
    for s, path in enumerate(paths):
        want = tmp_path / f"u_seed{s}.h5"
        assert entries(path) == entries(want) and len(entries(path)) == 7
        with store.open_ticket(path) as a, store.open_ticket(want) as b:
            assert a.status == "complete" and a.seed == s
            for level, branch in entries(want):
                wa, wb = a.weights(level=level, branch=branch), b.weights(level=level, branch=branch)
                assert all(np.array_equal(wa[k], wb[k]) for k in wb), (path.name, level, branch)
                assert a.level_record(level, branch=branch)["accuracy"] == b.level_record(level, branch=branch)[
                    "accuracy"]
    assert not list(tmp_path.glob(".*.pt"))


# ------------------------------------------------------------------------------------------ the command line


SHORT = ["--levels", "1", "--iterations", "6", "--controls", "reinit", *MNIST]


def test_train_seeds_end_to_end_and_one_chain_per_process_equals_train_seed(tmp_path, capsys):
    loud = [a for a in SHORT if a != "--quiet"]
    assert main(["train", "--seeds", "0,1", "--chains-per-process", "4", *loud, "--out",
                 str(tmp_path / "b{seed}.h5")]) == 0
    out, err = capsys.readouterr()
    assert "b0.h5" in out and "b1.h5" in out and "complete" in out
    assert "seed 1: level 1:" in err and "4 chains per process" in err
    for s in (0, 1):
        with store.open_ticket(tmp_path / f"b{s}.h5") as t:
            assert t.seed == s and t.levels == [0, 1] and t.branches(1) == ["reinit"]
            assert t.dataset.name == "mnist[0,1]" and t.dataset.num_classes == 2
            assert json.loads(attrs_of(tmp_path / f"b{s}.h5", 1, "reinit")["engine_info"])["chains"] == 4
    # --chains-per-process 1: the runs one after another, each equal to `train --seed S` bit for bit
    assert main(["train", "--seeds", "0-1", "--chains-per-process", "1", *SHORT, "--out",
                 str(tmp_path / "s{seed}.h5")]) == 0
    assert main(["train", "--seed", "1", *SHORT, "--out", str(tmp_path / "alone.h5")]) == 0
    capsys.readouterr()
    with store.open_ticket(tmp_path / "s1.h5") as a, store.open_ticket(tmp_path / "alone.h5") as b:
        for level, branch in entries(tmp_path / "alone.h5"):
            wa, wb = a.weights(level=level, branch=branch), b.weights(level=level, branch=branch)
            assert all(np.array_equal(wa[k], wb[k]) for k in wb)
    # and batched within float rounding of it
    assert_close_mnist(tmp_path / "b1.h5", tmp_path / "alone.h5")
    # resuming a complete set trains nothing
    assert main(["train", "--seeds", "0,1", "--chains-per-process", "4", *SHORT, "--out",
                 str(tmp_path / "b{seed}.h5"), "--resume"]) == 0
    # --resume of a set continues its files and starts the seeds not started yet (a sequential set killed early)
    assert main(["train", "--seeds", "1-2", "--chains-per-process", "1", *SHORT, "--out",
                 str(tmp_path / "s{seed}.h5"), "--resume"]) == 0
    with store.open_ticket(tmp_path / "s2.h5") as t:
        assert t.status == "complete" and t.seed == 2
    assert entries(tmp_path / "s1.h5") == entries(tmp_path / "alone.h5")


def assert_close_mnist(got: Path, want: Path) -> None:
    with store.open_ticket(got) as a, store.open_ticket(want) as b:
        for level, branch in entries(want):
            wa, wb = a.weights(level=level, branch=branch), b.weights(level=level, branch=branch)
            assert max(rel(wa[k], wb[k]) for k in wb) <= RTOL
            ra, rb = a.level_record(level, branch=branch), b.level_record(level, branch=branch)
            assert abs(ra["accuracy"] - rb["accuracy"]) <= ACC_TOL


@pytest.mark.parametrize("argv, fragment", [
    (["--seeds", "0-1", "--out", "x.h5"], "--out must contain {seed}"),
    (["--seeds", "0-1", "--seed", "3"], "--seed and --seeds contradict"),
    (["--seeds", "0-1", "--chains-per-process", "0"], "--chains-per-process must be >= 1"),
])
def test_train_seeds_refusals_are_one_line(tmp_path, capsys, monkeypatch, argv, fragment):
    monkeypatch.chdir(tmp_path)
    assert main(["train", *argv, *SHORT]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ticketlab train: error: ") and err.count("\n") == 1 and fragment in err, err
    assert not list(tmp_path.rglob("*.h5"))


def test_run_imp_over_lists_and_the_study_runs_a_group_batched(tmp_path):
    from ticketlab.study.tasks import ChainTask, group_tasks, run_group

    short = dict(dataset="mnist", data_dir=DATA_DIR, classes=(0, 1), val_size=500, levels=1, controls=("reinit",),
                 train=TrainConfig(iterations=4, eval_every=0, batch_size=60))
    cfgs = [RunConfig(seed=s, **short) for s in (0, 1)]
    paths = run_imp(cfgs, [tmp_path / "r0.h5", tmp_path / "r1.h5"], device="cpu", progress=False,
                    chains_per_process=2)
    assert paths == [tmp_path / "r0.h5", tmp_path / "r1.h5"]
    assert all(store.open_ticket(p).status == "complete" for p in paths)
    # the study: compatible chains share a task, which trains them as one batched group
    other = RunConfig(seed=0, **{**short, "train": TrainConfig(iterations=5, eval_every=0, batch_size=60)})
    tasks = [ChainTask(f"c{i}", str(tmp_path / f"c{i}.h5"), c, "cpu", 1) for i, c in enumerate([*cfgs, other])]
    groups = group_tasks(tasks, 2)
    assert [[t.name for t in g] for g in groups] == [["c0", "c1"], ["c2"]]
    lines = []
    results = run_group(groups[0], lambda name, line: lines.append((name, line)))
    assert [(r.name, r.ok, r.levels) for r in results] == [("c0", True, 2), ("c1", True, 2)]
    assert {name for name, _ in lines} == {"c0", "c1"}
    for i in (0, 1):
        with store.open_ticket(tmp_path / f"c{i}.h5") as t, store.open_ticket(paths[i]) as r:
            assert json.loads(attrs_of(tmp_path / f"c{i}.h5", 1, None)["engine_info"])["chains"] == 4  # + controls
            assert t.levels == r.levels and t.level_record(1)["kept"] == r.level_record(1)["kept"]
