"""Tests of ``ticketlab train`` and the registry listings (``models``, ``presets``, ``strategies``).

Most tests call :func:`ticketlab.cli.main` in-process (output read with capsys); a few run ``python -m ticketlab``
in a subprocess: a bad option (one line, no traceback) and Ctrl-C in the middle of a run (exit 130, the completed
levels kept). The real runs use the shipped MNIST at a few iterations.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from ticketlab import store
from ticketlab.frames import run_identity
from ticketlab.cli import COMMANDS, build_parser, main
from ticketlab.cli.train import config_from_args
from ticketlab.datasets import list_datasets
from ticketlab.lottery import CONTROLS, RESET_MODES
from ticketlab.models import list_models
from ticketlab.presets import build_config, list_presets, preset_as_flags
from ticketlab.pruning import list_strategies
from cli_helpers import cli

from imp_helpers import run_tiny, synthetic_data, tiny_config, tiny_train

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = str(REPO / "data")  # the shipped MNIST, named explicitly so that $TICKETLAB_DATA cannot interfere
TINY = ["--data-dir", DATA_DIR, "--quiet", "--device", "cpu"]


pytestmark = pytest.mark.usefixtures("one_thread")




def assert_one_line_error(err: str, *fragments: str) -> None:
    assert err.startswith("ticketlab train: error: "), err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for f in fragments:
        assert f in err, f"{f!r} not in {err!r}"


# ---------------------------------------------------------------------------------------- registry listings


def test_models_listing_and_json(capsys):
    code, out, _ = cli(capsys, "models")
    assert code == 0
    for spec in list_models():
        assert spec.name in out
    code, out, _ = cli(capsys, "models", "--json")
    assert code == 0
    records = json.loads(out)
    assert [r["name"] for r in records] == [s.name for s in list_models()]
    for r, spec in zip(records, list_models()):
        assert r["input"] == "x".join(map(str, spec.input_shape)) and r["description"] == spec.description


def test_presets_listing_and_json(capsys):
    code, out, _ = cli(capsys, "presets")
    assert code == 0
    for p in list_presets():
        assert p.name in out
    code, out, _ = cli(capsys, "presets", "--json")
    records = json.loads(out)
    assert [r["name"] for r in records] == [p.name for p in list_presets()]
    for r, p in zip(records, list_presets()):
        assert r["options"] == json.loads(json.dumps(dict(p.options)))
    code, out, _ = cli(capsys, "presets", "--flags")
    assert code == 0
    for p in list_presets():
        assert f"{p.name}:\n  ticketlab train {preset_as_flags(p)}" in out


def test_strategies_listing_and_json(capsys):
    code, out, _ = cli(capsys, "strategies")
    assert code == 0
    for name in [*list_strategies(), *RESET_MODES, *CONTROLS]:
        assert name in out
    code, out, _ = cli(capsys, "strategies", "--json")
    doc = json.loads(out)
    assert [s["name"] for s in doc["strategies"]] == list_strategies()
    assert [s["name"] for s in doc["reset_modes"]] == list(RESET_MODES)
    assert [s["name"] for s in doc["controls"]] == list(CONTROLS)
    assert all(s["description"] for s in doc["strategies"] + doc["reset_modes"] + doc["controls"])


def test_train_help_lists_the_registries(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for name in [*RESET_MODES, *CONTROLS, *(p.name for p in list_presets())]:
        assert name in out.replace("- ", "-"), name  # argparse may break a name after its hyphen
    assert "runs/quickstart_seed0.h5" in out and "about a minute" in out


@pytest.mark.parametrize("command", [[c] for c in COMMANDS] + [["data", "list"], ["data", "download"]],
                         ids=lambda c: " ".join(c))
def test_every_subcommand_help_has_examples(capsys, command):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out
    assert f"ticketlab {' '.join(command)}" in out.split("examples:")[1]


def test_preset_flags_parse_as_train_options():
    parser = build_parser()
    for p in list_presets():
        args = parser.parse_args(["train", *shlex.split(preset_as_flags(p))])
        assert args.command == "train"
        assert args.model == p.options["model"] and args.levels == p.options["levels"]


# The 'presets --flags' help says each line is "the equivalent flags"; the preset named explicitly must agree.
@pytest.mark.parametrize("name", [p.name for p in list_presets()])
def test_preset_flags_with_their_preset_give_the_preset(name):
    p = {x.name: x for x in list_presets()}[name]
    args = build_parser().parse_args(["train", "--preset", name, *shlex.split(preset_as_flags(p))])
    assert config_from_args(args) == build_config(name)


@pytest.mark.parametrize("name", [p.name for p in list_presets() if p.name != "quickstart"])
def test_preset_flags_alone_are_equivalent_to_the_preset(name):
    p = {x.name: x for x in list_presets()}[name]
    args = build_parser().parse_args(["train", *shlex.split(preset_as_flags(p))])
    assert config_from_args(args) == build_config(name)


@pytest.mark.parametrize("strategy", ["global_magnitude", "global_random"])
def test_a_global_strategy_needs_no_other_flag(strategy):
    args = build_parser().parse_args(["train", "--model", "conv4", "--dataset", "cifar10", "--strategy", strategy])
    assert config_from_args(args).strategy == strategy


# ------------------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize("flag,value,names", [
    ("--model", "lenet", lambda: [s.name for s in list_models()]),
    ("--dataset", "svhn", list_datasets),
    ("--strategy", "magnitude", list_strategies),
    ("--preset", "lth-lenet", lambda: [p.name for p in list_presets()]),
    ("--reset", "rewind", lambda: ["rewind-init", "rewind:K", "lr-rewind", "finetune", "reinit", "shuffle"]),
    ("--controls", "reinit,bogus", lambda: list(CONTROLS)),
])
def test_unknown_names_list_the_valid_ones(capsys, tmp_path, flag, value, names):
    out = tmp_path / "x.h5"
    code, _, err = cli(capsys, "train", flag, value, "--out", str(out), *TINY)
    assert code == 2
    assert_one_line_error(err, repr(value.split(",")[-1]), *names())
    assert not out.exists()


@pytest.mark.parametrize("argv,fragments", [
    (["--rate", "1.5"], ["rate must be a number in (0, 1)", "1.5"]),
    (["--rate", "0"], ["rate must be a number in (0, 1)"]),
    (["--rate", "-0.2"], ["rate must be a number in (0, 1)"]),
    (["--rate", "1"], ["rate must be a number in (0, 1)"]),
    (["--output-rate", "1"], ["output_rate must be in [0, 1)"]),
    (["--reset", "rewind:50", "--iterations", "20"],
     ["rewind:50 rewinds to iteration 50", "not before the end of training (20 iterations)"]),
    (["--reset", "rewind:1ep", "--iterations", "500"],  # one epoch = (60000 - 5000) // 60 = 916 iterations
     ["rewind:1ep rewinds to iteration 916", "(500 iterations)"]),
    (["--iterations", "10", "--epochs", "1"], None),  # argparse: mutually exclusive
    (["--milestones", "5", "--iterations", "10"], ["milestones are used only by the step schedule"]),
    (["--layer-rate", "conv*=0.1"], ["'conv*' matches no prunable tensor"]),
    (["--exclude", "nothing*"], ["exclude entry 'nothing*' matches no prunable tensor"]),
    (["--device", "cuda"] if not torch.cuda.is_available() else ["--device", "nonsense"], ["device"]),
    (["--resume", "--overwrite"], ["--resume and --overwrite contradict each other"]),
])
def test_bad_options_exit_2_with_one_line(capsys, tmp_path, argv, fragments):
    out = tmp_path / "x.h5"
    args = ["train", *argv, "--out", str(out), "--data-dir", DATA_DIR, "--quiet"]
    if fragments is None:
        with pytest.raises(SystemExit) as exit_info:
            main(args)
        assert exit_info.value.code == 2
        assert "not allowed with argument" in capsys.readouterr().err
    else:
        code, _, err = cli(capsys, *args)
        assert code == 2
        assert_one_line_error(err, *fragments)
    assert not out.exists()


def test_an_existing_output_is_refused_without_resume_or_overwrite(capsys, tmp_path):
    out = tmp_path / "exists.h5"
    out.write_bytes(b"precious")
    code, _, err = cli(capsys, "train", "--out", str(out), "--iterations", "4", *TINY)
    assert code == 2
    assert_one_line_error(err, "already exists", "--resume", "--overwrite")
    assert out.read_bytes() == b"precious"


def test_a_bad_option_in_a_subprocess_prints_one_line_and_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "ticketlab", "train", "--model", "nope", "--out",
                           str(tmp_path / "x.h5")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("ticketlab train: error: unknown model 'nope'; choose one of: conv2")
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stdout == ""


# ---------------------------------------------------------------------------------------------- real runs


def test_train_on_mnist_then_info_resume_and_mask(capsys, tmp_path):
    a = tmp_path / "tmp" / "x.h5"  # the parent folder is created
    argv = ["train", "--iterations", "20", "--eval-every", "10", "--levels", "2", "--out", str(a), *TINY]
    code, out, err = cli(capsys, *argv)
    assert code == 0, err
    # the table of levels: header and one row per level and per control branch (quickstart trains 'reinit')
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["level", "branch"])
    assert {"density", "sparsity", "compression", "kept", "accuracy"} <= set(lines[header].split())
    rows = [line.split() for line in lines[header + 1:] if line.strip()]
    assert [r[:2] for r in rows] == [["0", "-"], ["1", "-"], ["1", "reinit"], ["2", "-"], ["2", "reinit"]]
    assert "status complete" in out
    with store.open_ticket(a) as t:
        assert t.levels == [0, 1, 2] and t.status == "complete" and t.model == "lenet300"
        assert t.evaluation(2).curve["iteration"].tolist() == [0, 10, 20]
        masks = {level: t.masks(level) for level in t.levels}
        kept1 = t.kept(1)
    # quickstart: 50% per level, output layer 25%
    assert kept1 == {"fc_layers.0.weight": 117600, "fc_layers.1.weight": 15000, "fc.weight": 750}

    code, out, _ = cli(capsys, "info", str(a))
    assert code == 0
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:1] == ["level"])
    levels = {line.split()[0] for line in lines[header + 1:] if line.strip()}
    assert levels == {"0", "1", "2"}
    code, out, _ = cli(capsys, "info", "--json", str(a))
    assert sorted({r["level"] for r in json.loads(out)["levels"]}) == [0, 1, 2]

    # --resume of the complete run: nothing to do; a different setting is refused, naming it
    code, _, err = cli(capsys, *argv, "--resume")
    assert code == 0, err
    with store.open_ticket(a) as t:
        assert t.levels == [0, 1, 2]
        for level in t.levels:
            for name, m in t.masks(level).items():
                np.testing.assert_array_equal(m, masks[level][name])
    before = a.read_bytes()
    code, _, err = cli(capsys, *argv, "--resume", "--rate", "0.3")
    assert code == 2
    assert_one_line_error(err, "rate: 0.5 in the file, 0.3 now")
    assert a.read_bytes() == before

    # --mask FILE:LEVEL: level 0 of the new run is exactly that mask; without LEVEL, the last level
    for spec, level in [(f"{a}:1", 1), (str(a), 2)]:
        b = tmp_path / f"from{level}.h5"
        code, _, err = cli(capsys, "train", "--mask", spec, "--levels", "1", "--iterations", "4", "--out", str(b),
                           *TINY)
        assert code == 0, err
        with store.open_ticket(b) as t:
            assert t.levels == [0, 1]
            got = t.masks(0)
            for name, m in masks[level].items():
                np.testing.assert_array_equal(got[name], m)
            nxt = t.masks(1)
            assert all(not np.any(nxt[n] & ~m) for n, m in masks[level].items())
            init_b = t.weights("init")
            # the file says where level 0's mask came from, so it is never taken for a chain from dense
            # (the level is named even when the command did not give it)
            source = f"level {level} of '{store.open_ticket(a).method}' on mnist"
            assert t.config["start"] == {"mask": f"{a}:{level}", "init": "ticket", "source": source}
            assert t.method.endswith(f", from the mask of {a}:{level} with its initial weights"), t.method
            assert run_identity(t).parts[-1] == f"from {source}"
            assert run_identity(t) != run_identity(store.open_ticket(a))
        # a ticket is its mask and its initial weights: both carry over, unless --fresh-init
        with store.open_ticket(a) as t:
            init_a = t.weights("init")
        assert init_b.keys() == init_a.keys()
        for k in init_a:
            np.testing.assert_array_equal(init_b[k], init_a[k])
    fresh = tmp_path / "fresh.h5"
    code, _, err = cli(capsys, "train", "--mask", str(a), "--fresh-init", "--seed", "7", "--levels", "0",
                       "--iterations", "4", "--out", str(fresh), *TINY)
    assert code == 0, err
    with store.open_ticket(fresh) as t:
        assert not np.array_equal(t.weights("init")["fc.weight"], init_a["fc.weight"])
        assert t.config["start"] == {"mask": f"{a}:2", "init": "fresh",
                                     "source": f"level 2 of '{store.open_ticket(a).method}' on mnist"}
        assert t.method == f"mask of {a}:2 trained from fresh initial weights"
        assert run_identity(t).parts[-1] == f"from level 2 of '{store.open_ticket(a).method}' on mnist (fresh init)"
    # resuming the run from a given mask (nothing left to do) is not refused for the recorded start ...
    code, _, err = cli(capsys, "train", "--mask", str(a), "--fresh-init", "--seed", "7", "--levels", "0",
                       "--iterations", "4", "--out", str(fresh), "--resume", *TINY)
    assert code == 0, err
    # ... but resuming it from another start (none, another level, the ticket's own weights) is: the file would
    # say one mask and hold another
    before = fresh.read_bytes()
    for other in ([], ["--mask", f"{a}:1", "--fresh-init"], ["--mask", str(a)]):
        code, _, err = cli(capsys, "train", *other, "--seed", "7", "--levels", "0", "--iterations", "4", "--out",
                           str(fresh), "--resume", *TINY)
        assert code == 2
        assert_one_line_error(err, f"was started from the mask of {a}:2 (fresh initial weights)", "--overwrite")
    assert fresh.read_bytes() == before
    # and a run from the dense network cannot be resumed from a mask
    code, _, err = cli(capsys, "train", "--mask", str(fresh), "--levels", "2", "--iterations", "4", "--out", str(a),
                       "--resume", *TINY)
    assert code == 2
    assert_one_line_error(err, f"{a} was started from the dense network, now from the mask of {fresh}:0")
    code, _, err = cli(capsys, "train", "--fresh-init", "--out", str(tmp_path / "d.h5"), *TINY)
    assert code == 2
    assert_one_line_error(err, "--fresh-init goes with --mask")
    code, _, err = cli(capsys, "train", "--mask", f"{a}:7", "--out", str(tmp_path / "c.h5"), *TINY)
    assert code == 2
    assert_one_line_error(err, "no level 7; levels present: 0, 1, 2")
    assert not (tmp_path / "c.h5").exists()


def test_a_mask_from_another_model_is_refused(capsys, tmp_path):
    other = tmp_path / "lenet5.h5"
    run_tiny(other, tiny_config(model="lenet5", levels=0, train=tiny_train(iterations=2, eval_every=0)),
             synthetic_data(n_train=32, n_val=None, n_test=8))
    out = tmp_path / "x.h5"
    code, _, err = cli(capsys, "train", "--mask", f"{other}:0", "--levels", "0", "--iterations", "4", "--out",
                       str(out), *TINY)
    assert code == 2
    assert_one_line_error(err, f"--mask {other}:0", "do not match model 'lenet300'", "'convs.0.weight'")
    assert not out.exists()


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def test_ctrl_c_exits_130_and_keeps_the_completed_levels(capsys, tmp_path):
    """SIGINT once got lost: a shell without job control (a script's ``cmd &``, a CI runner) starts a background
    job with SIGINT ignored, and Python then installs no handler, so the run went on to its last level and
    exited 0. ``train`` installs its own handler; the child here is started with SIGINT ignored to prove it.
    The signal is sent only after an observable event: level 1 committed to the file (the handler is installed
    before the run starts)."""
    out = tmp_path / "interrupted.h5"
    argv = ["train", "--iterations", "150", "--eval-every", "0", "--levels", "6", "--out", str(out),
            "--data-dir", DATA_DIR, "--device", "cpu"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "ticketlab", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, preexec_fn=_ignore_sigint)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None:
            if out.exists():
                try:
                    with store.open_ticket(out) as t:
                        if 1 in t.levels:
                            break
                except Exception:  # noqa: BLE001 - racing the first commit
                    pass
            time.sleep(0.05)
        assert proc.poll() is None, f"the run ended before it could be interrupted: {proc.communicate()}"
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "Traceback" not in stdout
    assert "interrupted" in stderr and "--resume" in stderr and str(out) in stderr
    assert "level 0: density 1.0000" in stderr  # the per-level lines came before
    with store.open_ticket(out) as t:
        done = t.levels
        assert t.status == "in_progress"
    assert done == list(range(len(done))) and 2 <= len(done) <= 6
    assert not list(tmp_path.glob(".interrupted.h5.*"))  # no temporary file, no lock file
    # the same command plus --resume completes the run
    code, table, err = cli(capsys, *argv, "--quiet", "--resume")
    assert code == 0, err
    with store.open_ticket(out) as t:
        assert t.levels == list(range(7)) and t.status == "complete"
        assert all(t.branches(level) == ["reinit"] for level in range(1, 7))
