"""Hostile files given to ``ticketlab import checkpoint``: a seeded corpus of crafted safetensors headers, random
header mutations, byte flips and truncations of a valid safetensors file, a PyTorch file (zip and legacy) and a
sharded Hugging Face directory, planted pickle payloads, and crafted index files.

Every variant must either be imported *correctly* (the masks equal ``weight != 0`` as an independent reader of
the same bytes sees them) or be refused with exit status 2 and one line on stderr, leaving nothing at ``--out``.
No planted payload may run: each would create a marker file (the same payloads, loaded without
``weights_only``, are shown to create theirs). The figures (tried / refused / imported / code executed) are
printed with ``pytest -s`` and recorded in docs/reliability.md.
"""

from __future__ import annotations

import builtins
import io
import json
import os
import pickle
import random
import re
import struct
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ticketlab import store
from ticketlab.cli import main
from ticketlab.io.names import canonical_key

SEED = 20240509
N_HEADER_MUTATIONS = 110
N_SAFETENSORS_FLIPS = 60
N_PT_FLIPS = 40
N_LEGACY_FLIPS = 12
N_INDEX_FLIPS = 16

ST_WIDTH = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "I64": 8, "I32": 4, "I16": 2,
            "I8": 1, "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1}
ST_FLOAT = {"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"}


@dataclass
class Case:
    """One hostile input: ``src`` given to ``import checkpoint`` (plus ``extra`` arguments). ``expect`` is
    ``"refused"``, ``"imported"`` or ``None`` (either, as long as it is right); ``words`` must be in the error."""

    name: str
    src: Path
    expect: str | None = None
    words: tuple[str, ...] = ()
    extra: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------- the valid base


def base_tensors(rng: np.random.Generator) -> dict[str, tuple[str, tuple[int, ...], np.ndarray]]:
    """name -> (safetensors dtype, shape, raw little-endian array): pruned float tensors of three widths, a
    bias and an integer tensor."""
    a = rng.standard_normal((6, 8)).astype("<f4")
    a[rng.random(a.shape) < 0.5] = 0
    b = rng.standard_normal((4, 8)).astype("<f4")
    b[rng.random(b.shape) < 0.4] = 0
    c = rng.standard_normal((2, 2, 3)).astype("<f2")
    c[0, 0] = 0
    return {
        "a.weight": ("F32", a.shape, a),
        "b.weight": ("BF16", b.shape, (b.view("<u4") >> 16).astype("<u2")),
        "b.bias": ("F32", (4,), rng.standard_normal(4).astype("<f4")),
        "c.weight": ("F16", c.shape, c),
        "idx": ("I64", (3, 2), np.arange(6, dtype="<i8").reshape(3, 2)),
    }


def layout(tensors: dict) -> tuple[dict[str, Any], bytes]:
    """The header dict and data section of a safetensors file holding ``tensors``."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    data = b""
    for name, (dt, shape, arr) in tensors.items():
        raw = np.ascontiguousarray(arr).tobytes()
        header[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    return header, data


def st_file(header: Any, data: bytes, *, text: str | bytes | None = None, length: int | None = None) -> bytes:
    """A safetensors file: ``header`` serialised (or ``text`` as given), its length (or ``length``), ``data``."""
    blob = text if text is not None else json.dumps(header)
    blob = blob.encode("utf-8", "surrogatepass") if isinstance(blob, str) else blob
    return struct.pack("<Q", len(blob) if length is None else length) + blob + data


def torch_state(tensors: dict) -> dict[str, torch.Tensor]:
    out = {}
    for name, (dt, shape, arr) in tensors.items():
        t = torch.from_numpy(np.ascontiguousarray(arr).copy())
        out[name] = t.view(torch.bfloat16) if dt == "BF16" else t
    return out


# ---------------------------------------------------------------------------------------------- payloads


class Payload:
    """Unpickling this runs ``fn(*args)``: a pickle gadget as an attacker would plant it."""

    def __init__(self, fn: Any, args: tuple) -> None:
        self.fn, self.args = fn, args

    def __reduce__(self) -> tuple:
        return self.fn, self.args


def gadgets(marker: Path) -> dict[str, Payload]:
    """Payloads that each create ``marker`` when unpickled."""
    return {
        "open": Payload(builtins.open, (str(marker), "w")),
        "exec": Payload(builtins.exec, (f"open({str(marker)!r}, 'w').close()",)),
        "system": Payload(os.system, (f"touch {marker}",)),
        "mkdir": Payload(os.mkdir, (str(marker),)),
    }


def one_storage(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The floating-point tensors of ``sd`` as float32 views of one storage (see :func:`renumber_storage_keys`)."""
    floats = {k: v.float() for k, v in sd.items() if v.is_floating_point()}
    flat = torch.cat([v.reshape(-1) for v in floats.values()])
    out, start = {}, 0
    for k, v in floats.items():
        out[k] = flat[start:start + v.numel()].view(v.shape)
        start += v.numel()
    return out


def renumber_storage_keys(legacy: bytes) -> bytes:
    """The legacy format names a storage by its memory address: name it 0 (same width), so the bytes, and the
    corpus made from them, are the same in every run (with several storages their order would still vary)."""
    keys = set(re.findall(rb"X.\x00\x00\x00(\d{8,20})", legacy, re.S))
    assert len(keys) == 1, keys
    key = keys.pop()
    return legacy.replace(key, b"0".zfill(len(key)))


def replace_member(zip_bytes: bytes, suffix: str, new: bytes) -> bytes:
    """A copy of a zip archive (torch's format) with the member ending in ``suffix`` replaced by ``new``."""
    src = zipfile.ZipFile(io.BytesIO(zip_bytes))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            dst.writestr(info, new if info.filename.endswith(suffix) else src.read(info))
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------- the corpus


HOSTILE_VALUES: list[Any] = [
    -1, 0, 1, 7, 2**31, 2**32, 2**61 + 1, 2**63 - 1, 2**63, 2**64, -2**63, 10**30, 1.5, 2.0, -0.0, True, False,
    None, "", "F32", "BF16", "F4", "f32", "x" * 300, [], [1], [0], [2**32, 2**32], [2**61 + 1, 8], [2**64, 1],
    [-1, 4], [[1]], [1, 2, 3], {}, {"a": 1}, [0, 2**64], [10**6, 10**6 + 8],
]
HOSTILE_NAMES = ["", "a/b", "nul\x00name", "x" * 10_000, "module.a.weight", "a.weight_mask", "..", "\u2603",
                 "a.weight_orig"]


def mutate_header(rng: random.Random, header: dict[str, Any]) -> tuple[dict[str, Any], str | None, int | None]:
    """One to three random mutations of a header; returns (header, text override, length override)."""
    header = json.loads(json.dumps(header))
    text = length = deep = None
    for _ in range(rng.randint(1, 3)):
        names = [k for k in header if k != "__metadata__"] or ["a.weight"]
        name = rng.choice(names)
        entry = header.get(name)
        op = rng.randrange(12)
        if op == 0 and isinstance(entry, dict):  # a field gets a hostile value
            entry[rng.choice(["dtype", "shape", "data_offsets"])] = rng.choice(HOSTILE_VALUES)
        elif op == 1 and isinstance(entry, dict) and isinstance(entry.get("shape"), list) and entry["shape"]:
            entry["shape"][rng.randrange(len(entry["shape"]))] = rng.choice(HOSTILE_VALUES)
        elif op == 2 and isinstance(entry, dict) and isinstance(entry.get("data_offsets"), list):
            if entry["data_offsets"]:
                entry["data_offsets"][rng.randrange(len(entry["data_offsets"]))] = rng.choice(HOSTILE_VALUES)
        elif op == 3 and isinstance(entry, dict):
            entry.pop(rng.choice(["dtype", "shape", "data_offsets"]), None)
        elif op == 4:
            header[name] = rng.choice(HOSTILE_VALUES)
        elif op == 5 and isinstance(entry, dict):  # a second tensor over the same bytes
            header[f"copy{rng.randrange(100)}.weight"] = json.loads(json.dumps(entry))
        elif op == 6:
            header[rng.choice(HOSTILE_NAMES)] = header.pop(name)
        elif op == 7:
            header["__metadata__"] = rng.choice(HOSTILE_VALUES + [{"k": "v"}, {"k": 1}, {"k": ["v"]}])
        elif op == 8 and len(names) > 1:
            other = rng.choice(names)
            e1, e2 = header.get(name), header.get(other)
            if isinstance(e1, dict) and isinstance(e2, dict):
                e1["data_offsets"], e2["data_offsets"] = e2.get("data_offsets"), e1.get("data_offsets")
        elif op == 9:
            k = rng.choice([-8, -1, 1, 8, 4096])
            for e in header.values():
                if isinstance(e, dict) and isinstance(e.get("data_offsets"), list):
                    e["data_offsets"] = [x + k if type(x) is int else x for x in e["data_offsets"]]
        elif op == 10:
            deep = rng.choice([5, 9, 100, 5000, 300_000])
        else:
            length = rng.choice([0, 1, 2**63, 2**64 - 1, 100 * 1024 * 1024 + 1, 10**9])
    if deep:  # an entry nested `deep` levels, written as text (json.dumps itself would recurse)
        inner = json.dumps(header)[1:-1]
        text = "{" + (inner + ", " if inner else "") + '"deep": ' + "[" * deep + "]" * deep + "}"
    return header, text, length


def build_corpus(root: Path, marker: Path) -> list[Case]:
    rng_np = np.random.default_rng(SEED)
    rng = random.Random(SEED)
    tensors = base_tensors(rng_np)
    header, data = layout(tensors)
    valid = st_file(header, data)
    cases: list[Case] = []

    def add(name: str, content: bytes | None, suffix: str = ".safetensors", **kw: Any) -> Path:
        d = root / f"{len(cases):04d}"
        d.mkdir(parents=True)
        src = d / f"model{suffix}"
        if content is not None:
            src.write_bytes(content)
        cases.append(Case(name, src, **kw))
        return src

    def entry(dt: str, shape: list, offsets: list, **more: Any) -> dict[str, Any]:
        return {"a.weight": {"dtype": dt, "shape": shape, "data_offsets": offsets}, **more}

    bad = "truncated or corrupted"
    # -- the inputs of issue 9, and the rest of the header checks, each by name
    add("valid", valid, expect="imported")
    add("valid, --weights", valid, expect="imported", extra=["--weights"])
    for shape, nbytes in [([2**61 + 1, 8], 32), ([2**32, 2**32], 0), ([2**64, 1], 4), ([2**63, 1], 4),
                          ([-1, 4], 16), ([-2, -2], 16), ([2.0, 2], 16), ([True, 4], 16), (["4", 4], 16),
                          ([None, 4], 16), ([[2], 2], 16), ([1] * 65, 4), ([2**62, 4], 0), ([2**62, 0, 4], 16)]:
        add(f"shape {str(shape)[:40]}", st_file(entry("F32", shape, [0, nbytes]), b"\0" * nbytes), expect="refused",
            words=(bad,))
    for shape, expect in [([0, 2**62], "refused"), ([0, 2**40], "imported"), ([2**20, 0, 2**20], "imported")]:
        empty = json.loads(json.dumps(header))
        empty["empty"] = {"dtype": "F32", "shape": shape, "data_offsets": [len(data), len(data)]}
        add(f"empty tensor {shape}, --weights", st_file(empty, data), expect=expect, extra=["--weights"])
    add("header nested 200,000 deep", st_file(None, b"", text="[" * 200_000 + "]" * 200_000), expect="refused",
        words=("nested 200000 levels deep",))
    add("entry nested 200,000 deep", st_file(None, data, text='{"a.weight": ' + "[" * 200_000 + "]" * 200_000 + "}"),
        expect="refused", words=("nested",))
    add("object nested 100,000 deep", st_file(None, b"", text='{"a":' * 100_000 + "1" + "}" * 100_000),
        expect="refused", words=("nested",))
    add("metadata nested 50,000 deep", st_file(None, data, text=json.dumps(header)[:-1] + ', "__metadata__": '
                                               + "[" * 50_000 + "]" * 50_000 + "}"), expect="refused")
    brackets = json.loads(json.dumps(header))
    brackets["__metadata__"] = {"note": "[" * 100_000 + "{" * 1000}
    add("brackets inside a string are not nesting", st_file(brackets, data), expect="imported")
    for n in [2**64 - 1, 2**63, 100 * 1024 * 1024 + 1, 10**12, len(valid) - 7, 0, 1]:
        add(f"header length {n}", struct.pack("<Q", n) + valid[8:], expect="refused", words=(bad,))
    add("empty file", b"", expect="refused", words=(bad,))
    add("7 bytes", valid[:7], expect="refused", words=(bad,))
    for offsets in [[0, 10**6], [0, 2**64], [-8, 184], [192, 0], [0, 192, 4], [0], [0.0, 192.0], None, "0-192",
                    [2**63, 2**63 + 192]]:
        add(f"data_offsets {offsets}", st_file(entry("F32", [6, 8], offsets), data), expect="refused", words=(bad,))
    overlap = json.loads(json.dumps(header))
    overlap["b.bias"]["data_offsets"] = [0, 16]
    add("overlapping tensors", st_file(overlap, data), expect="refused", words=("share bytes",))
    mismatch = json.loads(json.dumps(header))
    mismatch["a.weight"]["shape"] = [6, 9]
    add("shape x dtype != byte range", st_file(mismatch, data), expect="refused", words=("do not match shape",))
    retype = json.loads(json.dumps(header))
    retype["a.weight"]["dtype"] = "F64"
    add("dtype width != byte range", st_file(retype, data), expect="refused", words=("do not match shape",))
    for dt, expect in [("F4", "imported"), ("F8_E8M0", "imported"), ("f32", "refused"), ("", "refused"),
                       ("X" * 40, "refused"), (["F32"], "refused"), (None, "refused"), (4, "refused")]:
        unknown = json.loads(json.dumps(header))
        unknown["c.weight"]["dtype"] = dt
        add(f"dtype {str(dt)[:20]}", st_file(unknown, data), expect=expect)
    for doc in ["[]", "[1, 2]", '"text"', "3", "null", "true", "{}"]:
        add(f"header {doc}", st_file(None, data, text=doc), expect="refused")
    text = json.dumps(header)
    dup = text[:-1] + ', "a.weight": ' + json.dumps(header["a.weight"]) + "}"
    add("duplicate tensor key", st_file(None, data, text=dup), expect="refused", words=("appears twice",))
    dup_field = text.replace('"dtype": "F32"', '"dtype": "F32", "dtype": "I32"', 1)
    add("duplicate field key", st_file(None, data, text=dup_field), expect="refused", words=("appears twice",))
    for meta in [[], "x", 3, {"k": 1}, {"k": None}, {"k": {"a": "b"}}]:
        m = json.loads(json.dumps(header))
        m["__metadata__"] = meta
        add(f"metadata {meta!r}", st_file(m, data), expect="refused", words=("__metadata__",))
    no_meta = json.loads(json.dumps(header))
    no_meta["__metadata__"] = None
    add("metadata null", st_file(no_meta, data), expect="imported")
    add("not UTF-8", st_file(None, data, text=b'{"a\xff": 1}'), expect="refused", words=("UTF-8",))
    add("5,000-digit number", st_file(None, data, text='{"a.weight": {"dtype": "F32", "shape": [' + "9" * 5000
                                      + '], "data_offsets": [0, 4]}}'), expect="refused")
    add("NaN dimension", st_file(None, data, text=text.replace("[6, 8]", "[NaN, 8]")), expect="refused")
    add("Infinity offset", st_file(None, data, text=text.replace('"data_offsets": [0,', '"data_offsets": [-Infinity,',
                                                                 1)), expect="refused")
    for name in HOSTILE_NAMES + ["."]:
        for target, extra in [("a.weight", []), ("b.bias", ["--weights"])]:
            renamed = json.loads(json.dumps(header))
            renamed[name] = renamed.pop(target)
            add(f"tensor name {name[:12]!r} for {target} {extra}", st_file(renamed, data), extra=extra)
    gap = json.loads(json.dumps(header))
    for k in ("b.weight", "b.bias", "c.weight", "idx"):
        gap[k]["data_offsets"] = [x + 8 for x in gap[k]["data_offsets"]]
    add("gap between tensors", st_file(gap, data[:192] + b"\x55" * 8 + data[192:]), expect="imported")
    add("trailing bytes", valid + b"\x00" * 13, expect="imported")
    add("header padded with spaces", st_file(None, data, text=json.dumps(header) + " " * 7), expect="imported")
    add("truncated data", valid[:-9], expect="refused", words=("file has",))
    add("truncated header", valid[:40], expect="refused", words=(bad,))

    # -- random header mutations
    for i in range(N_HEADER_MUTATIONS):
        h, txt, length = mutate_header(rng, header)
        try:
            content = st_file(h, data, text=txt, length=length)
        except (ValueError, TypeError):  # json cannot write it: use the text of the mutation we can
            content = st_file(None, data, text=json.dumps(h, default=str))
        add(f"header mutation {i}", content)

    # -- byte flips, zeroed ranges and truncations of the valid file
    for i in range(N_SAFETENSORS_FLIPS):
        add(f"safetensors bytes {i}", damage(rng, valid))

    # -- PyTorch files: valid, damaged, expanded / sparse / complex tensors, payloads
    sd = torch_state(tensors)
    buf = io.BytesIO()
    torch.save(sd, buf)
    zip_pt = buf.getvalue()
    buf = io.BytesIO()
    torch.save(one_storage(sd), buf, _use_new_zipfile_serialization=False)
    legacy_pt = renumber_storage_keys(buf.getvalue())
    add("valid .pt", zip_pt, ".pt", expect="imported")
    add("valid legacy .pt", legacy_pt, ".pt", expect="imported")
    for i in range(N_PT_FLIPS):
        add(f".pt bytes {i}", damage(rng, zip_pt), ".pt")
    for i in range(N_LEGACY_FLIPS):
        add(f"legacy .pt bytes {i}", damage(rng, legacy_pt), ".pt")
    for what, t in [("expanded 2**20 x 2**20", torch.zeros(1).expand(2**20, 2**20)),
                    ("expanded 3 x 4", torch.ones(1, 4).expand(3, 4)),
                    ("sparse", torch.eye(4).to_sparse()), ("complex", torch.zeros(3, 3, dtype=torch.complex64)),
                    ("quantised", torch.quantize_per_tensor(torch.ones(3, 3), 0.1, 0, torch.qint8))]:
        buf = io.BytesIO()
        torch.save({**sd, "odd.weight": t}, buf)
        add(f".pt with a {what} tensor", buf.getvalue(), ".pt")
    for gname, payload in gadgets(marker).items():
        buf = io.BytesIO()
        torch.save({**sd, "evil": payload}, buf)
        add(f"payload {gname} in a .pt", buf.getvalue(), ".pt", expect="refused", words=("refused",))
        buf = io.BytesIO()
        torch.save({"state_dict": sd, "evil": [payload]}, buf, _use_new_zipfile_serialization=False)
        add(f"payload {gname} in a legacy .pt", buf.getvalue(), ".pt", expect="refused", words=("refused",))
        add(f"payload {gname} as a bare pickle", pickle.dumps({"a.weight": payload}, protocol=2), ".pt",
            expect="refused")
        add(f"payload {gname} as a bare pickle, protocol 5", pickle.dumps(payload, protocol=5), ".pt",
            expect="refused")
        add(f"payload {gname} as the data.pkl of a valid zip",
            replace_member(zip_pt, "data.pkl", pickle.dumps({"a.weight": payload}, protocol=2)), ".pt",
            expect="refused", words=("refused",))
    buf = io.BytesIO()
    torch.save({"weights": np.array([gadgets(marker)["open"]], dtype=object)}, buf)
    add("payload in a numpy object array", buf.getvalue(), ".pt", expect="refused", words=("refused",))
    src = add("payload as --init", valid, expect="refused", words=("refused",))
    init = src.parent / "init.pt"
    evil = pickle.dumps({"a.weight": gadgets(marker)["exec"]}, protocol=2)
    init.write_bytes(replace_member(zip_pt, "data.pkl", evil))
    cases[-1].extra = ["--init", str(init)]

    # -- sharded directories and their index
    def hf_dir(name: str, index: Any, shards: dict[str, bytes], *, index_text: bytes | None = None,
               index_name: str = "model.safetensors.index.json", **kw: Any) -> Path:
        d = add(name, None, "", **kw).parent / "hf"
        d.mkdir()
        cases[-1].src = d
        for shard, content in shards.items():
            (d / shard).write_bytes(content)
        (d / index_name).write_bytes(index_text if index_text is not None else json.dumps(index).encode())
        return d

    names = list(tensors)
    one = {k: tensors[k] for k in names[:2]}
    two = {k: tensors[k] for k in names[2:]}
    shards = {"s1.safetensors": st_file(*layout(one)), "s2.safetensors": st_file(*layout(two))}
    good_index = {"metadata": {"total_size": len(data)},
                  "weight_map": {**{k: "s1.safetensors" for k in one}, **{k: "s2.safetensors" for k in two}}}
    hf_dir("sharded", good_index, shards, expect="imported")
    outside = root / "outside.safetensors"
    outside.write_bytes(shards["s1.safetensors"])
    for shard, words in [("../outside.safetensors", ("leaves the directory",)), (str(outside), ("leaves",)),
                         ("gone.safetensors", ("missing",)), ("", ("not a file name",)), ("a\x00b", ("not a file",)),
                         (7, ("not a file name",)), (["s1.safetensors"], ("not a file name",)),
                         (".", ("missing",)), ("model.safetensors.index.json", ("cannot read",))]:
        idx = json.loads(json.dumps(good_index))
        idx["weight_map"]["a.weight"] = shard
        hf_dir(f"index shard {str(shard)[:30]!r}", idx, shards, expect="refused", words=words)
    d = hf_dir("index shard is a symlink out", good_index, {"s2.safetensors": shards["s2.safetensors"]},
               expect="refused", words=("leaves",))
    (d / "s1.safetensors").symlink_to(outside)
    hf_dir("index shard lacks a tensor", {"weight_map": {**good_index["weight_map"], "zz.weight": "s1.safetensors"}},
           shards, expect="refused", words=("lacks",))
    for doc in [[], {"weight_map": []}, {"weight_map": {}}, {}, "x"]:
        hf_dir(f"index {str(doc)[:20]}", doc, shards, expect="refused", words=("weight_map",))
    hf_dir("index nested 200,000 deep", None, shards, index_text=b'{"weight_map": ' + b"[" * 200_000 + b"]" * 200_000
           + b"}", expect="refused", words=("nested",))
    dup_index = json.dumps(good_index)[:-2] + ', "a.weight": "s2.safetensors"}}'
    hf_dir("index duplicate key", None, shards, index_text=dup_index.encode(), expect="refused", words=("twice",))
    hf_dir("index not UTF-8", None, shards, index_text=b"\xfe\xff", expect="refused", words=("UTF-8",))
    d = hf_dir("index of 65 MiB", None, shards, index_text=b"", expect="refused", words=("larger than",))
    with open(d / "model.safetensors.index.json", "r+b") as f:
        f.truncate(65 * 1024 * 1024)
    for gname, payload in list(gadgets(marker).items())[:2]:
        buf = io.BytesIO()
        torch.save({"a.weight": payload}, buf)
        hf_dir(f"payload {gname} in a .bin shard", {"weight_map": {"a.weight": "pytorch_model-1.bin"}},
               {"pytorch_model-1.bin": buf.getvalue()}, index_name="pytorch_model.bin.index.json", expect="refused",
               words=("refused",))
        d = add(f"payload {gname} as pytorch_model.bin", None, "", expect="refused", words=("refused",)).parent / "m"
        d.mkdir()
        (d / "pytorch_model.bin").write_bytes(buf.getvalue())
        cases[-1].src = d
    index_bytes = json.dumps(good_index).encode()
    for i in range(N_INDEX_FLIPS):
        hf_dir(f"index bytes {i}", None, shards, index_text=damage(rng, index_bytes))
    for i in range(8):
        hf_dir(f"shard bytes {i}", good_index, {**shards, "s2.safetensors": damage(rng, shards["s2.safetensors"])})
    return cases


def damage(rng: random.Random, blob: bytes) -> bytes:
    """Flip 1-4 random bytes, zero a random range, truncate, or insert random bytes."""
    b = bytearray(blob)
    kind = rng.randrange(4)
    if kind == 0:
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] ^= rng.randint(1, 255)
    elif kind == 1:
        i = rng.randrange(len(b))
        j = min(len(b), i + rng.randint(1, 64))
        b[i:j] = bytes(j - i)
    elif kind == 2:
        del b[rng.randrange(len(b)):]
    else:
        i = rng.randrange(len(b))
        b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    return bytes(b)


# ---------------------------------------------------------------------------------------------- the oracle


def _nonzero(raw: np.ndarray, is_float: bool) -> np.ndarray:
    if not is_float:
        return raw != 0
    bits = raw.dtype.itemsize * 8
    return (raw & np.array((1 << (bits - 1)) - 1, dtype=raw.dtype)) != 0  # -0.0 is zero; NaN is not


def expected_safetensors(path: Path, names: set[str] | None = None) -> dict[str, np.ndarray]:
    """The masks an import must give for an accepted safetensors file, read with the plain standard library."""
    blob = path.read_bytes()
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + n])
    header.pop("__metadata__", None)
    out = {}
    for name, info in header.items():
        dt, shape = info["dtype"], tuple(info["shape"])
        if dt not in ST_FLOAT or len(shape) < 2 or 0 in shape or (names is not None and name not in names):
            continue
        begin, end = info["data_offsets"]
        raw = np.frombuffer(blob[8 + n + begin:8 + n + end], dtype=f"<u{ST_WIDTH[dt]}")
        out[canonical_key(name)] = _nonzero(raw, True).reshape(shape)
    return out


def expected_torch(path: Path) -> dict[str, np.ndarray]:
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, dict) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        obj = next((v for v in obj.values() if isinstance(v, dict)), obj)
    out = {}
    for k, v in obj.items():
        if (isinstance(v, torch.Tensor) and v.layout == torch.strided and v.is_floating_point() and v.dim() >= 2
                and v.numel() and v.numel() * v.element_size() <= v.untyped_storage().nbytes()):
            out[canonical_key(str(k))] = (v.float() != 0).numpy() if v.dtype != torch.float64 else (v != 0).numpy()
    return out


def expected(src: Path) -> dict[str, np.ndarray]:
    if src.is_dir():
        index = json.loads((src / "model.safetensors.index.json").read_text())["weight_map"]
        out = {}
        for shard in set(index.values()):
            out.update(expected_safetensors(src / shard, {k for k, v in index.items() if v == shard}))
        return out
    return expected_safetensors(src) if src.suffix == ".safetensors" else expected_torch(src)


# ---------------------------------------------------------------------------------------------- the test


def run_case(case: Case, out: Path, capsys) -> tuple[str, str]:
    """Import one case; returns (outcome, detail): outcome is imported, refused or wrong."""
    try:
        code = main(["import", "checkpoint", str(case.src), "--out", str(out), "--zero-threshold", "0", *case.extra])
    except BaseException as err:  # noqa: BLE001 - a traceback is exactly what this test looks for
        capsys.readouterr()
        return "wrong", f"raised {type(err).__name__}: {str(err)[:200]}"
    stdout, stderr = capsys.readouterr()
    leftovers = [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")]
    if leftovers:
        return "wrong", f"left temporary files {leftovers}"
    if code == 2:
        lines = stderr.strip().splitlines()
        if len(lines) != 1 or not lines[0].startswith("ticketlab import: error: ") or "Traceback" in stderr:
            return "wrong", f"exit 2 but stderr is not one error line: {stderr[:300]!r}"
        if out.exists():
            return "wrong", "refused but wrote the output"
        missing = [w for w in case.words if w not in lines[0]]
        return ("wrong", f"error lacks {missing}: {lines[0][:300]}") if missing else ("refused", lines[0])
    if code != 0:
        return "wrong", f"exit {code}: {stderr[-300:]!r}"
    want = expected(case.src)
    with store.TicketFile(out) as t:
        got = {x.name for x in t.tensors}
        if got != set(want):
            return "wrong", f"imported tensors {sorted(got)}, expected {sorted(want)}"
        for name, mask in want.items():
            if not np.array_equal(t.mask(0, name), mask):
                return "wrong", f"mask of {name!r} differs from weight != 0"
            if sum(t.kept(0).values()) != sum(int(m.sum()) for m in want.values()):
                return "wrong", "kept counts differ from the masks"
    return "imported", stdout.splitlines()[0] if stdout else ""


def test_payloads_are_live(tmp_path: Path) -> None:
    """Control: the planted payloads do run when loaded without weights_only (so not running them is a result)."""
    for name, payload in gadgets(tmp_path / "live").items():
        live = tmp_path / "live"
        buf = io.BytesIO()
        torch.save({"a.weight": torch.zeros(2, 2), "evil": payload}, buf)
        buf.seek(0)
        torch.load(buf, weights_only=False)
        assert live.exists(), name
        live.rmdir() if live.is_dir() else live.unlink()


def test_hostile_corpus_is_refused_in_one_line_or_imported_correctly(tmp_path: Path, capsys) -> None:
    marker = tmp_path / "PAYLOAD_RAN"
    cases = build_corpus(tmp_path / "cases", marker)
    outs = tmp_path / "out"
    outs.mkdir()
    tally: Counter[str] = Counter()
    wrong = []
    for i, case in enumerate(cases):
        outcome, detail = run_case(case, outs / f"{i:04d}.h5", capsys)
        if outcome != "wrong" and case.expect and outcome != case.expect:
            outcome, detail = "wrong", f"{outcome}, expected {case.expect}: {detail[:300]}"
        tally[outcome] += 1
        if outcome == "wrong":
            wrong.append(f"{i:04d} {case.name}: {detail}")
        assert not marker.exists(), f"case {i} ({case.name}) ran planted code"
    executed = int(marker.exists())
    with capsys.disabled():
        print(f"\nhostile imports: tried {len(cases)}, refused {tally['refused']}, imported {tally['imported']}, "
              f"wrong {tally['wrong']}, code executed {executed}")
    assert not wrong, "\n".join(wrong[:30])
    assert len(cases) >= 200 and executed == 0
