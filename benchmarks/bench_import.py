"""Import throughput and peak memory: ``ticketlab import checkpoint`` on a generated bf16 2:4 safetensors file.

    python benchmarks/bench_import.py            # 1.07e9 weights (a 2.1 GB file), a few minutes
    python benchmarks/bench_import.py --quick    # 1.2e8 weights, under a minute

1. Writes a LLaMA-shaped checkpoint tensor by tensor (never more than one block in memory): decoder layers
   whose seven projections are 2:4 sparse along the input dimension (exactly 2 nonzeros in every group of 4
   consecutive weights), a dense embedding and output layer with 0.1 % exact zeros by chance, and 1-D norms,
   all bfloat16.
2. Runs, each in a fresh subprocess whose peak resident memory (``ru_maxrss`` of the child) is measured:
   ``ticketlab import checkpoint``, ``ticketlab sparsity`` and ``ticketlab overlap`` (the import against itself:
   every mask read twice). The figures: weights per second of the import and the peak RSS of each command,
   against the 2 GB target for a 7B-parameter checkpoint (memory does not grow with the checkpoint: one block of
   8 Mi weights and one tensor's packed mask are in memory at a time).
3. Checks the result: every projection pruned with pattern 2:4 along dim -1 at density 0.5, the embedding and
   output layer dense.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ticketlab.io.tensorfiles import write_safetensors

# The six ways to keep 2 of 4.
_KEEP_2_OF_4 = np.array([[1, 1, 0, 0], [1, 0, 1, 0], [1, 0, 0, 1], [0, 1, 1, 0], [0, 1, 0, 1], [0, 0, 1, 1]], bool)
_BLOCK = 1 << 22  # weights generated per block


def model_shapes(quick: bool) -> list[tuple[str, tuple[int, ...], str]]:
    """(name, shape, kind) with kind "nm" (2:4 projection), "dense" (2-D, chance zeros) or "norm" (1-D)."""
    hidden, inter, layers, vocab = (1024, 2816, 8, 8000) if quick else (4096, 11008, 4, 32000)
    out = [("model.embed_tokens.weight", (vocab, hidden), "dense")]
    for i in range(layers):
        p = f"model.layers.{i}"
        out += [(f"{p}.input_layernorm.weight", (hidden,), "norm")]
        out += [(f"{p}.self_attn.{n}_proj.weight", (hidden, hidden), "nm") for n in "qkvo"]
        out += [(f"{p}.post_attention_layernorm.weight", (hidden,), "norm")]
        out += [(f"{p}.mlp.{n}_proj.weight", (inter, hidden), "nm") for n in ("gate", "up")]
        out += [(f"{p}.mlp.down_proj.weight", (hidden, inter), "nm")]
    return out + [("model.norm.weight", (hidden,), "norm"), ("lm_head.weight", (vocab, hidden), "dense")]


def _chunks(shape: tuple[int, ...], kind: str, rng: np.random.Generator):
    n = int(np.prod(shape))
    for start in range(0, n, _BLOCK):
        m = min(_BLOCK, n - start)
        # nonzero bf16 bit patterns: random sign, exponent 2^-8..2^-1, random mantissa
        bits = rng.integers(0x3B80, 0x3F80, size=m, dtype=np.uint16) | (rng.integers(0, 2, m, dtype=np.uint16) << 15)
        if kind == "nm":
            keep = _KEEP_2_OF_4[rng.integers(0, 6, size=m // 4)].reshape(-1)
            bits[~keep] = 0
        elif kind == "dense":
            bits[rng.random(m) < 0.001] = 0
        else:
            bits[:] = 0x3F80  # 1.0
        yield bits


def generate(path: Path, quick: bool, seed: int = 0) -> int:
    rng = np.random.default_rng(seed)
    shapes = model_shapes(quick)
    write_safetensors(path, ((name, shape, "bfloat16", _chunks(shape, kind, rng)) for name, shape, kind in shapes),
                      metadata={"format": "pt"})
    return sum(int(np.prod(s)) for _, s, _ in shapes)


_MEASURE = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, r.returncode)")


def measure(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of ``cmd`` run as the only child of a fresh measuring process."""
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", _MEASURE, *cmd], capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    rss_kib, rc = out.stdout.split()
    if int(rc) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed with exit status {rc}")
    return wall, int(rss_kib) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1.2e8 weights instead of 1.07e9")
    parser.add_argument("--dir", type=Path, help="working directory (default: a temporary one, removed after)")
    args = parser.parse_args()
    work = args.dir or Path(tempfile.mkdtemp(prefix="bench_import_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        src, out = work / "model.safetensors", work / "model.h5"
        out.unlink(missing_ok=True)
        t0 = time.perf_counter()
        n = generate(src, args.quick)
        gen = time.perf_counter() - t0
        print(f"checkpoint: {n:,} weights (bf16, 2:4 projections), {src.stat().st_size / 1e9:.2f} GB, "
              f"generated in {gen:.1f} s")
        tl = [sys.executable, "-m", "ticketlab"]
        rows = []
        wall, rss = measure(tl + ["import", "checkpoint", str(src), "--out", str(out)])
        rows.append(("import checkpoint", wall, rss, n / wall))
        wall, rss = measure(tl + ["sparsity", str(out)])
        rows.append(("sparsity", wall, rss, None))
        wall, rss = measure(tl + ["overlap", str(out), str(out)])
        rows.append(("overlap (file vs itself)", wall, rss, 2 * n / wall))
        print(f"ticket file: {out.stat().st_size / 1e6:.1f} MB ({8 * out.stat().st_size / n:.3f} bits/weight)")
        print(f"{'command':<26} {'wall (s)':>9} {'peak RSS (MiB)':>15} {'Mweights/s':>11}")
        for name, wall, rss, rate in rows:
            print(f"{name:<26} {wall:>9.1f} {rss:>15.0f} {'-' if rate is None else f'{rate / 1e6:.1f}':>11}")
        from ticketlab import store

        report = store.read_state(out, "import")["levels"]["0"]
        kinds = {name: kind for name, _, kind in model_shapes(args.quick)}
        with store.TicketFile(out) as t:
            kept = t.kept(0)
            sizes = {x.name: x.size for x in t.tensors}
        for r in report:
            if kinds[r["layer"]] == "nm":
                assert r["pattern"] == "2:4" and r["pattern_dim"] == -1 and r["pruned"], r
                assert kept[r["layer"]] == sizes[r["layer"]] // 2, r
            else:
                assert not r["pruned"] and kept[r["layer"]] == sizes[r["layer"]], r
        print(f"check: {sum(kinds[r['layer']] == 'nm' for r in report)} projections 2:4 along dim -1 at density 0.5; "
              "embedding and output layer dense (chance zeros reported, not pruned)")
        print(json.dumps({"weights": n, "rows": [{"command": c, "wall_s": round(w, 2), "peak_rss_mib": round(r),
                                                  "weights_per_s": None if v is None else round(v)}
                                                 for c, w, r, v in rows]}))
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
