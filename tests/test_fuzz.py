"""Fuzzing every reader of ticket files with corrupted variants (issue 9): nothing wrong gets in.

Seeded corrupted variants of four small ticket files (one written with checksums, the same with the checksums
stripped as files written before them are, one with a logged-metrics level, and a compact copy in the HDF5 1.10
object format of ``store.copy_ticket``) are made by flipping, truncating and
zeroing bytes and by h5py edits (attributes set to inf / arrays / wrong types / non-UTF-8 bytes, datasets deleted,
reshaped, replaced by scalars or by huge declared shapes, tensor shapes with huge dimensions, kept = -3,
accuracy 42.0, masks and predictions rewritten, levels renamed). Every reader runs on every variant, in-process:
the TicketFile API (summary, layer_summary, kept, masks, packed_mask, evaluation, weights, ...) and the commands
info, sparsity, overlap, structure, fairness and export through ``ticketlab.cli.main``. Asserted:

- no exception other than a :class:`~ticketlab.errors.TicketlabError` escapes the API, and every command exits 0
  or 2;
- nothing is accepted with stale numbers: whenever a reader succeeds, what it returns equals an independent
  recomputation from the raw file (h5py reads, ``numpy.unpackbits``, predictions against labels).

::

    pytest tests/test_fuzz.py                       # 1,000 variants, well under 2 minutes on 2 cores
    pytest -s --fuzz-n 20000 tests/test_fuzz.py     # a long local run; prints the figures by mutation kind
"""

from __future__ import annotations

import contextlib
import faulthandler
import io
import json
import math
import re
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import h5py
import numpy as np
import pytest

from conftest import TOY_TENSORS, make_ticket
from ticketlab import store
from ticketlab.cli import main
from ticketlab.errors import TicketlabError
from ticketlab.evaluation import Evaluation

SEED = 20240917
COMMANDS = ("info", "sparsity", "overlap", "structure", "fairness", "export")
CASE_TIMEOUT_S = 300


# ----------------------------------------------------------------------------------------------------------
# The files to corrupt


@dataclass
class Base:
    """A small, valid ticket file and an inventory of what is inside it (for choosing what to damage)."""

    name: str
    data: bytes
    datasets: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    attrs: list[tuple[str, str]] = field(default_factory=list)
    spans: list[tuple[str, int, int]] = field(default_factory=list)  # (dataset, file offset, bytes) of raw data


def _inventory(name: str, path: Path) -> Base:
    base = Base(name, path.read_bytes())
    with h5py.File(path, "r") as f:
        base.attrs += [("/", a) for a in f.attrs]

        def visit(obj_name: str, obj: Any) -> None:
            base.attrs.extend((obj_name, a) for a in obj.attrs)
            if isinstance(obj, h5py.Group):
                base.groups.append(obj_name)
                return
            base.datasets.append(obj_name)
            if obj.chunks is None:
                offset = obj.id.get_offset()
                if offset is not None and obj.id.get_storage_size():
                    base.spans.append((obj_name, offset, obj.id.get_storage_size()))
            else:
                for i in range(obj.id.get_num_chunks()):
                    info = obj.id.get_chunk_info(i)
                    base.spans.append((obj_name, info.byte_offset, info.size))

        f.visititems(visit)
    return base


def _strip_checksums(path: Path) -> None:
    """Rewrite every filtered dataset as a plain contiguous one: a file as written before checksums."""
    with h5py.File(path, "r+") as f:
        names: list[str] = []
        f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) and o.chunks else None)
        for n in names:
            d = f[n]
            data, attrs = d[()], dict(d.attrs)
            del f[n]
            new = f.create_dataset(n, data=data)
            new.attrs.update(attrs)


def _add_logged_level(path: Path) -> None:
    rng = np.random.default_rng(3)
    w = store.TicketWriter(path)
    with w.level_writer(3, attrs={"source": "fuzz"}) as lw:
        for t in TOY_TENSORS:
            lw.add_mask(t.name, rng.random(t.shape) < 0.4)
        lw.set_logged_metrics(accuracy=0.5, loss=0.7, curve={"iteration": np.arange(4), "test_accuracy": np.ones(4)})


@pytest.fixture(scope="module")
def bases(tmp_path_factory: pytest.TempPathFactory) -> list[Base]:
    d = tmp_path_factory.mktemp("bases")
    checked, unchecked, logged = d / "checked.h5", d / "unchecked.h5", d / "logged.h5"
    for p in (checked, unchecked, logged):
        make_ticket(p, levels=2, seed=1, n_test=40, branches=("reinit",))
    _strip_checksums(unchecked)
    _add_logged_level(logged)
    # a compact copy (store.copy_ticket): the HDF5 1.10 object format the shipped examples and studies are in
    compact = store.copy_ticket(checked, d / "compact.h5")
    return [_inventory("checked", checked), _inventory("unchecked", unchecked), _inventory("logged", logged),
            _inventory("compact", compact)]


# ----------------------------------------------------------------------------------------------------------
# Mutations: each changes the file at `path` and returns a short description


def _pick(rng: np.random.Generator, items: list) -> Any:
    return items[int(rng.integers(len(items)))]


def _flip_bits(rng, path, base):
    data = bytearray(path.read_bytes())
    for _ in range(int(rng.integers(1, 9))):
        i = int(rng.integers(len(data)))
        data[i] ^= 1 << int(rng.integers(8))
    path.write_bytes(bytes(data))
    return "bits flipped anywhere"


def _flip_data(rng, path, base):
    name, offset, size = _pick(rng, base.spans)
    data = bytearray(path.read_bytes())
    for _ in range(int(rng.integers(1, 4))):
        i = offset + int(rng.integers(size))
        data[i] ^= 1 << int(rng.integers(8))
    path.write_bytes(bytes(data))
    return f"bits flipped in {name}"


def _truncate(rng, path, base):
    data = path.read_bytes()
    path.write_bytes(data[: int(rng.integers(len(data)))])
    return "truncated"


def _zero_range(rng, path, base):
    data = bytearray(path.read_bytes())
    n = int(rng.integers(1, 4097))
    i = int(rng.integers(len(data)))
    data[i:i + n] = bytes(len(data[i:i + n]))
    path.write_bytes(bytes(data))
    return f"{n} bytes zeroed"


def _random_range(rng, path, base):
    data = bytearray(path.read_bytes())
    n = int(rng.integers(1, 513))
    i = int(rng.integers(len(data)))
    data[i:i + n] = rng.integers(0, 256, len(data[i:i + n]), dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    return f"{n} random bytes"


_ODD_VALUES: list[Callable[[], Any]] = [
    lambda: float("inf"), lambda: float("-inf"), lambda: float("nan"), lambda: np.arange(3), lambda: np.zeros((2, 2)),
    lambda: np.array([b"a", b"b"]), lambda: "text", lambda: 7, lambda: -3, lambda: 42.0, lambda: 2 ** 40,
    lambda: np.int64(2 ** 63 - 1), lambda: 1e308, lambda: True, lambda: 0.5, lambda: b"\xff\xfe\x00bad",
    lambda: np.bytes_(b"\xc3\x28"), lambda: np.void(b"\x00\x01"), lambda: "in_progress", lambda: "complete",
    lambda: np.float32(1.5), lambda: np.array([1.0]),
]


def _edit(fn):
    """An h5py edit: open the file read-write, apply ``fn(rng, f, base)``."""
    def mutate(rng, path, base):
        with h5py.File(path, "r+") as f:
            return fn(rng, f, base)
    mutate.__name__ = fn.__name__
    return mutate


@_edit
def _attr_value(rng, f, base):
    obj, name = _pick(rng, base.attrs)
    value = _pick(rng, _ODD_VALUES)()
    f[obj].attrs[name] = value
    return f"{obj}@{name} = {value!r:.30}"


@_edit
def _attr_delete(rng, f, base):
    obj, name = _pick(rng, base.attrs)
    del f[obj].attrs[name]
    return f"{obj}@{name} deleted"


@_edit
def _delete(rng, f, base):
    name = _pick(rng, base.datasets + base.groups)
    if name in f:
        del f[name]
    return f"{name} deleted"


def _replace(f: h5py.File, name: str, data: Any = None, **kw: Any) -> None:
    attrs = dict(f[name].attrs)
    del f[name]
    d = f.create_dataset(name, data=data, **kw)
    d.attrs.update(attrs)


@_edit
def _to_scalar(rng, f, base):
    name = _pick(rng, base.datasets)
    value = _pick(rng, [np.int64(3), np.float64(0.25), "x", np.uint8(255)])
    _replace(f, name, value, dtype=h5py.string_dtype() if isinstance(value, str) else None)
    return f"{name} -> scalar {value!r}"


@_edit
def _reshape(rng, f, base):
    name = _pick(rng, base.datasets)
    data = f[name][()]
    if data.dtype == object:  # strings and variable-length shapes: one entry fewer
        _replace(f, name, data[:-1] if data.shape and data.shape[0] else data, dtype=f[name].dtype)
        return f"{name} shortened"
    how = _pick(rng, ["shorter", "longer", "2-D", "empty"])
    flat = np.asarray(data).reshape(-1)
    if how == "shorter":
        new = flat[:-1]
    elif how == "longer":
        new = np.concatenate([flat, flat[:1] if flat.size else np.zeros(1, flat.dtype)])
    elif how == "2-D":
        new = flat.reshape(1, -1)
    else:
        new = flat[:0]
    _replace(f, name, new)
    return f"{name} {how}"


@_edit
def _retype(rng, f, base):
    name = _pick(rng, base.datasets)
    data = np.asarray(f[name][()])
    if data.dtype == object:
        return "(string dataset left alone)"
    to = _pick(rng, ["float64", "int8", "str", "bool"])
    if to == "str":
        _replace(f, name, np.array([str(x) for x in data.reshape(-1)[:4]], dtype=object),
                 dtype=h5py.string_dtype())
    else:
        _replace(f, name, data.astype(to))
    return f"{name} as {to}"


@_edit
def _huge_dataset(rng, f, base):
    name = _pick(rng, base.datasets)
    dtype = f[name].dtype
    if dtype == object:
        dtype = np.dtype(np.uint8)
    shape = _pick(rng, [(2 ** 40,), (2 ** 20, 2 ** 20), (2 ** 31 - 1,), (2 ** 33,)])
    _replace(f, name, None, shape=shape, dtype=dtype)
    return f"{name} declares shape {shape}"


@_edit
def _group_to_dataset(rng, f, base):
    name = _pick(rng, base.groups)
    del f[name]
    f[name] = np.arange(4)
    return f"group {name} -> dataset"


@_edit
def _huge_shape(rng, f, base):
    i = int(rng.integers(len(TOY_TENSORS)))
    shape = _pick(rng, [[2 ** 40, 8], [2 ** 32, 2 ** 32], [2 ** 61 + 1, 8], [-1, 5], [2 ** 63 - 1], [3] * 40,
                        [0, 7], [40, 25], [2 ** 31, 2 ** 31], [7]])
    f["model/shapes"][i] = np.asarray(shape, dtype=np.int64)
    return f"model/shapes[{i}] = {shape}"


def _groups_with_masks(base: Base) -> list[str]:
    return sorted({n.rsplit("/masks/", 1)[0] for n in base.datasets if "/masks/" in n})


@_edit
def _kept_value(rng, f, base):
    g = _pick(rng, _groups_with_masks(base))
    kept = f[g]["kept"][()]
    i = int(rng.integers(kept.size))
    size = int(np.prod(TOY_TENSORS[i].shape))
    kept[i] = _pick(rng, [-3, size + 1, kept[i] + 1, kept[i] - 1, 0, size])
    f[g]["kept"][...] = kept
    if rng.random() < 0.5:  # keep the group's totals consistent with the tampered counts
        total = int(kept.sum())
        f[g].attrs["kept"] = total
        f[g].attrs["density"] = total / sum(int(np.prod(t.shape)) for t in TOY_TENSORS)
    return f"{g}/kept[{i}] = {kept[i]}"


@_edit
def _accuracy(rng, f, base):
    evals = [n for n in base.groups if n.endswith("/eval")]
    e = _pick(rng, evals)
    name = _pick(rng, ["accuracy", "accuracy", "loss", "iterations", "early_stop_iteration", "wall_time"])
    value = _pick(rng, [42.0, -0.5, 1.0, 0.0, 0.123, -3, float("nan"), float("inf"), 2 ** 40])
    f[e].attrs[name] = value
    return f"{e}@{name} = {value}"


@_edit
def _rewrite_mask(rng, f, base):
    g = _pick(rng, _groups_with_masks(base))
    i = int(rng.integers(len(TOY_TENSORS)))
    t = TOY_TENSORS[i]
    how = _pick(rng, ["ones", "zeros", "random"])
    m = {"ones": np.ones(t.shape, bool), "zeros": np.zeros(t.shape, bool),
         "random": rng.random(t.shape) < 0.5}[how]
    d = f[g]["masks"][t.name]
    d[...] = np.packbits(m.reshape(-1))  # in place: the checksum of a checked file is recomputed by HDF5
    consistent = rng.random() < 0.5
    if consistent:  # a legitimate edit: counts and totals follow the new mask
        kept = f[g]["kept"][()]
        kept[i] = int(m.sum())
        f[g]["kept"][...] = kept
        f[g].attrs["kept"] = int(kept.sum())
        f[g].attrs["density"] = int(kept.sum()) / sum(int(np.prod(x.shape)) for x in TOY_TENSORS)
    return f"{g}/masks/{t.name} -> {how}{' with counts' if consistent else ''}"


@_edit
def _rewrite_predictions(rng, f, base):
    evals = [n for n in base.groups if n.endswith("/eval") and f"{n}/predictions" in base.datasets]
    e = _pick(rng, evals)
    preds = f[e]["predictions"][()]
    k = int(rng.integers(1, 6))
    idx = rng.integers(0, preds.size, k)
    preds[idx] = (preds[idx] + rng.integers(1, 10, k)) % 10
    if rng.random() < 0.2:
        preds[idx[0]] = _pick(rng, [-1, 10, 300])
    f[e]["predictions"][...] = preds
    consistent = rng.random() < 0.5
    if consistent and preds.min() >= 0 and preds.max() < 10:
        labels = f["dataset/test_labels"][()].astype(np.int64)
        ev = Evaluation.from_predictions(labels, preds, loss=0.1, num_classes=10)
        f[e]["confusion"][...] = ev.confusion
        f[e]["per_class_accuracy"][...] = ev.per_class_accuracy
        f[e].attrs["accuracy"] = ev.accuracy
    return f"{e}/predictions: {k} changed{' with confusion' if consistent else ''}"


@_edit
def _rename_level(rng, f, base):
    levels = list(f["levels"].keys())
    old = _pick(rng, levels)
    new = _pick(rng, [f"0{old}", "x", "-1", str(int(old) + 10), " 1", "1.0", "٣", "99999999999"])
    if new in f["levels"]:
        return "(name taken)"
    f["levels"].move(old, new)
    return f"levels/{old} -> levels/{new}"


@_edit
def _labels(rng, f, base):
    labels = f["dataset/test_labels"][()]
    i = int(rng.integers(labels.size))
    labels[i] = _pick(rng, [(labels[i] + 1) % 10, -1, 10, 2 ** 30])
    f["dataset/test_labels"][...] = labels
    return f"dataset/test_labels[{i}] = {labels[i]}"


@_edit
def _config(rng, f, base):
    value = _pick(rng, ["not json", "[1, 2]", "3", '{"a": NaN}', "\udcff", ""])
    del f["config"]
    try:
        f.create_dataset("config", data=value, dtype=h5py.string_dtype())
    except (UnicodeEncodeError, ValueError):
        f.create_dataset("config", data=np.bytes_(b"\xff{}"))
    return f"config = {value!r}"


@_edit
def _names(rng, f, base):
    names = list(f["model/names"].asstr()[()])
    i = int(rng.integers(len(names)))
    names[i] = _pick(rng, [names[(i + 1) % len(names)], "a/b", "", "other.weight"])
    f["model/names"][...] = names
    return f"model/names[{i}] = {names[i]!r}"


MUTATIONS: dict[str, Callable] = {
    "flip bits (anywhere)": _flip_bits,
    "flip bits (in data)": _flip_data,
    "truncate": _truncate,
    "zero a range": _zero_range,
    "random bytes": _random_range,
    "attribute: odd value": _attr_value,
    "attribute: deleted": _attr_delete,
    "object deleted": _delete,
    "dataset -> scalar": _to_scalar,
    "dataset reshaped": _reshape,
    "dataset retyped": _retype,
    "dataset: huge declared shape": _huge_dataset,
    "group -> dataset": _group_to_dataset,
    "model/shapes: huge or wrong": _huge_shape,
    "kept tampered": _kept_value,
    "eval attribute out of range": _accuracy,
    "mask rewritten": _rewrite_mask,
    "predictions rewritten": _rewrite_predictions,
    "level renamed": _rename_level,
    "test labels changed": _labels,
    "config replaced": _config,
    "tensor names": _names,
}


# ----------------------------------------------------------------------------------------------------------
# The oracle: what the raw file says, read with plain h5py and numpy (never through ticketlab.store)


class Stale(AssertionError):
    """A reader returned a number that the file's own data contradicts."""


def _same(a: Any, b: Any, what: str) -> None:
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None or not (math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
                                          or (math.isnan(a) and math.isnan(b))):
            raise Stale(f"{what}: reader says {a!r}, file says {b!r}")
    elif a != b:
        raise Stale(f"{what}: reader says {a!r}, file says {b!r}")


class Raw:
    """Independent reads of the raw file (opened on first use, once per case; masks read once)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._f: h5py.File | None = None
        self._masks: dict[tuple, np.ndarray] = {}

    @property
    def f(self) -> h5py.File:
        if self._f is None:
            self._f = h5py.File(self.path, "r")
            names = self._f["model/names"][()]
            self.names = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
            self.shapes = {n: tuple(int(x) for x in s) for n, s in zip(self.names, self._f["model/shapes"][()])}
        return self._f

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None

    def group(self, level: int, branch: str | None = None) -> h5py.Group:
        g = self.f[f"levels/{level}"]
        return g if branch is None else g[f"branches/{branch}"]

    def mask(self, level: int, name: str, branch: str | None = None) -> np.ndarray:
        key = (level, name, branch)
        if key not in self._masks:
            g = self.group(level, branch)
            shape = self.shapes[name]
            bits = np.unpackbits(g[f"masks/{name}"][()], count=int(np.prod(shape)))
            self._masks[key] = bits.astype(bool).reshape(shape)
        return self._masks[key]

    def kept(self, level: int, branch: str | None = None) -> dict[str, int]:
        return {n: int(self.mask(level, n, branch).sum()) for n in self.names}

    def labels(self) -> np.ndarray | None:
        """The test labels, or None: they are optional, and then only the confusion matrix says what is right."""
        return self.f["dataset/test_labels"][()].astype(np.int64) if "dataset/test_labels" in self.f else None

    def confusion(self, e: h5py.Group) -> np.ndarray:
        """The confusion matrix the predictions and labels give; without labels, the stored one, provided its
        column sums count the predictions."""
        preds = e["predictions"][()].astype(np.int64)
        labels = self.labels()
        if labels is None:
            conf = e["confusion"][()].astype(np.int64)
            if conf.min() < 0 or not np.array_equal(conf.sum(axis=0), np.bincount(preds, minlength=conf.shape[0])):
                raise Stale(f"{e.name}: confusion matrix accepted that does not count the predictions")
            return conf
        c = int(self.f["dataset"].attrs["num_classes"])
        return np.bincount(labels * c + preds, minlength=c * c).reshape(c, c)

    def accuracy(self, level: int, branch: str | None = None) -> float | None:
        g = self.group(level, branch)
        if "eval" not in g:
            return None
        e = g["eval"]
        if "predictions" not in e:
            acc = float(e.attrs["accuracy"])
            if not (math.isnan(acc) or 0 <= acc <= 1):
                raise Stale(f"logged accuracy {acc} outside [0, 1] accepted")
            return acc
        conf = self.confusion(e)
        return float(np.trace(conf) / conf.sum()) if conf.sum() else float("nan")

    def class_accuracy(self, level: int) -> np.ndarray:
        conf = self.confusion(self.group(level)["eval"])
        support = conf.sum(axis=1)
        return np.where(support > 0, np.diag(conf) / np.maximum(support, 1), np.nan)

    def weights(self, group: str, masks_of: tuple[int, str | None] | None) -> dict[str, np.ndarray]:
        out = {}
        for key, d in self.f[group].items():
            if d.attrs.get("layout") == "kept_values":
                m = self.mask(masks_of[0], key, masks_of[1])
                full = np.zeros(m.shape, d.dtype)
                full[m] = d[()]
                out[key] = full
            else:
                out[key] = d[()]
        return out

    def levels(self) -> list[int]:
        return sorted(int(k) for k in self.f["levels"])

    def branches(self, level: int) -> list[str]:
        g = self.group(level)
        return list(g["branches"]) if "branches" in g else []


def _check_record(raw: Raw, rec: dict[str, Any], where: str) -> None:
    level, branch = int(rec["level"]), rec["branch"] if isinstance(rec["branch"], str) else None
    kept = raw.kept(level, branch)
    total = sum(kept.values())
    size = sum(int(np.prod(s)) for s in raw.shapes.values())
    _same(int(rec["kept"]), total, f"{where} level {level} {branch} kept")
    _same(int(rec["size"]), size, f"{where} level {level} size")
    _same(float(rec["density"]), total / size, f"{where} level {level} density")
    acc = raw.accuracy(level, branch)
    # "no accuracy" is None in the API and null in JSON, which writes NaN as null and inf as text
    got = float("nan") if rec["accuracy"] is None else float(rec["accuracy"])
    if acc is None:
        if not math.isnan(got):
            raise Stale(f"{where} level {level}: accuracy {got} without an evaluation")
    else:
        _same(got, acc, f"{where} level {level} {branch} accuracy")
    loss = None if rec["loss"] is None else float(rec["loss"])
    if loss is not None and not (math.isnan(loss) or loss >= 0):
        raise Stale(f"{where}: negative loss {loss} accepted")


def _arrays_equal(a: dict[str, np.ndarray], b: dict[str, np.ndarray], what: str) -> None:
    if list(a) != list(b) and sorted(a) != sorted(b):
        raise Stale(f"{what}: keys {sorted(a)} but the file has {sorted(b)}")
    for k in a:
        x, y = np.asarray(a[k]), np.asarray(b[k])
        if x.shape != y.shape or not np.array_equal(x, y, equal_nan=x.dtype.kind == "f" and y.dtype.kind == "f"):
            raise Stale(f"{what}: {k} differs from the file")


# ----------------------------------------------------------------------------------------------------------
# Running every reader


@dataclass
class Tally:
    cases: Counter = field(default_factory=Counter)
    outcomes: dict = field(default_factory=lambda: defaultdict(Counter))
    failures: list = field(default_factory=list)

    def record(self, kind: str, detail: str, reader: str, outcome: str, message: str = "") -> None:
        self.outcomes[kind][outcome] += 1
        if outcome in ("traceback", "stale"):
            self.failures.append(f"[{kind}: {detail}] {reader}: {outcome}: {message}")


def _api(path: Path, raw: Raw, note: Callable[..., None], focus: Callable[[int, str | None], bool] | None = None
         ) -> None:
    """Every TicketFile reader, each checked against the raw file when it succeeds. The readers of one level or
    branch run on those for which ``focus(level, branch)`` is true (default: all); the summaries read them all."""
    def call(reader: str, fn: Callable[[], Any], check: Callable[[Any, Raw], None] | None = None) -> Any:
        try:
            value = fn()
        except TicketlabError:
            note(reader, "refused")
            return None
        except Exception as err:  # noqa: BLE001 - the point of the test
            note(reader, "traceback", f"{type(err).__name__}: {err}")
            return None
        if check is not None:
            try:
                check(value, raw)
            except Stale as err:
                note(reader, "stale", str(err))
                return None
            except Exception as err:  # noqa: BLE001 - the raw file contradicts what the reader returned
                note(reader, "stale", f"accepted, but the raw data cannot be read: {type(err).__name__}: {err}")
                return None
        note(reader, "accepted")
        return value

    t = call("open", lambda: store.open_ticket(path))
    if t is None:
        return
    with t:
        call("provenance", lambda: json.dumps(t.provenance, default=str))
        call("status", lambda: t.status)
        call("config", lambda: json.dumps(t.config))
        call("dataset", lambda: t.dataset)
        call("checksums", lambda: t.checksums())
        levels = call("levels", lambda: t.levels, lambda v, raw: _same(v, raw.levels(), "levels"))
        call("summary", lambda: t.summary().to_dict("records"),
             lambda rows, raw: [_check_record(raw, r, "summary") for r in rows])
        call("layer_summary", lambda: t.layer_summary().to_dict("records"),
             lambda rows, raw: [_same(int(r["kept"]), raw.kept(r["level"])[r["layer"]], "layer_summary kept")
                                for r in rows])
        call("weights(init)", lambda: t.weights("init"), lambda v, raw: _arrays_equal(v, raw.weights("weights/init",
                                                                                                     None), "init"))
        for lv in levels or []:
            branches = call("branches", lambda: t.branches(lv)) or []
            for b in [None, *branches]:
                if focus is not None and not focus(lv, b):
                    continue
                where = f"level {lv}" + (f" branch {b}" if b else "")
                call("kept", lambda: t.kept(lv, branch=b), lambda v, raw: _same(v, raw.kept(lv, b), f"{where} kept"))
                call("masks", lambda: t.masks(lv, branch=b),
                     lambda v, raw: _arrays_equal(v, {n: raw.mask(lv, n, b) for n in raw.names}, f"{where} masks"))
                call("packed_mask", lambda: t.packed_mask(lv, "fc1.weight", branch=b),
                     lambda v, raw: _same(bytes(v), bytes(raw.group(lv, b)["masks/fc1.weight"][()]), where))
                call("level_record", lambda: t.level_record(lv, branch=b),
                     lambda v, raw: _check_record(raw, v, where))
                call("level_attrs", lambda: json.dumps(t.level_attrs(lv, branch=b), default=str))

                def check_eval(ev: Any, raw: Raw) -> None:
                    if ev is None:
                        g = raw.group(lv, b)
                        if "eval" in g and "predictions" in g["eval"]:
                            raise Stale(f"{where}: evaluation with predictions reported as none")
                        return
                    e = raw.group(lv, b)["eval"]
                    preds = e["predictions"][()].astype(np.int64)
                    _arrays_equal({"p": ev.predictions}, {"p": preds}, f"{where} predictions")
                    _arrays_equal({"c": ev.confusion}, {"c": raw.confusion(e)}, f"{where} confusion")
                    _same(ev.accuracy, raw.accuracy(lv, b), f"{where} accuracy")

                call("evaluation", lambda: t.evaluation(lv, branch=b), check_eval)
                point = "init" if b else "trained"
                group = f"levels/{lv}" + (f"/branches/{b}" if b else "") + ("/init_weights" if b else "/weights")
                call("weights", lambda: t.weights(point, level=lv, branch=b),
                     lambda v, raw: _arrays_equal(v, raw.weights(group, (lv, b)), f"{where} weights"))


def _cli(path: Path, raw: Raw, command: str, tmp: Path, note: Callable[..., None]) -> None:
    """One command through ticketlab.cli.main: exit 0 or 2, and when 0, numbers that the raw file confirms."""
    out_pt = tmp / "export.pt"
    argv = {
        "info": ["info", str(path), "--json", "--layers"],
        "sparsity": ["sparsity", str(path), "--json"],
        "overlap": ["overlap", f"{path}:0", str(path), "--json"],
        "structure": ["structure", str(path), "--json"],
        "fairness": ["fairness", str(path), "--json"],
        "export": ["export", str(path), "--weights", "trained", "--out", str(out_pt), "--overwrite"],
    }[command]
    stdout, stderr = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            rc = main(argv)
    except BaseException as err:  # noqa: BLE001 - the point of the test (SystemExit included)
        note(command, "traceback", f"{type(err).__name__}: {err}")
        return
    if rc == 2:
        lines = stderr.getvalue().strip().splitlines()
        if len(lines) != 1:
            note(command, "traceback", f"exit 2 with {len(lines)} lines on stderr: {stderr.getvalue()[:300]}")
        else:
            note(command, "refused")
        return
    if rc != 0:
        note(command, "traceback", f"exit {rc}: {stderr.getvalue()[:300]}")
        return
    try:
        _CLI_CHECKS[command](raw, stdout.getvalue(), out_pt)
    except Stale as err:
        note(command, "stale", str(err))
        return
    except Exception as err:  # noqa: BLE001 - exit 0, yet the raw data cannot be read
        note(command, "stale", f"exit 0, but the raw data cannot be read: {type(err).__name__}: {err}")
        return
    note(command, "accepted")


def _check_info(raw: Raw, out: str, _: Path) -> None:
    info = json.loads(out)
    for r in info["levels"]:
        _check_record(raw, r, "info")
    for r in info.get("layers", []):
        _same(int(r["kept"]), raw.kept(r["level"])[r["layer"]], "info --layers kept")


def _check_sparsity(raw: Raw, out: str, _: Path) -> None:
    for r in json.loads(out):
        kept = raw.kept(int(r["level"]))
        want = sum(kept.values()) if r["layer"] == "total" else kept[r["layer"]]
        _same(int(r["kept"]), want, f"sparsity level {r['level']} {r['layer']}")


def _check_overlap(raw: Raw, out: str, _: Path) -> None:
    for r in json.loads(out):
        if r["layer"] == "total":
            continue
        a, b = raw.mask(int(r["level_a"]), r["layer"]), raw.mask(int(r["level_b"]), r["layer"])
        _same((int(r["kept_a"]), int(r["kept_b"]), int(r["intersection"])),
              (int(a.sum()), int(b.sum()), int((a & b).sum())), f"overlap {r['layer']}")


def _check_structure(raw: Raw, out: str, _: Path) -> None:
    for r in json.loads(out):
        m = raw.mask(int(r["level"]), r["layer"])
        _same(float(r["density"]), float(m.mean()), f"structure {r['layer']} density")
        if r["grouping"] == "output":
            empty = int((m.reshape(m.shape[0], -1).sum(axis=1) == 0).sum())
            _same(int(r["fully_pruned"]), empty, f"structure {r['layer']} fully pruned outputs")


def _check_fairness(raw: Raw, out: str, _: Path) -> None:
    for r in json.loads(out)["drops"]:
        level, c = int(r["level"]), int(r["class"])
        _same(float(r["class_accuracy"]), float(raw.class_accuracy(level)[c]), f"fairness level {level} class {c}")
        _same(float(r["accuracy"]), raw.accuracy(level), f"fairness level {level} accuracy")


def _check_export(raw: Raw, out: str, out_pt: Path) -> None:
    import torch

    sd = torch.load(out_pt, weights_only=True)
    level = raw.levels()[-1]
    want = raw.weights(f"levels/{level}/weights", (level, None))
    for key, value in want.items():
        if key in raw.names:
            value = np.where(raw.mask(level, key), value, 0)
        _arrays_equal({key: sd[key].numpy()}, {key: value}, "export")


_CLI_CHECKS = {"info": _check_info, "sparsity": _check_sparsity, "overlap": _check_overlap,
               "structure": _check_structure, "fairness": _check_fairness, "export": _check_export}


# ----------------------------------------------------------------------------------------------------------
# The test


def _run(bases: list[Base], n: int, tmp: Path, seed: int = SEED) -> Tally:
    rng = np.random.default_rng(seed)
    tally = Tally()
    kinds = list(MUTATIONS)
    for case in range(n):
        kind = kinds[case % len(kinds)]
        base = bases[int(rng.integers(len(bases)))]
        path = tmp / f"case{case}.h5"
        path.write_bytes(base.data)
        try:
            detail = f"{base.name}: " + MUTATIONS[kind](rng, path, base)
        except Exception as err:  # noqa: BLE001 - a mutation h5py cannot apply is skipped, not counted
            detail = f"{base.name}: mutation not applied ({type(err).__name__})"
        tally.cases[kind] += 1

        def note(reader: str, outcome: str, message: str = "") -> None:
            tally.record(kind, detail, reader, outcome, message)

        # the readers of single levels run on the level or branch the mutation names, and on one other
        named = {(int(m[1]), m[2]) for m in re.finditer(r"levels/(\d+)(?:/branches/(\w+))?", detail)}
        other = (int(rng.integers(4)), None if rng.random() < 0.5 else "reinit")

        def focus(level: int, branch: str | None) -> bool:
            return (level, branch) in named or (level, branch) == other

        raw = Raw(path)
        # a reader that never returns (HDF5 looping inside one C call) ends the run with a stack dump instead of
        # hanging it; the case's file stays in place for a look
        faulthandler.dump_traceback_later(CASE_TIMEOUT_S, exit=True)
        try:
            _api(path, raw, note, focus)
            # every case runs the whole API; the commands take turns, each on a sixth of the cases of every kind
            _cli(path, raw, COMMANDS[(case // len(kinds)) % len(COMMANDS)], tmp, note)
        finally:
            faulthandler.cancel_dump_traceback_later()
            raw.close()
        path.unlink()
    return tally


def _figures(tally: Tally, seconds: float) -> str:
    total = Counter()
    lines = [f"{'mutation kind':<30} {'cases':>6} {'readers accepted':>16} {'refused':>8} {'tracebacks':>10} "
             f"{'stale':>6}"]
    for kind in MUTATIONS:
        o = tally.outcomes[kind]
        total.update(o)
        lines.append(f"{kind:<30} {tally.cases[kind]:>6} {o['accepted']:>16} {o['refused']:>8} "
                     f"{o['traceback']:>10} {o['stale']:>6}")
    lines.append(f"{'total':<30} {sum(tally.cases.values()):>6} {total['accepted']:>16} {total['refused']:>8} "
                 f"{total['traceback']:>10} {total['stale']:>6}")
    lines.append(f"{seconds:.0f} s")
    return "\n".join(lines)


def test_fuzz_corrupted_ticket_files(bases: list[Base], tmp_path: Path, request: pytest.FixtureRequest) -> None:
    n = request.config.getoption("--fuzz-n")
    start = time.perf_counter()
    tally = _run(bases, n, tmp_path)
    print("\n" + _figures(tally, time.perf_counter() - start))
    assert sum(tally.cases.values()) == n >= 1
    assert not tally.failures, f"{len(tally.failures)} failures, e.g.:\n" + "\n".join(tally.failures[:25])


def test_the_uncorrupted_files_are_read_in_full(bases: list[Base], tmp_path: Path) -> None:
    """The oracle agrees with every reader on the intact files, and every reader and command succeeds on them."""
    for base in bases:
        path = tmp_path / f"{base.name}.h5"
        path.write_bytes(base.data)
        outcomes: list[tuple[str, str, str]] = []
        raw = Raw(path)
        _api(path, raw, lambda reader, outcome, message="": outcomes.append((reader, outcome, message)))
        for command in COMMANDS:
            if base.name == "logged" and command == "fairness":
                continue  # a logged-metrics level has no predictions: no fairness population
            _cli(path, raw, command, tmp_path, lambda reader, outcome, message="": outcomes.append(
                (reader, outcome, message)))
        raw.close()
        bad = [o for o in outcomes if o[1] != "accepted"]
        # a logged level has no trained weights and no per-example evaluation: weights() refuses it
        bad = [o for o in bad if not (base.name == "logged" and o[0] in ("weights", "export"))]
        assert not bad, (base.name, bad)
