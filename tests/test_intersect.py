"""Tests of combining masks (``ticketlab.analysis.combine``) and ``ticketlab intersect``.

The combinations are checked against numpy on the same masks, the chance densities against brute-force
enumeration and simulation, and the written file by reading it back with ``ticketlab.store.open_ticket``.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from ticketlab import store
from ticketlab.analysis.combine import (COMBINE_COLUMNS, chance_density, combine_layer, combine_masks,
                                        combine_report, poisson_binomial_tail, resolve_min_votes)
from ticketlab.cli import main
from ticketlab.errors import ConfigError
from ticketlab.masks import TensorInfo
from ticketlab.models import create_model, prunable_tensors
from cli_helpers import cli

from conftest import TOY_TENSORS, make_ticket

REPO = Path(__file__).resolve().parents[1]




# -- library -----------------------------------------------------------------------------------------------


def test_combinations_match_numpy():
    rng = np.random.default_rng(0)
    shape = (7, 9, 3)
    masks = [rng.random(shape) < d for d in (0.3, 0.5, 0.7, 0.9)]
    stack = np.stack(masks)
    np.testing.assert_array_equal(combine_layer(masks), np.all(stack, axis=0))
    np.testing.assert_array_equal(combine_layer(masks, "union"), np.any(stack, axis=0))
    for k in range(1, 5):
        np.testing.assert_array_equal(combine_layer(masks, "vote", k), stack.sum(axis=0) >= k)
    np.testing.assert_array_equal(combine_layer(masks, "vote"), stack.sum(axis=0) >= 3)  # strict majority
    np.testing.assert_array_equal(combine_layer(masks[:1]), masks[0])
    assert combine_layer(masks[:1]) is not masks[0]  # never aliases an input
    ints = [m.astype(np.uint8) for m in masks]
    np.testing.assert_array_equal(combine_layer(ints), np.all(stack, axis=0))
    whole = combine_masks([{"x": m, "y": ~m} for m in masks], "union")
    assert list(whole) == ["x", "y"]
    np.testing.assert_array_equal(whole["y"], np.any(~stack, axis=0))


def test_combination_errors():
    m = np.ones(3, bool)
    with pytest.raises(ConfigError, match="unknown combination mode 'and'; choose one of: intersection, union"):
        combine_layer([m, m], "and")
    with pytest.raises(ConfigError, match=r"min_votes must be an integer in \[1, 2\]"):
        combine_layer([m, m], "vote", 3)
    with pytest.raises(ConfigError, match="applies only to mode 'vote'"):
        resolve_min_votes(2, "union", 1)
    with pytest.raises(ConfigError, match="shape"):
        combine_layer([m, np.ones(4, bool)])
    with pytest.raises(ConfigError, match="first mismatch: 'y'"):
        combine_masks([{"x": m, "y": m}, {"x": m}])
    assert [resolve_min_votes(n, "vote") for n in (1, 2, 3, 4, 5)] == [1, 2, 2, 3, 3]


def test_chance_density_by_enumeration():
    """Every weight is kept by mask i with probability d_i, independently: enumerate the 2^n outcomes."""
    d = [0.9, 0.5, 0.25, 0.6]
    n = len(d)
    probs = {}
    for outcome in itertools.product([0, 1], repeat=n):
        probs[outcome] = math.prod(di if o else 1 - di for di, o in zip(d, outcome))
    assert chance_density(d) == pytest.approx(sum(p for o, p in probs.items() if all(o)))
    assert chance_density(d) == pytest.approx(math.prod(d))
    assert chance_density(d, "union") == pytest.approx(sum(p for o, p in probs.items() if any(o)))
    for k in range(1, n + 1):
        assert chance_density(d, "vote", k) == pytest.approx(sum(p for o, p in probs.items() if sum(o) >= k))
    # equal densities: the binomial tail
    from scipy.stats import binom

    assert poisson_binomial_tail([0.3] * 7, 3) == pytest.approx(binom.sf(2, 7, 0.3))
    assert poisson_binomial_tail([0.3], 0) == 1.0 and poisson_binomial_tail([0.3], 2) == 0.0


def test_chance_density_against_random_masks():
    """Masks with exact kept counts placed at random: the mean density of their combination."""
    rng = np.random.default_rng(1)
    size, kept, draws = 400, [120, 200, 300], 4000
    results = {"intersection": [], "union": [], "vote": []}
    for _ in range(draws):
        masks = []
        for k in kept:
            m = np.zeros(size, bool)
            m[rng.choice(size, k, replace=False)] = True
            masks.append(m)
        results["intersection"].append(combine_layer(masks).mean())
        results["union"].append(combine_layer(masks, "union").mean())
        results["vote"].append(combine_layer(masks, "vote", 2).mean())
    d = [k / size for k in kept]
    for mode, values in results.items():
        e = chance_density(d, mode, 2 if mode == "vote" else None)
        assert abs(np.mean(values) - e) < 4 * np.std(values) / math.sqrt(draws), mode


def test_report_per_layer_and_total():
    sizes = {"a": 100, "b": 300}
    inputs = [{"a": 50, "b": 30}, {"a": 20, "b": 150}]
    f = combine_report(sizes, inputs, {"a": 15, "b": 20})
    assert list(f.columns) == COMBINE_COLUMNS and f.layer.tolist() == ["a", "b", "total"]
    a, b, total = (f.iloc[i] for i in range(3))
    assert a.expected_density == pytest.approx(0.5 * 0.2) and b.expected_density == pytest.approx(0.1 * 0.5)
    assert a.ratio == pytest.approx(0.15 / 0.1)
    assert (a.min_input_density, a.max_input_density) == (0.2, 0.5)
    # total: size-weighted mean of the per-layer expectations, not the product of pooled densities
    assert total.expected_density == pytest.approx((100 * 0.1 + 300 * 0.05) / 400)
    assert total.expected_density != pytest.approx((80 / 400) * (170 / 400))
    assert (total.kept, total.density) == (35, 35 / 400)
    u = combine_report(sizes, inputs, {"a": 55, "b": 160}, "union")
    assert u.iloc[0].expected_density == pytest.approx(1 - 0.5 * 0.8)


# -- the command ------------------------------------------------------------------------------------------


@pytest.fixture
def inputs(tmp_path):
    paths = [tmp_path / f"in{i}.h5" for i in range(3)]
    written = [make_ticket(p, levels=2, seed=i, n_test=20, with_weights=False) for i, p in enumerate(paths)]
    return paths, written


def no_temporaries(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("mode, extra", [("intersection", []), ("union", []), ("vote", ["--min-votes", "2"])])
def test_cli_writes_a_ticket_with_the_combined_mask(capsys, inputs, tmp_path, mode, extra):
    (a, b, c), written = inputs
    out = tmp_path / "t.h5"
    code, text, err = cli(capsys, "intersect", str(a), f"{b}:1", str(c), "--out", str(out), "--mode", mode, *extra)
    assert code == 0, err
    chosen = [written[0]["masks"][2], written[1]["masks"][1], written[2]["masks"][2]]
    with store.open_ticket(out) as t:
        assert t.levels == [0] and t.status == "complete" and t.model == "toy" and t.seed == 0
        assert [x.name for x in t.tensors] == [x.name for x in TOY_TENSORS]
        got = t.masks(0)
        for name in got:
            stack = np.stack([m[name] for m in chosen])
            want = {"intersection": stack.all(0), "union": stack.any(0), "vote": stack.sum(0) >= 2}[mode]
            np.testing.assert_array_equal(got[name], want)
        init = t.weights("init")
        for key, value in written[0]["init"].items():
            np.testing.assert_array_equal(init[key], value)
        config = t.config
        assert config["mode"] == mode and config["min_votes"] == (2 if mode == "vote" else None)
        assert [(s["path"], s["level"], s["seed"]) for s in config["sources"]] == [
            (str(a.resolve()), 2, 0), (str(b.resolve()), 1, 1), (str(c.resolve()), 2, 2)]
        assert all(s["method"] == "synthetic nested random masks" for s in config["sources"])
        assert config["init"]["path"] == str(a.resolve())
        assert mode.split()[0] in t.method
    assert no_temporaries(tmp_path)
    assert text.startswith(f"wrote {out}: level 0 = ")
    total = [line.split() for line in text.splitlines() if line.startswith("total")][0]
    assert total[2] == f"{sum(int(m.sum()) for m in got.values()):,}"


def test_cli_json_csv_and_init_file(capsys, inputs, tmp_path):
    (a, b, c), written = inputs
    out = tmp_path / "t.h5"
    code, text, _ = cli(capsys, "intersect", str(a), str(b), "--out", str(out), "--init", str(c), "--json")
    assert code == 0
    records = json.loads(text)
    assert set(records[0]) == {"file", "mode", "min_votes"} | set(COMBINE_COLUMNS)
    assert [r["layer"] for r in records] == [x.name for x in TOY_TENSORS] + ["total"]
    for r in records[:-1]:
        ma, mb = written[0]["masks"][2][r["layer"]], written[1]["masks"][2][r["layer"]]
        assert r["kept"] == int((ma & mb).sum())
        assert r["expected_density"] == pytest.approx(ma.mean() * mb.mean())
    with store.open_ticket(out) as t:
        init = t.weights("init")
        for key, value in written[2]["init"].items():
            np.testing.assert_array_equal(init[key], value)
        assert t.config["init"]["path"] == str(c.resolve()) and t.seed == 2
    code, text, _ = cli(capsys, "intersect", str(a), str(b), "--out", str(out), "--overwrite", "--csv")
    assert code == 0
    assert text.splitlines()[0] == ",".join(["file", "mode", "min_votes"] + COMBINE_COLUMNS)


def test_cli_refusals_leave_nothing_behind(capsys, inputs, tmp_path):
    (a, b, _), _ = inputs
    out = tmp_path / "t.h5"
    out.write_bytes(b"precious")
    code, _, err = cli(capsys, "intersect", str(a), str(b), "--out", str(out))
    assert code == 2 and "already exists" in err and "--overwrite" in err and out.read_bytes() == b"precious"
    out.unlink()
    # another model: refused, naming the first mismatch
    other_tensors = [TensorInfo("conv1.weight", (6, 3, 3, 3), "conv"), TensorInfo("fc9.weight", (40, 24), "linear"),
                     TensorInfo("fc2.weight", (10, 40), "linear")]
    other = tmp_path / "other.h5"
    store.create(other, tensors=other_tensors, model="toy2", method="x", config={})
    store.TicketWriter(other).write_level(0, {x.name: np.ones(x.shape, bool) for x in other_tensors})
    code, _, err = cli(capsys, "intersect", str(a), str(other), "--out", str(out))
    assert code == 2 and err.count("\n") == 1 and "fc9.weight" in err and "hold different models" in err
    code, _, err = cli(capsys, "intersect", str(a), str(b), "--out", str(out), "--init", str(other))
    assert code == 2 and "fc9.weight" in err
    # --init FILE without initial weights (e.g. an imported mask)
    same_no_init = tmp_path / "noinit.h5"
    store.create(same_no_init, tensors=TOY_TENSORS, model="toy", method="imported", config={})
    store.TicketWriter(same_no_init).write_level(0, {x.name: np.ones(x.shape, bool) for x in TOY_TENSORS})
    code, _, err = cli(capsys, "intersect", str(a), str(b), "--out", str(out), "--init", str(same_no_init))
    assert code == 2 and "no initial weights" in err and err.count("\n") == 1
    same_no_init.unlink()
    # writing over an input, or with the wrong extension
    code, _, err = cli(capsys, "intersect", str(a), str(b), "--out", str(b))
    assert code == 2 and "is also an input" in err
    code, _, err = cli(capsys, "intersect", str(a), str(b), "--out", str(tmp_path / "t.txt"))
    assert code == 2 and ".h5" in err
    code, _, err = cli(capsys, "intersect", str(a), str(b), "--out", str(out), "--mode", "union", "--min-votes", "1")
    assert code == 2 and "--min-votes" in err
    code, _, err = cli(capsys, "intersect", str(a), "--out", str(out))
    assert code == 2 and "at least two" in err
    assert not out.exists() and no_temporaries(tmp_path)
    # a missing directory is created (the same for every writing command)
    code, _, err = cli(capsys, "intersect", str(a), str(b), "--out", str(tmp_path / "no" / "t.h5"))
    assert code == 0, err
    assert (tmp_path / "no" / "t.h5").is_file() and no_temporaries(tmp_path / "no")


def test_a_failure_while_writing_leaves_nothing(capsys, inputs, tmp_path, monkeypatch):
    (a, b, _), _ = inputs
    out = tmp_path / "t.h5"

    def broken(self, status):
        raise OSError("disk full")

    monkeypatch.setattr(store.TicketWriter, "set_status", broken)
    with pytest.raises(OSError, match="disk full"):
        main(["intersect", str(a), str(b), "--out", str(out)])
    assert not out.exists() and no_temporaries(tmp_path)


def test_train_retrains_the_consensus_ticket(capsys, tmp_path):
    """End to end: LeNet-300-100 tickets -> intersect -> ticketlab train --mask on the shipped MNIST."""
    torch.manual_seed(0)
    model = create_model("lenet300")
    tensors = prunable_tensors(model)
    init = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    rng = np.random.default_rng(0)
    paths = []
    for seed in range(2):
        path = tmp_path / f"lenet{seed}.h5"
        store.create(path, tensors=tensors, model="lenet300", method="random masks", config={}, seed=seed,
                     init_weights=init)
        store.TicketWriter(path).write_level(0, {t.name: rng.random(t.shape) < 0.6 for t in tensors})
        paths.append(path)
    out, trained = tmp_path / "consensus.h5", tmp_path / "trained.h5"
    code, _, err = cli(capsys, "intersect", *map(str, paths), "--out", str(out))
    assert code == 0, err
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        code, _, err = cli(capsys, "train", "--mask", str(out), "--levels", "0", "--iterations", "2", "--out",
                           str(trained), "--data-dir", str(REPO / "data"), "--quiet", "--device", "cpu",
                           "--eval-every", "0")
    finally:
        torch.set_num_threads(before)
    assert code == 0, err
    with store.open_ticket(out) as c, store.open_ticket(trained) as t:
        consensus = c.masks(0)
        for name, m in t.masks(0).items():
            np.testing.assert_array_equal(m, consensus[name])


def test_imported_masks_intersect_into_a_mask_only_ticket(capsys, tmp_path):
    """torch.nn.utils.prune state dicts (masks, no initial weights) -> import -> intersect: a mask-only ticket,
    said so; ``train --mask`` then needs --fresh-init (one line, exit 2), and trains with it."""
    from torch.nn.utils import prune

    paths = []
    for seed in range(2):
        torch.manual_seed(seed)
        model = create_model("lenet300")
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear):
                prune.l1_unstructured(module, "weight", amount=0.5)
        sd_path = tmp_path / f"pruned{seed}.pt"
        torch.save(model.state_dict(), sd_path)
        paths.append(tmp_path / f"pruned{seed}.h5")
        code, _, err = cli(capsys, "import", "torch-prune", str(sd_path), "--out", str(paths[-1]), "--model",
                           "lenet300")
        assert code == 0, err
    out = tmp_path / "consensus.h5"
    code, text, err = cli(capsys, "intersect", *map(str, paths), "--out", str(out))
    assert code == 0, err
    assert "masks only" in text and "--fresh-init" in text
    with store.open_ticket(out) as t:
        assert "init" not in t.checkpoints() and t.config["init"] is None
        a, b = (store.open_ticket(p) for p in paths)
        for name, m in t.masks(0).items():
            np.testing.assert_array_equal(m, a.masks(0)[name] & b.masks(0)[name])
        a.close(), b.close()
    code, _, err = cli(capsys, "intersect", *map(str, paths), "--out", str(out), "--overwrite", "--json")
    assert code == 0 and "masks only" in err
    trained = tmp_path / "trained.h5"
    argv = ["train", "--mask", str(out), "--levels", "0", "--iterations", "2", "--out", str(trained),
            "--data-dir", str(REPO / "data"), "--quiet", "--device", "cpu", "--eval-every", "0"]
    code, _, err = cli(capsys, *argv)
    assert code == 2 and err.count("\n") == 1 and "--fresh-init" in err and "masks only" in err, err
    assert not trained.exists() and no_temporaries(tmp_path)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        code, _, err = cli(capsys, *argv, "--fresh-init")
    finally:
        torch.set_num_threads(before)
    assert code == 0, err
    with store.open_ticket(out) as c, store.open_ticket(trained) as t:
        for name, m in t.masks(0).items():
            np.testing.assert_array_equal(m, c.masks(0)[name])
