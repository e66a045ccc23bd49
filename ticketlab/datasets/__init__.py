"""Image-classification datasets: registry, raw-format readers, validation hold-out, augmentation, download.

Every dataset is read from its *published* raw files, without torchvision:

- MNIST, Fashion-MNIST and Kuzushiji-MNIST from IDX files (gzip-compressed or not; see :func:`read_idx`);
- CIFAR-10 and CIFAR-100 from the "python version" pickles, either extracted or straight from the
  ``.tar.gz`` archive, through a restricted unpickler that admits only what numpy arrays need
  (see :class:`RestrictedUnpickler`).

Files live in ``<data_dir>/<dataset name>/``; see :func:`data_dir_candidates` for how ``data_dir`` is
found when it is not given. :func:`load_dataset` returns in-memory tensors: images ``float32`` of shape
``(N, C, H, W)``, pixels scaled from 0..255 to [0, 1] and then standardised per channel with the dataset's
``mean``/``std`` (so a value is in units of that channel's standard deviation); labels ``int64`` class indices.

The registered datasets are the entries of :data:`DATASETS` (``ticketlab data list`` shows them).

Modules
-------
- :mod:`~ticketlab.datasets.registry`: :class:`DatasetSpec`, the :data:`DATASETS` and :data:`FORMATS` registries;
- :mod:`~ticketlab.datasets.catalogue`: the registered datasets;
- :mod:`~ticketlab.datasets.location`: the data directory and :func:`dataset_status`;
- :mod:`~ticketlab.datasets.idx`: the IDX reader (MNIST-style files);
- :mod:`~ticketlab.datasets.cifar`: the CIFAR reader and its restricted unpickler;
- :mod:`~ticketlab.datasets.loading`: :func:`load_dataset` and :class:`Dataset`;
- :mod:`~ticketlab.datasets.splits`: the validation hold-out;
- :mod:`~ticketlab.datasets.subsets`: class-subset tasks (``--classes 0-4``), labels renumbered;
- :mod:`~ticketlab.datasets.augment`: batch augmentation;
- :mod:`~ticketlab.datasets.fetch`: :func:`download`, checked against the published md5.
"""

from ticketlab.datasets.registry import (
    DATASETS,
    FORMATS,
    DatasetSpec,
    RawFormat,
    RemoteFile,
    get_dataset_spec,
    list_datasets,
    register_dataset,
)
from ticketlab.datasets.idx import read_idx
from ticketlab.datasets.cifar import RestrictedUnpickler, restricted_loads
from ticketlab.datasets import catalogue as _catalogue  # noqa: F401  (registers the datasets)
from ticketlab.datasets.location import (
    DATA_ENV_VAR,
    DatasetStatus,
    data_dir_candidates,
    dataset_status,
    dataset_statuses,
    default_data_dir,
)
from ticketlab.datasets.splits import LTH_VALIDATION_SIZE, validation_split
from ticketlab.datasets.subsets import check_classes, classes_text, parse_classes, select_classes, task_name
from ticketlab.datasets.loading import Dataset, load_dataset
from ticketlab.datasets.augment import augment_cifar
from ticketlab.datasets.fetch import download, file_md5

#: The dataset registry's table (name -> spec) as a plain dict; tests swap an entry with ``monkeypatch.setitem``.
_REGISTRY = DATASETS._entries

__all__ = [
    "DATASETS",
    "DATA_ENV_VAR",
    "Dataset",
    "DatasetSpec",
    "DatasetStatus",
    "FORMATS",
    "LTH_VALIDATION_SIZE",
    "RawFormat",
    "RemoteFile",
    "RestrictedUnpickler",
    "augment_cifar",
    "check_classes",
    "classes_text",
    "data_dir_candidates",
    "dataset_status",
    "dataset_statuses",
    "default_data_dir",
    "download",
    "file_md5",
    "get_dataset_spec",
    "list_datasets",
    "load_dataset",
    "parse_classes",
    "read_idx",
    "register_dataset",
    "restricted_loads",
    "select_classes",
    "task_name",
    "validation_split",
]
