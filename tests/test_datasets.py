"""Tests for ticketlab.datasets and the ``ticketlab data`` command (no network: a loopback server at most)."""

from __future__ import annotations

import builtins
import dataclasses
import functools
import gzip
import hashlib
import http.server
import io
import json
import os
import pickle
import shlex
import struct
import subprocess
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

import ticketlab
from ticketlab import datasets as D
from ticketlab.errors import ConfigError

REPO_DATA = Path(ticketlab.__file__).resolve().parent.parent / "data"
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


# ----------------------------------------------------------------------------------------------------------
# Generators of small raw files
# ----------------------------------------------------------------------------------------------------------


def idx_bytes(arr: np.ndarray, type_code: int = 0x08) -> bytes:
    header = bytes([0, 0, type_code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, arr: np.ndarray, gz: bool = True) -> Path:
    data = idx_bytes(arr)
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path.write_bytes(gzip.compress(data, mtime=0))
    else:
        path = path.with_suffix("")  # drop .gz
        path.write_bytes(data)
    return path


def make_idx_dataset(root: Path, name: str, n_train=40, n_test=15, gz=True, seed=0):
    """Write the four IDX files of dataset ``name`` under root/name; return the arrays written."""
    spec = D.get_dataset_spec(name)
    rng = np.random.default_rng(seed)
    _, h, w = spec.input_shape
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, size=(n, h, w), dtype=np.uint8)
        labels = (np.arange(n) % spec.num_classes).astype(np.uint8)
        rng.shuffle(labels)
        members = spec.train_members if split == "train" else spec.test_members
        write_idx(root / name / members[0], images, gz)
        write_idx(root / name / members[1], labels, gz)
        out[split] = (images, labels)
    return out


def cifar_batch_blob(data: np.ndarray, labels, label_key="labels", bytes_keys=False, legacy_numpy=False) -> bytes:
    batch = {"batch_label": "generated batch", label_key: [int(v) for v in labels], "data": data,
             "filenames": [f"img_{i}.png" for i in range(len(data))]}  # fmt: skip
    if bytes_keys:
        batch = {k.encode(): v for k, v in batch.items()}
    blob = pickle.dumps(batch, protocol=2)
    if legacy_numpy:  # the module name numpy < 2 (and the real CIFAR files) use
        blob = blob.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
        assert b"cnumpy.core.multiarray\n_reconstruct" in blob
    return blob


def make_cifar_dataset(root: Path, name: str, per_batch=6, archive=False, seed=0, **blob_kw):
    """Write a small CIFAR-format dataset (folder or .tar.gz) under root/name; return the arrays written."""
    spec = D.get_dataset_spec(name)
    rng = np.random.default_rng(seed)
    blobs, out = {}, {}
    for split, members in (("train", spec.train_members), ("test", spec.test_members)):
        xs, ys = [], []
        for m in members:
            data = rng.integers(0, 256, size=(per_batch, 3 * 32 * 32), dtype=np.uint8)
            labels = rng.integers(0, spec.num_classes, size=per_batch)
            blobs[m] = cifar_batch_blob(data, labels, spec.label_key, **blob_kw)
            xs.append(data.reshape(-1, 3, 32, 32))
            ys.append(labels)
        out[split] = (np.concatenate(xs), np.concatenate(ys))
    ddir = root / name
    ddir.mkdir(parents=True, exist_ok=True)
    if archive:
        with tarfile.open(ddir / spec.files[0].name, "w:gz") as tar:
            for member, blob in blobs.items():
                info = tarfile.TarInfo(f"{spec.folder}/{member}")
                info.size = len(blob)
                tar.addfile(info, io.BytesIO(blob))
    else:
        (ddir / spec.folder).mkdir(exist_ok=True)
        for member, blob in blobs.items():
            (ddir / spec.folder / member).write_bytes(blob)
    return out


def make_dataset(root: Path, name: str, **kw):
    if D.get_dataset_spec(name).format == "idx":
        return make_idx_dataset(root, name, **kw)
    return make_cifar_dataset(root, name, **kw)


def unnormalize(x: torch.Tensor, spec: D.DatasetSpec) -> np.ndarray:
    """Back to uint8 pixels 0..255."""
    c = x.shape[1]
    mean = torch.tensor(spec.mean).view(1, c, 1, 1)
    std = torch.tensor(spec.std).view(1, c, 1, 1)
    return torch.round((x * std + mean) * 255).to(torch.int64).numpy()


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv(D.DATA_ENV_VAR, raising=False)


# ----------------------------------------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------------------------------------

OFFICIAL_HOSTS = {
    "mnist": ("yann.lecun.com", "ossci-datasets.s3.amazonaws.com"),
    "fashion_mnist": ("fashion-mnist.s3-website.eu-central-1.amazonaws.com",),
    "kmnist": ("codh.rois.ac.jp",),
    "cifar10": ("www.cs.toronto.edu",),
    "cifar100": ("www.cs.toronto.edu",),
}


def test_registry_lists_the_five_datasets():
    assert D.list_datasets() == ["mnist", "fashion_mnist", "kmnist", "cifar10", "cifar100"]


@pytest.mark.parametrize("name", D.list_datasets())
def test_registry_entry_is_consistent(name):
    spec = D.get_dataset_spec(name)
    assert spec.name == name
    assert D.get_dataset_spec(name.upper().replace("_", "-")) is spec
    c, h, w = spec.input_shape
    assert (h, w) == ((28, 28) if spec.format == "idx" else (32, 32))
    assert c == len(spec.mean) == len(spec.std) == (1 if spec.format == "idx" else 3)
    assert len(spec.class_names) == spec.num_classes == len(set(spec.class_names))
    assert spec.train_size + spec.test_size in (70000, 60000)
    assert all(0 < m < 1 and 0 < s < 1 for m, s in zip(spec.mean, spec.std))
    for f in spec.files:
        assert len(f.md5) == 32 and int(f.md5, 16) >= 0
        assert f.urls and all(u.endswith("/" + f.name) for u in f.urls)
        hosts = {u.split("/")[2] for u in f.urls}
        assert hosts <= set(OFFICIAL_HOSTS[name]), hosts
    assert spec.citation and spec.homepage and spec.licence


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(ConfigError, match=r"unknown dataset 'lenet'; choose one of: mnist, fashion_mnist, kmnist"):
        D.get_dataset_spec("lenet")
    with pytest.raises(ConfigError, match="unknown dataset"):
        D.load_dataset("imagenet")


def test_register_dataset_refuses_duplicates():
    with pytest.raises(ConfigError, match="already registered"):
        D.register_dataset(lambda: D.get_dataset_spec("mnist"))


def test_spec_validation():
    spec = D.get_dataset_spec("mnist")
    with pytest.raises(ConfigError, match="class names"):
        dataclasses.replace(spec, class_names=("a",))
    with pytest.raises(ConfigError, match="one value per channel"):
        dataclasses.replace(spec, mean=(0.1, 0.2))
    with pytest.raises(ConfigError, match="unknown format"):
        dataclasses.replace(spec, format="png")


# ----------------------------------------------------------------------------------------------------------
# Shipped MNIST
# ----------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mnist():
    return D.load_dataset("mnist", REPO_DATA)


def test_shipped_mnist_files_have_published_md5():
    for f in D.get_dataset_spec("mnist").files:
        assert D.file_md5(REPO_DATA / "mnist" / f.name) == f.md5
    assert "LeCun" in (REPO_DATA / "README.md").read_text()


def test_shipped_mnist_shapes_and_labels(mnist):
    assert mnist.name == "mnist" and mnist.num_classes == 10 and mnist.class_names[3] == "3"
    assert mnist.train_x.shape == (60000, 1, 28, 28) and mnist.test_x.shape == (10000, 1, 28, 28)
    assert mnist.train_x.dtype == torch.float32 and mnist.train_y.dtype == torch.int64
    assert mnist.train_y.shape == (60000,) and mnist.test_y.shape == (10000,)
    assert torch.bincount(mnist.train_y).tolist() == MNIST_TRAIN_COUNTS
    assert torch.bincount(mnist.test_y).tolist() == MNIST_TEST_COUNTS
    assert "train=60000" in repr(mnist)


def test_shipped_mnist_normalisation(mnist):
    spec = mnist.spec
    # standardised with the training set's own statistics: mean ~0, std ~1
    assert abs(mnist.train_x.mean().item()) < 1e-3
    assert abs(mnist.train_x.std().item() - 1) < 1e-3
    pixels = mnist.train_x * spec.std[0] + spec.mean[0]  # back to [0, 1]
    assert pixels.min().item() == pytest.approx(0, abs=1e-5) and pixels.max().item() == pytest.approx(1, abs=1e-5)
    assert pixels.mean().item() * 255 == pytest.approx(33.318, abs=1e-3)
    assert (mnist.test_x * spec.std[0] + spec.mean[0]).mean().item() * 255 == pytest.approx(33.791, abs=1e-3)


def test_shipped_mnist_found_without_data_dir(no_env, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    status = D.dataset_status("mnist")
    assert status.present and status.data_dir.resolve() == REPO_DATA


def test_mnist_holdout(mnist):
    tx, ty, vx, vy = mnist.holdout(5000, seed=0)
    assert tx.shape == (55000, 1, 28, 28) and vx.shape == (5000, 1, 28, 28)
    assert len(ty) == 55000 and len(vy) == 5000
    _, val_idx = D.validation_split(60000, 5000, 0)
    assert torch.equal(vy, mnist.train_y[torch.from_numpy(val_idx)])


# ----------------------------------------------------------------------------------------------------------
# Generated files for every registry entry
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", D.list_datasets())
def test_load_generated_dataset(name, tmp_path):
    written = make_dataset(tmp_path, name)
    ds = D.load_dataset(name, tmp_path)
    spec = D.get_dataset_spec(name)
    assert ds.name == name and ds.num_classes == spec.num_classes and ds.class_names == spec.class_names
    assert ds.data_dir == tmp_path and ds.input_shape == spec.input_shape
    for split, x, y in (("train", ds.train_x, ds.train_y), ("test", ds.test_x, ds.test_y)):
        images, labels = written[split]
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert x.shape == (len(images),) + spec.input_shape
        np.testing.assert_array_equal(unnormalize(x, spec).reshape(images.shape[0], -1),
                                      images.reshape(images.shape[0], -1))  # fmt: skip
        np.testing.assert_array_equal(y.numpy(), labels)
    raw = D.load_dataset(name, tmp_path, normalize=False)
    assert not raw.normalized and 0 <= raw.train_x.min() and raw.train_x.max() <= 1


@pytest.mark.parametrize("fmt", D.FORMATS.names())
def test_every_format_locates_reads_and_reports_missing(fmt, tmp_path):
    names = [n for n in D.list_datasets() if D.get_dataset_spec(n).format == fmt]
    assert names, f"no registered dataset uses the {fmt} format"
    entry, spec = D.FORMATS.get(fmt), D.get_dataset_spec(names[0])
    source, found, missing = entry.locate(spec, tmp_path / spec.name)
    assert source == "" and not found and missing
    status = D.dataset_status(spec.name, tmp_path)
    message = entry.describe_missing(spec, status)
    assert "\n" not in message and str(status.dataset_dir) in message
    written = make_dataset(tmp_path, spec.name)
    source, _, missing = entry.locate(spec, tmp_path / spec.name)
    assert source and not missing
    train_x, train_y, test_x, test_y = entry.read(spec, tmp_path / spec.name)
    assert train_x.dtype == np.uint8 and train_x.shape[1:] == spec.input_shape
    np.testing.assert_array_equal(test_y, written["test"][1])


def test_download_help_lists_the_registered_datasets(capsys):
    from ticketlab.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["data", "download", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert D.DATASETS.choices() in out


def test_idx_uncompressed_files(tmp_path):
    written = make_idx_dataset(tmp_path, "kmnist", gz=False)
    assert not list((tmp_path / "kmnist").glob("*.gz"))
    ds = D.load_dataset("kmnist", tmp_path)
    np.testing.assert_array_equal(ds.test_y.numpy(), written["test"][1])


def test_read_idx_other_types(tmp_path):
    arr = np.arange(24, dtype=np.int32).reshape(2, 3, 4) - 5
    path = tmp_path / "x.idx"
    path.write_bytes(idx_bytes(arr, 0x0C))
    out = D.read_idx(path)
    assert out.dtype == np.int32 and out.dtype.isnative and out.flags.writeable
    np.testing.assert_array_equal(out, arr)


@pytest.mark.parametrize("legacy_numpy", [False, True])
@pytest.mark.parametrize("bytes_keys", [False, True])
def test_cifar_pickle_variants(tmp_path, bytes_keys, legacy_numpy):
    written = make_cifar_dataset(tmp_path, "cifar10", per_batch=3, bytes_keys=bytes_keys, legacy_numpy=legacy_numpy)
    ds = D.load_dataset("cifar10", tmp_path)
    np.testing.assert_array_equal(ds.train_y.numpy(), written["train"][1])


def py2_batch_pickle(data: np.ndarray, labels) -> bytes:
    """A CIFAR batch as Python 2 pickled it (protocol 0, ``str`` keys and array bytes, ``numpy.core``)."""
    raw = b"S" + repr(data.tobytes())[1:].encode("ascii") + b"\n"  # py2 str literal with escapes
    array = (
        b"cnumpy.core.multiarray\n_reconstruct\n(cnumpy\nndarray\n(I0\ntS'b'\ntR(I1\n(I%d\nI%d\nt"
        b"cnumpy\ndtype\n(S'u1'\nI0\nI1\ntR(I3\nS'|'\nNNNI-1\nI-1\nI0\ntbI00\n" % data.shape + raw + b"tb"
    )
    label_list = b"(l" + b"".join(b"I%d\na" % v for v in labels)
    return b"(dS'data'\n" + array + b"sS'labels'\n" + label_list + b"sS'batch_label'\nS'batch'\ns."


def test_python2_cifar_pickle(tmp_path):
    rng = np.random.default_rng(5)
    folder = tmp_path / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    data = rng.integers(0, 256, size=(6, 2, 3072), dtype=np.uint8)
    labels = rng.integers(0, 10, size=(6, 2))
    for i, member in enumerate(D.get_dataset_spec("cifar10").train_members + ("test_batch",)):
        (folder / member).write_bytes(py2_batch_pickle(data[i], labels[i]))
    ds = D.load_dataset("cifar10", tmp_path)
    np.testing.assert_array_equal(ds.train_y.numpy(), labels[:5].ravel())
    np.testing.assert_array_equal(unnormalize(ds.test_x, ds.spec).reshape(2, -1), data[5])


def test_cifar_archive(tmp_path):
    written = make_cifar_dataset(tmp_path, "cifar100", per_batch=8, archive=True)
    status = D.dataset_status("cifar100", tmp_path)
    assert status.present and status.source == "archive"
    ds = D.load_dataset("cifar100", tmp_path)
    np.testing.assert_array_equal(ds.test_y.numpy(), written["test"][1])
    np.testing.assert_array_equal(unnormalize(ds.train_x, ds.spec), written["train"][0])


def test_cifar_extracted_folder_preferred_over_archive(tmp_path):
    make_cifar_dataset(tmp_path, "cifar10", per_batch=2, archive=True, seed=1)
    written = make_cifar_dataset(tmp_path, "cifar10", per_batch=3, seed=2)
    assert D.dataset_status("cifar10", tmp_path).source == "folder"
    np.testing.assert_array_equal(D.load_dataset("cifar10", tmp_path).train_y.numpy(), written["train"][1])


# ----------------------------------------------------------------------------------------------------------
# Missing and corrupt files
# ----------------------------------------------------------------------------------------------------------


def test_missing_idx_files_message(tmp_path):
    make_idx_dataset(tmp_path, "fashion_mnist")
    (tmp_path / "fashion_mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    (tmp_path / "fashion_mnist" / "train-images-idx3-ubyte.gz").unlink()
    with pytest.raises(ConfigError) as err:
        D.load_dataset("fashion_mnist", tmp_path)
    msg = str(err.value)
    assert "missing 2 of 4 files" in msg and str(tmp_path / "fashion_mnist") in msg
    assert "train-images-idx3-ubyte.gz" in msg and "t10k-labels-idx1-ubyte.gz" in msg
    assert "train-labels-idx1-ubyte.gz" not in msg.split("; get them")[0]
    assert f"ticketlab data download fashion_mnist --data-dir {tmp_path}" in msg
    assert "8d4fb7e6c68d591d4c3dfef9ec88bf0d" in msg and "fashion-mnist.s3-website" in msg
    assert "\n" not in msg


def test_missing_everything_message(tmp_path):
    for name in D.list_datasets():
        with pytest.raises(ConfigError, match=f"ticketlab data download {name} --data-dir"):
            D.load_dataset(name, tmp_path / "empty")
    with pytest.raises(ConfigError) as err:
        D.load_dataset("cifar10", tmp_path)
    assert "cifar-10-python.tar.gz" in str(err.value) and "cifar-10-batches-py/" in str(err.value)


def test_missing_message_lists_searched_dirs(monkeypatch, tmp_path):
    monkeypatch.setenv(D.DATA_ENV_VAR, str(tmp_path / "env"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as err:
        D.load_dataset("kmnist")
    msg = str(err.value)
    assert str(tmp_path / "env") in msg and "looked in" in msg and D.DATA_ENV_VAR in msg


def test_partial_cifar_folder_message(tmp_path):
    make_cifar_dataset(tmp_path, "cifar10", per_batch=2)
    (tmp_path / "cifar10" / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(ConfigError, match=r"cifar-10-batches-py/ lacks data_batch_3; complete it, or put the archive"):
        D.load_dataset("cifar10", tmp_path)


def corrupt_idx_cases():
    good_images = np.zeros((5, 28, 28), np.uint8)
    good_labels = np.arange(5, dtype=np.uint8)

    def bad_magic(ddir):
        data = bytearray(idx_bytes(good_images))
        data[2] = 0x42
        (ddir / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(bytes(data)))
        return "train-images-idx3-ubyte.gz", "not an IDX file"

    def truncated_data(ddir):
        (ddir / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(good_images)[:-100]))
        return "train-images-idx3-ubyte.gz", "truncated"

    def trailing_bytes(ddir):
        (ddir / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(good_labels) + b"\0"))
        return "t10k-labels-idx1-ubyte.gz", "trailing bytes"

    def truncated_gzip(ddir):
        blob = gzip.compress(idx_bytes(good_images))
        (ddir / "t10k-images-idx3-ubyte.gz").write_bytes(blob[: len(blob) // 2])
        return "t10k-images-idx3-ubyte.gz", "corrupt or truncated gzip"

    def count_mismatch(ddir):
        (ddir / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(good_labels[:4])))
        return "train-labels-idx1-ubyte.gz", "the counts must match"

    def wrong_image_size(ddir):
        (ddir / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros((5, 32, 32), np.uint8))))
        return "t10k-images-idx3-ubyte.gz", r"shape \(N, 28, 28\)"

    def labels_as_images(ddir):
        (ddir / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(good_images)))
        return "train-labels-idx1-ubyte.gz", "expected an IDX label file"

    def label_out_of_range(ddir):
        (ddir / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(good_labels + 6)))
        return "t10k-labels-idx1-ubyte.gz", "out of range for 10 classes"

    def empty_file(ddir):
        (ddir / "train-images-idx3-ubyte.gz").write_bytes(b"")
        return "train-images-idx3-ubyte.gz", "only 0 bytes"

    return [bad_magic, truncated_data, trailing_bytes, truncated_gzip, count_mismatch, wrong_image_size,
            labels_as_images, label_out_of_range, empty_file]  # fmt: skip


@pytest.mark.parametrize("corrupt", corrupt_idx_cases(), ids=lambda f: f.__name__)
def test_corrupt_idx_files(tmp_path, corrupt):
    make_idx_dataset(tmp_path, "mnist", n_train=5, n_test=5)
    ddir = tmp_path / "mnist"
    fname, pattern = corrupt(ddir)
    with pytest.raises(ConfigError, match=pattern) as err:
        D.load_dataset("mnist", tmp_path)
    assert fname in str(err.value)


def corrupt_cifar_cases():
    def truncated_pickle(bdir):
        blob = (bdir / "data_batch_2").read_bytes()
        (bdir / "data_batch_2").write_bytes(blob[: len(blob) // 2])
        return "data_batch_2", "corrupt or truncated pickle"

    def not_a_dict(bdir):
        (bdir / "test_batch").write_bytes(pickle.dumps([1, 2, 3], protocol=2))
        return "test_batch", "expected a dict"

    def no_labels(bdir):
        (bdir / "test_batch").write_bytes(pickle.dumps({"data": np.zeros((2, 3072), np.uint8)}, protocol=2))
        return "test_batch", "no 'labels' entry"

    def label_count(bdir):
        (bdir / "data_batch_1").write_bytes(cifar_batch_blob(np.zeros((3, 3072), np.uint8), [1, 2]))
        return "data_batch_1", "the counts must match"

    def wrong_row_size(bdir):
        (bdir / "data_batch_1").write_bytes(cifar_batch_blob(np.zeros((2, 784), np.uint8), [1, 2]))
        return "data_batch_1", r"shape \(N, 3072\)"

    def label_out_of_range(bdir):
        (bdir / "data_batch_5").write_bytes(cifar_batch_blob(np.zeros((2, 3072), np.uint8), [1, 10]))
        return "data_batch_5", r"labels must be in 0\.\.9"

    return [truncated_pickle, not_a_dict, no_labels, label_count, wrong_row_size, label_out_of_range]


@pytest.mark.parametrize("corrupt", corrupt_cifar_cases(), ids=lambda f: f.__name__)
def test_corrupt_cifar_files(tmp_path, corrupt):
    make_cifar_dataset(tmp_path, "cifar10", per_batch=2)
    fname, pattern = corrupt(tmp_path / "cifar10" / "cifar-10-batches-py")
    with pytest.raises(ConfigError, match=pattern) as err:
        D.load_dataset("cifar10", tmp_path)
    assert str(tmp_path / "cifar10" / "cifar-10-batches-py" / fname) in str(err.value)


def test_corrupt_cifar_archive(tmp_path):
    make_cifar_dataset(tmp_path, "cifar10", per_batch=50, archive=True)
    archive = tmp_path / "cifar10" / "cifar-10-python.tar.gz"
    archive.write_bytes(archive.read_bytes()[:-3000])
    with pytest.raises(ConfigError, match="corrupt or truncated archive") as err:
        D.load_dataset("cifar10", tmp_path)
    assert str(archive) in str(err.value)


def test_cifar_archive_missing_member(tmp_path):
    archive = tmp_path / "cifar100" / "cifar-100-python.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        blob = cifar_batch_blob(np.zeros((2, 3072), np.uint8), [0, 1], "fine_labels")
        info = tarfile.TarInfo("cifar-100-python/train")
        info.size = len(blob)
        tar.addfile(info, io.BytesIO(blob))
    with pytest.raises(ConfigError, match="archive lacks cifar-100-python/test"):
        D.load_dataset("cifar100", tmp_path)


# ----------------------------------------------------------------------------------------------------------
# Restricted unpickler
# ----------------------------------------------------------------------------------------------------------


class _Payload:
    """Pickles as a call of ``func(*args)``, as a malicious pickle would."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _payloads(marker: Path):
    return {
        "os.system": _Payload(os.system, f"touch {shlex.quote(str(marker))}"),
        "builtins.exec": _Payload(builtins.exec, f"open({str(marker)!r}, 'w').close()"),
        "subprocess.call": _Payload(subprocess.call, ["touch", str(marker)]),
        "builtins.open": _Payload(builtins.open, str(marker), "w"),
    }


@pytest.mark.parametrize("kind", ["os.system", "builtins.exec", "subprocess.call", "builtins.open"])
def test_malicious_pickle_is_refused_and_does_not_run(tmp_path, kind):
    marker = tmp_path / "pwned"
    blob = pickle.dumps(_payloads(marker)[kind], protocol=2)
    if kind == "builtins.exec":  # show that the payload is live: the stdlib unpickler runs it
        pickle.loads(blob)
        assert marker.exists()
        marker.unlink()
    with pytest.raises(ConfigError, match="refusing to unpickle") as err:
        D.restricted_loads(blob, "evil.pkl")
    assert "evil.pkl" in str(err.value)
    assert not marker.exists()


def test_malicious_cifar_batch_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    make_cifar_dataset(tmp_path, "cifar10", per_batch=2)
    batch = tmp_path / "cifar10" / "cifar-10-batches-py" / "data_batch_4"
    evil = {"data": _Payload(os.system, f"touch {shlex.quote(str(marker))}"), "labels": [0, 1]}
    batch.write_bytes(pickle.dumps(evil, protocol=2))
    with pytest.raises(ConfigError, match=r"refusing to unpickle '(posix|os)\.system'") as err:
        D.load_dataset("cifar10", tmp_path)
    assert str(batch) in str(err.value) and "possibly malicious" in str(err.value)
    assert not marker.exists()


def test_restricted_unpickler_admits_plain_data_and_arrays():
    obj = {"a": [1, 2.5, "x", b"y", None, True], "arr": np.arange(6, dtype=np.float32).reshape(2, 3),
           "scalar": np.int64(7), "bytes": bytes(range(256))}  # fmt: skip
    for proto in (2, 4, 5):
        out = D.restricted_loads(pickle.dumps(obj, protocol=proto))
        assert out["a"] == obj["a"] and out["scalar"] == 7 and out["bytes"] == obj["bytes"]
        np.testing.assert_array_equal(out["arr"], obj["arr"])


def test_codecs_encode_only_latin1():
    # GLOBAL _codecs encode, then call it with an encoding other than latin-1
    blob = b"\x80\x02c_codecs\nencode\nq\x00X\x01\x00\x00\x00aX\x05\x00\x00\x00utf-8\x86R."
    with pytest.raises(ConfigError, match=r"refusing to unpickle _codecs.encode with encoding 'utf-8'"):
        D.restricted_loads(blob)


# ----------------------------------------------------------------------------------------------------------
# Validation split
# ----------------------------------------------------------------------------------------------------------


def test_validation_split_deterministic_and_disjoint():
    tr, va = D.validation_split(60000, 5000, seed=0)
    tr2, va2 = D.validation_split(60000, 5000, seed=0)
    np.testing.assert_array_equal(tr, tr2)
    np.testing.assert_array_equal(va, va2)
    assert tr.dtype == va.dtype == np.int64
    assert len(tr) == 55000 and len(va) == 5000
    assert not np.intersect1d(tr, va).size
    np.testing.assert_array_equal(np.sort(np.concatenate([tr, va])), np.arange(60000))
    assert np.all(np.diff(tr) > 0) and np.all(np.diff(va) > 0)
    _, va3 = D.validation_split(60000, 5000, seed=1)
    assert not np.array_equal(va, va3)


def test_validation_split_pinned():
    # pinned so a change of numpy's PCG64 permutation (which would change every experiment's split) is noticed
    tr, va = D.validation_split(10, 3, seed=0)
    expected_val = np.sort(np.random.default_rng(0).permutation(10)[:3])
    np.testing.assert_array_equal(va, expected_val)
    np.testing.assert_array_equal(va, [2, 4, 6])
    np.testing.assert_array_equal(tr, [0, 1, 3, 5, 7, 8, 9])
    _, va = D.validation_split(60000, 5000, seed=0)  # the LTH hold-out
    assert va[:5].tolist() == [9, 24, 49, 60, 65] and int(va.sum()) == 149360895


@pytest.mark.parametrize("args", [(10, 10, 0), (10, -1, 0), (0, 0, 0), (10, 2, -1), (10, 2.5, 0), (10, True, 0)])
def test_validation_split_rejects_bad_arguments(args):
    with pytest.raises(ConfigError):
        D.validation_split(*args)


def test_validation_split_empty_holdout():
    tr, va = D.validation_split(5, 0, 3)
    assert len(va) == 0 and tr.tolist() == [0, 1, 2, 3, 4]


# ----------------------------------------------------------------------------------------------------------
# Augmentation
# ----------------------------------------------------------------------------------------------------------


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def test_augment_shapes_and_determinism():
    x = torch.randn(16, 3, 32, 32)
    before = x.clone()
    a = D.augment_cifar(x, _gen(0))
    b = D.augment_cifar(x, _gen(0))
    c = D.augment_cifar(x, _gen(1))
    assert a.shape == x.shape and a.dtype == x.dtype and a.is_contiguous()
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(x, before)


def test_augment_is_a_padded_crop_or_its_mirror():
    x = torch.arange(6 * 2 * 8 * 8, dtype=torch.float32).reshape(6, 2, 8, 8) + 1
    p = 2
    out = D.augment_cifar(x, _gen(3), padding=p, fill=(-1.0, -2.0))
    padded = torch.nn.functional.pad(x, (p, p, p, p))
    padded[:, 0][padded[:, 0] == 0] = -1.0
    padded[:, 1][padded[:, 1] == 0] = -2.0
    seen_flip = set()

    def window(i, dy, dx, mirror):
        crop = padded[i, :, dy : dy + 8, dx : dx + 8]
        return crop.flip(-1) if mirror else crop

    offsets = [(dy, dx, f) for dy in range(2 * p + 1) for dx in range(2 * p + 1) for f in (False, True)]
    for i in range(len(x)):
        matches = [o for o in offsets if torch.equal(out[i], window(i, *o))]
        assert matches, f"image {i} is not a crop of the padded input"
        seen_flip |= {m[2] for m in matches}
    assert seen_flip == {False, True}


def test_augment_identity_without_padding_or_flip():
    x = torch.randn(4, 3, 32, 32)
    assert torch.equal(D.augment_cifar(x, _gen(0), padding=0, flip=False), x)
    flipped = D.augment_cifar(x, _gen(0), padding=0)
    assert all(torch.equal(flipped[i], x[i]) or torch.equal(flipped[i], x[i].flip(-1)) for i in range(4))


def test_augment_rejects_bad_input():
    with pytest.raises(ConfigError, match=r"\(N, C, H, W\)"):
        D.augment_cifar(torch.zeros(3, 32, 32), _gen(0))
    with pytest.raises(ConfigError, match="one value per channel"):
        D.augment_cifar(torch.zeros(2, 3, 8, 8), _gen(0), fill=(0.0, 1.0))
    with pytest.raises(ConfigError, match="padding"):
        D.augment_cifar(torch.zeros(2, 3, 8, 8), _gen(0), padding=-1)


def test_black_fill_is_zero_before_normalising():
    spec = D.get_dataset_spec("cifar10")
    black = torch.tensor(spec.black)
    mean, std = torch.tensor(spec.mean), torch.tensor(spec.std)
    assert torch.allclose(black * std + mean, torch.zeros(3), atol=1e-6)


# ----------------------------------------------------------------------------------------------------------
# Data directory resolution
# ----------------------------------------------------------------------------------------------------------


def test_env_var_takes_precedence(monkeypatch, tmp_path):
    make_idx_dataset(tmp_path / "env", "mnist", n_train=3, n_test=2)
    monkeypatch.setenv(D.DATA_ENV_VAR, str(tmp_path / "env"))
    assert D.data_dir_candidates()[0] == tmp_path / "env"
    assert D.default_data_dir() == tmp_path / "env"
    ds = D.load_dataset("mnist")
    assert len(ds.train_y) == 3 and ds.data_dir == tmp_path / "env"


def test_falls_back_to_repo_data_when_env_dir_lacks_dataset(monkeypatch, tmp_path):
    monkeypatch.setenv(D.DATA_ENV_VAR, str(tmp_path / "env"))
    status = D.dataset_status("mnist")
    assert status.present and status.data_dir.resolve() == REPO_DATA


def test_default_data_dir_without_env(no_env):
    assert D.data_dir_candidates()[0] == REPO_DATA
    assert D.default_data_dir() == REPO_DATA  # exists in the repository


# ----------------------------------------------------------------------------------------------------------
# Download from a loopback server
# ----------------------------------------------------------------------------------------------------------


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    requests: list[str]

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.requests.append(self.path)
        super().do_GET()


@pytest.fixture
def server(tmp_path, monkeypatch):
    """Serve tmp_path/'srv' on 127.0.0.1; yields (base_url, served_dir, request_log)."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("NO_PROXY", "*")
    served = tmp_path / "srv"
    served.mkdir()
    log: list[str] = []
    handler = type("Handler", (_QuietHandler,), {"requests": log})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(served)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", served, log
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def _serve_fashion(tmp_path, served: Path, monkeypatch, urls=None):
    """Generate fashion_mnist files in ``served`` and register a spec whose md5s match them."""
    written = make_idx_dataset(tmp_path / "gen", "fashion_mnist", n_train=30, n_test=10)
    spec = D.get_dataset_spec("fashion_mnist")
    files = []
    for f in spec.files:
        blob = (tmp_path / "gen" / "fashion_mnist" / f.name).read_bytes()
        (served / f.name).write_bytes(blob)
        file_urls = tuple(u + f.name for u in urls) if urls else f.urls
        files.append(dataclasses.replace(f, md5=hashlib.md5(blob).hexdigest(), urls=file_urls))
    monkeypatch.setitem(D._REGISTRY, "fashion_mnist", dataclasses.replace(spec, files=tuple(files)))
    return written


def test_download_good_md5_installs_and_skips_present(server, tmp_path, monkeypatch):
    base, served, log = server
    written = _serve_fashion(tmp_path, served, monkeypatch)
    target = tmp_path / "data"
    paths = D.download("fashion_mnist", target, base_url=base + "/", progress=False)
    assert [p.name for p in paths] == [f.name for f in D.get_dataset_spec("fashion_mnist").files]
    assert sorted(os.listdir(target / "fashion_mnist")) == sorted(p.name for p in paths)
    assert len(log) == 4
    umask = os.umask(0o022)
    os.umask(umask)
    assert all(p.stat().st_mode & 0o777 == 0o666 & ~umask for p in paths)  # not mkstemp's 0600
    ds = D.load_dataset("fashion_mnist", target)
    np.testing.assert_array_equal(ds.train_y.numpy(), written["train"][1])
    # a second run finds every file present with the right md5 and fetches nothing
    D.download("fashion_mnist", target, base_url=base, progress=False)
    assert len(log) == 4


def test_download_uses_spec_urls_and_falls_back(server, tmp_path, monkeypatch, capsys):
    base, served, log = server
    _serve_fashion(tmp_path, served, monkeypatch, urls=(base + "/gone/", base + "/"))
    target = tmp_path / "data"
    D.download("fashion_mnist", target, progress=True)
    assert D.dataset_status("fashion_mnist", target).present
    assert sum(p.startswith("/gone/") for p in log) == 4 and len(log) == 8
    err = capsys.readouterr().err
    assert "404" in err and "downloading" in err


def test_download_replaces_file_with_wrong_md5(server, tmp_path, monkeypatch):
    base, served, log = server
    _serve_fashion(tmp_path, served, monkeypatch)
    target = tmp_path / "data" / "fashion_mnist"
    target.mkdir(parents=True)
    (target / "train-labels-idx1-ubyte.gz").write_bytes(b"stale")
    D.download("fashion_mnist", tmp_path / "data", base_url=base, progress=False)
    assert (target / "train-labels-idx1-ubyte.gz").read_bytes() == (served / "train-labels-idx1-ubyte.gz").read_bytes()


def test_download_bad_md5_raises_and_leaves_nothing(server, tmp_path):
    base, served, log = server
    make_idx_dataset(served.parent / "gen", "kmnist", n_train=3, n_test=2)
    for f in (served.parent / "gen" / "kmnist").iterdir():
        (served / f.name).write_bytes(f.read_bytes())
    target = tmp_path / "data"
    with pytest.raises(ConfigError, match="checksum mismatch") as err:
        D.download("kmnist", target, base_url=base, progress=False)
    msg = str(err.value)
    assert "train-images-idx3-ubyte.gz" in msg and "bdb82020997e1d708af4cf47b453dcf7" in msg
    assert os.listdir(target / "kmnist") == []
    assert len(log) == 1


def test_download_http_error(server, tmp_path):
    base, served, log = server
    with pytest.raises(ConfigError, match="404") as err:
        D.download("cifar10", tmp_path / "data", base_url=base, progress=False)
    assert "cifar-10-python.tar.gz" in str(err.value)
    assert os.listdir(tmp_path / "data" / "cifar10") == []


def test_download_rejects_odd_base_url(tmp_path):
    with pytest.raises(ConfigError, match="http, https or file URL"):
        D.download("mnist", tmp_path, base_url="ftp://example.org/mnist", progress=False)


# ----------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------


@pytest.fixture
def cli():
    """``ticketlab.cli``, whose ``COMMANDS`` registry holds the ``data`` command."""
    import ticketlab.cli as cli

    return cli


@pytest.fixture
def run_data_cli(cli):
    """Parse ``argv`` with the real top-level parser and call the command's function directly."""

    def run(argv):
        args = cli.build_parser().parse_args(argv)
        return args.func(args)

    return run


def test_cli_list(run_data_cli, tmp_path, capsys):
    make_idx_dataset(tmp_path, "kmnist", n_train=2, n_test=2)
    make_cifar_dataset(tmp_path, "cifar100", per_batch=2, archive=True)
    (tmp_path / "cifar10" / "cifar-10-batches-py").mkdir(parents=True)
    assert run_data_cli(["data", "list", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert "input (C,H,W)" in lines["dataset"]
    assert "1x28x28" in lines["kmnist"] and " present " in lines["kmnist"]
    assert "present (archive)" in lines["cifar100"] and "3x32x32" in lines["cifar100"]
    assert "missing" in lines["mnist"] and "incomplete" in lines["cifar10"]
    assert "ticketlab data download NAME" in out
    assert run_data_cli(["data", "list", "--data-dir", str(tmp_path), "--json"]) == 0
    records = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert list(records) == D.list_datasets()
    assert records["kmnist"]["present"] and records["kmnist"]["input_shape"] == [1, 28, 28]
    assert records["cifar10"]["missing"][0] == "cifar-10-batches-py/data_batch_1"


def test_cli_download(run_data_cli, server, tmp_path, monkeypatch, capsys):
    base, served, log = server
    _serve_fashion(tmp_path, served, monkeypatch)
    rc = run_data_cli(["data", "download", "fashion-mnist", "--data-dir", str(tmp_path / "d"), "--base-url", base,
                       "--quiet"])  # fmt: skip
    assert rc == 0
    captured = capsys.readouterr()
    assert "fashion_mnist: 4 file(s) with verified md5" in captured.out and captured.err == ""
    assert D.dataset_status("fashion_mnist", tmp_path / "d").present


def test_cli_help_has_examples(run_data_cli, capsys):
    for argv in (["data", "--help"], ["data", "download", "--help"], ["data", "list", "--help"]):
        with pytest.raises(SystemExit) as exc:
            run_data_cli(argv)
        assert exc.value.code == 0
        out = capsys.readouterr().out
        assert "examples:\n  ticketlab data" in out
        examples = out.split("examples:\n")[1].splitlines()
        assert examples and all(line.startswith("  ticketlab data ") for line in examples if line)


def test_cli_without_action_prints_help(run_data_cli, capsys):
    assert run_data_cli(["data"]) == 2
    assert "usage: ticketlab data" in capsys.readouterr().err


def test_cli_errors_exit_2_with_one_line(cli, tmp_path, capsys):
    assert cli.main(["data", "download", "lenet", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ticketlab data: error: unknown dataset 'lenet'; choose one of: mnist")
    assert err.count("\n") == 1
    assert cli.main(["data", "download", "mnist", "--data-dir", str(tmp_path), "--base-url", "ftp://x"]) == 2
    assert "http, https or file URL" in capsys.readouterr().err
