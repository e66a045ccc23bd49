"""The kill loop: ``ticketlab train`` SIGKILLed at chosen moments of a tiny run, resumed with ``--resume`` each
time, ends bit for bit where an uninterrupted run ends (every level's and control's mask and weights, the
initial weights, the evaluations).

The moments are chosen deterministically, without any hook in the product: each run is a child process that
patches one function to SIGKILL its own process at the N-th call (before or after the call). The children are
forked from one warmed-up parent (``python -c ZYGOTE``) that imported torch, ticketlab and the CLI once, so each
run costs its training, not the imports; a fork is a process of its own, and SIGKILL ends it as it would end
``ticketlab train``. The data is a small synthetic set patched in for the registry's MNIST.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from ticketlab import store

TESTS_DIR = Path(__file__).resolve().parent

ZYGOTE = textwrap.dedent(
    """
    import importlib, json, os, signal, sys, traceback
    import torch
    torch.set_num_threads(1)
    sys.path.insert(0, {tests!r})
    from imp_helpers import synthetic_data
    import ticketlab.lottery.run as run_module
    import ticketlab.cli.info, ticketlab.cli.train
    from ticketlab.cli import build_parser, main
    import torch._dynamo  # torch imports it at the first optimizer step: once here, not in every run
    build_parser()
    run_module.load_data = lambda config: synthetic_data(n_train=96, seed=7)

    def arm(kill):
        # Patch kill["target"] ("module:Qualified.name") to SIGKILL this process at its kill["n"]-th call
        # (counting only calls whose second argument ends with kill["dst"], when given), before the call or,
        # with kill["after"], once it returned.
        module, qualname = kill["target"].split(":")
        owner = importlib.import_module(module)
        *parents, attr = qualname.split(".")
        for p in parents:
            owner = getattr(owner, p)
        original = getattr(owner, attr)
        calls = [0]

        def killer(*args, **kwargs):
            if kill.get("dst") and not str(args[1] if len(args) > 1 else kwargs.get("dst")).endswith(kill["dst"]):
                return original(*args, **kwargs)
            calls[0] += 1
            if calls[0] == kill["n"] and not kill.get("after"):
                os.kill(os.getpid(), signal.SIGKILL)
            result = original(*args, **kwargs)
            if calls[0] == kill["n"]:
                os.kill(os.getpid(), signal.SIGKILL)
            return result

        setattr(owner, attr, killer)

    for line in sys.stdin:
        job = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 99
            try:
                log = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
                os.dup2(log, 1)
                os.dup2(log, 2)
                torch.set_num_threads(1)
                if job["kill"]:
                    arm(job["kill"])
                code = main(job["argv"])
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({{"signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
                          "code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None}}), flush=True)
    """
)

ARGV = ["train", "--model", "lenet300", "--dataset", "mnist", "--levels", "3", "--controls", "reinit",
        "--iterations", "12", "--eval-every", "6", "--batch-size", "16", "--seed", "3", "--device", "cpu", "--quiet"]

#: (what is interrupted, kill spec, levels then present, {level: its control branches}).
#: 96 training examples in batches of 16: 6 steps per epoch, so every training of 12 iterations draws two epoch
#: permutations and the 2nd (N-th) call of epoch_permutation is the middle of a training.
KILLS = [
    ("level 0 training", {"target": "ticketlab.training.loop:epoch_permutation", "n": 2}, [], {}),
    ("level 0 write, inside the store transaction", {"target": "ticketlab.store.level:LevelWriter._finish", "n": 1},
     [], {}),
    ("level 0 write, complete but not yet renamed", {"target": "os:replace", "n": 1, "dst": "run.h5"}, [], {}),
    ("level 0 write, just after the rename", {"target": "os:replace", "n": 1, "dst": "run.h5", "after": True},
     [0], {}),
    ("between level 1 and its control", {"target": "ticketlab.lottery.run:IMPRun._control", "n": 1}, [0, 1],
     {1: []}),
    ("level 1's control write, inside the transaction",
     {"target": "ticketlab.store.level:LevelWriter._finish", "n": 1}, [0, 1], {1: []}),
    ("level 2 training (after level 1's control)", {"target": "ticketlab.training.loop:epoch_permutation", "n": 4},
     [0, 1], {1: ["reinit"]}),
    ("before the final status write", {"target": "ticketlab.store.writer:TicketWriter.set_status", "n": 1},
     [0, 1, 2, 3], {1: ["reinit"], 2: ["reinit"], 3: ["reinit"]}),
]


Outcome = tuple[int | None, int | None, str]


class Runner:
    """Drives the warmed-up parent: each :meth:`run` forks one ``ticketlab`` process and waits for it."""

    def __init__(self, workdir: Path) -> None:
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        self.workdir = workdir
        # its own process group, so that a hung run can be ended with the parent (see close)
        self.proc = subprocess.Popen([sys.executable, "-c", ZYGOTE.format(tests=str(TESTS_DIR))], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env, start_new_session=True)
        self.count = 0

    def run(self, argv: list[str], kill: dict | None = None, timeout: float = 180) -> Outcome:
        """Returns (exit code or None, signal or None, the run's output)."""
        self.count += 1
        log = self.workdir / f"run{self.count}.log"
        self.proc.stdin.write(json.dumps({"argv": argv, "kill": kill, "log": str(log)}) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        assert ready, f"run {self.count} did not end within {timeout} s:\n{log.read_text() if log.exists() else ''}"
        line = self.proc.stdout.readline()
        assert line, f"the parent process died: exit {self.proc.wait()}"
        result = json.loads(line)
        return result["code"], result["signal"], log.read_text()

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the parent and any run it forked
            self.proc.wait()


def snapshot(path: Path) -> dict:
    """Everything the run stored that must be reproduced: masks, weights, initial weights, evaluations."""
    out: dict = {}
    with store.open_ticket(path) as t:
        out["levels"] = t.levels
        out["init"] = t.weights("init")
        for level in t.levels:
            for branch in [None, *t.branches(level)]:
                key = f"{level}/{branch or '-'}"
                out[f"{key} masks"] = t.masks(level, branch=branch)
                out[f"{key} weights"] = t.weights(level=level, branch=branch)
                if branch:
                    out[f"{key} init"] = t.weights("init", level=level, branch=branch)
                ev = t.evaluation(level, branch=branch)
                out[f"{key} eval"] = {"accuracy": np.asarray(ev.accuracy),
                                      **{f"curve {k}": np.asarray(v) for k, v in ev.curve.items()}}
    return out


def assert_identical(got: dict, want: dict) -> None:
    assert got["levels"] == want["levels"]
    assert sorted(got) == sorted(want)
    for key in want:
        if key == "levels":
            continue
        assert sorted(got[key]) == sorted(want[key]), key
        for name in want[key]:
            a, b = np.asarray(got[key][name]), np.asarray(want[key][name])
            assert a.dtype == b.dtype and a.shape == b.shape, f"{key} {name}"
            assert a.tobytes() == b.tobytes(), f"{key} {name} differs"  # bit for bit (NaN included)


def temps(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(f".{path.name}.") and "tmp" in p.name)


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "fork"), reason="the runs are forked from one warmed-up process")
def test_kill_loop_resumes_bit_for_bit(tmp_path: Path) -> None:
    runner = Runner(tmp_path)
    try:
        reference = tmp_path / "reference.h5"
        code, sig, log = runner.run([*ARGV, "--out", str(reference)])
        assert (code, sig) == (0, None), log
        want = snapshot(reference)
        assert want["levels"] == [0, 1, 2, 3]

        path = tmp_path / "run.h5"
        survived = 0
        for i, (moment, kill, levels, branches) in enumerate(KILLS):
            argv = [*ARGV, "--out", str(path)] + (["--resume"] if i else [])
            code, sig, log = runner.run(argv, kill)
            assert sig == signal.SIGKILL, f"{moment}: the run was not killed (exit {code}):\n{log}"
            with store.open_ticket(path) as t:  # every kill leaves a readable ticket file, at a commit
                assert t.status == "in_progress", moment
                assert t.levels == levels, f"{moment}: levels {t.levels}, expected {levels}"
                assert {lv: t.branches(lv) for lv in branches} == branches, moment
            if kill["target"] == "os:replace" and not kill.get("after"):
                assert temps(path), f"{moment}: no complete temporary file beside {path.name}"
            survived += 1
        code, sig, log = runner.run([*ARGV, "--out", str(path), "--resume"])
        assert (code, sig) == (0, None), log
    finally:
        runner.close()
    with store.open_ticket(path) as t:
        assert t.status == "complete"
    assert_identical(snapshot(path), want)
    assert not temps(path), "temporary files of the killed runs were left behind"
    assert survived == len(KILLS) == 8
    print(f"\nkill loop: {survived} SIGKILLs survived, resumed bit for bit")
