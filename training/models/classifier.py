"""The patch classifier: torchvision ResNet-18 with one defect logit (thesis §3.3.2).

The exported module takes what the edge can produce without torch: float32 NCHW in
[0, 1] (uint8 / 255) at the bundle's patch size. Normalisation and the optional
internal down-scaling live inside the module, so ONNX carries them and the edge cannot
get them wrong. Grayscale: the first convolution takes one channel (``in_channels=1``)
instead of replicating gray three times; the bundle records it. ``pooling="max"`` swaps
the global average pool for a global max pool: a defect covering 2 % of a patch is
diluted fifty-fold by averaging, while the max keeps its strongest response.
``input_norm="patch"`` standardises each patch by its own mean and spread (inside the
graph too), so exposure changes between frames or stations do not shift the input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet18
from torchvision.models.resnet import BasicBlock, ResNet

from training.models.normalization import check_input_norm, normalize_input
from training.models.specs import ClassifierSpec


class _ScaledResNet18(ResNet):
    """ResNet-18 topology from torchvision's own blocks with every stage's width scaled."""

    def __init__(self, width: float) -> None:
        self._width = width
        super().__init__(BasicBlock, [2, 2, 2, 2], num_classes=1)
        stem = max(8, int(round(64 * width)))
        self.conv1 = nn.Conv2d(3, stem, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.fc = nn.Linear(int(round(512 * width)), 1)
        # layer1 was built for a 64-channel stem: rebuild the stages for the scaled stem
        self.inplanes = stem
        self.layer1 = self._make_layer(BasicBlock, 64, 2)
        self.layer2 = self._make_layer(BasicBlock, 128, 2, stride=2)
        self.layer3 = self._make_layer(BasicBlock, 256, 2, stride=2)
        self.layer4 = self._make_layer(BasicBlock, 512, 2, stride=2)

    def _make_layer(self, block, planes, blocks, *, stride=1, dilate=False):  # noqa: ANN001
        width = max(8, int(round(planes * self._width)))
        return super()._make_layer(block, width, blocks, stride=stride, dilate=dilate)


def _backbone(spec: ClassifierSpec) -> nn.Module:
    model = resnet18(weights=None, num_classes=1) if spec.width == 1.0 else _ScaledResNet18(spec.width)
    if spec.in_channels != 3:
        old = model.conv1
        model.conv1 = nn.Conv2d(spec.in_channels, old.out_channels, kernel_size=7, stride=2, padding=3, bias=False)
    if spec.pooling == "max":
        model.avgpool = nn.AdaptiveMaxPool2d(1)
    return model


class PatchClassifier(nn.Module):
    """[0, 1] patches (N, C, input_px, input_px) -> defect logits (N, 1)."""

    def __init__(self, spec: ClassifierSpec) -> None:
        super().__init__()
        self.spec = spec
        self.backbone = _backbone(spec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.spec.internal_px != self.spec.input_px:
            x = F.interpolate(x, size=(self.spec.internal_px, self.spec.internal_px), mode="area")
        return self.backbone(normalize_input(x, self.spec.input_norm, self.spec.mean, self.spec.std))


CLASSIFIERS = {"resnet18": ClassifierSpec}

__all__ = ["CLASSIFIERS", "ClassifierSpec", "PatchClassifier", "create_classifier"]


def create_classifier(spec: ClassifierSpec) -> PatchClassifier:
    """Build a classifier by spec; unknown names list the valid ones."""
    if spec.name not in CLASSIFIERS:
        raise ValueError(f"unknown classifier {spec.name!r}; choose one of {sorted(CLASSIFIERS)}")
    if spec.pooling not in ("avg", "max"):
        raise ValueError(f"unknown pooling {spec.pooling!r}; choose avg or max")
    check_input_norm(spec.input_norm)
    if spec.width <= 0 or spec.internal_px <= 0:
        raise ValueError(f"width and internal_px must be positive, got {spec.width}, {spec.internal_px}")
    return PatchClassifier(spec)
