"""IMP under torchrun with DistributedDataParallel: 2 CPU processes, gloo backend."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from ticketlab import store

SCRIPT = textwrap.dedent(
    """
    import hashlib, json, os, sys
    import numpy as np
    import torch
    from ticketlab import lottery as imp
    from ticketlab.training import TrainConfig

    out = sys.argv[1]
    rank = int(os.environ.get("RANK", "0"))
    g = torch.Generator().manual_seed(0)
    def split(n):
        x = torch.randn(n, 1, 28, 28, generator=g)
        y = (x.mean(dim=(1, 2, 3)) > 0).long() + 2 * (x[:, 0, 0, 0] > 0).long()
        return x, y
    data = imp.RunData(train=split(512), val=split(64), test=split(128), num_classes=4,
                     class_names=("a", "b", "c", "d"), input_shape=(1, 28, 28))
    config = imp.RunConfig(levels=2, rate=0.5, controls=("random",), val_size=64,
                           train=TrainConfig(iterations=12, batch_size=32, eval_every=6))
    seen = []
    real_train = imp.IMPRun._train
    def recording(self, start_weights, masks, *args, **kwargs):
        digest = hashlib.sha256(b"".join(np.packbits(masks[k]).tobytes() for k in sorted(masks))).hexdigest()
        seen.append(digest)
        return real_train(self, start_weights, masks, *args, **kwargs)
    imp.IMPRun._train = recording
    run = imp.IMPRun(config, os.path.join(out, sys.argv[2]), data=data, device="cpu", progress=False)
    assert run.dist.world == int(os.environ.get("WORLD_SIZE", "1")) and run.dist.rank == rank
    run.run()
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump({"masks": seen}, f)
    """
)


@pytest.mark.slow
def test_two_gloo_processes_train_with_the_same_masks(tmp_path: Path):
    script = tmp_path / "ddp_run.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script),
           str(tmp_path), "ddp.h5"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    single = subprocess.run([sys.executable, str(script), str(tmp_path), "single.h5"], capture_output=True,
                            text=True, timeout=300, env=env)
    assert single.returncode == 0, single.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text())["masks"] for r in (0, 1)]
    # level 0, then per level the chain and the random control: 5 trainings, the same masks on both ranks
    assert len(ranks[0]) == 5 and ranks[0] == ranks[1]
    t = store.open_ticket(tmp_path / "ddp.h5")
    assert t.status == "complete" and t.levels == [0, 1, 2]
    assert t.branches(2) == ["random"]
    for level in (1, 2):  # nested and pruned at the configured rate
        prev, cur = t.masks(level - 1), t.masks(level)
        for name in cur:
            assert not np.any(cur[name] & ~prev[name])
    assert t.level_record(2)["density"] == pytest.approx(0.25, abs=0.01)
    # each process trains on half of every batch and DDP averages the gradients: the same steps as one process
    # on whole batches, up to floating-point order, so the masks agree almost everywhere
    one = store.open_ticket(tmp_path / "single.h5")
    for level in (1, 2):
        a, b = t.masks(level), one.masks(level)
        agree = sum(int((a[k] == b[k]).sum()) for k in a) / sum(a[k].size for k in a)
        assert agree > 0.999, (level, agree)
    assert t.level_record(0)["accuracy"] == pytest.approx(one.level_record(0)["accuracy"], abs=0.02)
