"""``ticketlab import checkpoint``: dense checkpoints with exact zeros — safetensors files (made with the
safetensors library), sharded Hugging Face directories and PyTorch state dicts, bf16 included — give masks
``weight != 0``, N:M patterns and a pruned/dense decision, read one tensor (and block) at a time."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from ticketlab import store
from ticketlab.cli import main
from ticketlab.io import import_checkpoint, scan_tensor
from ticketlab.io.checkpoint import all_ones_packed
from ticketlab.io.safe_json import nesting_depth
from ticketlab.io.tensorfiles import SafetensorsFile, torch_ref, write_safetensors

from conftest import assert_refused

safetensors_torch = pytest.importorskip("safetensors.torch")


def two_of_four(w: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Zero the 2 smallest of every 4 consecutive weights along ``dim`` (Wanda/SparseGPT's 2:4 grouping)."""
    w = w.movedim(dim, -1).clone()
    g = w.reshape(*w.shape[:-1], -1, 4)
    idx = g.abs().float().argsort(-1)[..., :2]
    g.scatter_(-1, idx, 0)
    return g.reshape(w.shape).movedim(-1, dim).contiguous()


def llm_like(seed: int = 0) -> dict[str, torch.Tensor]:
    """A tiny bf16 'LLM': 2:4 projections, an unstructured-50% MLP, a dense embedding with a few chance zeros,
    a 2:4 conv along input channels, a transposed (Conv1D-style) 2:4 layer, biases and an integer buffer."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g)

    mlp = rnd(48, 64)
    mlp[torch.rand(48, 64, generator=g) < 0.5] = 0
    emb = rnd(100, 64)
    emb.view(-1)[torch.randperm(emb.numel(), generator=g)[:20]] = 0  # 0.3% chance zeros
    return {
        "model.embed_tokens.weight": emb.to(torch.bfloat16),
        "model.layers.0.self_attn.q_proj.weight": two_of_four(rnd(64, 64)).to(torch.bfloat16),
        "model.layers.0.self_attn.q_proj.bias": rnd(64).to(torch.bfloat16),
        "model.layers.0.mlp.up_proj.weight": mlp.to(torch.bfloat16),
        "model.layers.10.self_attn.q_proj.weight": two_of_four(rnd(64, 64)).to(torch.bfloat16),
        "model.layers.2.conv.weight": two_of_four(rnd(8, 16, 3, 3), dim=1).to(torch.bfloat16),
        "model.layers.2.c_attn.weight": two_of_four(rnd(32, 24), dim=0).to(torch.bfloat16),
        "model.norm.weight": torch.ones(64, dtype=torch.bfloat16),
        "model.position_ids": torch.arange(64).reshape(8, 8),
    }


EXPECT = {  # name -> (pattern, pruned)
    "model.embed_tokens.weight": (None, False),
    "model.layers.0.self_attn.q_proj.weight": ("2:4 along dim -1", True),
    "model.layers.0.mlp.up_proj.weight": (None, True),
    "model.layers.2.conv.weight": ("2:4 along dim 1", True),
    "model.layers.2.c_attn.weight": ("2:4 along dim 0", True),
    "model.layers.10.self_attn.q_proj.weight": ("2:4 along dim -1", True),
}


def _nonzero(t: torch.Tensor) -> np.ndarray:
    return (t != 0).numpy()


def test_safetensors_bf16_masks_patterns_and_chance_zeros(tmp_path: Path, capsys) -> None:
    sd = llm_like()
    src = tmp_path / "model.safetensors"
    safetensors_torch.save_file(sd, str(src), metadata={"format": "pt"})
    out = tmp_path / "m.h5"
    assert main(["import", "checkpoint", str(src), "--out", str(out), "--layers"]) == 0
    text = capsys.readouterr().out
    assert "2:4 along dim -1: 2" in text and "chance" in text and "integer" in text
    with store.TicketFile(out) as t:
        names = [x.name for x in t.tensors]
        assert names == ["model.embed_tokens.weight", "model.layers.0.mlp.up_proj.weight",
                         "model.layers.0.self_attn.q_proj.weight", "model.layers.2.c_attn.weight",
                         "model.layers.2.conv.weight", "model.layers.10.self_attn.q_proj.weight"]  # natural order
        pruned = {x.name: x.pruned for x in t.tensors}
        for name, (_, expected) in EXPECT.items():
            assert pruned[name] == expected, name
            mask = t.mask(0, name)
            np.testing.assert_array_equal(mask, _nonzero(sd[name]) if expected else np.ones(mask.shape, bool))
        assert t.tensors[0].kind == "other" and t.tensors[4].kind == "conv"
        report = {r["layer"]: r for r in store.read_state(out, "import")["levels"]["0"]}
        for name, (pattern, _) in EXPECT.items():
            got = report[name]
            assert (None if got["pattern"] is None else f"{got['pattern']} along dim {got['pattern_dim']}") == pattern
        assert report["model.embed_tokens.weight"]["zeros"] == 20


def test_zero_threshold_zero_counts_every_zero(tmp_path: Path, capsys) -> None:
    sd = llm_like()
    src = tmp_path / "model.safetensors"
    safetensors_torch.save_file(sd, str(src))
    result = import_checkpoint([src], tmp_path / "m.h5", zero_threshold=0.0)
    emb = next(r for r in result.tensors if r["layer"] == "model.embed_tokens.weight")
    assert emb["pruned"] and emb["kept"] == 6400 - 20
    with store.TicketFile(result.path) as t:
        np.testing.assert_array_equal(t.mask(0, "model.embed_tokens.weight"), _nonzero(sd["model.embed_tokens.weight"]))


def test_sharded_directory_and_pytorch_file_give_the_same_masks(tmp_path: Path, capsys) -> None:
    sd = llm_like(seed=5)
    hf = tmp_path / "hf"
    hf.mkdir()
    names = list(sd)
    shards = {"model-00001-of-00002.safetensors": names[:4], "model-00002-of-00002.safetensors": names[4:]}
    for shard, keys in shards.items():
        safetensors_torch.save_file({k: sd[k] for k in keys}, str(hf / shard))
    index = {"metadata": {"total_size": 0}, "weight_map": {k: s for s, ks in shards.items() for k in ks}}
    (hf / "model.safetensors.index.json").write_text(json.dumps(index))
    (hf / "config.json").write_text(json.dumps({"architectures": ["TinyForCausalLM"], "model_type": "tiny"}))
    pt = tmp_path / "model.pt"
    torch.save({f"module.{k}": v for k, v in sd.items()}, pt)  # DDP prefix, state-dict order
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    assert main(["import", "checkpoint", str(hf), "--out", str(a), "--weights"]) == 0
    assert main(["import", "checkpoint", str(pt), "--out", str(b)]) == 0
    capsys.readouterr()
    with store.TicketFile(a) as ta, store.TicketFile(b) as tb:
        assert ta.model == "TinyForCausalLM"
        assert {x.name for x in ta.tensors} == {x.name for x in tb.tensors} == set(EXPECT)
        assert [x.name for x in tb.tensors][0] == "model.embed_tokens.weight"  # the state dict's order
        for name in EXPECT:
            np.testing.assert_array_equal(ta.mask(0, name), tb.mask(0, name))
        w = ta.weights(level=0)
        assert ta.weight_dtypes(level=0)["model.layers.0.self_attn.q_proj.weight"] == "bfloat16"
        q = "model.layers.0.self_attn.q_proj.weight"
        np.testing.assert_array_equal(w[q], sd[q].float().numpy())
        np.testing.assert_array_equal(w["model.norm.weight"], sd["model.norm.weight"].float().numpy())


def test_overlap_of_two_imports_matches_direct_jaccard(tmp_path: Path, capsys) -> None:
    files = []
    sds = [llm_like(seed=s) for s in (1, 2)]
    for i, sd in enumerate(sds):
        src = tmp_path / f"m{i}.safetensors"
        safetensors_torch.save_file(sd, str(src))
        files.append(tmp_path / f"m{i}.h5")
        assert main(["import", "checkpoint", str(src), "--out", str(files[-1])]) == 0
    capsys.readouterr()
    assert main(["overlap", str(files[0]), str(files[1]), "--json"]) == 0
    rows = {r["layer"]: r for r in json.loads(capsys.readouterr().out)}
    inter = union = 0
    for name, (_, pruned) in EXPECT.items():
        a = _nonzero(sds[0][name]) if pruned else np.ones(sds[0][name].shape, bool)
        b = _nonzero(sds[1][name]) if pruned else np.ones(sds[1][name].shape, bool)
        assert rows[name]["jaccard"] == pytest.approx((a & b).sum() / (a | b).sum(), abs=1e-12)
        inter, union = inter + int((a & b).sum()), union + int((a | b).sum())
    assert rows["total"]["jaccard"] == pytest.approx(inter / union, abs=1e-12)


@pytest.mark.parametrize("dim, chunk", [(-1, 160), (0, 160), (-1, 1), (0, 1)])
def test_blocks_are_stitched_exactly(dim: int, chunk: int) -> None:
    """Small blocks (16 rows at chunk=160; 16 weights inside rows at chunk=1) give the same packed mask and
    zeros as one block, and the same pattern where blocks hold whole rows (dim 0 needs them)."""
    w = two_of_four(torch.randn(96, 40), dim=dim).to(torch.bfloat16)
    ref = torch_ref("w", w, "mem")
    whole, small = scan_tensor(ref), scan_tensor(ref, chunk_elements=chunk)
    np.testing.assert_array_equal(whole.packed, store.pack_mask(_nonzero(w)))
    np.testing.assert_array_equal(small.packed, whole.packed)
    assert (whole.pattern, whole.pattern_dim) == ("2:4", dim)
    expected = (None, None) if (dim, chunk) == (0, 1) else ("2:4", dim)
    assert (small.pattern, small.pattern_dim) == expected
    assert small.zeros == whole.zeros == w.numel() // 2


def test_sparse_unstructured_is_not_mistaken_for_n_of_m() -> None:
    w = torch.randn(64, 64)
    w[torch.rand(64, 64) < 0.9] = 0  # 90% sparse: most groups of 4 keep <= 2, yet it is not 2:4
    s = scan_tensor(torch_ref("w", w, "mem"))
    assert s.pattern is None and s.pruned()
    for n in (1, 5, 8, 13):
        np.testing.assert_array_equal(np.unpackbits(all_ones_packed(n), count=n), np.ones(n, np.uint8))
        assert all_ones_packed(n)[-1] == np.packbits(np.ones(n, bool))[-1]


def test_own_safetensors_writer_and_reader_agree_with_the_library(tmp_path: Path) -> None:
    w = torch.randn(5, 7).to(torch.bfloat16)
    p = tmp_path / "w.safetensors"
    write_safetensors(p, [("w", (5, 7), "bfloat16", [w.view(torch.int16).numpy()])])
    np.testing.assert_array_equal(safetensors_torch.load_file(str(p))["w"].float().numpy(), w.float().numpy())
    with SafetensorsFile(p) as f:
        np.testing.assert_array_equal(f.tensors["w"].values().reshape(5, 7), w.float().numpy())


@pytest.mark.parametrize("damage", ["truncated", "header", "offsets", "missing_shard", "shapes_differ"])
def test_corrupted_checkpoints_exit_2_and_write_nothing(damage: str, tmp_path: Path, capsys) -> None:
    sd = llm_like()
    src = tmp_path / "model.safetensors"
    safetensors_torch.save_file(sd, str(src))
    srcs = [str(src)]
    blob = src.read_bytes()
    (n,) = struct.unpack("<Q", blob[:8])
    if damage == "truncated":
        src.write_bytes(blob[:-100])
        words = ("truncated or corrupted", "file has")
    elif damage == "header":
        src.write_bytes(blob[:8] + b"{not json" + blob[17:])
        words = ("not JSON",)
    elif damage == "offsets":
        header = json.loads(blob[8:8 + n])
        header["model.norm.weight"]["shape"] = [65]
        text = json.dumps(header, separators=(",", ":")).encode()
        assert len(text) <= n
        src.write_bytes(blob[:8] + text.ljust(n) + blob[8 + n:])
        words = ("do not match shape",)
    elif damage == "missing_shard":
        hf = tmp_path / "hf"
        hf.mkdir()
        (hf / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a.weight": "gone.safetensors"}}))
        srcs = [str(hf)]
        words = ("gone.safetensors", "missing")
    else:
        other = dict(sd)
        other["model.layers.0.mlp.up_proj.weight"] = torch.zeros(4, 4, dtype=torch.bfloat16)
        safetensors_torch.save_file(other, str(tmp_path / "l1.safetensors"))
        srcs.append(str(tmp_path / "l1.safetensors"))
        words = ("shape",)
    out = tmp_path / "o" / "m.h5"
    assert main(["import", "checkpoint", *srcs, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    for w in words:
        assert w in err, err
    assert not out.exists() and not list(out.parent.iterdir())


def test_torch_prune_state_dict_is_sent_to_the_right_importer(tmp_path: Path, capsys) -> None:
    p = tmp_path / "pruned.pt"
    torch.save({"fc.weight_orig": torch.randn(4, 4), "fc.weight_mask": torch.ones(4, 4)}, p)
    out = tmp_path / "m.h5"
    assert main(["import", "checkpoint", str(p), "--out", str(out)]) == 2
    assert "ticketlab import torch-prune" in capsys.readouterr().err and not out.exists()


def _one_tensor_file(path: Path, shape: list, nbytes: int, text: str | None = None) -> Path:
    header = text or json.dumps({"w.weight": {"dtype": "F32", "shape": shape, "data_offsets": [0, nbytes]}})
    path.write_bytes(struct.pack("<Q", len(header)) + header.encode() + bytes(nbytes))
    return path


@pytest.mark.parametrize("shape, nbytes, words", [
    ([2**61 + 1, 8], 32, "do not match shape"),  # the int64 product wraps to 8: was a ZeroDivisionError
    ([2**32, 2**32], 0, "do not match shape"),  # wraps to 0: was accepted as an empty tensor
    ([2**64, 1], 4, "not an integer in [0, 2**63)"),  # was an OverflowError
    ([-1, 4], 16, "not an integer in [0, 2**63)"),
    ([2.0, 2], 16, "not an integer in [0, 2**63)"),
])
def test_hostile_shapes_are_one_line_errors(shape, nbytes, words, tmp_path: Path, capsys) -> None:
    src = _one_tensor_file(tmp_path / "h.safetensors", shape, nbytes)
    out = tmp_path / "o.h5"
    assert_refused(main, ["import", "checkpoint", str(src), "--out", str(out)], out, capsys, "truncated or corrupted",
                   words)


def test_deep_nesting_is_refused_before_parsing(tmp_path: Path, capsys) -> None:
    src = _one_tensor_file(tmp_path / "h.safetensors", [], 0, text="[" * 200_000 + "]" * 200_000)  # RecursionError
    out = tmp_path / "o.h5"
    assert_refused(main, ["import", "checkpoint", str(src), "--out", str(out)], out, capsys, "nested 200000 levels")
    assert nesting_depth('{"a": "[[[{{{\\"[", "b": [1, {"c": 2}]}') == 3  # brackets in strings do not count
    assert nesting_depth("7") == 0
