"""``ticketlab import torch-prune``: state dicts of models genuinely pruned with torch.nn.utils.prune (and masked
with torch.nn.utils.parametrize), under DDP-style and torch.compile prefixes, imported bit for bit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize, prune

from ticketlab import store
from ticketlab.cli import main
from ticketlab.io import normalise_state_dict

from conftest import assert_refused


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.bn = nn.BatchNorm2d(8)
        self.fc1 = nn.Linear(8 * 6 * 6, 32)
        self.fc2 = nn.Linear(32, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(self.bn(self.conv(x)).flatten(1))))


PRUNED = ["conv.weight", "fc1.weight"]


@pytest.fixture
def pruned_levels(tmp_path: Path) -> tuple[list[Path], list[dict[str, np.ndarray]], list[dict], Path]:
    """Level 0 dense (plain state dict); levels 1-3 iteratively pruned (global L1 at 30% of the remaining);
    level 2 saved with DDP's 'module.' prefix, level 3 through torch.compile's '_orig_mod.'."""
    torch.manual_seed(0)
    net = Net()
    init = tmp_path / "init.pt"
    torch.save(net.state_dict(), init)
    paths = [tmp_path / "l0.pt"]
    masks = [{k: np.ones(tuple(net.get_parameter(k).shape), bool) for k in PRUNED + ["fc2.weight"]}]
    sds = [{k: v.clone() for k, v in net.state_dict().items()}]
    torch.save(net.state_dict(), paths[0])
    prune.identity(net.fc2, "weight")  # masked, never pruned
    for level in (1, 2, 3):
        prune.global_unstructured([(net.conv, "weight"), (net.fc1, "weight")], prune.L1Unstructured, amount=0.3)
        with torch.no_grad():
            net.fc1.weight_orig.add_(0.01 * level)  # "training" between levels
        sd = net.state_dict()
        if level == 2:
            sd = {f"module.{k}": v for k, v in sd.items()}
        elif level == 3:
            sd = torch.compile(net).state_dict()
            assert next(iter(sd)).startswith("_orig_mod.")
        p = tmp_path / f"l{level}.pt"
        torch.save(sd, p)
        paths.append(p)
        masks.append({"conv.weight": net.conv.weight_mask.numpy().astype(bool),
                      "fc1.weight": net.fc1.weight_mask.numpy().astype(bool),
                      "fc2.weight": net.fc2.weight_mask.numpy().astype(bool)})
        sds.append({k: v.clone() for k, v in net.state_dict().items()})
    return paths, masks, sds, init


def test_imports_every_level_bit_for_bit(pruned_levels, tmp_path: Path, capsys) -> None:
    paths, masks, sds, init = pruned_levels
    out = tmp_path / "t.h5"
    assert main(["import", "torch-prune", *map(str, paths), "--init", str(init), "--out", str(out)]) == 0
    assert "fc2.weight" in capsys.readouterr().out  # reported as masked but never pruned
    with store.TicketFile(out) as t:
        assert [x.name for x in t.tensors] == ["conv.weight", "fc1.weight", "fc2.weight"]
        assert [x.pruned for x in t.tensors] == [True, True, False]
        assert [x.kind for x in t.tensors] == ["conv", "linear", "linear"]
        assert t.levels == [0, 1, 2, 3]
        np.testing.assert_array_equal(t.weights("init")["fc1.weight"], torch.load(init)["fc1.weight"].numpy())
        for level, expected in enumerate(masks):
            got = t.masks(level)
            for k, m in expected.items():
                np.testing.assert_array_equal(got[k], m)
            w = t.weights(level=level)
            sd = sds[level]
            for k in PRUNED:
                orig = sd[k + "_orig"] if level else sd[k]
                np.testing.assert_array_equal(w[k], (orig * torch.from_numpy(expected[k])).numpy())
            np.testing.assert_array_equal(w["bn.running_var"], sd["bn.running_var"].numpy())


def test_overlap_of_imported_levels_matches_prune_masks(pruned_levels, tmp_path: Path, capsys) -> None:
    paths, masks, _, _ = pruned_levels
    out = tmp_path / "t.h5"
    assert main(["import", "torch-prune", str(paths[1]), str(paths[3]), "--out", str(out), "--no-weights",
                 "--start-level", "1"]) == 0
    capsys.readouterr()
    assert main(["overlap", f"{out}:1", f"{out}:2", "--json"]) == 0
    rows = {r["layer"]: r for r in json.loads(capsys.readouterr().out)}
    a, b = masks[1], masks[3]
    for k in PRUNED:
        assert rows[k]["intersection"] == int((a[k] & b[k]).sum())
        assert rows[k]["jaccard"] == pytest.approx((a[k] & b[k]).sum() / (a[k] | b[k]).sum(), abs=1e-12)
    inter = sum(int((a[k] & b[k]).sum()) for k in a)
    union = sum(int((a[k] | b[k]).sum()) for k in a)
    assert rows["total"]["jaccard"] == pytest.approx(inter / union, abs=1e-12)


class KeepMask(nn.Module):
    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w * self.mask


def test_parametrize_masks_and_names(tmp_path: Path, capsys) -> None:
    torch.manual_seed(1)
    net = Net()
    m = (torch.rand(32, 288) > 0.6).float()
    parametrize.register_parametrization(net.fc1, "weight", KeepMask(m))
    sd = net.state_dict()
    assert "fc1.parametrizations.weight.0.mask" in sd
    norm = normalise_state_dict(sd)
    assert "fc1.weight" in norm.weights and list(norm.masks) == ["fc1.weight"]
    p = tmp_path / "param.pt"
    torch.save({f"module.{k}": v for k, v in sd.items()}, p)
    out = tmp_path / "p.h5"
    assert main(["import", "torch-prune", str(p), "--out", str(out)]) == 0
    capsys.readouterr()
    with store.TicketFile(out) as t:
        assert [x.name for x in t.tensors] == ["fc1.weight"]
        np.testing.assert_array_equal(t.mask(0, "fc1.weight"), m.numpy().astype(bool))
        w = t.weights(level=0)
        np.testing.assert_array_equal(w["fc1.weight"], (net.fc1.parametrizations.weight.original * m).detach().numpy())
        assert "conv.weight" in w  # unmasked tensors are stored as they are


def _refused(args: list[str], out: Path, capsys, *words: str) -> str:
    return assert_refused(main, args, out, capsys, *words)

def test_saved_module_is_refused_without_unpickling(tmp_path: Path, capsys) -> None:
    net = Net()
    prune.l1_unstructured(net.fc1, "weight", 0.5)
    p = tmp_path / "model.pt"
    torch.save(net, p)  # a whole pickled module
    out = tmp_path / "o" / "t.h5"
    _refused(["import", "torch-prune", str(p), "--out", str(out)], out, capsys, "refused", "model.state_dict()")


class Payload:
    """Unpickling this runs Path.touch(marker): the test proves that never happens."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_malicious_pickle_payload_never_runs(tmp_path: Path, capsys) -> None:
    marker = tmp_path / "payload_ran"
    p = tmp_path / "evil.pt"
    torch.save({"fc.weight_orig": torch.ones(2, 2), "fc.weight_mask": torch.ones(2, 2), "x": Payload(marker)}, p)
    out = tmp_path / "o" / "t.h5"
    _refused(["import", "torch-prune", str(p), "--out", str(out)], out, capsys, "refused", "weights_only")
    assert not marker.exists()
    _refused(["import", "checkpoint", str(p), "--out", str(out)], out, capsys, "refused")
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["value", "shape", "truncated", "no_masks", "second_level"])
def test_bad_state_dicts_exit_2_and_write_nothing(damage: str, pruned_levels, tmp_path: Path, capsys) -> None:
    paths, _, _, _ = pruned_levels
    sd = torch.load(paths[1])
    p = tmp_path / "bad.pt"
    srcs = [str(p)]
    if damage == "value":
        sd["fc1.weight_mask"][0, 0] = 0.5
        words = ("other than 0 and 1", "fc1.weight")
    elif damage == "shape":
        sd["fc1.weight_mask"] = torch.ones(3, 3)
        words = ("shape",)
    elif damage == "no_masks":
        sd = {k: v for k, v in Net().state_dict().items()}
        words = ("no torch.nn.utils.prune masks",)
    elif damage == "second_level":
        del sd["fc1.weight_orig"], sd["fc1.weight_mask"]
        srcs = [str(paths[1]), str(p)]
        words = ("fc1.weight",)
    torch.save(sd, p)
    if damage == "truncated":
        p.write_bytes(paths[1].read_bytes()[:-200])
        words = ("truncated or corrupted",)
    out = tmp_path / "o" / "t.h5"
    _refused(["import", "torch-prune", *srcs, "--out", str(out)], out, capsys, *words)


def test_existing_output_is_kept(pruned_levels, tmp_path: Path, capsys) -> None:
    paths, _, _, _ = pruned_levels
    out = tmp_path / "t.h5"
    out.write_bytes(b"precious")
    assert main(["import", "torch-prune", str(paths[1]), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err and out.read_bytes() == b"precious"
    assert main(["import", "torch-prune", str(paths[1]), "--out", str(out), "--overwrite"]) == 0
    assert store.TicketFile(out).levels == [0]
