"""Class-subset tasks (``--classes 0-4``): parsing, the restricted and renumbered data, the run configuration, and
``ticketlab train`` on digits 0-4 of the shipped MNIST with a ticket retrained on digits 5-9."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ticketlab import store
from ticketlab.cli import main
from ticketlab.datasets import (classes_text, get_dataset_spec, load_dataset, parse_classes, select_classes,
                                task_name)
from ticketlab.errors import ConfigError
from ticketlab.lottery import RunConfig
from ticketlab.presets import build_config

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = str(REPO / "data")  # the shipped MNIST, named explicitly so that $TICKETLAB_DATA cannot interfere
TINY = ["--data-dir", DATA_DIR, "--quiet", "--device", "cpu", "--iterations", "6", "--batch-size", "32",
        "--eval-every", "0", "--val-size", "300", "--controls", "none"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def mnist():
    return load_dataset("mnist", DATA_DIR)


# -- parsing and selection ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, ids, compact", [
    ("0-4", (0, 1, 2, 3, 4), "0-4"),
    ("0,2,4", (0, 2, 4), "0,2,4"),
    ("9,8,0-2", (0, 1, 2, 8, 9), "0-2,8,9"),
    ("3, 4", (3, 4), "3,4"),
    ([7, 5, 6], (5, 6, 7), "5-7"),
])
def test_parse_classes_and_its_compact_text(text, ids, compact):
    assert parse_classes(text) == ids
    assert classes_text(ids) == compact
    assert parse_classes(classes_text(ids)) == ids
    assert task_name("mnist", ids) == f"mnist[{compact}]"


@pytest.mark.parametrize("value", [None, "", "none", "all", ()])
def test_parse_classes_every_class(value):
    assert parse_classes(value) == () and task_name("mnist", parse_classes(value)) == "mnist"


@pytest.mark.parametrize("value, fragment", [
    ("4-0", "runs backwards"), ("0,0,1", "lists 0 twice"), ("3", "at least two classes"), ("a-b", "class ids"),
    ("-1,2", "class ids"), ([0, -1], ">= 0"), ([0, 1.5], "class ids"),
])
def test_parse_classes_refusals(value, fragment):
    with pytest.raises(ConfigError, match=fragment):
        parse_classes(value)


def test_select_classes_keeps_order_and_renumbers():
    x = torch.arange(10.0)[:, None]
    y = torch.tensor([0, 5, 6, 9, 1, 7, 5, 8, 2, 3])
    sx, sy = select_classes(x, y, (5, 6, 7, 8, 9))
    assert sx[:, 0].tolist() == [1, 2, 3, 5, 6, 7] and sy.tolist() == [0, 1, 4, 2, 0, 3]


def test_load_dataset_restricts_train_and_test(mnist):
    spec = get_dataset_spec("mnist")
    assert np.bincount(mnist.train_y.numpy()).tolist() == list(spec.train_class_sizes)   # the spec's counts
    sub = load_dataset("mnist", DATA_DIR, classes="5-9")
    keep_train, keep_test = mnist.train_y >= 5, mnist.test_y >= 5
    assert torch.equal(sub.train_y, mnist.train_y[keep_train] - 5) and torch.equal(sub.train_x, mnist.train_x[keep_train])
    assert torch.equal(sub.test_y, mnist.test_y[keep_test] - 5) and torch.equal(sub.test_x, mnist.test_x[keep_test])
    assert (sub.num_classes, sub.class_names, sub.classes, sub.task) == (5, ("5", "6", "7", "8", "9"),
                                                                           (5, 6, 7, 8, 9), "mnist[5-9]")
    assert len(sub.train_y) == spec.train_size_of((5, 6, 7, 8, 9))
    with pytest.raises(ConfigError, match="classes 10,11 do not exist"):
        load_dataset("mnist", DATA_DIR, classes="0,10,11")


# -- the run configuration ----------------------------------------------------------------------------------------


def test_run_config_records_classes():
    config = RunConfig(classes="4,2,0")
    assert config.classes == (0, 2, 4) and config.task == "mnist[0,2,4]"
    assert config.to_dict()["classes"] == [0, 2, 4]
    assert RunConfig.from_dict(config.to_dict()) == config
    assert config.identity()["classes"] == [0, 2, 4]
    assert "classes" not in RunConfig().identity()      # files made before class subsets stay resumable
    assert RunConfig().task == "mnist" and RunConfig().classes == ()
    with pytest.raises(ConfigError, match="classes 10 do not exist"):
        RunConfig(classes=[0, 10])
    with pytest.raises(ConfigError, match="names every class"):
        RunConfig(classes="0-9")
    with pytest.raises(ConfigError, match="val_size .* 1,000 training examples of classes 0,1 of cifar100"):
        RunConfig(dataset="cifar100", model="conv2", classes=[0, 1])
    assert RunConfig(model="my-net", dataset="my-data", classes=[0, 12]).classes == (0, 12)  # not a registry one


def test_epochs_count_the_subset():
    spec = get_dataset_spec("mnist")
    n = spec.train_size_of((0, 1, 2, 3, 4))
    assert n == 30596
    config = build_config("quickstart", classes="0-4", epochs=2, batch_size=100)
    assert config.steps_per_epoch() == (n - 5000) // 100
    assert config.train.iterations == 2 * ((n - 5000) // 100)
    assert build_config("quickstart", classes=[5, 6]).classes == (5, 6)
    assert build_config("quickstart", classes="none").classes == ()
    assert get_dataset_spec("cifar10").train_size_of((0, 1)) == 10_000   # balanced: 5,000 a class


# -- ticketlab train ------------------------------------------------------------------------------------------------


def test_train_on_a_class_subset_and_retrain_the_ticket_on_another(tmp_path, capsys, mnist):
    first, second = tmp_path / "digits04.h5", tmp_path / "transfer59.h5"
    assert main(["train", "--classes", "0-4", "--levels", "1", "--out", str(first), *TINY]) == 0
    info = capsys.readouterr().out
    assert "dataset  mnist[0-4] (5 classes, 5,139 test examples)" in info
    with store.open_ticket(first) as t:
        assert t.config["classes"] == [0, 1, 2, 3, 4]
        ds = t.dataset
        assert (ds.name, ds.num_classes, tuple(ds.class_names)) == ("mnist[0-4]", 5, ("0", "1", "2", "3", "4"))
        np.testing.assert_array_equal(ds.test_labels, mnist.test_y[mnist.test_y < 5].numpy())
        assert {x.name: x.shape for x in t.tensors}["fc.weight"][0] == 5       # one output per class
        for level in t.levels:
            ev = t.evaluation(level)
            assert ev.num_classes == 5 and ev.predictions.size == 5139        # only digits 0-4 were evaluated
            assert ev.predictions.max() < 5 and len(ev.per_class_accuracy) == 5
        ticket = t.masks(1)

    assert main(["train", "--mask", str(first), "--classes", "5-9", "--levels", "0", "--out", str(second),
                 *TINY]) == 0
    assert "dataset  mnist[5-9] (5 classes, 4,861 test examples)" in capsys.readouterr().out
    with store.open_ticket(second) as t:
        assert t.config["classes"] == [5, 6, 7, 8, 9] and t.dataset.name == "mnist[5-9]"
        np.testing.assert_array_equal(t.dataset.test_labels, mnist.test_y[mnist.test_y >= 5].numpy() - 5)
        for name, mask in t.masks(0).items():                                  # the 0-4 ticket, retrained
            np.testing.assert_array_equal(mask, ticket[name])
        assert t.evaluation(0).predictions.size == 4861


def test_train_refuses_bad_classes_in_one_line(tmp_path, capsys):
    out = tmp_path / "x.h5"
    assert main(["train", "--classes", "0,12", "--out", str(out), *TINY]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "classes 12 do not exist" in err and not out.exists()
    with pytest.raises(SystemExit):
        main(["train", "--classes", "4-0", "--out", str(out), *TINY])
    assert "runs backwards" in capsys.readouterr().err


def test_runs_on_two_class_subsets_are_told_apart(tmp_path):
    """One method on mnist[0-4] and on mnist[5-9]: two methods in legends, two populations."""
    from conftest import TOY_TENSORS
    from ticketlab import frames

    paths = []
    for task, seed in (("mnist[0-4]", 0), ("mnist[0-4]", 1), ("mnist[5-9]", 0)):
        path = tmp_path / f"{task[6:9]}_s{seed}.h5"
        store.create(path, tensors=TOY_TENSORS, model="toy", method="IMP layer_magnitude 20%/level, reset "
                     "rewind-init", config={}, seed=seed, dataset=store.DatasetInfo(task, 5))
        paths.append(path)
    with frames.opened(paths) as tickets:
        runs = [r.run for r in frames.run_infos(tickets)]
        assert runs == ["rewind-init on mnist[0-4], seed 0", "rewind-init on mnist[0-4], seed 1",
                        "rewind-init on mnist[5-9], seed 0"]
        pops = frames.populations(tickets)
        assert [(p.name, p.members) for p in pops] == [("rewind-init on mnist[0-4]", (0, 1)),
                                                       ("rewind-init on mnist[5-9]", (2,))]
