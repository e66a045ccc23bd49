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
    # 1 bit per weight, plus the 4-byte fletcher32 checksum HDF5 stores with every 256 KiB chunk
    checksums = 32 * sum(-(-t.size // 8 // (1 << 18)) or 1 for t in tensors) / n
    with h5py.File(path, "r") as f:
        for level, d in enumerate(densities):
            g = f[f"levels/{level}/masks"]
            bits = 8 * sum(g[t.name].id.get_storage_size() for t in tensors) / n
            assert bits <= 1.0 + checksums, (d, bits)
            assert g["a.weight"].fletcher32 and g["b.weight"].fletcher32
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
    # the level was being made in memory: nothing of it reached the disk (the lock file stays, unlocked)
    assert not list(tmp_path.glob(".killed.h5.tmp-*"))
    # a temporary file of a writer killed while writing its bytes is removed by the next writer
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / f".killed.h5.tmp-{int(dead.stdout)}").write_bytes(b"half a file")
    store.TicketWriter(path).write_level(3, expected["masks"][2])
    assert store.open_ticket(path).levels == [0, 1, 2, 3]
    assert not list(tmp_path.glob(".killed.h5.*"))  # the temporary file and the lock file are gone


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
        "directory": (tmp_path, "is a directory, not a ticket file; give the ticket files in it"),
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


# -- nothing wrong gets in (issue 9): checks on read and checksums ----------------------------------------


def _edited(path: Path, tmp_path: Path, name: str, edit) -> Path:
    out = tmp_path / f"{name}.h5"
    out.write_bytes(path.read_bytes())
    with h5py.File(out, "r+") as f:
        edit(f)
    return out


def _replace(f, name, data):
    del f[name]
    f[name] = data


DAMAGE = {  # the inputs of issue 9 that ended in tracebacks or stale numbers, and the line each gives now
    "schema inf": (lambda f: f.attrs.__setitem__("schema_version", np.inf),
                   "root attribute 'schema_version' is inf; expected an integer"),
    "schema 2.5": (lambda f: f.attrs.__setitem__("schema_version", 2.5), "'schema_version' is 2.5"),
    "model array": (lambda f: f.attrs.__setitem__("model", np.arange(3)),
                    "root attribute 'model' is an array of shape (3,); expected a single string"),
    "model bytes": (lambda f: f.attrs.__setitem__("model", b"\xff\xfe"), "root attribute 'model' is not valid UTF-8"),
    "status missing": (lambda f: f.attrs.__delitem__("status"), "root attribute 'status' is missing"),
    "kept scalar": (lambda f: _replace(f, "levels/1/kept", 5), "levels/1/kept: has shape (); expected (3,)"),
    "kept short": (lambda f: _replace(f, "levels/1/kept", np.array([1, 2])), "levels/1/kept: has shape (2,)"),
    "kept -3": (lambda f: f["levels/1/kept"].__setitem__(0, -3), "levels/1/kept: tensor 'conv1.weight': kept -3 is "
                                                                  "outside [0, 162]"),
    "shape 2**40": (lambda f: f["model/shapes"].__setitem__(1, np.array([2 ** 40, 8])),
                    "model/shapes: tensor 1 ('fc1.weight') has dimension 1099511627776"),
    "shape product": (lambda f: f["model/shapes"].__setitem__(1, np.array([2 ** 31, 2 ** 31])), "more than 2**40"),
    "huge mask": (lambda f: (f.__delitem__("levels/1/masks/fc1.weight"),
                             f.create_dataset("levels/1/masks/fc1.weight", shape=(2 ** 40,), dtype=np.uint8)),
                  "levels/1/masks/fc1.weight: has shape (1099511627776,); expected (120,)"),
    "accuracy 42": (lambda f: f["levels/1/eval"].attrs.__setitem__("accuracy", 42.0),
                    "levels/1/eval: attribute 'accuracy' is 42.0, outside [0.0, 1.0]"),
    "accuracy stale": (lambda f: f["levels/1/eval"].attrs.__setitem__("accuracy", 0.5),
                       "levels/1/eval: attribute 'accuracy' is 0.5 but the predictions give"),
    "density": (lambda f: f["levels/1"].attrs.__setitem__("density", 0.5),
                "levels/1: attribute 'density' is 0.5 but kept/size is"),
    "level name": (lambda f: f["levels"].move("1", "01"), "levels: holds '01', which is not a level number"),
    "predictions": (lambda f: f["levels/1/eval/predictions"].__setitem__(0, (f["levels/1/eval/predictions"][0] + 1) % 10),
                    "levels/1/eval/confusion: does not match the predictions and dataset/test_labels"),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_damaged_files_give_one_line_naming_the_object(ticket, tmp_path, capsys, case):
    from ticketlab.cli import main

    path, _ = ticket
    edit, message = DAMAGE[case]
    bad = _edited(path, tmp_path, case.replace(" ", "_").replace("*", ""), edit)
    with pytest.raises(TicketFileError) as err:
        t = store.open_ticket(bad)
        t.summary(), t.provenance, t.status
    assert str(err.value).startswith(f"{bad}: ") and message in str(err.value)
    assert main(["info", str(bad)]) == 2
    out = capsys.readouterr().err
    assert out.count("\n") == 1 and message in out, out


def test_kept_is_checked_against_the_mask_bits(ticket, tmp_path, capsys):
    """A mask rewritten to all ones is an error wherever its level is read, never its old count."""
    from ticketlab.cli import main

    path, written = ticket
    old = int(written["masks"][2]["fc1.weight"].sum())

    def all_ones(f):
        f["levels/2/masks/fc1.weight"][...] = np.full(120, 255, np.uint8)

    bad = _edited(path, tmp_path, "ones", all_ones)
    message = f"levels/2/masks/fc1.weight: kept says {old} but the mask has 960"
    t = store.open_ticket(bad)
    for read in (lambda: t.kept(2), t.summary, t.layer_summary, lambda: t.masks(2), lambda: t.mask(2, "fc1.weight"),
                 lambda: t.packed_mask(2, "fc1.weight"), lambda: t.level_record(2), lambda: t.weights(level=2)):
        with pytest.raises(TicketFileError, match=message):
            read()
    assert t.kept(1) == {k: int(v.sum()) for k, v in written["masks"][1].items()}  # other levels read as before
    for args in (["info", str(bad)], ["sparsity", str(bad)], ["structure", f"{bad}:2"],
                 ["overlap", f"{bad}:0", f"{bad}:2"]):
        assert main(args) == 2, args
        assert message in capsys.readouterr().err, args


def _strip_checksums(path: Path) -> None:
    with h5py.File(path, "r+") as f:
        names = []
        f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) and o.fletcher32 else None)
        for n in names:
            data, attrs = f[n][()], dict(f[n].attrs)
            del f[n]
            f.create_dataset(n, data=data).attrs.update(attrs)


def test_checksums_turn_a_flipped_byte_into_an_error(ticket, tmp_path, capsys):
    from ticketlab.cli import main

    path, written = ticket
    with h5py.File(path, "r") as f:
        for name in ("levels/1/masks/fc1.weight", "levels/1/kept", "levels/1/weights/fc1.weight",
                     "levels/1/eval/predictions", "weights/init/fc1.bias", "dataset/test_labels"):
            assert f[name].fletcher32, name
        assert not f["weights/init/bn.num_batches_tracked"].fletcher32  # a scalar cannot carry one
        chunk = f["levels/1/masks/fc1.weight"].id.get_chunk_info(0)
    assert store.open_ticket(path).checksums() == {"datasets": store.open_ticket(path).checksums()["datasets"],
                                                   "without": 0, "example": None}
    data = bytearray(path.read_bytes())
    data[chunk.byte_offset + 5] ^= 0x04  # one bit of one weight's mask
    bad = tmp_path / "flipped.h5"
    bad.write_bytes(bytes(data))
    with pytest.raises(TicketFileError, match=r"levels/1/masks/fc1.weight: cannot be read; .*\(checksum"):
        store.open_ticket(bad).mask(1, "fc1.weight")
    np.testing.assert_array_equal(store.open_ticket(bad).mask(2, "fc1.weight"), written["masks"][2]["fc1.weight"])
    assert main(["info", str(bad)]) == 2
    assert "checksum" in capsys.readouterr().err
    assert main(["info", str(path)]) == 0
    assert "checksums: fletcher32 on masks, weights and evaluations" in capsys.readouterr().out


def test_files_without_checksums_still_open_and_info_says_so(ticket, tmp_path, capsys):
    from ticketlab.cli import main

    path, written = ticket
    old = tmp_path / "old.h5"
    old.write_bytes(path.read_bytes())
    _strip_checksums(old)
    t = store.open_ticket(old)
    c = t.checksums()
    assert c["without"] == c["datasets"] > 0
    for level, masks in enumerate(written["masks"]):
        assert t.kept(level) == {k: int(v.sum()) for k, v in masks.items()}
    assert main(["info", str(old)]) == 0
    assert f"checksums: none (written before ticketlab {store.CHECKSUMS_SINCE})" in capsys.readouterr().out
    with h5py.File(path, "r+") as f:  # one dataset rewritten by another tool
        _replace(f, "levels/1/weights/fc1.bias", f["levels/1/weights/fc1.bias"][()])
    assert main(["info", str(path)]) == 0
    assert "checksums: partial: 1 of" in capsys.readouterr().out


def test_a_global_heap_that_would_hang_hdf5_is_refused_first(ticket, tmp_path):
    """HDF5 loops forever (inside one C call, holding the GIL) on a global heap collection whose object list
    does not advance, e.g. a zeroed object header; the store refuses such a file before HDF5 reads it."""
    path, _ = ticket
    data = bytearray(path.read_bytes())
    heap = data.find(b"GCOL")  # the first collection: root attributes, tensor names, ...
    assert heap > 0
    data[heap + 16:heap + 32] = bytes(16)  # its first object: index 0, size 0
    bad = tmp_path / "heap.h5"
    bad.write_bytes(bytes(data))
    proc = subprocess.run([sys.executable, "-m", "ticketlab", "info", str(bad)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"ticketlab info: error: {bad}: the HDF5 global heap at byte {heap} is damaged "
                                   "(its object list does not advance); the file is truncated or corrupted")
    with pytest.raises(TicketFileError, match="global heap"):
        store.open_ticket(bad)


def test_popcount_counts_only_the_weights(ticket):
    from ticketlab.masks import popcount

    rng = np.random.default_rng(2)
    for n in (0, 1, 7, 8, 9, 63, 64, 65, 4099, 70_001):
        m = rng.random(n) < 0.4
        packed = store.pack_mask(m)
        if n % 8:
            packed[-1] |= 0xFF >> (n % 8)  # padding bits do not count
        assert popcount(packed, n) == int(m.sum()), n
        assert popcount(packed, n) == popcount(packed, n)


def test_has_weights_answers_without_reading_and_refuses_damage(tmp_path):
    path = tmp_path / "w.h5"
    make_ticket(path, levels=1, branches=("reinit",))
    t = store.open_ticket(path)
    assert t.has_weights("init") and not t.has_weights("rewind") and t.has_weights(level=1)
    assert t.has_weights("init", level=1, branch="reinit") and not t.has_weights(level=1, branch="reinit")
    t.close()
    with h5py.File(path, "r+") as f:  # damage is an error, never "not stored" (a caller would fall back)
        _replace(f, "levels/1/weights", np.arange(3))
    with pytest.raises(TicketFileError, match="levels/1/weights: is a dataset; expected a group"):
        store.open_ticket(path).has_weights(level=1)


def test_nested_with_blocks_keep_the_handle(ticket):
    path, _ = ticket
    t = store.open_ticket(path)
    with t:
        t.summary()  # its own `with` block must not close the caller's handle
        assert t._h5 is not None
        with t:
            t.layer_summary()
        assert t._h5 is not None
    assert t._h5 is None


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


def _h5_objects(path: Path) -> dict[str, tuple]:
    """Every object of an HDF5 file: name -> (attributes, and for a dataset its type, shape, chunks, filters and
    values), in comparable form (NaN compared as equal)."""
    def plain(x):
        if isinstance(x, np.ndarray) and x.dtype == object:
            return tuple(plain(v) for v in x)
        if isinstance(x, np.ndarray) and x.dtype.kind in "fc":
            nan = np.isnan(x)
            return (str(x.dtype), x.shape, nan.tobytes(), np.where(nan, 0, x).tobytes())
        if isinstance(x, np.ndarray):
            return (str(x.dtype), x.shape, x.tobytes())
        return x
    out = {}
    with h5py.File(path, "r") as f:
        def visit(name, o):
            attrs = tuple(sorted((k, plain(np.asarray(v)) if not isinstance(v, str) else v) for k, v in o.attrs.items()
                                 if k != "updated"))
            if isinstance(o, h5py.Dataset):
                out[name] = (attrs, str(o.dtype), o.shape, o.maxshape, o.chunks, o.compression, o.compression_opts,
                             o.shuffle, o.fletcher32, plain(np.asarray(o[()])) if o.shape else o[()])
            else:
                out[name] = (attrs,)
        f.visititems(visit)
    return out


def _in_the_1_8_format(path: Path, out: Path) -> Path:
    """The objects of ``path`` rewritten into a file of HDF5's default (1.8) object format, as ticketlab wrote
    files before 0.3."""
    from ticketlab.store.copy import _copy

    with h5py.File(path, "r") as fin, h5py.File(out, "w", track_order=True) as fout:
        fout.attrs.update(dict(fin.attrs))
        for name in fin:
            _copy(fin[name], fout, name)
    return out


def test_new_files_are_in_the_1_10_format_and_old_ones_still_read(tmp_path):
    path = tmp_path / "new.h5"
    make_ticket(path, levels=2, branches=("reinit",))
    old = _in_the_1_8_format(path, tmp_path / "old.h5")
    assert _h5_objects(old) == _h5_objects(path)
    # a small checksummed dataset: 1.10's chunk index is a few bytes, 1.8's a 2 KiB version-1 B-tree
    assert path.stat().st_size < 0.8 * old.stat().st_size, (path.stat().st_size, old.stat().st_size)
    a, b = store.open_ticket(path), store.open_ticket(old)
    assert a.summary().equals(b.summary())
    for level in a.levels:
        for name, m in a.masks(level).items():
            np.testing.assert_array_equal(b.masks(level)[name], m)
    # an old file appended to keeps reading, and its new level is written in the 1.10 format
    store.TicketWriter(old).write_level(3, {t.name: np.ones(t.shape, bool) for t in TOY_TENSORS})
    assert store.open_ticket(old).levels == [*a.levels, 3]


def test_a_copy_is_the_same_objects_in_the_compact_1_10_format(tmp_path):
    path = tmp_path / "full.h5"
    make_ticket(path, levels=3, branches=("reinit", "shuffle"))
    old = _in_the_1_8_format(path, tmp_path / "old.h5")
    copy = store.copy_ticket(old, tmp_path / "copy.h5")
    assert _h5_objects(copy) == _h5_objects(path)       # every dataset: type, shape, chunks, filters, values
    # the objects are new ones in the 1.10 format: an H5Ocopy of an old file's objects keeps their old layouts
    # and is larger (each checksummed dataset drags a version-1 B-tree along)
    ocopy = tmp_path / "ocopy.h5"
    with h5py.File(old, "r") as fin, h5py.File(ocopy, "w", libver=("v110", "latest")) as fout:
        for name in fin:
            fin.copy(fin[name], fout, name=name)
    assert copy.stat().st_size < 0.8 * ocopy.stat().st_size, (copy.stat().st_size, ocopy.stat().st_size)
    assert store.open_ticket(copy).summary().equals(store.open_ticket(path).summary())


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
