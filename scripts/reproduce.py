#!/usr/bin/env python
"""Published lottery-ticket results reproduced with ticketlab alone (docs/reproductions.md).

    python scripts/reproduce.py --list              # the reproductions, one name per line
    python scripts/reproduce.py lth                 # run the reduced study, ship its files, draw its figures
    python scripts/reproduce.py lth --full          # the paper's protocol (a GPU study; hours)
    python scripts/reproduce.py lth --check         # recompute every stated claim from data/studies/lth/
    python scripts/reproduce.py --figures-only lth  # redraw docs/figures/ from the shipped files

A reproduction is a study spec (``studies/repro-<study>.toml`` at the paper's protocol, ``-reduced.toml`` for a
CPU), optional extra runs (``ticketlab train --mask ...``), and claims stated as code. Running one writes the study
under ``.repro-work/<study>[-full]/``, copies its ticket files WITHOUT weights (``store.copy_ticket``) with the
manifest and the study frame into ``data/studies/<study>/``, and draws ``docs/figures/<name>*.png``. ``--check``
reads only the shipped files, prints every claim with its measured numbers and exits 1 when one does not hold.
Several reproductions may read one study (``effective`` and ``fairness`` read ``lth``'s files).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))   # the reproductions package beside this script

# importing a topic module registers its reproductions in ITEMS: this order is the order of --list
from reproductions import lth, renda, transfer, paganini, masks  # noqa: E402,F401
from reproductions.core import ITEMS, ROOT, SHIPPED, WORK, Claim, Data, Item, _study, spec_path  # noqa: E402
# names that tests/test_reproduce.py and analysis/05_reproductions.ipynb use as reproduce.NAME
from reproductions.lth import LTH_RANGE, _claim_gap  # noqa: E402
from reproductions.transfer import _task_consensus_table, _transfer_table  # noqa: E402
from reproductions.paganini import _consensus_table  # noqa: E402
from reproductions.masks import MASK_SPECS, _masks_accuracy  # noqa: E402

__all__ = ["ITEMS", "LTH_RANGE", "MASK_SPECS", "ROOT", "SHIPPED", "WORK", "Claim", "Data", "Item", "_claim_gap",
           "_consensus_table", "_masks_accuracy", "_task_consensus_table", "_transfer_table", "check", "main",
           "run_study", "ship", "spec_path"]


# ---------------------------------------------------------------------------------------------------------------
# running, shipping, checking

def run_study(item: Item, full: bool, threads: int, workers: int) -> Path:
    out = WORK / (item.study + ("-full" if full else ""))
    if item.runner is not None:
        item.runner(out, full, threads, workers)
        return out
    _study(item.study, out, full, threads, workers)   # from the repository root: the manifest names relative paths
    return out


def ship(item: Item, study_dir: Path) -> Path:
    """Copy the study's ticket files without weights (``store.copy_ticket``), its index (``runs.json``, else the
    study manifest; both when both exist) and its frame into data/studies/<study>/, replacing what was there (built
    beside it and swapped in, so that no file of an earlier run is left behind and no half-shipped study is)."""
    from ticketlab.store import copy_ticket

    dst = SHIPPED / item.study
    tmp = SHIPPED / f".{item.study}.shipping"
    shutil.rmtree(tmp, ignore_errors=True)
    runs = (study_dir / "runs.json").exists()
    index = json.loads((study_dir / ("runs.json" if runs else "manifest.json")).read_text())
    for e in index["runs"] if runs else index["chains"]:
        (tmp / e["file"]).parent.mkdir(parents=True, exist_ok=True)
        copy_ticket(study_dir / e["file"], tmp / e["file"], level_weights=False, checkpoints=[], overwrite=True)
    for name in ("runs.json", "manifest.json"):
        if (study_dir / name).exists():
            shutil.copyfile(study_dir / name, tmp / name)
    for sub in study_dir.glob("*/manifest.json"):   # the studies a runner ran in subdirectories (masks)
        (tmp / sub.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(sub, tmp / sub.parent.name / "manifest.json")
    Data(tmp.name, SHIPPED).frame.to_csv(tmp / "frame.csv", index=False)
    old = SHIPPED / f".{item.study}.old"
    shutil.rmtree(old, ignore_errors=True)
    if dst.exists():
        dst.rename(old)
    tmp.rename(dst)
    shutil.rmtree(old, ignore_errors=True)
    return dst


def check(item: Item, root: Path = SHIPPED, data: Data | None = None) -> bool:
    """Print every claim of ``item`` with its measured numbers, recomputed from the shipped files (``data``: the
    :class:`Data` of ``item.study`` to reuse, with its cached analyses); True when all hold."""
    d = data if data is not None else Data(item.study, root)
    ok_all = True
    print(f"{item.name}: {item.title} (from {d.dir.relative_to(ROOT) if d.dir.is_relative_to(ROOT) else d.dir})")
    for claim in item.claims:
        measured, ok = claim.measure(d)
        ok_all &= ok
        print(f"  [{'holds' if ok else 'FAILS'}] {claim.text}\n          measured: {measured}")
    return ok_all


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="examples:\n" + __doc__.split("\n\n")[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="*", metavar="NAME", help="reproductions to run or check (see --list)")
    p.add_argument("--list", action="store_true", help="print the names, one per line")
    p.add_argument("--check", action="store_true", help="recompute the claims from data/studies/ only")
    p.add_argument("--full", action="store_true", help="the paper's protocol (studies/repro-<study>.toml)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per chain (default 1)")
    p.add_argument("--workers", type=int, default=1, help="chains run at once (default 1)")
    p.add_argument("--figures-only", action="store_true", help="redraw the figures from the shipped files")
    p.add_argument("--data-root", type=Path, default=SHIPPED, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.list:
        print("\n".join(ITEMS))
        return 0
    if not args.names:
        p.error("give a NAME (see --list), or --list")
    unknown = [n for n in args.names if n not in ITEMS]
    if unknown:
        p.error(f"unknown reproduction {unknown[0]!r}; choose from: {', '.join(ITEMS)}")
    ok = True
    for name in args.names:
        item = ITEMS[name]
        if args.check:
            ok &= check(item, args.data_root)
            continue
        if not args.figures_only:
            try:
                study_dir = run_study(item, args.full, args.threads, args.workers)
            except subprocess.CalledProcessError as err:   # the command printed its own one-line error
                print(f"reproduce.py: {name}: {' '.join(map(str, err.cmd[1:4]))} ... failed (exit {err.returncode})",
                      file=sys.stderr)
                return 2
            ship(item, study_dir)
        if item.figures is not None:
            for out in item.figures(Data(item.study)):
                print(f"wrote {out.relative_to(ROOT)}")
        ok &= check(item)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
