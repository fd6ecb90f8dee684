"""Data sets of the course: Fashion-MNIST through torchvision, and an offline stand-in.

Fashion-MNIST (Xiao, Rasul & Vollgraf, 2017) is read by ``torchvision.datasets.FashionMNIST``
from ``$DGM_DATA/FashionMNIST/raw/`` (torchvision's own layout). ``$DGM_DATA`` defaults to a
per-user cache folder; missing files are downloaded when the internet is there. The four files
are checked before torchvision reads them, so a truncated or corrupt file gives a message that
names it instead of a NumPy traceback.

``digits`` is scikit-learn's bundled 8x8 handwritten digits, upsampled to 28x28: it needs no
download at all. It must be asked for by name; it is never used in place of Fashion-MNIST.

Every loader returns a ``TensorDataset`` of images ``(N, 1, 28, 28)`` float32 and labels ``(N,)``
int64, scaled to [0, 1] or [-1, 1] as the caller asks.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from dgm.config import check_choice
from dgm.paths import data_root  # noqa: F401 - part of this module's interface

DatasetName = Literal["fashion_mnist", "digits"]
Split = Literal["train", "test"]
Scale = Literal["01", "pm1"]

FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
DIGIT_CLASSES = tuple(str(d) for d in range(10))

#: The four files torchvision reads, with the IDX magic number each must start with.
FASHION_FILES = {
    "train-images-idx3-ubyte": 0x0803,
    "train-labels-idx1-ubyte": 0x0801,
    "t10k-images-idx3-ubyte": 0x0803,
    "t10k-labels-idx1-ubyte": 0x0801,
}


class DataError(RuntimeError):
    """A data set is missing, cannot be downloaded, or is corrupt. The message says what to do."""


def check_idx_file(path: Path, magic: int) -> int:
    """Check that ``path`` is a complete IDX file of unsigned bytes; return its item count.

    An IDX file is a 4-byte big-endian magic number (0x08 = ubyte, then the number of
    dimensions), one 4-byte size per dimension, then the data.
    """
    size = path.stat().st_size
    with path.open("rb") as f:
        header = f.read(4)
        if len(header) < 4:
            raise DataError(f"{path} is empty or truncated ({size} bytes); delete it and load again")
        (found,) = struct.unpack(">I", header)
        if found != magic:
            raise DataError(
                f"{path} is not a Fashion-MNIST IDX file (magic number {found:#010x}, expected "
                f"{magic:#010x}); delete it and load again to download a fresh copy"
            )
        ndim = magic & 0xFF
        dims_raw = f.read(4 * ndim)
    if len(dims_raw) < 4 * ndim:
        raise DataError(f"{path} is truncated inside its header; delete it and load again")
    dims = struct.unpack(f">{ndim}I", dims_raw)
    expected = 4 + 4 * ndim + int(np.prod(dims))
    if size != expected:
        raise DataError(
            f"{path} has {size} bytes but its header promises {expected} (shape {dims}): the file "
            "is truncated or corrupt; delete it and load again"
        )
    return dims[0]


def _fashion_raw_dir(root: Path) -> Path:
    return root / "FashionMNIST" / "raw"


def _missing_error(root: Path, missing: list[str], reason: str) -> DataError:
    files = "\n".join(f"  {_fashion_raw_dir(root) / name}" for name in FASHION_FILES)
    return DataError(
        f"Fashion-MNIST is not in {root} ({', '.join(missing)} missing) and could not be "
        f"downloaded: {reason}.\nSet DGM_DATA to a folder that holds these four files "
        f"(torchvision's layout, FashionMNIST/raw/ under DGM_DATA):\n{files}\n"
        "or run once with internet access so they are downloaded there."
    )


def _load_fashion(root: Path, train: bool, download: bool):
    from torchvision.datasets import FashionMNIST

    raw = _fashion_raw_dir(root)
    missing = [name for name in FASHION_FILES if not (raw / name).is_file()]
    if missing:
        if not download:
            raise _missing_error(root, missing, "downloading was switched off (download=False)")
        try:
            FashionMNIST(root=str(root), train=train, download=True)
        except Exception as exc:  # torchvision raises RuntimeError/URLError/OSError offline
            raise _missing_error(root, missing, f"{type(exc).__name__}: {exc}".strip()) from exc
    counts = {name: check_idx_file(raw / name, magic) for name, magic in FASHION_FILES.items()}
    for stem in ("train", "t10k"):
        n_img, n_lab = counts[f"{stem}-images-idx3-ubyte"], counts[f"{stem}-labels-idx1-ubyte"]
        if n_img != n_lab:
            raise DataError(
                f"{raw}: {stem} has {n_img} images but {n_lab} labels; the files do not belong "
                "together. Delete them and load again."
            )
    ds = FashionMNIST(root=str(root), train=train, download=False)
    return ds.data.unsqueeze(1), ds.targets.long()  # (N, 1, 28, 28) uint8, (N,)


def _load_digits(train: bool, test_fraction: float = 0.2):
    """scikit-learn's 1,797 bundled 8x8 digits (values 0-16), bilinearly resized to 28x28."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.from_numpy(bunch.images).float().unsqueeze(1) / 16.0  # (N, 1, 8, 8)
    x = torch.nn.functional.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False)
    x = (x.clamp(0, 1) * 255).round().to(torch.uint8)
    y = torch.from_numpy(bunch.target).long()
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(1234))
    n_test = int(round(test_fraction * len(y)))
    idx = order[n_test:] if train else order[:n_test]
    return x[idx], y[idx]


def load_dataset(
    name: DatasetName = "fashion_mnist",
    split: Split = "train",
    scale: Scale = "01",
    subset: int | None = None,
    seed: int = 0,
    download: bool = True,
    root: str | Path | None = None,
) -> TensorDataset:
    """Load a data set as a ``TensorDataset(images (N, 1, 28, 28) float32, labels (N,) int64)``.

    ``scale``: ``"01"`` maps pixels to [0, 1] (Bernoulli decoders, flows), ``"pm1"`` to
    [-1, 1] (diffusion). ``subset``: keep this many images, the same ones for the same
    ``seed`` on every machine. ``root`` overrides :func:`data_root`.
    """
    check_choice(name, get_args(DatasetName), "data set")
    check_choice(split, get_args(Split), "split")
    check_choice(scale, get_args(Scale), "scale")
    if name == "fashion_mnist":
        x, y = _load_fashion(Path(root) if root else data_root(), split == "train", download)
    else:
        x, y = _load_digits(split == "train")
    if subset is not None:
        if subset <= 0:
            raise ValueError(f"subset must be a positive number of images, got {subset}")
        if subset < len(y):
            idx = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))[:subset]
            x, y = x[idx.sort().values], y[idx.sort().values]
    images = x.float() / 255.0
    if scale == "pm1":
        images = images * 2 - 1
    return TensorDataset(images, y)


def to_unit_range(images: torch.Tensor, scale: str = "auto") -> torch.Tensor:
    """Images in [0, 1] or [-1, 1] as float32 in [0, 1], clipped.

    ``scale="auto"`` reads them as [-1, 1] data when their minimum is below -0.5 (a [0, 1] model
    that overshoots slightly below 0 stays [0, 1]); [-1, 1] data is mapped by (x + 1) / 2. The
    plots and the evaluation harness both use this one rule.
    """
    check_choice(scale, ("auto",) + get_args(Scale), "scale")
    x = images.detach().float().cpu()
    if scale == "pm1" or (scale == "auto" and x.numel() and x.min().item() < -0.5):
        x = (x + 1) / 2
    return x.clamp(0, 1)


def class_names(name: DatasetName = "fashion_mnist") -> tuple[str, ...]:
    """Human-readable label of each class index."""
    check_choice(name, get_args(DatasetName), "data set")
    return FASHION_CLASSES if name == "fashion_mnist" else DIGIT_CLASSES


def make_loader(
    dataset: TensorDataset, batch_size: int = 128, shuffle: bool = True, seed: int = 0,
    drop_last: bool = False,
) -> DataLoader:
    """A ``DataLoader`` whose shuffling order depends only on ``seed``."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    gen = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=gen,
                      drop_last=drop_last)
