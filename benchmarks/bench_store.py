"""Ticket-file figures: mask storage (bits per weight) and mask read throughput.

    python benchmarks/bench_store.py            # 25M-weight model, ~1 minute
    python benchmarks/bench_store.py --quick    # 2.5M weights, a few seconds

1. Bits per weight on disk for one level's masks at densities 1.0, 0.5, 0.1, 0.01 (uniform random masks, the
   hardest case for compression at a given density; IMP masks have more structure and compress at least as well).
2. Reading one level's masks into boolean arrays through ``TicketFile.masks`` versus a plain h5py read of the
   same packed datasets plus ``numpy.unpackbits`` (the baseline), in the same process, interleaved, best of N.
3. The cost of one ``write_level`` transaction (copy-on-write of the whole file through
   ``ticketlab.outputs.atomic_output``) as the file grows.
4. The size of a compact copy (``store.copy_ticket(..., level_weights=False)``, written object by object in the
   HDF5 1.10 format) against an ``H5Ocopy`` of the same objects (the baseline: each object keeps its old layout),
   for a small model with many levels, branches and training curves (LeNet-300-100 shapes, 15 levels, two
   controls), where chunk indexes dominate.
5. The size of a 6-level run with trained weights and an evaluation at every level, written by the writer in
   the HDF5 1.10 object format (what ticketlab writes since 0.3) against the same run in the 1.8 format (the
   baseline, what it wrote before), for LeNet-300-100, ResNet-20 and VGG-16 shapes.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from ticketlab import store
from ticketlab.evaluation import Evaluation
from ticketlab.masks import TensorInfo

from _timing import best_of  # benchmarks/_timing.py


def model_tensors(scale: float) -> list[TensorInfo]:
    """A 25M-weight model (scale=1): eight 512x512x3x3 convs and a 4096x1500 linear layer."""
    c = max(8, int(512 * scale ** 0.5))
    tensors = [TensorInfo(f"features.{i}.weight", (c, c, 3, 3), "conv") for i in range(8)]
    tensors.append(TensorInfo("classifier.weight", (max(8, int(4096 * scale ** 0.5)), 1500), "linear"))
    return tensors


def baseline_read(path: Path, level: int, tensors: list[TensorInfo]) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        g = f[f"levels/{level}/masks"]
        return {t.name: np.unpackbits(g[t.name][()], count=t.size).reshape(t.shape) for t in tensors}


def ticketlab_read(path: Path, level: int) -> dict[str, np.ndarray]:
    with store.open_ticket(path) as t:
        return t.masks(level)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a 2.5M-weight model instead of 25M")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    tensors = model_tensors(0.1 if args.quick else 1.0)
    n = sum(t.size for t in tensors)
    rng = np.random.default_rng(0)
    densities = [1.0, 0.5, 0.1, 0.01]
    with tempfile.TemporaryDirectory() as tmp:
        path = store.create(Path(tmp) / "bench.h5", tensors=tensors, model="bench", method="random masks",
                            config={})
        writer = store.TicketWriter(path)
        print(f"model: {len(tensors)} tensors, {n:,} weights\n")
        print("1. mask storage on disk")
        print(f"{'density':>8}  {'bits/weight':>11}  {'file bytes added':>16}  {'write s':>7}")
        for level, d in enumerate(densities):
            masks = {t.name: rng.random(t.shape, dtype=np.float32) < d for t in tensors}
            before = path.stat().st_size
            start = time.perf_counter()
            writer.write_level(level, masks)
            elapsed = time.perf_counter() - start
            with h5py.File(path, "r") as f:
                g = f[f"levels/{level}/masks"]
                stored = sum(g[t.name].id.get_storage_size() for t in tensors)
            print(f"{d:>8}  {8 * stored / n:>11.3f}  {path.stat().st_size - before:>16,}  {elapsed:>7.2f}")

        print("\n2. reading one level's masks into boolean arrays (best of "
              f"{args.repeats}, interleaved)")
        print(f"{'density':>8}  {'ticketlab Mw/s':>14}  {'baseline Mw/s':>13}  {'ratio (time)':>12}"
              f"  {'ratio, file open':>17}")
        ratios = []
        for level, d in enumerate(densities):
            a = ticketlab_read(path, level)
            b = baseline_read(path, level, tensors)
            assert all(np.array_equal(a[k], b[k].view(bool)) for k in a)
            t_ours, t_base = [], []
            for _ in range(args.repeats):
                t_ours.append(best_of(lambda: ticketlab_read(path, level), 1))
                t_base.append(best_of(lambda: baseline_read(path, level, tensors), 1))
            ours, base = min(t_ours), min(t_base)
            ratios.append(ours / base)
            with store.open_ticket(path) as t:  # reading from a file that is already open
                held = best_of(lambda: t.masks(level), args.repeats)
            print(f"{d:>8}  {n / ours / 1e6:>14.0f}  {n / base / 1e6:>13.0f}  {ours / base:>12.2f}"
                  f"  {held / base:>17.2f}")
        print(f"\nworst ticketlab/baseline time ratio, open + read: {max(ratios):.2f} (target <= 1.5)")

        print("\n3. write_level transaction cost as the file grows (copy-on-write of the whole file)")
        masks = {t.name: rng.random(t.shape, dtype=np.float32) < 0.2 for t in tensors}
        weights = {t.name: rng.standard_normal(t.shape, dtype=np.float32) * masks[t.name] for t in tensors}
        print(f"{'file MB':>8}  {'write s':>7}  {'of which copy s':>15}")
        for level in range(len(densities), len(densities) + 3):
            size = path.stat().st_size
            start = time.perf_counter()
            writer.write_level(level, masks, weights=weights)
            elapsed = time.perf_counter() - start
            copy = best_of(lambda: Path(tmp, "copy.h5").write_bytes(path.read_bytes()), 1)
            print(f"{size / 1e6:>8.1f}  {elapsed:>7.2f}  {copy:>15.2f}")

        print("\n4. compact copy (1.10 format, object by object) vs H5Ocopy of the same objects")
        compact_copy_sizes(Path(tmp), rng)

        print("\n5. a 6-level run with trained weights: 1.10 object format vs 1.8 (before 0.3)")
        print(f"{'model':>10}  {'datasets':>8}  {'1.8 MB':>8}  {'1.10 MB':>8}  {'ratio':>6}")
        for model in ("lenet300", "resnet20") + (() if args.quick else ("vgg16",)):
            run_file_sizes(Path(tmp), model, rng)


def compact_copy_sizes(tmp: Path, rng: np.random.Generator, levels: int = 15) -> None:
    """A LeNet-300-100-shaped chain with two control branches per level and an evaluation with a training curve
    at each: its copy without weights, by copy_ticket and by H5Ocopy."""
    tensors = [TensorInfo("fc1.weight", (300, 784), "linear"), TensorInfo("fc2.weight", (100, 300), "linear"),
               TensorInfo("fc3.weight", (10, 100), "linear")]
    path = tmp / "chain.h5"
    labels = rng.integers(0, 10, 10_000)
    store.create(path, tensors=tensors, model="lenet300", method="bench", seed=0, config={},
                 dataset=store.DatasetInfo("mnist", 10, [str(i) for i in range(10)], labels))
    writer = store.TicketWriter(path)
    density = 1.0
    for level in range(levels):
        masks = {t.name: rng.random(t.shape) < density for t in tensors}
        curve = {"iteration": np.arange(0, 2600, 200), "test_accuracy": rng.random(13), "test_loss": rng.random(13),
                 "val_loss": rng.random(13), "train_loss": rng.random(13)}
        ev = Evaluation.from_predictions(labels, rng.integers(0, 10, 10_000), 0.1, 10, curve=curve)
        writer.write_level(level, masks, evaluation=ev)
        for branch in ("reinit", "random") if level else ():
            writer.write_branch(level, branch, masks, kind=branch, evaluation=ev)
        density *= 0.8
    compact = store.copy_ticket(path, tmp / "compact.h5", level_weights=False)
    baseline = tmp / "h5ocopy.h5"
    with h5py.File(path, "r") as fin, h5py.File(baseline, "w", libver=("v110", "latest")) as fout:
        for name in fin:
            fin.copy(fin[name], fout, name=name)
    n = [0]
    with h5py.File(compact, "r") as f:
        f.visititems(lambda _, o: n.__setitem__(0, n[0] + isinstance(o, h5py.Dataset)))
    a, b = compact.stat().st_size, baseline.stat().st_size
    print(f"{n[0]} datasets: copy_ticket {a / 1e6:.2f} MB, H5Ocopy {b / 1e6:.2f} MB, ratio {a / b:.2f}")


def run_file_sizes(tmp: Path, model: str, rng: np.random.Generator, levels: int = 6) -> None:
    """One run written twice through the writer, in the 1.10 and the 1.8 object format: its file sizes."""
    import ticketlab.store.writer as writer
    from ticketlab.models import create_model, prunable_tensors

    net = create_model(model, num_classes=10)
    tensors = prunable_tensors(net)
    state = {k: v.detach().numpy() for k, v in net.state_dict().items()}
    labels = rng.integers(0, 10, 10_000)
    sizes = {}
    for name, libver in (("1.8", ("earliest", "latest")), ("1.10", writer.LIBVER)):
        saved, writer.LIBVER = writer.LIBVER, libver
        try:
            path = tmp / f"{model}-{name}.h5"
            store.create(path, tensors=tensors, model=model, method="bench", seed=0, config={},
                         dataset=store.DatasetInfo("data", 10, [str(i) for i in range(10)], labels),
                         init_weights=state, overwrite=True)
            w = store.TicketWriter(path)
            density = 1.0
            for level in range(levels):
                masks = {t.name: np.random.default_rng(level).random(t.shape) < density for t in tensors}
                ev = Evaluation.from_predictions(labels, rng.integers(0, 10, 10_000), 0.1, 10,
                                                 curve={"iteration": np.arange(10), "test_accuracy": np.ones(10)})
                w.write_level(level, masks, evaluation=ev, weights=state)
                density *= 0.8
            sizes[name] = path.stat().st_size
        finally:
            writer.LIBVER = saved
    n = [0]
    with h5py.File(tmp / f"{model}-1.10.h5", "r") as f:
        f.visititems(lambda _, o: n.__setitem__(0, n[0] + isinstance(o, h5py.Dataset)))
    a, b = sizes["1.8"], sizes["1.10"]
    print(f"{model:>10}  {n[0]:>8}  {a / 1e6:>8.2f}  {b / 1e6:>8.2f}  {b / a:>6.2f}")


if __name__ == "__main__":
    main()
