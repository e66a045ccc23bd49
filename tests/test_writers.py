"""What every writing command guarantees (``ticketlab.outputs``): one writer per file, one rule for outputs, and
one-line errors on read-only and full disks.

Every writer — ``train``, ``intersect``, ``import``, ``export``, ``report``, ``plot`` and ``fairness --report`` —
is run through the same cases: an output another process is writing is refused at once (exit 2, naming the
process), and the lock of a SIGKILLed writer does not block; an existing output is refused without
``--overwrite``; an input of the same command is never written over; missing directories are created; the
extension is checked. The read-only and full-disk cases mount a tmpfs and are skipped where that is impossible.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pytest
import torch

from ticketlab import store
from ticketlab.cli import main
from ticketlab.outputs import OutputBusyError, OutputError, lock_path, output_lock, prepare_output

from conftest import TOY_TENSORS, make_ticket

REPO = Path(__file__).resolve().parents[1]
TINY_TRAIN = ["--levels", "0", "--iterations", "2", "--eval-every", "0", "--data-dir", str(REPO / "data"), "--quiet",
              "--device", "cpu"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """Two toy ticket files and a torch.nn.utils.prune state dict."""
    from torch.nn.utils import prune

    d = tmp_path_factory.mktemp("inputs")
    a, b = d / "a.h5", d / "b.h5"
    make_ticket(a, levels=2, seed=0)
    make_ticket(b, levels=2, seed=1)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    prune.l1_unstructured(net[0], "weight", amount=0.5)
    sd = d / "pruned.pt"
    torch.save(net.state_dict(), sd)
    return {"a": a, "b": b, "sd": sd}


# command -> (suffix of its output, argv for an output path)
COMMANDS: dict[str, tuple[str, Callable[[dict[str, Path], Path], list[str]]]] = {
    "train": (".h5", lambda i, out: ["train", *TINY_TRAIN, "--out", str(out)]),
    "intersect": (".h5", lambda i, out: ["intersect", str(i["a"]), f"{i['b']}:1", "--out", str(out)]),
    "import": (".h5", lambda i, out: ["import", "torch-prune", str(i["sd"]), "--out", str(out)]),
    "export": (".pt", lambda i, out: ["export", str(i["a"]), "--out", str(out)]),
    "report": (".html", lambda i, out: ["report", str(i["a"]), "--out", str(out)]),
    "plot": (".png", lambda i, out: ["plot", "accuracy", str(i["a"]), "--out", str(out)]),
    "fairness": (".html", lambda i, out: ["fairness", str(i["a"]), "--what", "runs", "--report", str(out)]),
}
# the input each command would destroy if it wrote over it
VICTIM = {"train": None, "intersect": "b", "import": "sd", "export": "a", "report": "a", "plot": "a",
          "fairness": "a"}


def run_cli(capsys, argv: list[str]) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


def assert_one_line(code: int, err: str, *words: str) -> None:
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, err


def hidden(folder: Path) -> list[str]:
    """Temporary and lock files left in ``folder``."""
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


@pytest.fixture
def holder(tmp_path) -> Iterator[Callable[[Path], subprocess.Popen]]:
    """Start a process that holds the one-writer lock of a path until killed."""
    procs: list[subprocess.Popen] = []

    def start(out: Path) -> subprocess.Popen:
        code = ("import sys, time\nfrom ticketlab.outputs import output_lock\n"
                f"with output_lock({str(out)!r}):\n    print('locked', flush=True)\n    time.sleep(600)\n")
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout.readline().strip() == "locked"  # the event: the lock is held
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


# -- one writer per file --------------------------------------------------------------------------------------


def test_the_lock_is_reentrant_exclusive_and_removed(tmp_path, holder):
    out = tmp_path / "x.h5"
    with output_lock(out):
        with output_lock(out):  # nested in one process: free
            pass
        assert lock_path(out).exists()
    assert not lock_path(out).exists()
    proc = holder(out)
    assert lock_path(out).read_text().split()[0] == str(proc.pid)
    with pytest.raises(OutputBusyError, match=rf"being written by process {proc.pid} on \S+; wait for it") as info:
        with output_lock(out):
            pass
    assert info.value.pid == proc.pid
    # the library writers are refused too
    with pytest.raises(OutputBusyError):
        store.create(out, tensors=TOY_TENSORS, model="toy", method="m", config={})
    # a SIGKILLed holder leaves its lock file, but not its lock
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert lock_path(out).exists()
    with output_lock(out, wait=True):
        pass
    store.create(out, tensors=TOY_TENSORS, model="toy", method="m", config={})
    assert hidden(tmp_path) == []


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_an_output_being_written_is_refused_and_a_killed_writer_does_not_block(capsys, inputs, tmp_path, holder,
                                                                               command):
    suffix, argv = COMMANDS[command]
    out = tmp_path / f"out{suffix}"
    proc = holder(out)
    for extra in ([], ["--overwrite"]):
        code, err = run_cli(capsys, argv(inputs, out) + extra)
        assert_one_line(code, err, f"{out} is being written by process {proc.pid} on ", "choose another")
    assert not out.exists()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    code, err = run_cli(capsys, argv(inputs, out))
    assert code == 0, err
    assert out.is_file() and hidden(tmp_path) == []


def test_two_trains_at_one_file_one_is_refused_and_the_other_completes(capsys, inputs, tmp_path):
    """The issue's case: ``train --seed 0 --overwrite`` and ``--seed 1 --overwrite`` started together."""
    out = tmp_path / "c.h5"
    argv = [sys.executable, "-m", "ticketlab", "train", "--levels", "2", "--iterations", "40", "--controls", "none",
            "--eval-every", "0", "--data-dir", str(REPO / "data"), "--quiet", "--device", "cpu", "--out", str(out),
            "--overwrite"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = [subprocess.Popen(argv + ["--seed", str(seed)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for seed in (0, 1)]
    try:
        # wait until one of them holds the lock (its pid is in the lock file) and has created the file
        deadline, winner = time.monotonic() + 240, None
        while time.monotonic() < deadline and winner is None:
            try:
                pid = int(lock_path(out).read_text().split()[0])
            except (OSError, IndexError, ValueError):
                pid = None
            winner = next((p for p in procs if p.pid == pid), None) if pid and out.exists() else None
            time.sleep(0.05)
        assert winner is not None, [p.communicate() for p in procs]
        # while it runs, every other writer of the file is refused at once
        for extra in (["train", *TINY_TRAIN, "--overwrite"], ["train", *TINY_TRAIN, "--resume"],
                      ["intersect", str(inputs["a"]), str(inputs["b"]), "--overwrite"],
                      ["import", "torch-prune", str(inputs["sd"]), "--overwrite"]):
            code, err = run_cli(capsys, extra + ["--out", str(out)])
            assert_one_line(code, err, f"is being written by process {winner.pid} on ")
        with pytest.raises(OutputBusyError):
            store.TicketWriter(out).set_status("failed")
        results = [p.communicate(timeout=600) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], results
    loser = next(i for i, p in enumerate(procs) if p.returncode == 2)
    assert "is being written by process" in results[loser][1] and "Traceback" not in results[loser][1]
    seed = next(i for i, p in enumerate(procs) if p.returncode == 0)
    with store.open_ticket(out) as t:
        assert t.status == "complete" and t.levels == [0, 1, 2] and t.seed == seed
        assert t.config["seed"] == seed
        for level in (1, 2):
            before, now = t.masks(level - 1), t.masks(level)
            assert all(not np.any(now[k] & ~before[k]) for k in now)
    assert hidden(tmp_path) == []


# -- one rule for every output -------------------------------------------------------------------------------


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_an_existing_output_is_refused_without_overwrite(capsys, inputs, tmp_path, command):
    suffix, argv = COMMANDS[command]
    out = tmp_path / f"out{suffix}"
    out.write_bytes(b"precious")
    code, err = run_cli(capsys, argv(inputs, out))
    assert_one_line(code, err, "already exists", "--overwrite")
    assert out.read_bytes() == b"precious" and hidden(tmp_path) == []


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_an_input_is_never_written_over(capsys, inputs, tmp_path, command):
    suffix, argv = COMMANDS[command]
    if command == "train":
        victim = tmp_path / "start.h5"
        victim.write_bytes(inputs["a"].read_bytes())
        args = ["train", "--mask", f"{victim}:1", *TINY_TRAIN, "--out", str(victim)]
    else:
        victim = inputs[VICTIM[command]]
        args = argv(inputs, victim)
    before = victim.read_bytes()
    code, err = run_cli(capsys, args + ["--overwrite"])
    assert_one_line(code, err, "is also an input")
    assert victim.read_bytes() == before and hidden(victim.parent) == []


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_missing_directories_are_created(capsys, inputs, tmp_path, command):
    suffix, argv = COMMANDS[command]
    out = tmp_path / "new" / "deeper" / f"out{suffix}"
    code, err = run_cli(capsys, argv(inputs, out))
    assert code == 0, err
    assert out.is_file() and hidden(out.parent) == []


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_the_extension_is_checked(capsys, inputs, tmp_path, command):
    suffix, argv = COMMANDS[command]
    out = tmp_path / "out.txt"
    code, err = run_cli(capsys, argv(inputs, out))
    assert_one_line(code, err, suffix, "out.txt")
    assert not out.exists() and hidden(tmp_path) == []


def test_resume_with_nothing_to_resume_is_an_error(capsys, tmp_path):
    out = tmp_path / "nothere.h5"
    code, err = run_cli(capsys, ["train", *TINY_TRAIN, "--resume", "--out", str(out)])
    assert_one_line(code, err, f"nothing to resume at {out}", "drop --resume")
    assert not out.exists() and hidden(tmp_path) == []


def test_prepare_output_checks_in_order(tmp_path):
    (tmp_path / "d.h5").mkdir()
    with pytest.raises(OutputError, match="is a directory"):
        with prepare_output(tmp_path / "d.h5"):
            pass
    with pytest.raises(OutputError, match="is also an input"):  # FILE:LEVEL specs name their file
        with prepare_output(tmp_path / "a.h5", inputs=[f"{tmp_path / 'a.h5'}:3"]):
            pass
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="parent of it is a file"):
        with prepare_output(tmp_path / "file" / "x.h5"):
            pass
    with prepare_output(tmp_path / "new" / "x.h5", suffixes=(".h5",)) as out:
        assert out.parent.is_dir() and lock_path(out).exists()
    assert hidden(tmp_path / "new") == []


# -- disks ------------------------------------------------------------------------------------------------------


def _mount_tmpfs(folder: Path, options: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")


@pytest.fixture
def tmpfs(tmp_path) -> Iterator[Callable[[str], Path]]:
    mounted: list[Path] = []

    def mount(options: str) -> Path:
        folder = tmp_path / f"fs{len(mounted)}"
        _mount_tmpfs(folder, options)
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_read_only_directory_is_one_line(capsys, inputs, tmpfs, command):
    suffix, argv = COMMANDS[command]
    folder = tmpfs("ro,size=1m")
    code, err = run_cli(capsys, argv(inputs, folder / f"out{suffix}"))
    assert_one_line(code, err, str(folder / f"out{suffix}"), "Read-only file system")


def test_a_full_disk_while_the_ticket_is_created_is_one_line(tmpfs, tmp_path):
    """``train --out`` on a 600 KiB tmpfs crashed in h5py (exit 139) and left ``.x.h5.tmp-PID``."""
    folder = tmpfs("size=600k")
    out = folder / "x.h5"
    done = subprocess.run([sys.executable, "-m", "ticketlab", "train", *TINY_TRAIN, "--out", str(out)],
                          capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert_one_line(done.returncode, done.stderr, f"cannot write {out}", "No space left on device")
    assert list(folder.iterdir()) == []


def test_a_full_disk_while_copying_is_one_line_about_the_copy(tmpfs, tmp_path):
    """``store.copy_ticket`` onto a full disk: an OutputError naming the destination (not the source as damaged),
    no temporary file left, the source unchanged; where there is room the same copy succeeds."""
    src = tmp_path / "run.h5"
    make_ticket(src, levels=2, branches=("reinit",))
    before = src.read_bytes()
    folder = tmpfs(f"size={4 * len(before) // 1024 + 64}k")
    dst = folder / "copy.h5"
    free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
    (folder / "filler").write_bytes(b"\0" * max(free - 4096, 0))
    with pytest.raises(OutputError, match=f"cannot write {dst}: No space left on device"):
        store.copy_ticket(src, dst)
    assert sorted(p.name for p in folder.iterdir()) == ["filler"] and src.read_bytes() == before
    (folder / "filler").unlink()
    store.copy_ticket(src, dst)
    assert store.open_ticket(dst).levels == store.open_ticket(src).levels


def test_a_full_disk_during_training_keeps_the_file(tmpfs, tmp_path, monkeypatch):
    """A level that does not fit: one line, and the ticket file keeps every completed level, byte for byte."""
    src = tmp_path / "run.h5"
    make_ticket(src, levels=1)
    size = src.stat().st_size
    folder = tmpfs(f"size={2 * size // 1024 + 64}k")
    path = folder / "run.h5"
    path.write_bytes(src.read_bytes())
    before = path.read_bytes()
    free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
    (folder / "filler").write_bytes(b"\0" * (free - size // 2))  # room for half a copy of the file
    masks = {t.name: np.ones(t.shape, bool) for t in TOY_TENSORS}
    with pytest.raises(OutputError, match=f"cannot write {path}: No space left on device; the existing file"):
        store.TicketWriter(path).write_level(2, masks)
    assert path.read_bytes() == before and hidden(folder) == []
    # large files are changed by a copy on disk, after a check that there is room for it
    import ticketlab.store.writer as writer

    monkeypatch.setattr(writer, "IN_MEMORY_MAX_BYTES", 0)
    with pytest.raises(OutputError, match="not enough free space"):
        store.TicketWriter(path).write_level(2, masks)
    assert path.read_bytes() == before and hidden(folder) == []
    monkeypatch.undo()
    (folder / "filler").unlink()
    store.TicketWriter(path).write_level(2, masks)  # room again
    with store.open_ticket(path) as t:
        assert t.levels == [0, 1, 2]
