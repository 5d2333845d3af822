import gzip

import numpy as np
import pytest
import torch

from ncap.data.folders import load_image_folder
from ncap.data.idx import fashion_mnist_dir, read_idx
from ncap.data.registry import load_dataset


def test_read_idx_roundtrip(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    header = bytes([0, 0, 0x08, 3]) + b"".join(int(n).to_bytes(4, "big") for n in arr.shape)
    (tmp_path / "a-idx3-ubyte").write_bytes(header + arr.tobytes())
    with gzip.open(tmp_path / "a-idx3-ubyte.gz", "wb") as fh:
        fh.write(header + arr.tobytes())
    np.testing.assert_array_equal(read_idx(tmp_path / "a-idx3-ubyte"), arr)
    np.testing.assert_array_equal(read_idx(tmp_path / "a-idx3-ubyte.gz"), arr)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "bad")


def test_digits_split_is_seeded_and_disjoint():
    a = load_dataset("digits", seed=0)
    b = load_dataset("digits", seed=0)
    c = load_dataset("digits", seed=1)
    assert a.input_shape == (1, 28, 28) and a.num_classes == 10
    assert len(a.y_train) + len(a.y_val) == 1797
    assert torch.equal(a.x_val, b.x_val) and not torch.equal(a.x_val, c.x_val)
    train_rows = {tuple(r) for r in a.x_train.flatten(1)[:, ::7].tolist()}
    assert not any(tuple(r) in train_rows for r in a.x_val.flatten(1)[:, ::7].tolist())


@pytest.mark.skipif(
    fashion_mnist_dir() is None, reason="Fashion-MNIST (Debian package) not installed"
)
def test_fashion_mnist_tasks():
    target = load_dataset("fashion-mnist-5-9", n_train=500, n_val=200)
    assert target.num_classes == 5 and target.classes[0] == "sandal"
    assert len(target.y_train) == 500 and len(target.y_val) == 200 and len(target.y_test) == 5000
    assert set(target.y_train.tolist()) == set(range(5))
    low = load_dataset("fashion-mnist-5-9-500")
    assert len(low.y_train) == 500
    source = load_dataset("fashion-mnist-0-4", n_train=100, n_val=50)
    assert source.classes == ("t-shirt/top", "trouser", "pullover", "dress", "coat")


def test_missing_fashion_mnist_says_what_to_install(monkeypatch, tmp_path):
    import ncap.data.idx

    monkeypatch.setattr(ncap.data.idx, "DEBIAN_FASHION_MNIST", tmp_path / "none")
    monkeypatch.delenv("NCAP_FASHION_MNIST_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist-5-9")


def _write_images(root, classes, n, size=(12, 10)):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in classes:
        (root / cls).mkdir(parents=True)
        for k in range(n):
            Image.fromarray(rng.integers(0, 255, size=size, dtype=np.uint8)).save(
                root / cls / f"{k}.png"
            )


def test_image_folder_with_and_without_splits(tmp_path):
    _write_images(tmp_path / "flat", ["cat", "dog", "emu"], 5)
    flat = load_image_folder(tmp_path / "flat", val_fraction=0.2, image_size=16)
    assert flat.classes == ("cat", "dog", "emu") and flat.num_classes == 3
    assert flat.input_shape == (1, 16, 16)
    assert len(flat.y_train) == 12 and len(flat.y_val) == 3
    _write_images(tmp_path / "split" / "train", ["a", "b"], 4)
    _write_images(tmp_path / "split" / "val", ["a", "b"], 2)
    split = load_dataset(str(tmp_path / "split"))
    assert len(split.y_train) == 8 and len(split.y_val) == 4
    rgb = load_image_folder(tmp_path / "flat", channels=3)
    assert rgb.input_shape == (3, 12, 10) and rgb.x_train.dtype == torch.uint8  # common size kept


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_image_folder(tmp_path / "missing")
    (tmp_path / "one" / "only").mkdir(parents=True)
    with pytest.raises(ValueError, match="at least 2"):
        load_image_folder(tmp_path / "one")
    (tmp_path / "one" / "second").mkdir()
    with pytest.raises(ValueError, match="no images found"):
        load_image_folder(tmp_path / "one")


# -- issue 5: arrays, torchvision layouts, CUB, encodings -------------------------------------------
def _write_idx(path, arr):
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in arr.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + arr.astype(np.uint8).tobytes())


def test_dataset_from_arrays_layouts_and_split():
    from ncap.data.dataset import default_n_val
    from ncap.data.folders import dataset_from_arrays

    rng = np.random.default_rng(0)
    nhwc = rng.integers(0, 256, size=(50, 6, 7, 3), dtype=np.uint8)
    y = np.arange(50) % 5
    d = dataset_from_arrays(nhwc, y, n_val=10, seed=3)
    assert d.input_shape == (3, 6, 7) and d.x_train.dtype == torch.uint8
    assert d.mean == (0.0,) * 3 and d.std == (1 / 255,) * 3
    assert len(d.y_train) == 40 and len(d.y_val) == 10 and d.num_classes == 5
    # the split is the seeded permutation, recorded with a digest of the held-out indices
    again = dataset_from_arrays(nhwc, y, n_val=10, seed=3)
    other = dataset_from_arrays(nhwc, y, n_val=10, seed=4)
    assert d.info["val_indices_sha256"] == again.info["val_indices_sha256"]
    assert d.info["val_indices_sha256"] != other.info["val_indices_sha256"]
    assert d.summary()["split_seed"] == 3 and d.summary()["storage"]["dtype"] == "uint8"
    # the two splits hold exactly the input images, in NCHW
    stored = torch.cat([d.x_train, d.x_val]).permute(0, 2, 3, 1).numpy()
    assert sorted(a.tobytes() for a in stored) == sorted(a.tobytes() for a in nhwc)
    grey = dataset_from_arrays(rng.random((30, 8, 8)).astype(np.float32), np.arange(30) % 2)
    assert grey.input_shape == (1, 8, 8) and grey.std == (1.0,)
    assert len(grey.y_val) == default_n_val(30) == 9
    explicit = dataset_from_arrays(
        nhwc[:40], y[:40], x_val=nhwc[40:], y_val=y[40:], x_test=nhwc[:5], y_test=y[:5]
    )
    assert len(explicit.y_val) == 10 and len(explicit.y_test) == 5
    assert default_n_val(50_000) == 15_000


@pytest.mark.parametrize(
    "x, y, message",
    [
        (np.zeros((4, 2, 5, 5), dtype=np.uint8), np.zeros(4), "C = 1 or 3"),
        (np.full((4, 5, 5), 2.0, dtype=np.float32), np.zeros(4), r"outside \[0, 1\]"),
        (np.zeros((4, 5, 5), dtype=np.int32), np.zeros(4), "uint8 .* or float"),
        (np.zeros((4, 5, 5), dtype=np.uint8), np.zeros(3), "4 images but y_train 3"),
        (np.zeros((4, 5, 5), dtype=np.uint8), np.arange(4) % 2, "cannot hold out 4 of 4"),
    ],
)
def test_dataset_from_arrays_errors(x, y, message):
    from ncap.data.folders import dataset_from_arrays

    with pytest.raises(ValueError, match=message):
        dataset_from_arrays(x, y, n_val=4 if "hold out" in message else 1)


def test_mnist_in_torchvision_layout_is_read_offline(tmp_path):
    rng = np.random.default_rng(0)
    raw = tmp_path / "MNIST" / "raw"
    _write_idx(raw / "train-images-idx3-ubyte", rng.integers(0, 256, (60, 28, 28)))
    _write_idx(raw / "train-labels-idx1-ubyte", np.arange(60) % 10)
    _write_idx(raw / "t10k-images-idx3-ubyte", rng.integers(0, 256, (20, 28, 28)))
    _write_idx(raw / "t10k-labels-idx1-ubyte", np.arange(20) % 10)
    d = load_dataset("mnist", root=tmp_path, download=False, seed=1)
    assert d.input_shape == (1, 28, 28) and d.x_train.dtype == torch.uint8
    assert len(d.y_val) == 18 and len(d.y_train) == 42 and len(d.y_test) == 20
    assert d.info["source"] == str(raw) and d.info["split_seed"] == 1


def test_missing_torchvision_dataset_says_where_to_put_it(tmp_path, monkeypatch):
    import urllib.error

    import torchvision

    with pytest.raises(FileNotFoundError, match=r"cifar-10-python.tar.gz and unpack it into"):
        load_dataset("cifar10", root=tmp_path, download=False)

    real = torchvision.datasets.CIFAR10

    class Offline(real):
        def download(self):
            raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", Offline)
    with pytest.raises(FileNotFoundError, match="could not be downloaded.*URLError") as err:
        load_dataset("cifar10", root=tmp_path)
    assert str(tmp_path / "cifar-10-batches-py") in str(err.value)
    monkeypatch.setenv("NCAP_DATA_ROOT", str(tmp_path / "env-root"))
    with pytest.raises(FileNotFoundError, match="env-root"):
        load_dataset("svhn", download=False)


def test_cub200_official_split(tmp_path):
    from PIL import Image

    base = tmp_path / "CUB_200_2011"
    rng = np.random.default_rng(0)
    rows, labels, split = [], [], []
    for i in range(1, 13):
        cls = 1 + (i - 1) % 3
        rel = f"{cls:03d}.Bird_{cls}/img_{i}.jpg"
        (base / "images" / rel).parent.mkdir(parents=True, exist_ok=True)
        size = (int(rng.integers(20, 40)), int(rng.integers(20, 40)))
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(
            base / "images" / rel
        )
        rows.append(f"{i} {rel}")
        labels.append(f"{i} {cls}")
        split.append(f"{i} {int(i <= 8)}")
    (base / "images.txt").write_text("\n".join(rows) + "\n")
    (base / "image_class_labels.txt").write_text("\n".join(labels) + "\n")
    (base / "train_test_split.txt").write_text("\n".join(split) + "\n")
    (base / "classes.txt").write_text("1 001.Bird_1\n2 002.Bird_2\n3 003.Bird_3\n")
    d = load_dataset("cub200", root=tmp_path, download=False, n_val=2, image_size=16)
    assert d.input_shape == (3, 16, 16) and d.num_classes == 3
    assert len(d.y_train) + len(d.y_val) == 8 and len(d.y_test) == 4
    assert d.classes[0] == "001.Bird_1" and sorted(d.y_test.tolist()) == [0, 1, 2, 2]


def test_image_folder_test_split_and_channel_detection(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("val", 2), ("test", 3)):
        for cls in ("a", "b"):
            (tmp_path / split / cls).mkdir(parents=True)
            for k in range(n):
                Image.fromarray(rng.integers(0, 256, (10 + k, 12, 3), dtype=np.uint8)).save(
                    tmp_path / split / cls / f"{k}.png"
                )
    d = load_image_folder(tmp_path)
    assert d.channels == 3 and d.image_size == (224, 224)  # mixed sizes -> 224
    assert len(d.y_test) == 6 and d.x_test.dtype == torch.uint8
    small = load_image_folder(tmp_path, image_size=8, channels=1)
    assert small.input_shape == (1, 8, 8)
