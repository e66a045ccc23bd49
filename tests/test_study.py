"""Tests of studies (``ticketlab study run|status|frame`` and :mod:`ticketlab.study`).

The study is ``studies/tiny.toml`` (2 reset modes x 2 seeds of LeNet-300-100 on the shipped MNIST, 2 levels of 4
iterations, no evaluation during training). Its chain files must equal standalone ``ticketlab train`` runs with the
same settings, masks and weights bit for bit, however the study ran: in this process, after a SIGKILL of the study
process and a rerun, on a real Dask cluster on the loopback interface (scheduler and two workers started as
processes), and after one of those workers was killed mid-study. Every run uses one torch thread (``--threads 1``),
since CPU results are reproducible bit for bit only at an equal thread count.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ticketlab.cli import main
from ticketlab.errors import ConfigError
from ticketlab.store import open_ticket
from ticketlab.study import load_spec, parse_spec, read_manifest, study_frame, study_status
from ticketlab.study.spec import _check_distinct, file_stems
from cli_helpers import cli

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = str(REPO / "data")
TINY = REPO / "studies" / "tiny.toml"
RUN = ["--data-dir", DATA_DIR, "--device", "cpu", "--threads", "1", "--quiet"]
CHAINS = {"reset=rewind-init,seed=0": ("rewind-init", 0), "reset=rewind-init,seed=1": ("rewind-init", 1),
          "reset=lr-rewind,seed=0": ("lr-rewind", 0), "reset=lr-rewind,seed=1": ("lr-rewind", 1)}


pytestmark = pytest.mark.usefixtures("one_thread")




def train_flags(reset: str, seed: int, levels: int = 2) -> list[str]:
    """The ``ticketlab train`` flags equal to one chain of studies/tiny.toml."""
    return ["--preset", "quickstart", "--reset", reset, "--seed", str(seed), "--levels", str(levels),
            "--iterations", "4", "--eval-every", "0", "--val-size", "1000", "--controls", "none",
            "--data-dir", DATA_DIR, "--device", "cpu", "--quiet"]


@pytest.fixture(scope="module")
def standalone(tmp_path_factory) -> dict[str, Path]:
    """Each chain of the tiny study run by ``ticketlab train`` on its own."""
    root = tmp_path_factory.mktemp("standalone")
    out = {}
    for name, (reset, seed) in CHAINS.items():
        path = root / f"{reset}_{seed}.h5"
        assert main(["train", *train_flags(reset, seed), "--out", str(path)]) == 0
        out[name] = path
    return out


@pytest.fixture(scope="module")
def local_study(tmp_path_factory) -> Path:
    """The tiny study run in this process."""
    directory = tmp_path_factory.mktemp("study") / "tiny"
    assert main(["study", "run", str(TINY), "--out", str(directory), *RUN]) == 0
    return directory


def assert_same_ticket(a: Path, b: Path) -> None:
    """Same levels, branches, masks and weights (trained and initial), bit for bit."""
    with open_ticket(a) as ta, open_ticket(b) as tb:
        assert ta.levels == tb.levels, (a, b)
        assert ta.status == tb.status == "complete"
        assert ta.config == tb.config
        for key, value in ta.weights("init").items():
            assert np.array_equal(value, tb.weights("init")[key]), key
        for level in ta.levels:
            assert ta.branches(level) == tb.branches(level)
            for branch in [None, *ta.branches(level)]:
                ma, mb = ta.masks(level, branch=branch), tb.masks(level, branch=branch)
                assert all(np.array_equal(ma[k], mb[k]) for k in ma), (a, level, branch)
                wa, wb = ta.weights(level=level, branch=branch), tb.weights(level=level, branch=branch)
                assert all(np.array_equal(wa[k], wb[k]) for k in wa), (a, level, branch)
                assert ta.level_record(level, branch=branch)["accuracy"] == \
                    tb.level_record(level, branch=branch)["accuracy"]


def assert_study_equals_standalone(directory: Path, standalone: dict[str, Path]) -> None:
    manifest = read_manifest(directory)
    assert [c["name"] for c in manifest["chains"]] == list(CHAINS)
    for entry in manifest["chains"]:
        assert entry["status"] == "complete" and entry["error"] is None
        assert_same_ticket(directory / entry["file"], standalone[entry["name"]])


def snapshot(directory: Path) -> dict[str, tuple[int, bytes]]:
    return {str(p.relative_to(directory)): (p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(directory.rglob("*")) if p.is_file() and not p.name.startswith(".")}


# ------------------------------------------------------------------------------------------------ the spec


def test_the_spec_expands_into_named_chains():
    spec = load_spec(TINY)
    chains = spec.chains()
    assert [c.name for c in chains] == list(CHAINS)
    assert [c.stem for c in chains] == list(CHAINS)  # already file-system safe
    assert [(c.config.reset, c.config.seed) for c in chains] == list(CHAINS.values())
    assert {(c.config.levels, c.config.train.iterations, c.config.val_size, c.config.controls) for c in chains} == \
        {(2, 4, 1000, ())}


def test_flag_spellings_and_typed_or_text_values_agree():
    a = parse_spec('preset = "quickstart"\n[grid]\nseed = [3]\n[set]\neval-every = 0\ncontrols = "reinit,random"\n'
                   'layer-rate = "fc_layers.*=0.3"\nmilestones = "2,3"\nschedule = "step"\niterations = 4\n')
    b = parse_spec('preset = "quickstart"\n[grid]\nseed = [3]\n[set]\neval_every = 0\ncontrols = ["reinit", '
                   '"random"]\nlayer_rate = [["fc_layers.*", 0.3]]\nmilestones = [2, 3]\nschedule = "step"\n'
                   'iterations = 4\n')
    assert a.chains()[0].config == b.chains()[0].config
    config = a.chains()[0].config
    assert config.controls == ("reinit", "random") and config.layer_rates == (("fc_layers.*", 0.3),)
    assert config.train.milestones == (2, 3) and config.train.eval_every == 0


def test_classes_is_an_axis_and_text_or_list_values_agree():
    spec = parse_spec('preset = "quickstart"\n[grid]\nclasses = ["0-4", "5-9", [0, 2, 4, 6, 8], "none"]\n'
                      '[set]\niterations = 4\n')
    chains = spec.chains()
    assert [c.config.classes for c in chains] == [(0, 1, 2, 3, 4), (5, 6, 7, 8, 9), (0, 2, 4, 6, 8), ()]
    assert [c.name for c in chains] == ["classes=0-4", "classes=5-9", "classes=0,2,4,6,8", "classes=none"]
    assert len(set(c.stem for c in chains)) == 4
    # the same task spelled two ways is the same chain config
    same = parse_spec('preset = "quickstart"\n[grid]\nseed = [0]\n[set]\nclasses = "0,1,2,3,4"\niterations = 4\n')
    assert same.chains()[0].config.classes == chains[0].config.classes


def test_a_set_key_may_need_an_axis_value():
    # norm is refused with the preset's layer_magnitude, but every chain of this grid is ln_structured
    spec = parse_spec('preset = "quickstart"\n[grid]\nstrategy = ["ln_structured"]\nseed = [0, 1]\n'
                      '[set]\nnorm = "l1"\noutput-rate = 0\niterations = 4\n')
    assert [(c.config.strategy, c.config.norm) for c in spec.chains()] == [("ln_structured", "l1")] * 2
    # when some chains cannot take it, the error still names the key
    with pytest.raises(ConfigError, match=r"set\.norm.*ln_structured"):
        parse_spec('preset = "quickstart"\n[grid]\nstrategy = ["ln_structured", "layer_magnitude"]\n'
                   '[set]\nnorm = "l1"\n')


LN = 'preset = "quickstart"\n[grid]\nstrategy = ["ln_structured"]\n'


@pytest.mark.parametrize("axis, culprit", [("rate = [0.2, 1.5]", "grid.rate = 1.5: rate must be"),
                                           ('classes = ["0-4", "0-10"]', 'grid.classes = "0-10": dataset')])
def test_spec_blames_the_failing_axis_value_not_a_set_key_the_other_chains_need(axis, culprit):
    # set.norm needs the strategy axis's value; the chains that fail, fail for another reason
    with pytest.raises(ConfigError) as err:
        parse_spec(f'{LN}{axis}\n[set]\nnorm = "l1"\noutput-rate = 0\n')
    assert str(err.value).startswith(f"<spec>: {culprit}") and "\n" not in str(err.value), err.value
    # a [set] key at fault is still named; one chain with two faults is named by the chain
    with pytest.raises(ConfigError, match=r"^<spec>: set\.rate = 1\.5: rate must"):
        parse_spec(f'{LN}norm = ["l1", "l2"]\n[set]\nrate = 1.5\noutput-rate = 0\n')
    with pytest.raises(ConfigError, match=r"^<spec>: chain strategy=ln_structured,rate=1\.5,model=lenet301: "):
        parse_spec(f'{LN}rate = [1.5]\nmodel = ["lenet301"]\n[set]\nnorm = "l1"\n')


@pytest.mark.parametrize("text", ['preset = "quickstart"\n[grid]\nnorm = ["l1", "l2"]\n'
                                  '[set]\nstrategy = "ln_structured"\noutput-rate = 0\n',
                                  f'{LN}norm = ["l1", "l2"]\n[set]\noutput-rate = 0\n'])
def test_spec_axis_values_may_need_another_key(text):
    # each norm value alone is refused with the preset's layer_magnitude; with the strategy every chain builds
    chains = parse_spec(text).chains()
    assert [(c.config.strategy, c.config.norm) for c in chains] == [("ln_structured", "l1"), ("ln_structured", "l2")]


@pytest.mark.parametrize("same", ["[0, 1, 2, 3, 4]", '"0,1,2,3,4"', '"4,3,2,1,0"'])
def test_spec_refuses_two_chains_with_the_same_config(same):
    with pytest.raises(ConfigError) as err:
        parse_spec(f'preset = "quickstart"\n[grid]\nclasses = ["0-4", {same}]\nseed = [0, 1]\n')
    message = str(err.value)
    assert message.startswith("<spec>: grid.classes: ") and "\n" not in message, message
    assert "chains classes=0-4,seed=0 and classes=" in message and "same config" in message
    # two presets that the [set] keys make equal
    with pytest.raises(ConfigError, match=r'^<spec>: grid\.preset: "quickstart" and "lth-lenet300" give the same '
                                          r"config \(chains preset=quickstart,seed=0 and preset=lth-lenet300,seed=0\)"):
        parse_spec('[grid]\npreset = ["quickstart", "lth-lenet300"]\nseed = [0]\n[set]\nrate = 0.2\n'
                   'output-rate = 0.1\nlevels = 2\niterations = 4\ncontrols = "none"\neval-every = 0\n')
    # chains that differ on two axes are named by the chains alone
    with pytest.raises(ConfigError, match=r"^<spec>: chains a=1,b=2 and a=2,b=1 have the same config; drop one$"):
        _check_distinct([("a=1,b=2", {"a": 1, "b": 2}, "C"), ("a=2,b=1", {"a": 2, "b": 1}, "C")], "<spec>: ")


def test_file_stems_are_safe_and_distinct():
    stems = file_stems(["reset=rewind:1000,seed=0", "reset=rewind-1000,seed=0", "a/b", "x" * 300])
    assert stems[0] != stems[1] and all(s.startswith("reset=rewind-1000,seed=0") for s in stems[:2])
    assert "/" not in stems[2] and ":" not in stems[0] and len(stems[3]) <= 120


SPEC_ERRORS = {
    "unknown axis": ('preset = "quickstart"\n[grid]\nsed = [0, 1]\n', ["[grid]", "'sed'", "did you mean 'seed'"]),
    "unknown value": ('preset = "quickstart"\n[grid]\nreset = ["rewind-init", "rewnd:10"]\n',
                      ["grid.reset", "rewnd:10", "unknown reset mode"]),
    "unknown model": ('preset = "quickstart"\n[grid]\nmodel = ["lenet301"]\n', ["grid.model", "lenet301"]),
    "wrong type": ('preset = "quickstart"\n[grid]\nseed = ["zero"]\n', ["grid.seed", "integer"]),
    "empty grid": ('preset = "quickstart"\n[grid]\n', ["[grid] is empty"]),
    "no grid": ('preset = "quickstart"\n', ["[grid] is empty"]),
    "empty axis": ('preset = "quickstart"\n[grid]\nseed = []\n', ["grid.seed", "empty"]),
    "preset typo": ('preset = "quickstrat"\n[grid]\nseed = [0]\n', ["preset", "quickstrat", "did you mean"]),
    "bad set value": ('preset = "quickstart"\n[grid]\nseed = [0]\n[set]\ncontrols = "reinit,nope"\n',
                      ["set.controls", "nope"]),
    "axis and set": ('preset = "quickstart"\n[grid]\nseed = [0]\n[set]\nseed = 1\n', ["set.seed", "axis"]),
    "unknown key": ('preset = "quickstart"\ngird = 1\n[grid]\nseed = [0]\n', ["'gird'"]),
    "not toml": ('preset = "quickstart"\n[grid\n', ["not valid TOML"]),
    "bad classes": ('preset = "quickstart"\n[grid]\nclasses = ["0-4", "9-5"]\n', ["grid.classes", "9-5"]),
    "one class": ('preset = "quickstart"\n[grid]\nseed = [0]\n[set]\nclasses = "3"\n', ["set.classes"]),
    "class not in dataset": ('preset = "quickstart"\n[grid]\nclasses = ["0-10"]\n', ["grid.classes", "10"]),
    "unknown norm": ('preset = "quickstart"\n[grid]\nstrategy = ["ln_structured"]\n[set]\nnorm = "l7"\n',
                     ["set.norm", "l1, l2 or linf", "'l7'"]),
    "same config": ('preset = "quickstart"\n[grid]\nclasses = ["0-4", [0, 1, 2, 3, 4]]\n',
                    ["grid.classes", "chains classes=0-4 and classes=0,1,2,3,4", "same config"]),
}


@pytest.mark.parametrize("case", SPEC_ERRORS)
def test_spec_errors_are_one_line_naming_the_key(case, tmp_path, capsys):
    text, fragments = SPEC_ERRORS[case]
    spec = tmp_path / "bad.toml"
    spec.write_text(text)
    code, out, err = cli(capsys, "study", "run", str(spec), "--out", str(tmp_path / "out"), *RUN)
    assert code == 2 and out == ""
    assert err.startswith(f"ticketlab study: error: {spec}: ") and err.count("\n") == 1, err
    for f in fragments:
        assert f in err, (f, err)
    assert not (tmp_path / "out").exists()  # nothing runs, nothing is written


def test_scheduler_without_dask_says_what_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if dask[distributed] were not installed
    code, _, err = cli(capsys, "study", "run", str(TINY), "--out", str(tmp_path / "s"), "--scheduler",
                       "tcp://127.0.0.1:1", *RUN)
    assert code == 2 and "pip install 'ticketlab[distributed]'" in err and err.count("\n") == 1


# ------------------------------------------------------------------------------------------ running locally


def test_a_study_equals_standalone_train_runs(local_study, standalone):
    assert_study_equals_standalone(local_study, standalone)
    manifest = read_manifest(local_study)
    assert manifest["spec"]["grid"] == {"reset": ["rewind-init", "lr-rewind"], "seed": [0, 1]}
    assert manifest["spec_text"] == TINY.read_text()
    assert manifest["chains"][2]["axes"] == {"reset": "lr-rewind", "seed": 0}
    assert manifest["chains"][2]["file"] == "chains/reset=lr-rewind,seed=0.h5"


def test_a_finished_study_rerun_does_nothing(local_study, capsys):
    before = snapshot(local_study)
    code, _, err = cli(capsys, "study", "run", str(TINY), "--out", str(local_study), *RUN)
    assert code == 0
    assert snapshot(local_study) == before  # not even the manifest is rewritten


def test_status_and_frame(local_study, capsys, tmp_path):
    code, out, _ = cli(capsys, "study", "status", str(local_study))
    assert code == 0
    assert "4/4 chains complete" in out and "12/12 levels" in out
    records = study_status(local_study)
    assert [(r["status"], r["levels_done"], r["levels_planned"]) for r in records] == [("complete", 3, 3)] * 4

    code, _, err = cli(capsys, "study", "frame", str(local_study), "--out", str(tmp_path / "f.csv"))
    assert code == 0, err
    import pandas as pd

    df = pd.read_csv(tmp_path / "f.csv")
    assert len(df) == 4 * 3 and list(df.columns[:6]) == ["reset", "seed", "chain", "file", "level", "branch"]
    assert set(df.branch) == {"main"} and sorted(set(df.seed)) == [0, 1]
    assert {"density", "accuracy", "early_stop_iteration", "accuracy[0]", "accuracy[9]"} <= set(df.columns)
    frame = study_frame(local_study)
    with open_ticket(local_study / "chains" / "reset=lr-rewind,seed=1.h5") as t:
        ev = t.evaluation(2)
        row = frame[(frame.chain == "reset=lr-rewind,seed=1") & (frame.level == 2)].iloc[0]
        assert row.accuracy == ev.accuracy and row["accuracy[3]"] == ev.per_class_accuracy[3]
        assert row.density == t.level_record(2)["density"]


def test_one_runner_per_directory(local_study, capsys):
    from ticketlab.study.manifest import StudyLock

    with StudyLock(local_study):
        code, _, err = cli(capsys, "study", "run", str(TINY), "--out", str(local_study), *RUN)
    assert code == 2 and f"is being run by another process (pid {os.getpid()})" in err


def test_frame_format_errors(local_study, capsys, tmp_path):
    code, _, err = cli(capsys, "study", "frame", str(local_study), "--out", str(tmp_path / "f.xlsx"))
    assert code == 2 and ".csv or .parquet" in err
    code, _, err = cli(capsys, "study", "status", str(tmp_path / "nope"))
    assert code == 2 and "not a study directory" in err
    code, _, err = cli(capsys, "study", "frame", str(local_study), "--out", str(tmp_path / "f.parquet"))
    import importlib.util

    if not (importlib.util.find_spec("pyarrow") or importlib.util.find_spec("fastparquet")):
        assert code == 2 and "pip install pyarrow" in err
    else:
        import pandas as pd

        assert code == 0 and len(pd.read_parquet(tmp_path / "f.parquet")) == 12


def test_a_changed_spec_is_refused_and_extend_adds_seeds(local_study, tmp_path, capsys):
    directory = tmp_path / "copy"
    shutil.copytree(local_study, directory)
    text = TINY.read_text()
    changed = tmp_path / "changed.toml"
    changed.write_text(text.replace("iterations = 4", "iterations = 5"))
    code, _, err = cli(capsys, "study", "run", str(changed), "--out", str(directory), *RUN)
    assert code == 2 and "set.iterations: 4 in the study, 5 now" in err and err.count("\n") == 1

    more = tmp_path / "more.toml"
    more.write_text(text.replace("seed = [0, 1]", "seed = [0, 1, 2]"))
    code, _, err = cli(capsys, "study", "run", str(more), "--out", str(directory), *RUN)
    assert code == 2 and "grid.seed: new value '2' (add it with --extend)" in err
    before = snapshot(directory)
    code, _, err = cli(capsys, "study", "run", str(more), "--out", str(directory), "--extend", *RUN)
    assert code == 0, err
    after = snapshot(directory)
    for name in CHAINS:  # the chains that were complete are not touched
        key = f"chains/{name}.h5"
        assert after[key] == before[key]
    names = [c["name"] for c in read_manifest(directory)["chains"]]
    assert names == ["reset=rewind-init,seed=0", "reset=rewind-init,seed=1", "reset=rewind-init,seed=2",
                     "reset=lr-rewind,seed=0", "reset=lr-rewind,seed=1", "reset=lr-rewind,seed=2"]  # grid order
    assert [r["status"] for r in study_status(directory)] == ["complete"] * 6

    # more levels: every chain prunes further, as a run made with the larger number from the start
    deeper = tmp_path / "deeper.toml"
    deeper.write_text(more.read_text().replace("levels = 2", "levels = 3"))
    code, _, err = cli(capsys, "study", "run", str(deeper), "--out", str(directory), *RUN)
    assert code == 2 and "set.levels: 2 in the study, 3 now (prune further with --extend)" in err
    code, _, err = cli(capsys, "study", "run", str(deeper), "--out", str(directory), "--extend", *RUN)
    assert code == 0, err
    assert [(r["status"], r["levels_done"]) for r in study_status(directory)] == [("complete", 4)] * 6
    reference = tmp_path / "reference.h5"
    assert main(["train", *train_flags("lr-rewind", 1, levels=3), "--out", str(reference)]) == 0
    assert_same_ticket(directory / "chains" / "reset=lr-rewind,seed=1.h5", reference)


# ------------------------------------------------------------------------------------ surviving SIGKILL


def _levels(path: Path) -> int:
    try:
        with open_ticket(path) as t:
            return len(t.levels)
    except Exception:
        return 0


def _wait_for(predicate, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the study ended (exit {proc.returncode}) before the moment to kill it came")
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def _workers_of(pid: int) -> list[int]:
    """The multiprocessing worker processes among a process's children (Linux /proc)."""
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            if b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
                out.append(int(child))
    return out


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds worker processes through /proc")
def test_sigkill_of_a_local_worker_and_of_the_study_process_then_rerun(tmp_path, standalone):
    """Two local workers: kill one once a chain has a level (its chains resume in a fresh pool), then kill the
    study itself (its workers die with it); the same command finishes, identically to standalone runs."""
    directory = tmp_path / "killed"
    command = [sys.executable, "-m", "ticketlab", "study", "run", str(TINY), "--out", str(directory), *RUN]
    proc = subprocess.Popen([*command[:-1], "--workers", "2", "-v"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        chains = [directory / "chains" / f"{name}.h5" for name in CHAINS]
        _wait_for(lambda: any(_levels(c) >= 1 for c in chains), 240, proc)
        workers = _workers_of(proc.pid)
        assert len(workers) == 2
        before = sum(_levels(c) for c in chains)
        os.kill(workers[0], signal.SIGKILL)
        # the fresh pool works; the study is killed while a chain is part-way (levels written, not all), so that
        # the rerun resumes one from its file (a chain can complete between this poll and the kill only if it
        # writes two levels within a few milliseconds)
        _wait_for(lambda: sum(_levels(c) for c in chains) >= before + 2
                  and any(1 <= _levels(c) < 3 for c in chains), 240, proc)
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert "a worker process died" in err, err
    assert any(e["status"] != "complete" for e in read_manifest(directory)["chains"]), err
    statuses = [r["status"] for r in study_status(directory)]
    assert "partial" in statuses and statuses.count("complete") < 4, statuses
    time.sleep(0.5)
    assert not any(Path(f"/proc/{w}").exists() for w in workers)  # no orphan goes on writing a chain
    # the rerun may use another executor (here: this process); the chains resume from their files
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert_study_equals_standalone(directory, standalone)


# ------------------------------------------------------------------------------------------------- Dask


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def dask_cluster(tmp_path):
    """A scheduler and two single-thread workers (no nanny: a killed worker stays dead) on 127.0.0.1."""
    distributed = pytest.importorskip("distributed")
    address = f"tcp://127.0.0.1:{_free_port()}"
    dask = [sys.executable, "-m", "dask"]
    log = open(tmp_path / "dask.log", "w")
    procs = [subprocess.Popen([*dask, "scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1],
                               "--no-dashboard"], stdout=log, stderr=log)]
    try:
        for _ in range(2):
            procs.append(subprocess.Popen([*dask, "worker", address, "--nthreads", "1", "--no-nanny", "--host",
                                           "127.0.0.1", "--no-dashboard"], stdout=log, stderr=log,
                                          cwd=tmp_path))
        with distributed.Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=120)
        yield address, procs[1:]
    finally:
        for p in procs[1:]:  # test workers hold nothing worth a graceful close
            p.kill()
            p.wait()
        procs[0].terminate()
        try:
            procs[0].wait(timeout=10)
        except subprocess.TimeoutExpired:
            procs[0].kill()
            procs[0].wait()
        log.close()


@pytest.mark.slow
def test_a_dask_cluster_gives_identical_files_even_when_a_worker_dies(tmp_path, standalone, dask_cluster):
    address, workers = dask_cluster
    directory = tmp_path / "dask"
    argv = [sys.executable, "-m", "ticketlab", "study", "run", str(TINY), "--out", str(directory), "--scheduler",
            address, *RUN]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        chains = [directory / "chains" / f"{name}.h5" for name in CHAINS]
        _wait_for(lambda: any(_levels(c) >= 1 for c in chains), 240, proc)
        os.kill(workers[0].pid, signal.SIGKILL)  # both workers are busy: one chain loses its level in progress
        out, err = proc.communicate(timeout=600)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert workers[0].wait(timeout=10) == -signal.SIGKILL
    assert_study_equals_standalone(directory, standalone)

    # without a shared file system the chain files travel through Dask, and are the same
    one = tmp_path / "one.toml"
    one.write_text(TINY.read_text().replace('reset = ["rewind-init", "lr-rewind"]', 'reset = ["lr-rewind"]')
                   .replace("seed = [0, 1]", "seed = [1]"))
    separate = tmp_path / "separate"
    done = subprocess.run([sys.executable, "-m", "ticketlab", "study", "run", str(one), "--out", str(separate),
                           "--scheduler", address, "--no-shared-fs", *RUN], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    assert_same_ticket(separate / "chains" / "reset=lr-rewind,seed=1.h5", standalone["reset=lr-rewind,seed=1"])
    assert json.loads((separate / "manifest.json").read_text())["chains"][0]["status"] == "complete"
