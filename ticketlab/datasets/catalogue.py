"""The catalogue: the registered datasets (MNIST, Fashion-MNIST, Kuzushiji-MNIST, CIFAR-10, CIFAR-100), with
their published files, checksums, normalisation constants, class names, citations and licences."""

from __future__ import annotations

from typing import Sequence

from ticketlab.datasets import cifar as _cifar, idx as _idx  # noqa: F401  (register the formats the specs name)
from ticketlab.datasets.registry import DatasetSpec, RemoteFile, register_dataset

_IDX_TRAIN = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")
_IDX_TEST = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def _idx_files(bases: Sequence[str], md5s: Sequence[str]) -> tuple[RemoteFile, ...]:
    names = _IDX_TRAIN + _IDX_TEST
    return tuple(RemoteFile(n, m, tuple(b + n for b in bases)) for n, m in zip(names, md5s))


@register_dataset
def _mnist() -> DatasetSpec:
    """MNIST handwritten digits (LeCun, Cortes & Burges); ships with the repository."""
    return DatasetSpec(
        name="mnist",
        title="MNIST handwritten digits",
        input_shape=(1, 28, 28),
        num_classes=10,
        class_names=tuple(str(d) for d in range(10)),
        files=_idx_files(
            ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
            (
                "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                "d53e105ee54ea40749a09fcbcd1e9432",
                "9fb629c4189551a2d022fa330f9573f3",
                "ec29112dd5afa0611ce80d1b7f02629c",
            ),
        ),
        mean=(0.1307,),
        std=(0.3081,),
        format="idx",
        train_members=_IDX_TRAIN,
        test_members=_IDX_TEST,
        train_size=60000,
        test_size=10000,
        train_class_sizes=(5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949),
        homepage="http://yann.lecun.com/exdb/mnist/",
        citation="Y. LeCun, L. Bottou, Y. Bengio, P. Haffner: Gradient-based learning applied to document "
        "recognition. Proc. IEEE 86(11), 1998.",
        licence="no licence stated by the publishers; some redistributors label it CC BY-SA 3.0",
    )


@register_dataset
def _fashion_mnist() -> DatasetSpec:
    """Fashion-MNIST (Zalando Research): 28x28 grey-scale clothing images, a drop-in for MNIST."""
    return DatasetSpec(
        name="fashion_mnist",
        title="Fashion-MNIST",
        input_shape=(1, 28, 28),
        num_classes=10,
        class_names=(
            "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
            "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
        ),  # fmt: skip
        files=_idx_files(
            ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
            (
                "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                "25c81989df183df01b3e8a0aad5dffbe",
                "bef4ecab320f06d8554ea6380940ec79",
                "bb300cfdad3c16e7a12a480ee83cd310",
            ),
        ),
        mean=(0.2860,),
        std=(0.3530,),
        format="idx",
        train_members=_IDX_TRAIN,
        test_members=_IDX_TEST,
        train_size=60000,
        test_size=10000,
        homepage="https://github.com/zalandoresearch/fashion-mnist",
        citation="H. Xiao, K. Rasul, R. Vollgraf: Fashion-MNIST: a novel image dataset for benchmarking machine "
        "learning algorithms. arXiv:1708.07747, 2017.",
        licence="MIT",
    )


@register_dataset
def _kmnist() -> DatasetSpec:
    """Kuzushiji-MNIST (ROIS-DS CODH): 28x28 images of ten cursive Japanese (hiragana) characters."""
    return DatasetSpec(
        name="kmnist",
        title="Kuzushiji-MNIST",
        input_shape=(1, 28, 28),
        num_classes=10,
        class_names=("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
        files=_idx_files(
            ("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
            (
                "bdb82020997e1d708af4cf47b453dcf7",
                "e144d726b3acfaa3e44228e80efcd344",
                "5c965bf0a639b31b8f53240b1b52f4d7",
                "7320c461ea6c1c855c0b718fb2a4b134",
            ),
        ),
        mean=(0.1918,),
        std=(0.3483,),
        format="idx",
        train_members=_IDX_TRAIN,
        test_members=_IDX_TEST,
        train_size=60000,
        test_size=10000,
        homepage="https://github.com/rois-codh/kmnist",
        citation="T. Clanuwat, M. Bober-Irizar, A. Kitamoto, A. Lamb, K. Yamamoto, D. Ha: Deep learning for "
        "classical Japanese literature. arXiv:1812.01718, 2018.",
        licence="CC BY-SA 4.0",
    )


_CIFAR_BASE = "https://www.cs.toronto.edu/~kriz/"
_CIFAR_CITATION = (
    "A. Krizhevsky: Learning multiple layers of features from tiny images. Technical report, University of "
    "Toronto, 2009."
)


@register_dataset
def _cifar10() -> DatasetSpec:
    """CIFAR-10 (Krizhevsky, Nair & Hinton): 32x32 colour images in 10 classes, python version."""
    return DatasetSpec(
        name="cifar10",
        title="CIFAR-10",
        input_shape=(3, 32, 32),
        num_classes=10,
        class_names=(
            "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
        ),  # fmt: skip
        files=(
            RemoteFile(
                "cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a", (_CIFAR_BASE + "cifar-10-python.tar.gz",)
            ),
        ),
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2470, 0.2435, 0.2616),
        format="cifar",
        train_members=tuple(f"data_batch_{i}" for i in range(1, 6)),
        test_members=("test_batch",),
        train_size=50000,
        test_size=10000,
        folder="cifar-10-batches-py",
        label_key="labels",
        homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
        citation=_CIFAR_CITATION,
        licence="no licence stated by the publishers; cite the technical report",
    )


_CIFAR100_CLASSES = tuple(
    """apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel can
    castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur dolphin
    elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster
    man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck
    pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk
    skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger
    tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm""".split()
)


@register_dataset
def _cifar100() -> DatasetSpec:
    """CIFAR-100 (Krizhevsky, Nair & Hinton): 32x32 colour images in 100 fine classes, python version."""
    return DatasetSpec(
        name="cifar100",
        title="CIFAR-100",
        input_shape=(3, 32, 32),
        num_classes=100,
        class_names=_CIFAR100_CLASSES,
        files=(
            RemoteFile(
                "cifar-100-python.tar.gz",
                "eb9058c3a382ffc7106e4002c42a8d85",
                (_CIFAR_BASE + "cifar-100-python.tar.gz",),
            ),
        ),
        mean=(0.5071, 0.4865, 0.4409),
        std=(0.2673, 0.2564, 0.2762),
        format="cifar",
        train_members=("train",),
        test_members=("test",),
        train_size=50000,
        test_size=10000,
        folder="cifar-100-python",
        label_key="fine_labels",
        homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
        citation=_CIFAR_CITATION,
        licence="no licence stated by the publishers; cite the technical report",
    )
