"""Data loading (dgm/data.py): the real torchvision path on $DGM_DATA, and its error messages."""

import shutil
from pathlib import Path

import pytest
import torch

from dgm.data import FASHION_FILES, DataError, class_names, data_root, load_dataset, make_loader


@pytest.fixture(scope="module")
def real_root() -> Path:
    root = data_root()
    return root


def test_fashion_mnist_loads_through_torchvision_with_shapes_and_ranges(real_root):
    ds = load_dataset("fashion_mnist", split="train")
    x, y = ds.tensors
    assert x.shape[1:] == (1, 28, 28) and x.dtype == torch.float32
    assert y.dtype == torch.int64 and len(x) == len(y) > 0
    assert 0.0 <= x.min() and x.max() <= 1.0 and x.max() > 0.9
    assert set(y.unique().tolist()) == set(range(10))


def test_test_split_is_disjoint_from_train_split(real_root):
    train = load_dataset(split="train").tensors[0].flatten(1)
    test = load_dataset(split="test").tensors[0].flatten(1)
    # no held-out image is an exact copy of a training image
    train_keys = {tuple(row) for row in (train[:, ::7] * 255).round().int().tolist()}
    test_keys = [tuple(row) for row in (test[:, ::7] * 255).round().int().tolist()]
    assert sum(k in train_keys for k in test_keys) == 0


def test_pm1_scaling_is_the_01_data_mapped_affinely():
    x01 = load_dataset(split="test", scale="01").tensors[0]
    xpm = load_dataset(split="test", scale="pm1").tensors[0]
    assert torch.allclose(xpm, 2 * x01 - 1)
    assert xpm.min() == -1 and xpm.max() == 1


def test_subset_is_deterministic_and_seed_dependent():
    a = load_dataset(split="train", subset=50, seed=3).tensors[1]
    b = load_dataset(split="train", subset=50, seed=3).tensors[1]
    c = load_dataset(split="train", subset=50, seed=4).tensors[0]
    assert len(a) == 50 and torch.equal(a, b)
    assert not torch.equal(load_dataset(split="train", subset=50, seed=3).tensors[0], c)


def test_bad_options_raise_value_errors_naming_the_choices():
    with pytest.raises(ValueError, match="fashion_mnist, digits"):
        load_dataset("cifar10")
    with pytest.raises(ValueError, match="01, pm1"):
        load_dataset(scale="0-255")
    with pytest.raises(ValueError, match="train, test"):
        load_dataset(split="valid")
    with pytest.raises(ValueError, match="positive"):
        load_dataset(subset=0)


def _copy_root(tmp_path: Path) -> Path:
    dst = tmp_path / "data"
    shutil.copytree(data_root() / "FashionMNIST", dst / "FashionMNIST")
    return dst


def test_missing_files_without_download_name_dgm_data_and_all_four_files(tmp_path):
    with pytest.raises(DataError) as info:
        load_dataset(root=tmp_path, download=False)
    message = str(info.value)
    assert "DGM_DATA" in message
    for name in FASHION_FILES:
        assert name in message


def test_missing_files_offline_try_to_download_then_explain(tmp_path, monkeypatch):
    # This machine has no internet: torchvision's real download fails, and the error says what to do.
    monkeypatch.setenv("DGM_DATA", str(tmp_path))
    with pytest.raises(DataError, match="could not be downloaded") as info:
        load_dataset()
    assert "DGM_DATA" in str(info.value)


def test_truncated_file_gives_a_clear_error_not_a_numpy_traceback(tmp_path):
    root = _copy_root(tmp_path)
    path = root / "FashionMNIST" / "raw" / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(DataError, match="truncated or corrupt") as info:
        load_dataset(root=root, split="test")
    assert "t10k-images-idx3-ubyte" in str(info.value)


def test_wrong_magic_number_is_reported_as_not_an_idx_file(tmp_path):
    root = _copy_root(tmp_path)
    path = root / "FashionMNIST" / "raw" / "train-labels-idx1-ubyte"
    data = bytearray(path.read_bytes())
    data[2] = 0x42
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="not a Fashion-MNIST IDX file"):
        load_dataset(root=root)


def test_images_and_labels_from_different_splits_are_rejected(tmp_path):
    root = _copy_root(tmp_path)
    raw = root / "FashionMNIST" / "raw"
    shutil.copy(raw / "t10k-labels-idx1-ubyte", raw / "train-labels-idx1-ubyte")
    with pytest.raises(DataError, match="do not belong together"):
        load_dataset(root=root)


def test_digits_is_offline_28x28_and_only_used_when_asked():
    ds = load_dataset("digits", split="train")
    x, y = ds.tensors
    assert x.shape[1:] == (1, 28, 28) and set(y.unique().tolist()) == set(range(10))
    assert class_names("digits")[3] == "3"
    assert class_names("fashion_mnist")[9] == "Ankle boot"


def test_loader_order_depends_only_on_the_seed():
    ds = load_dataset(split="test", subset=64)
    first = [y.tolist() for _, y in make_loader(ds, batch_size=16, seed=5)]
    again = [y.tolist() for _, y in make_loader(ds, batch_size=16, seed=5)]
    other = [y.tolist() for _, y in make_loader(ds, batch_size=16, seed=6)]
    assert first == again and first != other
