"""Overhead of the study runner: ``run_study`` against the same chains run by hand, one after another, in one process.

``by hand``
    ``for chain in spec.chains(): run_imp(chain.config, path, device="cpu", progress=False)`` — what a researcher's
    loop over seeds and reset modes does.
``study``
    ``run_study(spec, directory, device="cpu", progress=False)`` with its defaults (on CPU: one worker, this
    process): spec expansion and validation, the directory lock, the manifest (written before and after every
    chain, atomically), a look at every chain file before and after it runs, per-chain locks, progress routing.

Both run the same chains (LeNet-300-100 on the shipped MNIST: 2 reset modes x 2 seeds, a few levels of a few
hundred iterations; each chain loads its data, as ``run_imp`` does) into fresh directories, alternating in time
(the order swaps every round). Reported: wall time per variant (median and best) and the ratio study / by hand,
as the median of the per-round paired ratios and best over best; and, immune to the noise of pairing two runs on
a shared machine, the fraction of each study call's wall time spent outside ``run_imp`` (the engine's calls are
timed from inside the study). Also: the runner's fixed costs on their own — loading and expanding the spec, and
rerunning a finished study (which must do nothing).

Usage: ``python benchmarks/bench_study.py [--quick] [--rounds R] [--iterations N] [--levels L]``; the default takes
about 3 minutes on 2 CPU cores, ``--quick`` well under one. Target: overhead <= 2% of wall time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import best_of  # noqa: E402

from ticketlab.lottery import run_imp  # noqa: E402
from ticketlab.study import parse_spec, run_study, tasks  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

SPEC = """
preset = "quickstart"
[grid]
reset = ["rewind-init", "lr-rewind"]
seed = [0, 1]
[set]
levels = {levels}
iterations = {iterations}
eval-every = 0
val-size = 1000
controls = "none"
data-dir = "{data}"
"""


def by_hand(spec, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for i, chain in enumerate(spec.chains()):
        run_imp(chain.config, directory / f"chain{i}.h5", device="cpu", progress=False)


ENGINE_TIME: list[float] = []  # seconds spent inside run_imp during the last study call


def _timed_engine():
    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return run_imp(*args, **kwargs)
        finally:
            ENGINE_TIME.append(time.perf_counter() - start)
    return timed


def study(spec, directory: Path) -> None:
    ENGINE_TIME.clear()
    outcome = run_study(spec, directory, device="cpu", progress=False)
    if not outcome.ok:
        raise SystemExit(f"the study failed: {outcome.failed}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="2 rounds of short chains")
    p.add_argument("--rounds", type=int, help="rounds of (by hand, study); default 5, --quick 2")
    p.add_argument("--iterations", type=int, help="iterations per level; default 300, --quick 40")
    p.add_argument("--levels", type=int, default=3, help="pruning levels per chain (default 3)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads")
    args = p.parse_args()
    rounds = args.rounds or (2 if args.quick else 5)
    iterations = args.iterations or (40 if args.quick else 300)
    torch.set_num_threads(args.threads)
    text = SPEC.format(levels=args.levels, iterations=iterations, data=REPO / "data")
    spec = parse_spec(text, "bench")
    print(f"{len(spec.chains())} chains x {args.levels + 1} levels x {iterations} iterations, {args.threads} "
          f"thread(s), {rounds} rounds")

    tasks._engine = _timed_engine  # count the time spent in the engine, to isolate the runner's own
    times: dict[str, list[float]] = {"by hand": [], "study": []}
    outside: list[float] = []  # per study call: wall time outside run_imp, as a fraction of its wall time
    variants = {"by hand": by_hand, "study": study}
    with tempfile.TemporaryDirectory(prefix="bench-study-") as tmp:
        by_hand(spec, Path(tmp) / "warm-up")  # imports, data file cache
        load0 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        for r in range(rounds):
            order = ["by hand", "study"] if r % 2 == 0 else ["study", "by hand"]
            for name in order:
                directory = Path(tmp) / f"{name.replace(' ', '-')}-{r}"
                directory.mkdir()
                start = time.perf_counter()
                variants[name](spec, directory)
                times[name].append(time.perf_counter() - start)
                if name == "study":
                    outside.append(1 - sum(ENGINE_TIME) / times[name][-1])
            print(f"  round {r + 1}: by hand {times['by hand'][-1]:.2f} s, study {times['study'][-1]:.2f} s",
                  flush=True)
        finished = Path(tmp) / "study-0"
        rerun = best_of(lambda: study(spec, finished), 5)
        expand = best_of(lambda: parse_spec(text, "bench").chains(), 5)
        load1 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")

    for name, ts in times.items():
        print(f"{name:>8}: median {statistics.median(ts):.2f} s, best {min(ts):.2f} s")
    paired = [s / h for s, h in zip(times["study"], times["by hand"])]
    best = min(times["study"]) / min(times["by hand"])
    print(f"study / by hand: median of paired ratios {statistics.median(paired):.4f} "
          f"(range {min(paired):.4f}-{max(paired):.4f}), best over best {best:.4f}")
    print(f"study time outside run_imp (the runner's own cost, immune to pairing noise): median "
          f"{statistics.median(outside):.2%}, max {max(outside):.2%}")
    print(f"fixed costs: loading and expanding the spec {expand * 1e3:.1f} ms; rerunning the finished study "
          f"(nothing to do) {rerun * 1e3:.1f} ms")
    print(f"load average during the run: {load0:.2f} at the start, {load1:.2f} at the end")


if __name__ == "__main__":
    main()
