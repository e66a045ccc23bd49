"""Throughput of batched training (``ticketlab.batched.train_chains``) against K sequential single-chain
``ticketlab.training.train`` calls and a bare PyTorch loop, in one process.

Variants, each training K chains of the same model (random masks of density 0.5, their own seeds, random data in
memory, batch 60, Adam lr 1.2e-3 unless ``--optimizer``), ``steps`` steps per chain:

``batched``     one ``train_chains`` call for the K chains (set-up, CUDA graph capture and the end-of-call
                evaluation-free bookkeeping included);
``steady``      the batched step alone, replayed in a loop after set-up (what a long run converges to; on CUDA
                timed between synchronisations);
``sequential``  ``train`` calls, one chain after another (today's path);
``bare``        plain PyTorch loops (``model(x[idx])``, cross-entropy, backward, the fused torch optimizer; no
                masks), one chain after another.

Sequential and bare chain-steps/s do not depend on K, so they are timed on the first few chains only
(``--sequential-chains``).

Every round runs one block of each variant (in rotating order); reported are chain-steps/s (median and best over
rounds) and three ratios: the median of the per-round ratios (robust to slow drifts in machine load), best block
over best block (contention only slows a block down, so the best blocks estimate the undisturbed speeds) and
chain-steps per CPU-second of this process (insensitive to time spent descheduled). On a shared CPU the absolute
rates swing; read the ratios, best/best first.

Usage::

    python benchmarks/bench_batched.py                      # CPU: LeNet-300-100 K = 1, 8, 32; Conv-4 K = 16
    python benchmarks/bench_batched.py --quick              # a smoke test (seconds)
    python benchmarks/bench_batched.py --device cuda        # the GPU figures of issue 11

The last lines print the verdict for the CPU default of ``--chains-per-process``: batch only where ``batched``
measures at least as fast as ``sequential``.

End to end (``--imp PRESET``): whole IMP runs of a preset for several seeds through ``ticketlab.lottery.run_imps``
(data loading, every level's trainings and controls, pruning, evaluations, file writes), once per
``--imp-chains`` value (1 = the runs one after another by the single path), timed by wall clock::

    python benchmarks/bench_batched.py --imp quickstart --imp-seeds 0 --imp-chains 1,2 --device cuda   # <= 10 s
    python benchmarks/bench_batched.py --imp lth-lenet300 --imp-seeds 0-4 --imp-controls reinit,random \
        --imp-chains 15 --device cuda                                      # the issue-11 study, <= 6 minutes
    python benchmarks/bench_batched.py --imp quickstart --imp-seeds 0-1 --imp-iterations 100 --imp-levels 2 \
        --imp-chains 1,4                                                   # a CPU-sized check
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from ticketlab.batched import ChainSpec, train_chains
from ticketlab.batched.engine import _Group, _make_runner
from ticketlab.models import create_model
from ticketlab.training import TrainConfig, epoch_permutation, make_optimizer, steps_per_epoch, train

# model -> (input shape, examples in memory, steps per block on CPU / CUDA, quick steps)
SETTINGS = {
    "lenet300": dict(shape=(1, 28, 28), n=60_000, steps=20, cuda_steps=2000, quick=5),
    "conv4": dict(shape=(3, 32, 32), n=10_000, steps=1, cuda_steps=300, quick=1),
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_specs(name: str, k: int, config: TrainConfig, shape) -> list[ChainSpec]:
    specs = []
    for c in range(k):
        torch.manual_seed(c)
        model = create_model(name, 10, shape)
        rng = np.random.default_rng(c)
        masks = {n: rng.random(tuple(p.shape)) < 0.5 for n, p in model.named_parameters() if n.endswith("weight")}
        specs.append(ChainSpec(weights=model.state_dict(), config=config, seed=c, masks=masks))
    return specs


class Bare:
    """A plain PyTorch loop (fused optimizer, same data order as ``train``), no masks."""

    def __init__(self, name, spec: ChainSpec, data, device):
        self.model = create_model(name, 10, tuple(data[0].shape[1:]))
        self.model.load_state_dict(spec.weights)
        self.model.to(device)
        self.x, self.y = data[0].to(device), data[1].to(device)
        self.config, self.seed, self.device = spec.config, spec.seed, device
        self.optimizer = make_optimizer(self.model, spec.config)
        self.spe = steps_per_epoch(len(self.x), spec.config.batch_size)
        self.it, self.epoch, self.perm = 0, -1, None

    def run(self, steps: int) -> None:
        model, opt, x, y, bs = self.model, self.optimizer, self.x, self.y, self.config.batch_size
        for it in range(self.it, self.it + steps):
            e, pos = divmod(it, self.spe)
            if e != self.epoch:
                self.epoch, self.perm = e, epoch_permutation(self.seed, e, len(x)).to(self.device)
            idx = self.perm[pos * bs : pos * bs + bs]
            loss = F.cross_entropy(model(x.index_select(0, idx)), y.index_select(0, idx))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        self.it += steps


def bench(name: str, k: int, args, device: torch.device) -> dict[str, float]:
    s = SETTINGS[name]
    steps = args.steps or (s["quick"] if args.quick else s["cuda_steps"] if device.type == "cuda" else s["steps"])
    rounds = args.rounds or (1 if args.quick else 3 if device.type == "cuda" else 5)
    n = min(s["n"], 3000) if args.quick else s["n"]
    g = torch.Generator().manual_seed(0)
    x = torch.randn((n, *s["shape"]), generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    data = (x.to(device), y.to(device))
    # long enough a schedule for every round's block
    config = TrainConfig(optimizer=args.optimizer, lr=args.lr, batch_size=60, iterations=steps * (rounds + 2))
    specs = make_specs(name, k, config, s["shape"])
    blocks = [dataclasses_replace_window(specs, r, steps) for r in range(rounds + 1)]
    template = create_model(name, 10, s["shape"])
    # sequential and bare rates (chain-steps/s) do not depend on K: time them on the first few chains only
    few = min(k, args.sequential_chains or (1 if device.type == "cuda" else 4))
    bare = [Bare(name, spec, data, device) for spec in specs[:few]]

    # the steady batched step: one group set up once, its step replayed
    group = _Group(template, specs, data, None, None, device, None, 1000, "float32", None, None)
    runner = _make_runner(group, device.type == "cuda", {})

    def run_batched(r):
        train_chains(template, blocks[r], data, device=device, progress=False)

    def run_steady(r):
        for _ in range(steps):
            runner()
        sync(device)

    def run_sequential(r):
        for spec in blocks[r][:few]:
            model = copy.deepcopy(template)
            model.load_state_dict(spec.weights)
            model.to(device)
            train(model, spec.masks, data, spec.config, start_iteration=spec.start_iteration,
                  stop_iteration=spec.stop_iteration, seed=spec.seed, device=device, progress=False)
        sync(device)

    def run_bare(r):
        for b in bare:
            b.run(steps)
        sync(device)

    variants = {"batched": run_batched, "steady": run_steady, "sequential": run_sequential, "bare": run_bare}
    wall: dict[str, list[float]] = {v: [] for v in variants}  # chain-steps per second of wall-clock time
    cpu: dict[str, list[float]] = {v: [] for v in variants}  # chain-steps per CPU-second of this process
    order = list(variants)
    for r in range(rounds + 1):  # round 0 warms up (allocator, kernels, graph capture), untimed
        for v in order:
            sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            variants[v](r)
            if r:
                chains = few if v in ("sequential", "bare") else k
                wall[v].append(chains * steps / (time.perf_counter() - t0))
                cpu[v].append(chains * steps / max(time.process_time() - c0, 1e-9))
        order = order[1:] + order[:1]
    pairs = (("batched", "sequential"), ("steady", "sequential"), ("batched", "bare"), ("steady", "bare"),
             ("sequential", "bare"))
    out = {v: statistics.median(x) for v, x in wall.items()}
    for a, b in pairs:
        out[f"{a}/{b}"] = statistics.median(p / q for p, q in zip(wall[a], wall[b]))  # paired, wall clock
        out[f"{a}/{b} best"] = max(wall[a]) / max(wall[b])  # least-disturbed block over least-disturbed block
        out[f"{a}/{b} cpu"] = statistics.median(cpu[a]) / statistics.median(cpu[b])  # per CPU-second
    engine = "graph" if group.device.type == "cuda" and runner != group.step else "eager"
    print(f"{name:8s} K={k:3d} ({steps} steps x {rounds} rounds, {engine}): chain-steps/s median (best): "
          + ", ".join(f"{v} {out[v]:,.0f} ({max(wall[v]):,.0f})" for v in variants), flush=True)
    for a, b in pairs:
        print(f"          {a}/{b}: {out[f'{a}/{b}']:.2f}x paired median, {out[f'{a}/{b} best']:.2f}x best/best, "
              f"{out[f'{a}/{b} cpu']:.2f}x per CPU-second", flush=True)
    return out


def dataclasses_replace_window(specs: list[ChainSpec], r: int, steps: int) -> list[ChainSpec]:
    """The specs moved to the window of round ``r`` (so that rounds do not replay the same batches)."""
    import dataclasses

    return [dataclasses.replace(s, start_iteration=r * steps, stop_iteration=(r + 1) * steps) for s in specs]


def seed_list(text: str) -> list[int]:
    out = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += range(int(lo), int(hi or lo) + 1)
    return out


def bench_imp(args, device: torch.device) -> None:
    """``--imp``: whole IMP runs of a preset for several seeds, once per ``--imp-chains`` value."""
    import tempfile
    from pathlib import Path

    from ticketlab.lottery import run_imps
    from ticketlab.presets import build_config

    overrides = dict(levels=args.imp_levels, iterations=args.imp_iterations or None, data_dir=args.data_dir,
                     controls=None if args.imp_controls is None else [c for c in args.imp_controls.split(",") if c])
    seeds = seed_list(args.imp_seeds)
    configs = [build_config(args.imp, seed=s, **overrides) for s in seeds]
    c = configs[0]
    trainings = len(seeds) * (1 + c.levels * (1 + len(c.controls)))
    print(f"{args.imp}: {len(seeds)} seeds x {c.levels + 1} levels x {c.train.iterations} iterations, controls "
          f"{','.join(c.controls) or 'none'}: {trainings} trainings", flush=True)
    for k in [int(v) for v in args.imp_chains.split(",") if v]:
        with tempfile.TemporaryDirectory(prefix="bench-imp-") as tmp:
            paths = [Path(tmp) / f"seed{s}.h5" for s in seeds]
            sync(device)
            t0 = time.perf_counter()
            run_imps(configs, paths, device=str(device), progress=False, chains_per_process=k)
            sync(device)
            wall = time.perf_counter() - t0
        steps = sum(r.train.iterations + r.levels * (1 + len(r.controls)) * (lambda w: w[1] - w[0])(
            r.retrain_window(r.steps_per_epoch())) for r in configs)
        print(f"  chains per process {k:3d}: {wall:8.1f} s end to end, {steps / wall:,.0f} chain-steps/s "
              "(data loading and evaluations included)", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    ap.add_argument("--quick", action="store_true", help="few short blocks (a smoke test, noisy)")
    ap.add_argument("--chains", default="1,8,32", help="K for LeNet-300-100 (default 1,8,32)")
    ap.add_argument("--conv-chains", default="16", help="K for Conv-4 (default 16; empty to skip)")
    ap.add_argument("--steps", type=int, default=0, help="steps per chain per block (default per model/device)")
    ap.add_argument("--rounds", type=int, default=0, help="timed rounds (default 5, 3 on CUDA; 1 with --quick)")
    ap.add_argument("--sequential-chains", type=int, default=0,
                    help="chains timed for sequential and bare, whose rates do not depend on K (default 4; 1 on CUDA)")
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (default: torch's default)")
    ap.add_argument("--optimizer", default="adam")
    ap.add_argument("--lr", type=float, default=1.2e-3)
    g = ap.add_argument_group("end to end (--imp)")
    g.add_argument("--imp", metavar="PRESET", help="time whole IMP runs of this preset instead (see the docstring)")
    g.add_argument("--imp-seeds", default="0-1", help="seeds, e.g. 0-4 (default 0-1)")
    g.add_argument("--imp-chains", default="1,8", help="chains per process to compare (default 1,8)")
    g.add_argument("--imp-levels", type=int, help="override the preset's levels")
    g.add_argument("--imp-iterations", type=int, help="override the preset's iterations")
    g.add_argument("--imp-controls", help="override the preset's controls (comma-separated; '' for none)")
    g.add_argument("--data-dir", help="where the datasets are (default: the repository's data/)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here")
    label = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, {device.type} ({label})", flush=True)
    if args.imp:
        bench_imp(args, device)
        return 0
    t0 = time.perf_counter()
    results = {}
    for k in [int(v) for v in args.chains.split(",") if v]:
        results[("lenet300", k)] = bench("lenet300", k, args, device)
    for k in [int(v) for v in args.conv_chains.split(",") if v]:
        results[("conv4", k)] = bench("conv4", k, args, device)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")
    # the verdict reads the best/best ratio on a CPU (the machine is often shared), the paired median on CUDA
    key = "batched/sequential best" if device.type == "cpu" else "batched/sequential"
    helps = {nk: r[key] >= 1.0 for nk, r in results.items()}
    for (name, k), ok in helps.items():
        print(f"{name} K={k}: batched/sequential {results[(name, k)][key]:.2f}x ({key.split(' ')[-1]}) -> "
              + ("batching helps" if ok else "sequential is faster"))
    if device.type == "cpu":
        verdict = "batch" if helps and all(helps.values()) else "1 (sequential)"
        print(f"CPU default for --chains-per-process: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
