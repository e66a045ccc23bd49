"""Regenerate the example tickets shipped in data/examples/ with ticketlab itself.

    python scripts/make_examples.py              # all examples (8–9 minutes of one CPU core)
    python scripts/make_examples.py --only lenet5_rewind-init_s0

What it makes (all on the shipped MNIST, seeds 0 and 1 for LeNet-300-100):

- ``lenet300_<method>_s<seed>.h5`` for three ways of resetting after pruning — ``rewind-init`` (Frankle & Carbin
  2019; with the ``reinit`` control as a branch of every level), ``lr-rewind`` and ``finetune`` (Renda et al. 2020)
  — all with layer-wise magnitude pruning at 50% per level (output layer 25%), 5 levels of 5,000 iterations
  (about 5.5 epochs), Adam with batch 60 and a learning rate of 1.2e-3 decayed x0.1 once, at 3,750 iterations
  (75%; with a constant rate lr-rewind and finetune would coincide), the validation loss evaluated every 100
  iterations. The runs are long enough to overfit, so the early-stop iteration (the iteration of minimum
  validation loss) falls before the end at most levels: rewound tickets at 25–6% density reach it before the
  learning rate drops (iterations 1,600–2,300), while the dense network and the reinit controls reach theirs only
  after it, which is Frankle & Carbin's learning-speed result;
- ``lenet5_rewind-init_s0.h5``: LeNet-5 (a small conv net) for the structure analysis, with the short schedule
  of the first examples (4 levels of 1,000 iterations, x0.1 at 50% and 75%, evaluated every 250 iterations: its
  early stops are the last iteration).

The shipped files are compact copies (``ticketlab.store.copy_ticket``): masks, evaluations and provenance, without
the per-level weights; only ``lenet300_rewind-init_s0.h5`` and the LeNet-5 file keep their initial weights (for
the notebooks that look at them and for ``ticketlab train --mask``). Training runs with one torch thread
(``--threads``), so that the files are reproduced bit for bit on CPU with the same versions (the thread count
changes the order in which matrix products sum).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from ticketlab import store
from ticketlab.lottery import run_imp
from ticketlab.presets import build_config

LENET300 = dict(model="lenet300", dataset="mnist", strategy="layer_magnitude", rate=0.5, output_rate=0.25,
                levels=5, optimizer="adam", lr=1.2e-3, schedule="step", milestones=[3750], gamma=0.1,
                iterations=5000, batch_size=60, eval_every=100)
LENET5 = dict(model="lenet5", dataset="mnist", strategy="layer_magnitude", rate=0.5, output_rate=0.25, levels=4,
              optimizer="adam", lr=1.2e-3, schedule="step", milestones=[500, 750], gamma=0.1, iterations=1000,
              batch_size=60, eval_every=250)


def examples() -> dict[str, tuple[dict, bool]]:
    """name -> (options for build_config, keep the initial weights)."""
    out = {}
    for seed in (0, 1):
        for reset in ("rewind-init", "lr-rewind", "finetune"):
            controls = ["reinit"] if reset == "rewind-init" else "none"
            out[f"lenet300_{reset}_s{seed}"] = (dict(LENET300, reset=reset, controls=controls, seed=seed),
                                                reset == "rewind-init" and seed == 0)
    out["lenet5_rewind-init_s0"] = (dict(LENET5, reset="rewind-init", controls="none", seed=0), True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "data" / "examples"))
    parser.add_argument("--only", nargs="*", help="names of the examples to (re)make")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: the count the shipped files were made with)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    todo = examples()
    unknown = sorted(set(args.only or ()) - set(todo))
    if unknown:
        parser.error(f"unknown example(s) {', '.join(unknown)}; choose from {', '.join(todo)}")
    begin = time.process_time()
    for name in args.only or todo:
        options, keep_init = todo[name]
        config = build_config("quickstart", **options)
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            full = Path(tmp) / f"{name}.h5"
            run_imp(config, full, device="cpu", progress=False, log=lambda line: print(f"  {line}", flush=True))
            store.copy_ticket(full, out / f"{name}.h5", level_weights=False,
                              checkpoints=("init",) if keep_init else (), overwrite=True)
        size = (out / f"{name}.h5").stat().st_size
        print(f"{name}: {time.perf_counter() - start:.0f} s, {size / 1e3:.0f} kB", flush=True)
    print(f"done: {time.process_time() - begin:.0f} s of CPU time", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
