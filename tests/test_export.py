"""``ticketlab export`` and :func:`ticketlab.io.apply_ticket`: tickets handed to torch.nn.utils.prune and as
masked state dicts; export -> import round trips are lossless."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from ticketlab import store
from ticketlab.cli import main
from ticketlab.io import apply_ticket, export_state_dict
from ticketlab.models import prunable_tensors


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3)
        self.bn = nn.BatchNorm2d(6)
        self.fc1 = nn.Linear(6 * 4 * 4, 20)
        self.fc = nn.Linear(20, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.fc1(self.bn(self.conv(x)).flatten(1))))


def _np(sd: dict) -> dict[str, np.ndarray]:
    return {k: v.detach().float().numpy() if v.dtype == torch.bfloat16 else v.detach().numpy() for k, v in sd.items()}


@pytest.fixture
def ticket(tmp_path: Path) -> tuple[Path, dict]:
    """A ticket of Net: levels 0-2 (random nested masks), trained weights at level 1 only, a rewind point and
    a reinit branch with its own initial weights at level 2. fc is left unpruned."""
    torch.manual_seed(0)
    net = Net()
    tensors = prunable_tensors(net, exclude=["fc.weight"])
    init = {k: v.clone() for k, v in net.state_dict().items()}
    path = tmp_path / "run.h5"
    store.create(path, tensors=tensors, model="net", method="test", config={}, seed=0, init_weights=init)
    w = store.TicketWriter(path)
    rng = np.random.default_rng(0)
    masks = [{t.name: np.ones(t.shape, bool) for t in tensors}]
    for _ in range(2):
        masks.append({t.name: masks[-1][t.name] & (rng.random(t.shape) < (0.7 if t.pruned else 2))
                      for t in tensors})
    trained = {k: v + 0.5 for k, v in init.items()}
    trained = {k: v * torch.from_numpy(masks[1][k]) if k in masks[1] else v for k, v in trained.items()}
    rewind = {k: v - 0.25 for k, v in init.items()}
    w.write_checkpoint("rewind", rewind, iteration=10)
    w.write_level(0, masks[0])
    w.write_level(1, masks[1], weights=trained)
    w.write_level(2, masks[2])
    fresh = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in init.items()}
    w.write_branch(2, "reinit", masks[2], kind="reinit", init_weights=fresh)
    return path, {"masks": masks, "init": init, "trained": trained, "rewind": rewind, "fresh": fresh}


def test_torch_prune_export_loads_strictly_into_a_pruned_model(ticket, tmp_path: Path, capsys) -> None:
    path, made = ticket
    out = tmp_path / "t1.pt"
    assert main(["export", str(path), "--level", "1", "--format", "torch-prune", "--out", str(out)]) == 0
    assert "trained weights of level 1" in capsys.readouterr().out
    model = Net()
    for mod in (model.conv, model.fc1, model.fc):
        prune.identity(mod, "weight")
    model.load_state_dict(torch.load(out, weights_only=True), strict=True)
    for name, mod in (("conv.weight", model.conv), ("fc1.weight", model.fc1), ("fc.weight", model.fc)):
        np.testing.assert_array_equal(mod.weight_mask.numpy().astype(bool), made["masks"][1][name])
        np.testing.assert_array_equal(mod.weight_orig.detach().numpy(), made["trained"][name].numpy())
    model.eval()(torch.randn(2, 3, 6, 6))


def test_state_dict_export_notes_which_weights(ticket, tmp_path: Path, capsys) -> None:
    path, made = ticket
    out = tmp_path / "s2.pt"
    assert main(["export", str(path), "--level", "2", "--out", str(out)]) == 0
    assert "no trained weights stored: initial weights with the mask of level 2" in capsys.readouterr().out
    sd = torch.load(out, weights_only=True)
    model = Net()
    model.load_state_dict(sd, strict=True)
    m = made["masks"][2]["fc1.weight"]
    np.testing.assert_array_equal(sd["fc1.weight"].numpy(), made["init"]["fc1.weight"].numpy() * m)
    assert (sd["fc1.weight"].numpy()[~m] == 0).all()
    np.testing.assert_array_equal(sd["bn.running_var"].numpy(), made["init"]["bn.running_var"].numpy())
    sd, note = export_state_dict(path, 2, weights="rewind")
    expected = made["rewind"]["conv.weight"].numpy() * made["masks"][2]["conv.weight"]
    np.testing.assert_array_equal(sd["conv.weight"].numpy(), expected)
    assert "rewind" in note
    sd, note = export_state_dict(path, 2, branch="reinit", weights="init")
    np.testing.assert_array_equal(sd["fc.weight"].numpy(), made["fresh"]["fc.weight"].numpy())
    assert "its own" in note


def test_export_then_import_is_lossless(ticket, tmp_path: Path, capsys) -> None:
    path, made = ticket
    tp, ck = tmp_path / "t.pt", tmp_path / "s.safetensors"
    assert main(["export", str(path), "--level", "1", "--format", "torch-prune", "--out", str(tp)]) == 0
    assert main(["export", str(path), "--level", "1", "--format", "state-dict", "--out", str(ck)]) == 0
    assert main(["import", "torch-prune", str(tp), "--out", str(tmp_path / "a.h5"), "--start-level", "1"]) == 0
    assert main(["import", "checkpoint", str(ck), "--out", str(tmp_path / "b.h5"), "--zero-threshold", "0",
                 "--start-level", "1", "--weights"]) == 0
    capsys.readouterr()
    with store.TicketFile(path) as t0, store.TicketFile(tmp_path / "a.h5") as ta, \
            store.TicketFile(tmp_path / "b.h5") as tb:
        names = [x.name for x in t0.tensors]
        assert [x.name for x in ta.tensors] == names and [x.pruned for x in ta.tensors] == [True, True, False]
        assert sorted(x.name for x in tb.tensors) == sorted(names)
        for name in names:
            np.testing.assert_array_equal(ta.mask(1, name), t0.mask(1, name))
            np.testing.assert_array_equal(tb.mask(1, name), t0.mask(1, name))
        w0, wa, wb = t0.weights(level=1), ta.weights(level=1), tb.weights(level=1)
        assert set(wa) == set(w0)
        for k in w0:
            np.testing.assert_array_equal(wa[k], w0[k])
            np.testing.assert_array_equal(wb[k], w0[k])


def test_apply_ticket_prunes_a_wrapped_module(ticket) -> None:
    path, made = ticket
    model = nn.DataParallel(Net())  # 'module.' prefix, as under DDP
    apply_ticket(model, path, 1, weights="trained")
    inner = model.module
    for name, mod in (("conv.weight", inner.conv), ("fc1.weight", inner.fc1)):
        assert prune.is_pruned(mod)
        np.testing.assert_array_equal(mod.weight_mask.numpy().astype(bool), made["masks"][1][name])
        np.testing.assert_array_equal(mod.weight.detach().numpy(), made["trained"][name].numpy())
    other = apply_ticket(Net(), path, 2)  # masks only: the module keeps its own weights
    assert (other.fc1.weight.detach().numpy()[~made["masks"][2]["fc1.weight"]] == 0).all()
    with pytest.raises(Exception, match="no parameter"):
        apply_ticket(nn.Linear(3, 3), path, 1)


def test_bfloat16_weights_keep_their_dtype(tmp_path: Path) -> None:
    torch.manual_seed(1)
    net = Net().to(torch.bfloat16)
    tensors = prunable_tensors(net)
    sd = net.state_dict()
    path = tmp_path / "bf.h5"
    store.create(path, tensors=tensors, model="net", method="test", config={}, init_weights=sd)
    masks = {t.name: np.random.default_rng(0).random(t.shape) < 0.5 for t in tensors}
    store.TicketWriter(path).write_level(0, masks)
    out, note = export_state_dict(path, 0, format="torch-prune")
    assert out["fc1.weight_orig"].dtype == torch.bfloat16 and out["fc1.weight_mask"].dtype == torch.bfloat16
    assert torch.equal(out["fc1.weight_orig"], sd["fc1.weight"])


@pytest.mark.parametrize("case", ["no_weights", "no_rewind", "exists", "no_level"])
def test_export_errors_exit_2(case: str, ticket, tmp_path: Path, capsys) -> None:
    path, _ = ticket
    out = tmp_path / "x.pt"
    args = ["export", str(path), "--out", str(out)]
    if case == "no_weights":
        t = tmp_path / "masks_only.h5"
        store.create(t, tensors=prunable_tensors(Net()), model="net", method="m", config={})
        store.TicketWriter(t).write_level(0, {x.name: np.ones(x.shape, bool) for x in prunable_tensors(Net())})
        args[1] = str(t)
        word = "apply_ticket"
    elif case == "no_rewind":
        t = tmp_path / "norewind.h5"
        store.create(t, tensors=prunable_tensors(Net()), model="net", method="m", config={},
                     init_weights=Net().state_dict())
        store.TicketWriter(t).write_level(0, {x.name: np.ones(x.shape, bool) for x in prunable_tensors(Net())})
        args[1:2] = [str(t), "--weights", "rewind"]
        word = "rewind"
    elif case == "exists":
        out.write_bytes(b"keep")
        word = "already exists"
    else:
        args += ["--level", "7"]
        word = "no level 7"
    assert main(args) == 2
    err = capsys.readouterr().err
    assert word in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists() or out.read_bytes() == b"keep"
