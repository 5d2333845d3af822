"""Any model on any data: py: factories next to the user's files, whole-model checkpoints."""

import sys
import textwrap

import pytest
import torch

from ncap.models.registry import create_backbone

MODULE = """
from torch import nn

def features():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())

class Whole(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = features()
        self.classifier = nn.Linear(4, 10)
"""


@pytest.fixture
def here(tmp_path, monkeypatch):
    """A folder holding the user's own module, as the current directory, not on sys.path."""
    (tmp_path / "here_models.py").write_text(textwrap.dedent(MODULE))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".", str(tmp_path))])
    sys.modules.pop("here_models", None)
    yield tmp_path
    sys.modules.pop("here_models", None)


def test_py_factory_is_found_in_the_current_directory(here):
    backbone = create_backbone("py:here_models:features")
    assert backbone.module(torch.zeros(1, 3, 8, 8)).shape == (1, 4)


def test_a_whole_model_checkpoint_loads_into_its_feature_extractor(here):
    create_backbone("py:here_models:features")  # (puts the current directory on the path)
    import here_models

    whole = here_models.Whole()
    torch.save(whole.state_dict(), here / "whole.pt")  # keys features.*, classifier.*
    backbone = create_backbone(f"py:here_models:features@{here / 'whole.pt'}")
    torch.testing.assert_close(backbone.module[0].weight, whole.features[0].weight)
    assert backbone.info["stripped_prefix"] == "features."
    torch.save({"encoder.0.weight": whole.features[0].weight}, here / "other.pt")
    with pytest.raises(
        ValueError, match=r"its keys start with encoder\.\*, the model's with 0\.\*"
    ):
        create_backbone(f"py:here_models:features@{here / 'other.pt'}")
