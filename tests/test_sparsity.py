"""Tests of layer-wise sparsity (``ticketlab.analysis.sparsity``) and ``ticketlab sparsity``.

Numbers are checked against counts taken directly from the masks written (``numpy.count_nonzero``) and against
hand-worked values.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from ticketlab import store
from ticketlab.analysis.sparsity import SPARSITY_COLUMNS, mask_sparsity, sparsity_table
from ticketlab.errors import ConfigError
from ticketlab.masks import TensorInfo
from cli_helpers import cli

from conftest import TOY_TENSORS

TENSORS = [TensorInfo("a.weight", (4, 5), "linear"), TensorInfo("b.weight", (2, 3, 2, 2), "conv"),
           TensorInfo("c.weight", (3, 4), "linear", pruned=False)]




def hand_ticket(path: Path, seed: int = 0, method: str = "hand-made") -> list[dict[str, np.ndarray]]:
    """Level 0 dense; level 1: a.weight keeps 5 of 20, b.weight keeps nothing (fully pruned), c untouched."""
    dense = {t.name: np.ones(t.shape, bool) for t in TENSORS}
    a = np.zeros((4, 5), bool)
    a[0, :] = True
    level1 = {"a.weight": a, "b.weight": np.zeros((2, 3, 2, 2), bool), "c.weight": np.ones((3, 4), bool)}
    store.create(path, tensors=TENSORS, model="hand", method=method, config={}, seed=seed)
    w = store.TicketWriter(path)
    w.write_level(0, dense)
    w.write_level(1, level1)
    return [dense, level1]


def test_hand_worked_table():
    f = sparsity_table({1: {"a.weight": 5, "b.weight": 0, "c.weight": 12}}, TENSORS, run="x")
    assert list(f.columns) == ["run"] + SPARSITY_COLUMNS
    a, b, c, total = (f.iloc[i] for i in range(4))
    assert (a.layer, a["size"], a.kept, a.density, a.sparsity, a.compression) == ("a.weight", 20, 5, 0.25, 0.75, 4.0)
    assert (a.kind, a.pruned, a.fully_pruned, a.untouched) == ("linear", True, False, False)
    assert b.kept == 0 and b.density == 0 and b.sparsity == 1 and math.isinf(b.compression) and b.fully_pruned
    assert c.untouched and not c.fully_pruned and c.compression == 1.0 and not c.pruned
    # the total pools counts: 17 of 56, not the mean of the layer densities
    assert (total.layer, total["size"], total.kept) == ("total", 56, 17)
    assert total.density == pytest.approx(17 / 56) and total.compression == pytest.approx(56 / 17)
    assert total.density != pytest.approx((0.25 + 0 + 1) / 3)
    assert set(f.run) == {"x"} and f.level.tolist() == [1] * 4
    assert len(sparsity_table({1: {"a.weight": 5, "b.weight": 0, "c.weight": 12}}, TENSORS, totals=False)) == 3


def test_sizes_as_mapping_and_validation():
    f = sparsity_table({0: {"x": 3}}, {"x": (2, 3)})
    assert f.iloc[0]["size"] == 6 and f.iloc[0].density == 0.5
    assert sparsity_table({0: {"x": 3}}, {"x": 6}).iloc[0].density == 0.5
    with pytest.raises(ConfigError, match="no kept count for tensor 'c.weight'"):
        sparsity_table({0: {"a.weight": 1, "b.weight": 1}}, TENSORS)
    with pytest.raises(ConfigError, match="unknown tensor 'z'"):
        sparsity_table({0: {"a.weight": 1, "b.weight": 1, "c.weight": 1, "z": 1}}, TENSORS)
    with pytest.raises(ConfigError, match="keeps 21 of 20"):
        sparsity_table({0: {"a.weight": 21, "b.weight": 1, "c.weight": 1}}, TENSORS)


def test_mask_sparsity_counts_masks():
    rng = np.random.default_rng(0)
    masks = {t.name: rng.random(t.shape) < 0.3 for t in TOY_TENSORS}
    f = mask_sparsity(masks, level=4)
    for t in TOY_TENSORS:
        row = f[f.layer == t.name].iloc[0]
        assert row.kept == int(masks[t.name].sum()) and row["size"] == masks[t.name].size and row.level == 4
    total = f[f.layer == "total"].iloc[0]
    assert total.kept == sum(int(m.sum()) for m in masks.values())
    several = mask_sparsity({0: masks, 1: {k: v & (rng.random(v.shape) < 0.5) for k, v in masks.items()}})
    assert several.level.tolist() == [0] * 4 + [1] * 4


def test_cli_every_level_matches_the_written_masks(capsys, ticket):
    path, written = ticket
    code, out, err = cli(capsys, "sparsity", str(path), "--json")
    assert code == 0, err
    records = json.loads(out)
    assert set(records[0]) == {"file", "model", "method", "seed", "level", "layer", "kind", "pruned", "size",
                               "kept", "density", "sparsity", "compression", "fully_pruned", "untouched"}
    assert sorted({r["level"] for r in records}) == list(range(len(written["masks"])))
    for r in records:
        masks = written["masks"][r["level"]]
        if r["layer"] == "total":
            kept = sum(int(m.sum()) for m in masks.values())
            size = sum(m.size for m in masks.values())
        else:
            kept, size = int(masks[r["layer"]].sum()), masks[r["layer"]].size
        assert (r["kept"], r["size"]) == (kept, size)
        assert r["density"] == pytest.approx(kept / size) and r["sparsity"] == pytest.approx(1 - kept / size)
        assert r["compression"] == pytest.approx(size / kept)
        assert (r["file"], r["model"], r["seed"]) == (str(path), "toy", 0)


def test_cli_table_flags_and_level_choice(capsys, tmp_path):
    path = tmp_path / "hand.h5"
    hand_ticket(path)
    code, out, _ = cli(capsys, "sparsity", str(path))
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"{path}: model hand, method hand-made, seed 0"
    assert lines[1].split() == ["level", "layer", "size", "kept", "density", "sparsity", "compression", "flag"]
    rows = [line.split() for line in lines[2:]]
    assert [r[:2] for r in rows] == [["0", "a.weight"], ["0", "b.weight"], ["0", "c.weight"], ["0", "total"],
                                     ["1", "a.weight"], ["1", "b.weight"], ["1", "c.weight"], ["1", "total"]]
    assert rows[0][-1] == "untouched" and rows[4][3:7] == ["5", "0.2500", "0.7500", "4.00x"]
    assert rows[5][-3:] == ["inf", "fully", "pruned"] and rows[6][-1] == "untouched" and len(rows[7]) == 7
    code, out, _ = cli(capsys, "sparsity", str(path), "--level", "0")
    assert {line.split()[0] for line in out.splitlines()[2:]} == {"0"}
    code, out, _ = cli(capsys, "sparsity", f"{path}:1", "--csv")
    lines = out.splitlines()
    assert lines[0] == ("file,model,method,seed,level,layer,kind,pruned,size,kept,density,sparsity,compression,"
                        "fully_pruned,untouched")
    assert len(lines) == 1 + 4 and lines[2].split(",")[5:10] == ["b.weight", "conv", "True", "24", "0"]
    assert lines[2].endswith(",inf,True,False")


def test_cli_compares_files(capsys, tmp_path):
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    hand_ticket(a, seed=1, method="method A")
    hand_ticket(b, seed=2, method="method B")
    code, out, _ = cli(capsys, "sparsity", str(a), f"{b}:0", "--level", "1", "--json")
    assert code == 0
    records = json.loads(out)
    assert [(r["file"], r["level"]) for r in records[::4]] == [(str(a), 1), (str(b), 0)]
    assert {(r["method"], r["seed"]) for r in records} == {("method A", 1), ("method B", 2)}
    code, out, _ = cli(capsys, "sparsity", str(a), str(b))
    assert f"{a}: model hand" in out and f"{b}: model hand" in out


def test_cli_refuses_other_models(capsys, tmp_path, ticket):
    path = tmp_path / "hand.h5"
    hand_ticket(path)
    code, _, err = cli(capsys, "sparsity", str(ticket[0]), str(path))
    assert code == 2 and err.count("\n") == 1 and "hold different models" in err
    assert "a.weight [4, 5]" in err and "conv1.weight [6, 3, 3, 3]" in err
    code, _, err = cli(capsys, "sparsity", f"{path}:7")
    assert code == 2 and "no level 7" in err
