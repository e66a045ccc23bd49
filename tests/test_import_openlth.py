"""``ticketlab import openlth``: a fake OpenLTH results tree, written exactly as docs/research's format spec says
(directory hashes, int32 masks in unstable key order, sparsity reports, model files, loggers, hparams.log,
checkpoint.pth with numpy scalars, branches, level_pretrain), is imported and compared bit for bit."""

from __future__ import annotations

import hashlib
import json
import math
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from ticketlab import store
from ticketlab.cli import main
from ticketlab.io.openlth import parse_hparams, parse_logger

from conftest import assert_refused

IPE = 469  # MNIST at batch 128


def _hparams_str(fields: dict) -> str:
    parts = []
    for k in sorted(fields):
        v = fields[k]
        parts.append(f"{k}='{v}'" if isinstance(v, str) else f"{k}={v}")
    return f"Hparams({', '.join(parts)})"


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def _lenet(widths: tuple[int, ...]) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of an OpenLTH mnist_lenet_<widths> in state-dict order (weights and biases)."""
    out, fan_in = [], 784
    for i, w in enumerate(widths):
        out += [(f"fc_layers.{i}.weight", (w, fan_in)), (f"fc_layers.{i}.bias", (w,))]
        fan_in = w
    return out + [("fc.weight", (10, fan_in)), ("fc.bias", (10,))]


def _save_mask(path: Path, masks: dict[str, np.ndarray], order: list[str]) -> None:
    torch.save({k: torch.from_numpy(masks[k].astype(np.int32)) for k in order}, path)
    total = float(sum(m.size for m in masks.values()))
    unpruned = float(sum(int(m.sum()) for m in masks.values()))
    (path.parent / "sparsity_report.json").write_text(json.dumps({"total": total, "unpruned": unpruned}, indent=4))


def _save_model(path: Path, sd: dict[str, np.ndarray]) -> None:
    torch.save(OrderedDict((k, torch.from_numpy(v.copy())) for k, v in sd.items()), path)


def _logger(path: Path, iterations: list[int], rng: np.random.Generator) -> dict[int, tuple[float, float]]:
    lines, values = [], {}
    for it in iterations:
        loss, acc = float(rng.random()), float(np.round(rng.random(), 4))
        values[it] = (loss, acc)
        lines += [f"test_loss,{it},{loss}", f"test_accuracy,{it},{acc}", f"test_examples,{it},10000.0"]
    path.write_text("\n".join(lines))  # no trailing newline, as OpenLTH writes it
    return values


def _masked(sd: dict[str, np.ndarray], masks: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: (v * masks[k] if k in masks else v).astype(np.float32) for k, v in sd.items()}


def make_openlth_run(root: Path, *, widths=(30, 10), levels=2, replicates=(1,), rewind=False, seed=0) -> dict:
    """Write a fake OpenLTH lottery run (spec §4.8) and return what it contains, per replicate."""
    rng = np.random.default_rng(seed)
    model_name = "mnist_lenet_" + "_".join(map(str, widths))
    dataset = {"batch_size": 128, "dataset_name": "mnist"}
    model = {"batchnorm_init": "uniform", "model_init": "kaiming_normal", "model_name": model_name}
    pruning = {"pruning_layers_to_ignore": "fc.weight", "pruning_strategy": "sparse_global"}
    training = {"lr": 0.1, "optimizer_name": "sgd", "training_steps": "300it" if rewind else "2ep"}
    blocks = [dataset, model]
    if rewind:
        blocks += [dataset, {"lr": 0.1, "optimizer_name": "sgd", "training_steps": "100it"}]
    blocks += [pruning, training]
    lottery = root / f"lottery_{_md5(';'.join(_hparams_str(b) for b in blocks))}"
    hp_lines = ["Dataset Hyperparameters", "    * dataset_name => mnist", "    * batch_size => 128",
                "Model Hyperparameters", f"    * model_name => {model_name}", "    * model_init => kaiming_normal",
                "    * batchnorm_init => uniform"]
    if rewind:
        hp_lines += ["Pretraining Dataset Hyperparameters", "    * dataset_name => mnist", "    * batch_size => 128",
                     "Pretraining Training Hyperparameters", "    * optimizer_name => sgd", "    * lr => 0.1",
                     "    * training_steps => 100it"]
    hp_lines += ["Pruning Hyperparameters", "    * pruning_strategy => sparse_global", "    * pruning_fraction => 0.2",
                 "    * pruning_layers_to_ignore => fc.weight", "Training Hyperparameters",
                 "    * optimizer_name => sgd",
                 "    * lr => 0.1", f"    * training_steps => {training['training_steps']}"]
    layout = _lenet(widths)
    prunable = [n for n, s in layout if n.endswith("weight")]
    start_name, end_name = ("model_ep0_it100.pth", "model_ep0_it300.pth") if rewind else \
        ("model_ep0_it0.pth", "model_ep2_it0.pth")
    log_its = [100, 300] if rewind else [0, IPE, 2 * IPE]
    prune_hash = _md5(_hparams_str({"seed": 7}))
    reinit_hash = _md5(_hparams_str({}))
    retrain_hash = _md5("Hparams(retrain_d=..., retrain_t=...)")
    out = {"lottery": lottery, "replicates": {}}
    for r in replicates:
        rep = lottery / f"replicate_{r}"
        init = {n: rng.standard_normal(s).astype(np.float32) * 0.1 for n, s in layout}
        start = init
        info: dict = {"masks": [], "end": [], "init": init, "logs": [], "branches": {}}
        if rewind:
            d = rep / "level_pretrain" / "main"
            d.mkdir(parents=True)
            _save_model(d / "model_ep0_it0.pth", init)
            start = {k: v + 0.01 for k, v in init.items()}
            _save_model(d / "model_ep0_it100.pth", start)
            _logger(d / "logger", [0, 100], rng)
            info["rewind"] = start
        masks = {n: np.ones(s, bool) for n, s in layout if n in prunable}
        prev_end = None
        for level in range(levels + 1):
            d = rep / f"level_{level}" / "main"
            d.mkdir(parents=True)
            if level:  # sparse_global exactly as §4.8: k = ceil(0.2 * all kept), threshold = sorted(|w|)[k]
                remaining = sum(int(m.sum()) for m in masks.values())
                k = math.ceil(0.2 * remaining)
                pool = np.concatenate([np.abs(prev_end[n])[masks[n]] for n in prunable if n != "fc.weight"])
                threshold = np.sort(pool)[k]
                masks = {n: (m & (np.abs(prev_end[n]) > threshold)) if n != "fc.weight" else m.copy()
                         for n, m in masks.items()}
            order = [str(k) for k in rng.permutation(prunable)]  # key order is not stable
            _save_mask(d / "mask.pth", masks, order)
            _save_model(d / start_name, _masked(start, masks))
            end = _masked({k: v + rng.standard_normal(v.shape).astype(np.float32) * 0.05 for k, v in start.items()},
                          masks)
            _save_model(d / end_name, end)
            info["logs"].append(_logger(d / "logger", log_its, rng))
            torch.save({"ep": np.int64(2), "it": np.int64(0), "logger": "x"}, d / "checkpoint.pth")
            if level == 0:
                (d / "hparams.log").write_text("\n".join(hp_lines))
            info["masks"].append({k: v.copy() for k, v in masks.items()})
            info["end"].append(end)
            prev_end = end
            if level == 1:
                b = rep / f"level_{level}" / f"lottery_branch_randomly_prune_{prune_hash}"
                b.mkdir()
                rmasks = {n: rng.permutation(m.reshape(-1)).reshape(m.shape) for n, m in masks.items()}
                _save_mask(b / "mask.pth", rmasks, sorted(prunable))
                _save_model(b / start_name, _masked(start, rmasks))
                _save_model(b / end_name, _masked(end, rmasks))
                _logger(b / "logger", log_its, rng)
                c = rep / f"level_{level}" / f"lottery_branch_randomly_reinitialize_{reinit_hash}"
                c.mkdir()
                _save_mask(c / "mask.pth", masks, prunable)
                fresh = _masked({n: rng.standard_normal(s).astype(np.float32) for n, s in layout}, masks)
                _save_model(c / start_name, fresh)
                _save_model(c / end_name, _masked(end, masks))
                _logger(c / "logger", log_its, rng)
                t = rep / f"level_{level}" / f"lottery_branch_retrain_{retrain_hash}"
                t.mkdir()
                _save_model(t / start_name, _masked(start, masks))
                _save_model(t / end_name, end)
                _logger(t / "logger", log_its, rng)
                info["branches"] = {"random": rmasks, "reinit_start": fresh, "prune_hash": prune_hash,
                                    "reinit_hash": reinit_hash, "retrain_hash": retrain_hash}
        out["replicates"][r] = info
    return out


@pytest.fixture(scope="module")
def openlth_tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("open_lth_data")
    return root, make_openlth_run(root, widths=(300, 100), levels=2, replicates=(1, 2))


def test_parsers_read_openlth_text_files() -> None:
    cols = parse_logger("test_loss,0,1.79\ntest_accuracy,0,0.354\ntest_examples,0,10000.0\ntest_loss,469,0.13")
    assert cols["iteration"] == [0.0, 469.0] and cols["test_loss"] == [1.79, 0.13]
    assert cols["test_accuracy"][0] == 0.354 and math.isnan(cols["test_accuracy"][1])
    hp = parse_hparams("Pruning Hyperparameters\n    * pruning_strategy => sparse_global\n"
                       "    * pruning_fraction => 0.2")
    assert hp == {"Pruning Hyperparameters": {"pruning_strategy": "sparse_global", "pruning_fraction": 0.2}}


def test_import_openlth_run_bit_for_bit(openlth_tree, tmp_path: Path, capsys) -> None:
    root, made = openlth_tree
    out = tmp_path / "lenet.h5"
    assert main(["import", "openlth", str(root), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "checkpoint.pth" in text and "fc.weight" in text  # skipped files and unpruned layers are reported
    for r in (1, 2):
        info = made["replicates"][r]
        with store.TicketFile(tmp_path / f"lenet_replicate{r}.h5") as t:
            assert t.model == "lenet300"  # same parameter names and shapes as ticketlab's registry model
            assert [x.name for x in t.tensors] == ["fc_layers.0.weight", "fc_layers.1.weight", "fc.weight"]
            assert [x.pruned for x in t.tensors] == [True, True, False]
            assert t.levels == [0, 1, 2] and t.seed is None and t.dataset.name == "mnist"
            init = t.weights("init")
            for k, v in info["init"].items():
                np.testing.assert_array_equal(init[k], v)
            for level in t.levels:
                masks = t.masks(level)
                for k, m in info["masks"][level].items():
                    np.testing.assert_array_equal(masks[k], m)
                trained = t.weights(level=level)
                for k, v in info["end"][level].items():
                    np.testing.assert_array_equal(trained[k], v)
            kept = sum(int(m.sum()) for m in info["masks"][2].values())
            assert t.level_record(2)["kept"] == kept
            assert t.branches(1) == sorted(t.branches(1))
            kinds = {b: t.branch_info(1, b)["kind"] for b in t.branches(1)}
            ph, rh = info["branches"]["prune_hash"], info["branches"]["reinit_hash"]
            assert kinds == {f"randomly_prune_{ph[:8]}": "random", f"randomly_reinitialize_{rh[:8]}": "reinit",
                             f"retrain_{info['branches']['retrain_hash'][:8]}": "retrain"}
            rand = t.masks(1, branch=f"randomly_prune_{ph[:8]}")
            for k, m in info["branches"]["random"].items():
                np.testing.assert_array_equal(rand[k], m)
            for k, m in info["masks"][1].items():  # retrain inherits the level's mask
                np.testing.assert_array_equal(t.mask(1, k, branch=f"retrain_{info['branches']['retrain_hash'][:8]}"), m)
            fresh = t.weights("init", level=1, branch=f"randomly_reinitialize_{rh[:8]}")
            np.testing.assert_array_equal(fresh["fc_layers.1.weight"],
                                          info["branches"]["reinit_start"]["fc_layers.1.weight"])
            cfg = t.config
            assert cfg["hparams"]["Pruning Hyperparameters"]["pruning_layers_to_ignore"] == "fc.weight"
            assert cfg["import"]["experiment"] == made["lottery"].name and cfg["import"]["replicate"] == r
            metrics = cfg["levels"]["2"]["metrics"]
            assert metrics["iteration"] == [0, IPE, 2 * IPE]
            assert metrics["test_accuracy"][-1] == info["logs"][2][2 * IPE][1]
            assert "rewind" not in t.checkpoints()
            # the logged test metrics are the level's accuracy and loss (no predictions: no Evaluation)
            for level in t.levels:
                last_loss, last_acc = info["logs"][level][2 * IPE]
                record = t.level_record(level)
                assert record["accuracy"] == last_acc and record["loss"] == last_loss
                assert t.evaluation(level) is None


def test_overlap_of_imported_replicates_matches_the_masks(openlth_tree, tmp_path: Path, capsys) -> None:
    root, made = openlth_tree
    out = tmp_path / "lenet.h5"
    assert main(["import", "openlth", str(made["lottery"]), "--out", str(out), "--no-weights"]) == 0
    capsys.readouterr()
    a, b = tmp_path / "lenet_replicate1.h5", tmp_path / "lenet_replicate2.h5"
    assert main(["overlap", f"{a}:2", f"{b}:2", "--json"]) == 0
    rows = {r["layer"]: r for r in json.loads(capsys.readouterr().out)}
    ma, mb = made["replicates"][1]["masks"][2], made["replicates"][2]["masks"][2]
    inter = sum(int((ma[k] & mb[k]).sum()) for k in ma)
    union = sum(int((ma[k] | mb[k]).sum()) for k in ma)
    assert rows["total"]["intersection"] == inter and rows["total"]["union"] == union
    assert rows["total"]["jaccard"] == pytest.approx(inter / union, abs=1e-12)
    k = "fc_layers.1.weight"
    assert rows[k]["jaccard"] == pytest.approx((ma[k] & mb[k]).sum() / (ma[k] | mb[k]).sum(), abs=1e-12)
    with store.TicketFile(a) as t:
        with pytest.raises(Exception):
            t.weights(level=2)  # --no-weights: no trained weights stored


def test_import_rewinding_run_and_one_replicate(tmp_path: Path, capsys) -> None:
    made = make_openlth_run(tmp_path / "root", widths=(20,), levels=1, rewind=True, seed=3)
    rep = made["lottery"] / "replicate_1"
    out = tmp_path / "rw.h5"
    assert main(["import", "openlth", str(rep), "--out", str(out)]) == 0
    capsys.readouterr()
    info = made["replicates"][1]
    with store.TicketFile(out) as t:
        assert t.checkpoints() == ["init", "rewind"]
        np.testing.assert_array_equal(t.weights("init")["fc.weight"], info["init"]["fc.weight"])
        np.testing.assert_array_equal(t.weights("rewind")["fc.weight"], info["rewind"]["fc.weight"])
        assert "rewind:100" in t.method and t.model == "mnist_lenet_20"
        assert t.config["pretrain"]["rewind_iteration"] == 100
        for k, m in info["masks"][1].items():
            np.testing.assert_array_equal(t.mask(1, k), m)


def _assert_refused(args: list[str], out: Path, capsys, *words: str) -> str:
    return assert_refused(main, args, out, capsys, *words)

@pytest.mark.parametrize("damage", ["bad_value", "missing_mask", "truncated_model", "shape", "report", "pickle"])
def test_bad_run_directories_are_refused_and_nothing_is_written(damage: str, tmp_path: Path, capsys) -> None:
    made = make_openlth_run(tmp_path / "root", widths=(12,), levels=2, seed=1)
    level1 = made["lottery"] / "replicate_1" / "level_1" / "main"
    words: tuple[str, ...]
    if damage == "bad_value":
        m = torch.load(level1 / "mask.pth")
        m["fc_layers.0.weight"][0, 0] = 2
        torch.save(m, level1 / "mask.pth")
        words = ("mask.pth", "other than 0 and 1")
    elif damage == "missing_mask":
        (level1 / "mask.pth").unlink()
        words = ("missing mask.pth",)
    elif damage == "truncated_model":
        p = made["lottery"] / "replicate_1" / "level_2" / "main" / "model_ep2_it0.pth"
        p.write_bytes(p.read_bytes()[:300])
        words = ("model_ep2_it0.pth", "truncated or corrupted")
    elif damage == "shape":
        sd = torch.load(level1 / "model_ep2_it0.pth")
        sd["fc_layers.0.weight"] = torch.zeros(12, 783)
        torch.save(sd, level1 / "model_ep2_it0.pth")
        words = ("shape",)
    elif damage == "report":
        (level1 / "sparsity_report.json").write_text(json.dumps({"total": 1.0, "unpruned": 1.0}))
        words = ("sparsity_report.json", "inconsistent")
    else:
        marker = tmp_path / "payload_ran"

        class Payload:
            def __reduce__(self):
                return (Path.touch, (marker,))

        torch.save({"fc_layers.0.weight": Payload()}, level1 / "mask.pth")
        words = ("refused", "weights_only")
    out = tmp_path / "out" / "bad.h5"
    _assert_refused(["import", "openlth", str(made["lottery"]), "--out", str(out)], out, capsys, *words)
    if damage == "pickle":
        assert not marker.exists()


def test_unfinished_last_level_keeps_its_mask(tmp_path: Path, capsys) -> None:
    made = make_openlth_run(tmp_path / "root", widths=(12,), levels=2, seed=2)
    level2 = made["lottery"] / "replicate_1" / "level_2" / "main"
    for f in [*level2.glob("model_*.pth"), level2 / "logger", level2 / "checkpoint.pth"]:
        f.unlink()
    out = tmp_path / "u.h5"
    assert main(["import", "openlth", str(made["lottery"]), "--out", str(out)]) == 0
    assert "level 2: training did not finish" in capsys.readouterr().out
    with store.TicketFile(out) as t:
        assert t.levels == [0, 1, 2]
        for k, m in made["replicates"][1]["masks"][2].items():
            np.testing.assert_array_equal(t.mask(2, k), m)
        with pytest.raises(Exception, match="no stored trained weights"):
            t.weights(level=2)
