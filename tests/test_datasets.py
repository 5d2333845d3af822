import gzip

import numpy as np
import pytest
import torch

from ncap.datasets import fashion_mnist_dir, load_dataset, load_image_folder, read_idx


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
    import ncap.datasets

    monkeypatch.setattr(ncap.datasets, "DEBIAN_FASHION_MNIST", tmp_path / "none")
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
    assert rgb.input_shape == (3, 28, 28)


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_image_folder(tmp_path / "missing")
    (tmp_path / "one" / "only").mkdir(parents=True)
    with pytest.raises(ValueError, match="at least 2"):
        load_image_folder(tmp_path / "one")
    (tmp_path / "one" / "second").mkdir()
    with pytest.raises(ValueError, match="no images found"):
        load_image_folder(tmp_path / "one")
