"""Mask-overlap figures: counting speed in memory, and ``ticketlab overlap`` on tickets larger than memory.

    python benchmarks/bench_overlap.py            # 1e8-weight masks in memory; two 1e9-weight files (~2 minutes)
    python benchmarks/bench_overlap.py --quick    # 1e7 in memory; two 1e8-weight files (seconds)

1. In memory: the overlap counts (|A|, |B|, |A∩B|) of two bit-packed masks of N weights with
   ``packed_overlap_counts`` (popcount of ``a & b`` on uint64 words, in cache-sized blocks), beside
   - the memory-bandwidth floor: ``numpy.copyto`` of the same bytes (both packed masks, N/4 bytes), and
   - the naive ``(a & b).sum() / (a | b).sum()`` on boolean arrays (N bytes each).
   Best of several repeats, in weights per second, with the ratios.
2. Files: two ticket files of N weights (40 tensors, written level by level through the store API) compared by
   ``python -m ticketlab overlap A B --json`` in a subprocess; wall time and the subprocess's peak resident
   memory (``resource.getrusage(RUSAGE_CHILDREN)`` read by a small launcher process), beside that of a
   subprocess that only imports ticketlab.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ticketlab import store
from ticketlab.analysis.overlap import pack, packed_overlap_counts
from ticketlab.masks import TensorInfo

from _timing import best_of  # benchmarks/_timing.py


def in_memory(n: int, repeats: int) -> None:
    rng = np.random.default_rng(0)
    a = rng.random(n, dtype=np.float32) < 0.5
    b = rng.random(n, dtype=np.float32) < 0.2
    pa, pb = pack(a), pack(b)
    both = np.concatenate([pa, pb])
    dst = np.empty_like(both)
    want = (int(a.sum()), int(b.sum()), int(np.count_nonzero(a & b)))
    got = packed_overlap_counts(pa, pb, n)
    if (got.kept_a, got.kept_b, got.intersection) != want:
        raise SystemExit(f"wrong counts: {got} != {want}")

    t_copy = best_of(lambda: np.copyto(dst, both), repeats)
    t_all = best_of(lambda: packed_overlap_counts(pa, pb, n), repeats)
    t_inter = best_of(lambda: packed_overlap_counts(pa, pb, n, kept_a=want[0], kept_b=want[1]), repeats)
    t_naive = best_of(lambda: (a & b).sum() / (a | b).sum(), max(2, repeats // 3))
    t_pack = best_of(lambda: (pack(a), pack(b)), max(2, repeats // 3))

    print(f"1. overlap of two in-memory masks of {n:,} weights (densities 0.5 and 0.2), best of {repeats}")
    print(f"{'':46}{'seconds':>10}{'weights/s':>12}{'x floor':>9}")
    rows = [
        (f"numpy copy of the packed bytes ({both.nbytes / 1e6:.1f} MB) = floor", t_copy),
        ("packed_overlap_counts, kept counts known", t_inter),
        ("packed_overlap_counts, all three counts", t_all),
        ("pack both boolean masks (numpy.packbits)", t_pack),
        ("naive (a & b).sum() / (a | b).sum() on bool", t_naive),
    ]
    for label, t in rows:
        print(f"{label:46}{t:10.5f}{n / t:12.3g}{t / t_copy:9.2f}")
    print(f"packed_overlap_counts (all counts) is {t_naive / t_all:.0f}x faster than the naive boolean version "
          f"and {t_all / t_copy:.2f}x the copy floor\n")


def write_ticket(path: Path, tensors: list[TensorInfo], d: float, seed: int) -> None:
    """A one-level ticket of uniformly random masks of density ``d``, generated tensor by tensor."""
    rng = np.random.default_rng(seed)
    store.create(path, tensors=tensors, model="bench", method=f"random masks, density {d}", config={}, seed=seed)
    masks = {t.name: rng.random(t.size, dtype=np.float32).reshape(t.shape) < d for t in tensors}
    store.TicketWriter(path).write_level(0, masks)


_LAUNCHER = """
import resource, subprocess, sys, time
start = time.perf_counter()
proc = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
wall = time.perf_counter() - start
if proc.returncode:
    sys.exit(proc.stderr)
print(wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
print(proc.stdout, end="")
"""


def peak_rss_child(argv: list[str]) -> tuple[float, float, str]:
    """Run ``argv`` in a subprocess; (wall seconds, its peak RSS in MB, its stdout).

    A small launcher process runs the command and reads ``getrusage(RUSAGE_CHILDREN)``: measured from this
    (large) process, the child's peak would include the memory it shares with its parent between fork and exec.
    """
    proc = subprocess.run([sys.executable, "-c", _LAUNCHER, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)
    if proc.returncode:
        raise SystemExit(f"{' '.join(argv)} failed:\n{proc.stderr}")
    first, _, out = proc.stdout.partition("\n")
    wall, rss = map(float, first.split())
    return wall, rss, out


def files(n_per_tensor: int, count: int) -> None:
    tensors = [TensorInfo(f"layers.{i}.weight", (n_per_tensor,), "linear") for i in range(count)]
    n = n_per_tensor * count
    with tempfile.TemporaryDirectory() as tmp:
        a, b = Path(tmp) / "a.h5", Path(tmp) / "b.h5"
        start = time.perf_counter()
        write_ticket(a, tensors, 0.5, 0)
        write_ticket(b, tensors, 0.2, 1)
        made = time.perf_counter() - start
        size_mb = (a.stat().st_size + b.stat().st_size) / 1e6
        _, base_rss, _ = peak_rss_child([sys.executable, "-c", "import ticketlab.cli, ticketlab.frames"])
        wall, rss, out = peak_rss_child([sys.executable, "-m", "ticketlab", "overlap", str(a), str(b), "--json"])
        total = json.loads(out)[-1]
    print(f"2. 'ticketlab overlap A B --json' on two files of {n:,} weights ({count} tensors of {n_per_tensor:,}; "
          f"{size_mb:.0f} MB on disk, written in {made:.0f} s)")
    print(f"   total Jaccard {total['jaccard']:.6f} (chance {total['expected_jaccard']:.6f}, "
          f"p = {total['p_value']:.3f} by {total['p_method']})")
    print(f"   wall time {wall:.1f} s = {n / wall:.3g} weights/s per pair; peak RSS {rss:.0f} MB "
          f"(a process that only imports ticketlab: {base_rss:.0f} MB)")
    print(f"   peak RSS / 1 GB budget: {rss / 1024:.2f}; peak RSS / one file's masks as numpy booleans "
          f"({n / 1e6:,.0f} MB): {rss / (n / 1e6):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1e7 weights in memory and 1e8 per file")
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    in_memory(10**7 if args.quick else 10**8, args.repeats)
    files(2_500_000 if args.quick else 25_000_000, 40)


if __name__ == "__main__":
    main()
