"""The ticket-file store: round trips, partial reads, crash safety and bad input."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import TOY_TENSORS, make_ticket
from ticketlab import store
from ticketlab.errors import ConfigError, TicketFileError
from ticketlab.masks import TensorInfo


def test_masks_round_trip_bit_exact(ticket):
    path, written = ticket
    t = store.open_ticket(path)
    assert t.levels == [0, 1, 2, 3]
    for level, expected in enumerate(written["masks"]):
        got = t.masks(level)
        assert list(got) == [x.name for x in TOY_TENSORS]  # model order
        for name, m in expected.items():
            assert got[name].dtype == np.bool_ and got[name].shape == m.shape
            np.testing.assert_array_equal(got[name], m)


def test_pack_unpack_inverse_for_odd_sizes():
    rng = np.random.default_rng(1)
    for shape in [(1,), (7,), (9,), (3, 3, 3), (5, 13), (0,), (2, 0, 3)]:
        m = rng.random(shape) < 0.5
        packed = store.pack_mask(m)
        assert packed.dtype == np.uint8 and packed.size == -(-m.size // 8)
        np.testing.assert_array_equal(store.unpack_mask(packed, shape), m)


def test_kept_counts_and_summary_match_masks(ticket):
    path, written = ticket
    t = store.open_ticket(path)
    summary = t.summary()
    for level, masks in enumerate(written["masks"]):
        kept = {k: int(v.sum()) for k, v in masks.items()}
        assert t.kept(level) == kept
        row = summary[summary.level == level].iloc[0]
        size = sum(v.size for v in masks.values())
        assert row["kept"] == sum(kept.values())
        assert row["density"] == pytest.approx(sum(kept.values()) / size)
        assert row["sparsity"] == pytest.approx(1 - sum(kept.values()) / size)
        assert row["compression"] == pytest.approx(size / sum(kept.values()))
        assert row["accuracy"] == pytest.approx(written["evals"][level].accuracy)
    layers = t.layer_summary()
    assert len(layers) == len(written["masks"]) * len(TOY_TENSORS)
    r = layers[(layers.level == 2) & (layers.layer == "fc1.weight")].iloc[0]
    assert r["kept"] == written["masks"][2]["fc1.weight"].sum()
    assert r["density"] == pytest.approx(written["masks"][2]["fc1.weight"].mean())


def test_evaluation_round_trip(ticket):
    path, written = ticket
    t = store.open_ticket(path)
    for level, ev in enumerate(written["evals"]):
        got = t.evaluation(level)
        np.testing.assert_array_equal(got.predictions, ev.predictions)
        np.testing.assert_array_equal(got.confusion, ev.confusion)
        # per-class accuracy recomputed independently from labels and predictions
        labels = written["labels"]
        for c in range(10):
            sel = labels == c
            assert got.per_class_accuracy[c] == pytest.approx((ev.predictions[sel] == c).mean())
        assert got.accuracy == pytest.approx((ev.predictions == labels).mean())
        assert got.loss == pytest.approx(ev.loss)
        assert got.early_stop_iteration == ev.early_stop_iteration
        assert set(got.curve) == set(ev.curve)
        for k in ev.curve:
            np.testing.assert_array_equal(got.curve[k], ev.curve[k])
        assert got.iterations == 100 and got.wall_time == pytest.approx(1.25)
    np.testing.assert_array_equal(t.dataset.test_labels, written["labels"])
    assert t.dataset.class_names[3] == "class3"


def test_weights_round_trip(ticket):
    path, written = ticket
    t = store.open_ticket(path)
    init = t.weights("init")
    assert list(init) == list(written["init"])  # all parameters and buffers, in order
    for k, v in written["init"].items():
        np.testing.assert_array_equal(init[k], v)
        assert init[k].dtype == v.dtype
    for level, w in enumerate(written["weights"]):
        got = t.weights(level=level)
        for k, v in w.items():
            np.testing.assert_array_equal(got[k], v)
    assert t.weights(level=2, names=["fc1.weight"]).keys() == {"fc1.weight"}
    assert t.checkpoints() == ["init"]


def test_level_weights_are_stored_as_kept_values_only(ticket):
    path, written = ticket
    with h5py.File(path, "r") as f:
        d = f["levels/3/weights/fc1.weight"]
        assert d.attrs["layout"] == "kept_values"
        assert d.shape == (written["masks"][3]["fc1.weight"].sum(),)


def test_bfloat16_weights_keep_their_dtype_name(tmp_path):
    torch = pytest.importorskip("torch")
    w = {"fc.weight": torch.randn(4, 3).bfloat16(), "fc.bias": torch.randn(4)}
    path = store.create(tmp_path / "b.h5", tensors=[TensorInfo("fc.weight", (4, 3), "linear")], model="m",
                        method="x", config={}, init_weights=w)
    t = store.open_ticket(path)
    got = t.weights("init")
    np.testing.assert_array_equal(got["fc.weight"], w["fc.weight"].float().numpy())
    assert t.weight_dtypes("init") == {"fc.weight": "bfloat16", "fc.bias": "float32"}


def test_partial_read_touches_one_dataset(ticket, monkeypatch):
    path, written = ticket
    reads = []
    original = h5py.Dataset.__getitem__

    def counting(self, key):
        reads.append(self.name)
        return original(self, key)

    t = store.open_ticket(path)
    with t:
        t.tensors  # the tensor table is read once up front
        monkeypatch.setattr(h5py.Dataset, "__getitem__", counting)
        m = t.mask(2, "fc1.weight")
    mask_reads = [r for r in reads if "/masks/" in r]
    assert mask_reads == ["/levels/2/masks/fc1.weight"]
    np.testing.assert_array_equal(m, written["masks"][2]["fc1.weight"])


def test_provenance_and_config(ticket):
    path, _ = ticket
    t = store.open_ticket(path)
    prov = t.provenance
    assert prov["format"] == store.FORMAT and prov["schema_version"] == store.SCHEMA_VERSION
    for key in ("ticketlab_version", "torch_version", "numpy_version", "h5py_version", "created", "status"):
        assert prov[key]
    assert t.seed == 0 and t.model == "toy" and t.status == "in_progress"
    assert t.config["note"] == "x" * 100_000  # larger than the 64 KiB attribute limit: stored as a dataset
    with h5py.File(path, "r") as f:
        assert isinstance(f["config"], h5py.Dataset)
    assert t.tensors == TOY_TENSORS


def test_status_and_checkpoint_and_state(ticket):
    path, written = ticket
    w = store.TicketWriter(path)
    w.write_checkpoint("rewind", written["init"], iteration=50)
    w.write_state("resume", {"next_level": 4, "rng": [1, 2, 3]})
    w.set_status("complete")
    t = store.open_ticket(path)
    assert t.status == "complete"
    assert t.checkpoints() == ["init", "rewind"]
    np.testing.assert_array_equal(t.weights("rewind")["fc1.weight"], written["init"]["fc1.weight"])
    assert store.read_state(path, "resume") == {"next_level": 4, "rng": [1, 2, 3]}
    assert store.read_state(path, "other") is None
    with pytest.raises(ConfigError, match="status must be one of"):
        w.set_status("done")


def test_branches(tmp_path):
    path = tmp_path / "b.h5"
    make_ticket(path, levels=1, branches=("reinit", "shuffle"))
    t = store.open_ticket(path)
    assert t.branches(1) == ["reinit", "shuffle"]
    assert t.branch_info(1, "reinit")["kind"] == "reinit"
    m = t.masks(1, branch="shuffle")
    assert set(m) == {x.name for x in TOY_TENSORS}
    assert t.evaluation(1, branch="reinit") is not None
    assert "fc1.weight" in t.weights("init", level=1, branch="reinit")
    summary = t.summary()
    branches = [b if isinstance(b, str) else None for b in summary.branch]  # the main line's branch is missing
    assert branches == [None, "reinit", "shuffle", None, "reinit", "shuffle"]
    with pytest.raises(TicketFileError, match="no branch 'random'; branches: reinit, shuffle"):
        t.masks(1, branch="random")


def test_writes_refuse_to_clobber_and_validate(ticket, tmp_path):
    path, written = ticket
    with pytest.raises(TicketFileError, match="already exists"):
        store.create(path, tensors=TOY_TENSORS, model="m", method="x", config={})
    w = store.TicketWriter(path)
    with pytest.raises(TicketFileError, match="level 1 already exists"):
        w.write_level(1, written["masks"][1])
    bad = dict(written["masks"][1])
    bad["fc1.weight"] = bad["fc1.weight"].astype(np.int8) * 2
    with pytest.raises(ConfigError, match="values other than 0 and 1"):
        w.write_level(9, bad)
    bad = dict(written["masks"][1])
    bad["fc1.weight"] = bad["fc1.weight"][:, :3]
    with pytest.raises(ConfigError, match="shape"):
        w.write_level(9, bad)
    bad = {k: v for k, v in written["masks"][1].items() if k != "fc2.weight"}
    with pytest.raises(ConfigError, match="no mask given for tensor 'fc2.weight'"):
        w.write_level(9, bad)
    with pytest.raises(ConfigError, match="does not have: 'nope'"):
        w.write_level(9, {**written["masks"][1], "nope": np.ones(3, bool)})
    # failed writes leave the file exactly as it was
    assert store.open_ticket(path).levels == [0, 1, 2, 3]
    assert not list(tmp_path.glob(".*tmp*"))


def test_masks_at_most_one_bit_per_weight(tmp_path):
    rng = np.random.default_rng(0)
    tensors = [TensorInfo("a.weight", (512, 1024), "linear"), TensorInfo("b.weight", (64, 32, 3, 3), "conv")]
    path = store.create(tmp_path / "bits.h5", tensors=tensors, model="m", method="x", config={})
    w = store.TicketWriter(path)
    densities = [1.0, 0.5, 0.1, 0.01]
    for level, d in enumerate(densities):
        w.write_level(level, {t.name: rng.random(t.shape) < d for t in tensors})
    n = sum(t.size for t in tensors)
    with h5py.File(path, "r") as f:
        for level, d in enumerate(densities):
            g = f[f"levels/{level}/masks"]
            bits = 8 * sum(g[t.name].id.get_storage_size() for t in tensors) / n
            assert bits <= 1.0, (d, bits)
            # compressed (with gzip, which every HDF5 build reads, unlike lzf) only where it helps
            assert g["a.weight"].compression == (None if d == 0.5 else "gzip"), d
            if d != 0.5:
                assert bits < 0.7, (d, bits)


# -- reading never modifies a file -------------------------------------------------------------------------


def _digest(path: Path) -> tuple[str, int]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


def test_reading_never_modifies_the_file(ticket):
    path, _ = ticket
    before = _digest(path)
    t = store.open_ticket(path)
    with t:
        for level in t.levels:
            t.masks(level), t.evaluation(level), t.weights(level=level), t.kept(level)
        t.summary(), t.layer_summary(), t.config, t.provenance, t.weights("init")
    from ticketlab.cli import main

    assert main(["info", str(path), "--layers", "--json"]) == 0
    assert _digest(path) == before


# -- crash safety ------------------------------------------------------------------------------------------

WRITER = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np
    sys.path.insert(0, {tests!r})
    from conftest import TOY_TENSORS, make_ticket
    from ticketlab import store
    from ticketlab.store import level as store_level  # where LevelWriter looks up pack_mask

    path = {path!r}
    make_ticket(path, levels=2, seed=5)
    calls = []
    real_pack = store.pack_mask

    def pack_then_die(mask):
        calls.append(1)
        if len(calls) == 2:  # the level's second tensor: the level is half written
            os.kill(os.getpid(), signal.SIGKILL)
        return real_pack(mask)

    store_level.pack_mask = pack_then_die
    store.TicketWriter(path).write_level(3, {{t.name: np.zeros(t.shape, bool) for t in TOY_TENSORS}})
    print("not killed")
    """
)


def test_sigkill_mid_level_keeps_completed_levels(tmp_path):
    path = tmp_path / "killed.h5"
    script = WRITER.format(tests=str(Path(__file__).parent), path=str(path))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    expected = make_ticket(tmp_path / "reference.h5", levels=2, seed=5)
    t = store.open_ticket(path)
    assert t.levels == [0, 1, 2]
    for level in t.levels:
        for name, m in t.masks(level).items():
            np.testing.assert_array_equal(m, expected["masks"][level][name])
    leftovers = list(tmp_path.glob(".killed.h5.tmp-*"))
    assert leftovers, "the killed writer's temporary file should still be there"
    # the next writer removes the dead writer's temporary file and appends normally
    store.TicketWriter(path).write_level(3, expected["masks"][2])
    assert store.open_ticket(path).levels == [0, 1, 2, 3]
    assert not list(tmp_path.glob(".killed.h5.tmp-*"))


LOOP_WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    sys.path.insert(0, {tests!r})
    from conftest import TOY_TENSORS, make_ticket
    from ticketlab import store
    path = {path!r}
    make_ticket(path, levels=0, seed=9)
    w = store.TicketWriter(path)
    for level in range(1, 10_000):
        rng = np.random.default_rng(level)
        w.write_level(level, {{t.name: rng.random(t.shape) < 0.5 for t in TOY_TENSORS}})
    """
)


@pytest.mark.parametrize("delay", [0.6, 0.9, 1.3, 1.7])
def test_sigkill_at_arbitrary_moments_leaves_a_readable_file(tmp_path, delay):
    path = tmp_path / "loop.h5"
    script = LOOP_WRITER.format(tests=str(Path(__file__).parent), path=str(path))
    proc = subprocess.Popen([sys.executable, "-c", script])
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if not path.exists():  # killed before the file's first commit: nothing half-written either
        return
    t = store.open_ticket(path)
    for level in t.levels[1:]:
        rng = np.random.default_rng(level)
        expected = {x.name: rng.random(x.shape) < 0.5 for x in TOY_TENSORS}
        for name, m in t.masks(level).items():
            np.testing.assert_array_equal(m, expected[name])
    assert t.levels == list(range(len(t.levels)))


# -- bad input ---------------------------------------------------------------------------------------------


def _bad_files(tmp_path: Path, good: Path) -> dict[str, tuple[Path, str]]:
    text = tmp_path / "notes.h5"
    text.write_text("not hdf5 at all\n")
    data = good.read_bytes()
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(data[: len(data) // 2])
    corrupted = tmp_path / "corrupted.h5"
    blob = bytearray(data)
    blob[1000:9000] = os.urandom(8000)  # the root group's object headers live near the start
    corrupted.write_bytes(bytes(blob))
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = np.arange(3)
    newer = tmp_path / "newer.h5"
    newer.write_bytes(data)
    with h5py.File(newer, "r+") as f:
        f.attrs["schema_version"] = store.SCHEMA_VERSION + 1
    return {
        "missing": (tmp_path / "missing.h5", "no such file"),
        "directory": (tmp_path, "is a directory"),
        "not hdf5": (text, "not an HDF5 file"),
        "truncated": (truncated, "truncated or corrupted"),
        "corrupted": (corrupted, "truncated or corrupted"),
        "not a ticket": (other, "not a ticket file"),
        "newer schema": (newer, f"schema version {store.SCHEMA_VERSION + 1}"),
    }


def test_bad_files_give_one_clear_line(ticket, tmp_path, capsys):
    from ticketlab.cli import main

    path, _ = ticket
    for case, (bad, message) in _bad_files(tmp_path, path).items():
        with pytest.raises(TicketFileError, match=message):
            t = store.open_ticket(bad)
            t.masks(0)  # a corrupted file may open and fail on first read
        assert main(["info", str(bad)]) == 2, case
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err and str(bad) in err, (case, err)
        assert "Traceback" not in err


def test_missing_level_lists_present_levels(ticket):
    path, _ = ticket
    with pytest.raises(TicketFileError, match=r"no level 7; levels present: 0, 1, 2, 3"):
        store.open_ticket(path).masks(7)
    with pytest.raises(TicketFileError, match="no tensor 'nope'"):
        store.open_ticket(path).mask(1, "nope")
    with pytest.raises(TicketFileError, match="no 'rewind' weights; checkpoints present: init"):
        store.open_ticket(path).weights("rewind")


def test_cli_bad_file_in_a_subprocess_has_no_traceback(tmp_path):
    text = tmp_path / "notes.h5"
    text.write_text("hello")
    proc = subprocess.run([sys.executable, "-m", "ticketlab", "info", str(text)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"ticketlab info: error: {text}: not an HDF5 file, so not a ticket file"
    assert proc.stdout == ""


def test_copy_ticket_without_level_weights(tmp_path):
    path = tmp_path / "full.h5"
    written = make_ticket(path, levels=2, branches=("reinit",))
    slim = store.copy_ticket(path, tmp_path / "slim.h5", level_weights=False)
    assert slim.stat().st_size < path.stat().st_size
    a, b = store.open_ticket(path), store.open_ticket(slim)
    assert b.levels == a.levels and b.provenance == {**a.provenance, "updated": b.provenance["updated"]}
    assert b.config == a.config and b.tensors == a.tensors
    for level in a.levels:
        for name, m in a.masks(level).items():
            np.testing.assert_array_equal(b.masks(level)[name], m)
        np.testing.assert_array_equal(b.evaluation(level).predictions, a.evaluation(level).predictions)
        assert b.branches(level) == ["reinit"]
        np.testing.assert_array_equal(b.masks(level, branch="reinit")["fc1.weight"],
                                      a.masks(level, branch="reinit")["fc1.weight"])
        with pytest.raises(TicketFileError, match="has no stored trained weights"):
            b.weights(level=level)
    np.testing.assert_array_equal(b.weights("init")["fc1.weight"], written["init"]["fc1.weight"])
    full = store.copy_ticket(path, tmp_path / "copy.h5", checkpoints=())
    assert store.open_ticket(full).checkpoints() == []
    np.testing.assert_array_equal(store.open_ticket(full).weights(level=1)["fc1.weight"],
                                  written["weights"][1]["fc1.weight"])
    with pytest.raises(TicketFileError, match="already exists"):
        store.copy_ticket(path, slim)


def test_packed_mask_is_packbits_of_the_mask(ticket):
    path, written = ticket
    t = store.open_ticket(path)
    for name, m in written["masks"][2].items():
        packed = t.packed_mask(2, name)
        np.testing.assert_array_equal(packed, np.packbits(m.reshape(-1)))
    with pytest.raises(TicketFileError, match="no tensor 'nope'"):
        t.packed_mask(2, "nope")


def test_level_writer_streams_masks_in_any_order_and_checks_completeness(tmp_path):
    path = tmp_path / "stream.h5"
    written = make_ticket(path, levels=1)
    w = store.TicketWriter(path)
    masks = written["masks"][1]
    with w.level_writer(2, attrs={"source": "test"}) as lw:
        for name in reversed(list(masks)):  # any order; packed or not
            if name == "fc1.weight":
                lw.add_mask(name, packed=store.pack_mask(masks[name]))  # kept counted from the bits
            else:
                lw.add_mask(name, masks[name])
        lw.set_logged_metrics(accuracy=0.75, loss=0.5, curve={"iteration": np.arange(3), "test_accuracy": np.ones(3)})
        lw.set_pruned({"fc2.weight": True})
    t = store.open_ticket(path)
    assert t.kept(2) == {k: int(v.sum()) for k, v in masks.items()}
    for name, m in t.masks(2).items():
        np.testing.assert_array_equal(m, masks[name])
    assert t.level_attrs(2)["source"] == "test"
    assert t.evaluation(2) is None  # logged metrics only: no predictions
    r = t.level_record(2)
    assert r["accuracy"] == 0.75 and r["loss"] == 0.5
    assert [x.pruned for x in t.tensors] == [True, True, True]
    with pytest.raises(ConfigError, match="no mask given for tensor 'fc2.weight'"):
        with w.level_writer(3) as lw:
            lw.add_mask("conv1.weight", masks["conv1.weight"])
            lw.add_mask("fc1.weight", masks["fc1.weight"])
    with pytest.raises(ConfigError, match="two masks given"):
        with w.level_writer(3) as lw:
            lw.add_mask("fc1.weight", masks["fc1.weight"])
            lw.add_mask("fc1.weight", masks["fc1.weight"])
    with pytest.raises(ConfigError, match="has 7 bytes, expected 120"):
        with w.level_writer(3) as lw:
            lw.add_mask("fc1.weight", packed=np.zeros(7, np.uint8))
    assert store.open_ticket(path).levels == [0, 1, 2]  # the failed writes left nothing


# -- choosing levels of several files, and tickets derived from others -------------------------------------


def test_select_resolves_file_level_specs(tmp_path):
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    make_ticket(a, levels=3)
    make_ticket(b, levels=2, seed=1)
    assert store.parse_spec(f"{a}:2") == (a, 2) and store.parse_spec(str(a)) == (a, None)
    assert store.parse_spec(f"{a}:-1") == (a, -1)
    odd = tmp_path / "odd:3"  # a path that exists as typed wins over FILE:LEVEL
    odd.write_bytes(b"")
    assert store.parse_spec(str(odd)) == (odd, None)
    sels = store.select([f"{a}:1", str(b)])
    assert [(s.path, s.level) for s in sels] == [(a, 1), (b, 2)]  # b: its last level
    assert [s.level for s in store.select([str(a), f"{b}:0"], level=2)] == [2, 0]  # FILE:N beats level
    assert [s.level for s in store.select([str(a)], level=-2)] == [2]  # negative: from the end
    assert store.check_same_model(sels) == TOY_TENSORS
    with pytest.raises(TicketFileError, match=r"no level 7; levels present: 0, 1, 2"):
        store.select([f"{b}:7"])
    other = tmp_path / "other.h5"
    store.create(other, tensors=[TensorInfo("fc9.weight", (4, 4), "linear")], model="m", method="x", config={})
    store.TicketWriter(other).write_level(0, {"fc9.weight": np.ones((4, 4), bool)})
    with pytest.raises(TicketFileError, match="hold different models: tensor 0 is fc9.weight"):
        store.check_same_model(sels + store.select([str(other)]))


def test_derive_ticket_records_sources_and_leaves_nothing_on_failure(tmp_path):
    a, b, c = (tmp_path / f"{n}.h5" for n in "abc")
    written = [make_ticket(p, levels=2, seed=i) for i, p in enumerate((a, b, c))]
    out = tmp_path / "derived.h5"
    sources = store.select([str(a), f"{b}:1"])
    masks = store.derive_ticket(out, sources, lambda ms: np.logical_and.reduce(ms), method="and",
                                config={"command": "test"}, init=store.select([f"{c}:0"])[0], attrs={"k": 1})
    with store.open_ticket(out) as t:
        assert t.levels == [0] and t.status == "complete" and t.method == "and" and t.seed == 2
        for name, m in t.masks(0).items():
            want = written[0]["masks"][2][name] & written[1]["masks"][1][name]
            np.testing.assert_array_equal(m, want)
            np.testing.assert_array_equal(masks[name], want)
        np.testing.assert_array_equal(t.weights("init")["fc1.weight"], written[2]["init"]["fc1.weight"])
        config = t.config
        assert config["command"] == "test" and config["model"] == "toy"
        assert [(s["path"], s["level"], s["seed"]) for s in config["sources"]] == [
            (str(a.resolve()), 2, 0), (str(b.resolve()), 1, 1)]
        assert config["init"] == {"path": str(c.resolve()), "checkpoint": "init", "seed": 2}
        assert t.level_attrs(0)["k"] == 1
    with pytest.raises(TicketFileError, match="already exists"):
        store.derive_ticket(out, sources, np.logical_or.reduce, method="or")

    with pytest.raises(ConfigError, match="shape"):  # fails inside the write: the half-made file is removed
        store.derive_ticket(tmp_path / "never.h5", sources, lambda ms: ms[0][:1], method="x")
    assert not (tmp_path / "never.h5").exists() and not list(tmp_path.glob(".*"))
