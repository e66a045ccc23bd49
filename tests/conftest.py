"""Shared fixtures: synthetic ticket files written through the public store API."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ticketlab import store
from ticketlab.evaluation import Evaluation
from ticketlab.masks import TensorInfo

@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module, restored after it: CPU results are equal bit for bit only at equal
    thread counts (subprocesses run with ``OMP_NUM_THREADS=1``), and on a shared 2-core machine two threads
    contending with other jobs run the tiny models several times slower. Modules opt in with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--fuzz-n", type=int, default=1000, metavar="N",
                     help="corrupted ticket files tried by tests/test_fuzz.py (default 1000; 20000 for a long run)")


TOY_TENSORS = [
    TensorInfo("conv1.weight", (6, 3, 3, 3), "conv"),
    TensorInfo("fc1.weight", (40, 24), "linear"),
    TensorInfo("fc2.weight", (10, 40), "linear", pruned=False),
]


def toy_state_dict(rng: np.random.Generator) -> dict[str, np.ndarray]:
    sd = {}
    for t in TOY_TENSORS:
        sd[t.name] = rng.standard_normal(t.shape).astype(np.float32)
        sd[t.name.replace("weight", "bias")] = rng.standard_normal(t.shape[0]).astype(np.float32)
    sd["bn.running_mean"] = np.zeros(6, np.float32)
    sd["bn.num_batches_tracked"] = np.array(7, np.int64)
    return sd


def nested_masks(rng: np.random.Generator, levels: int, rate: float = 0.3) -> list[dict[str, np.ndarray]]:
    """Nested random masks: level L keeps ~(1-rate)^L of each pruned tensor; unpruned tensors stay all-ones."""
    current = {t.name: np.ones(t.shape, bool) for t in TOY_TENSORS}
    out = [{k: v.copy() for k, v in current.items()}]
    for _ in range(levels):
        for t in TOY_TENSORS:
            if t.pruned:
                m = current[t.name]
                kept = np.flatnonzero(m)
                drop = rng.choice(kept, size=int(round(rate * kept.size)), replace=False)
                m.reshape(-1)[drop] = False
        out.append({k: v.copy() for k, v in current.items()})
    return out


def toy_evaluation(rng: np.random.Generator, labels: np.ndarray, level: int) -> Evaluation:
    preds = np.where(rng.random(labels.size) < 0.9 - 0.05 * level, labels, rng.integers(0, 10, labels.size))
    iters = np.arange(0, 101, 20)
    val_loss = rng.random(iters.size)
    return Evaluation.from_predictions(
        labels, preds, loss=0.1 + 0.05 * level, num_classes=10,
        curve={"iteration": iters, "val_loss": val_loss, "lr": np.full(iters.size, 0.1)},
        early_stop_iteration=int(iters[np.argmin(val_loss)]), iterations=100, wall_time=1.25,
    )


def make_ticket(path: Path, levels: int = 3, seed: int = 0, n_test: int = 200, with_weights: bool = True,
                branches: tuple[str, ...] = ()) -> dict:
    """Write a synthetic ticket file and return what was written (for comparison)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n_test)
    init = toy_state_dict(rng)
    store.create(
        path, tensors=TOY_TENSORS, model="toy", method="synthetic nested random masks",
        config={"model": "toy", "rate": 0.3, "levels": levels, "note": "x" * 100_000}, seed=seed,
        dataset=store.DatasetInfo("toyset", 10, tuple(f"class{i}" for i in range(10)), labels),
        init_weights=init,
    )
    writer = store.TicketWriter(path)
    masks = nested_masks(rng, levels)
    evals, weights = [], []
    for level, m in enumerate(masks):
        ev = toy_evaluation(rng, labels, level)
        w = {k: (v * m[k] if k in m else v) for k, v in toy_state_dict(rng).items()} if with_weights else None
        writer.write_level(level, m, evaluation=ev, weights=w)
        for b in branches:
            writer.write_branch(level, b, nested_masks(rng, 1)[1], kind=b, evaluation=ev, init_weights=init, seed=1)
        evals.append(ev)
        weights.append(w)
    return {"masks": masks, "evals": evals, "weights": weights, "init": init, "labels": labels}


@pytest.fixture
def ticket(tmp_path: Path) -> tuple[Path, dict]:
    path = tmp_path / "run.h5"
    return path, make_ticket(path)


def assert_refused(main, args: list[str], out: Path, capsys, *words: str) -> str:
    """Run the CLI ``main(args)``: exit status 2, one line on stderr containing ``words``, and nothing at ``out``
    (neither the file nor a hidden temporary beside it). Returns the error line."""
    assert main(args) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    for w in words:
        assert w in err, err
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")]
    return err
