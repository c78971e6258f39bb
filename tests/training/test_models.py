"""Every registered classifier and segmenter preset passes the model contract at a tiny size."""

import pytest
import torch

from tests.training.model_contract import TINY_PX, ModelContract
from training.models.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from training.models.classifier import create_classifier
from training.models.segmenter import SegmenterSpec, create_segmenter
from training.train.config import CLASSIFIER_PRESETS, SEGMENTER_PRESETS, ClassifierSettings, SegmenterSettings


class TestClassifierContract(ModelContract):
    task = "classifier"

    @pytest.fixture(scope="class", params=sorted(CLASSIFIER_PRESETS))
    def spec(self, request):
        # the preset's topology, pooling and normalisation at a quarter of its width: fast, same graph
        model = ClassifierSettings(preset=request.param).model
        return model.model_copy(update={"width": model.width / 4}).spec(TINY_PX)

    def build(self, spec):
        return create_classifier(spec)

    def output_shape(self, spec, batch):
        return (batch, 1)


class TestSegmenterContract(ModelContract):
    task = "segmenter"

    @pytest.fixture(scope="class", params=sorted(SEGMENTER_PRESETS))
    def spec(self, request):
        # 64 px, not TINY_PX: at 32 px the stride-32 features are 1x1, where the narrow FPN decoder's
        # GroupNorm (one channel per group) has zero variance and amplifies float round-off
        return SegmenterSettings(preset=request.param).model.spec(2 * TINY_PX)

    def build(self, spec):
        return create_segmenter(spec)

    def output_shape(self, spec, batch):
        return (batch, 1, spec.input_px, spec.input_px)


@pytest.mark.parametrize(
    ("arch", "channels", "widths"),
    [("fpn", (64, 32), {"pyramid": 64, "segmentation": 32}), ("unet", (32, 24, 16, 8, 8), {"last": 8})],
)
def test_decoder_widths_reach_the_network_and_survive_a_checkpoint(arch, channels, widths, tmp_path):
    spec = SegmenterSpec(arch=arch, encoder="tu-resnet10t", input_px=32, decoder_channels=list(channels))
    assert spec.decoder_channels == channels  # lists from JSON become the hashable tuple
    model = create_segmenter(spec)
    convs = [m for m in model.net.decoder.modules() if isinstance(m, torch.nn.Conv2d)]
    if arch == "fpn":
        assert {c.out_channels for c in convs} == {widths["pyramid"], widths["segmentation"]}
    else:
        assert model.net.segmentation_head[0].in_channels == widths["last"]
    narrow = sum(p.numel() for p in model.parameters())
    wide = sum(p.numel() for p in create_segmenter(SegmenterSpec(arch=arch, encoder="tu-resnet10t")).parameters())
    assert narrow < wide
    checkpoint = Checkpoint(task="segmenter", spec=model.spec.to_dict(), state_dict=model.state_dict())
    save_checkpoint(tmp_path / "model.pt", checkpoint)
    rebuilt = load_checkpoint(tmp_path / "model.pt").build()
    assert rebuilt(torch.rand(2, 1, 32, 32)).shape == (2, 1, 32, 32)


@pytest.mark.parametrize(
    ("arch", "channels", "message"),
    [
        ("fpn", (32, 16, 8), "pyramid, segmentation"),
        ("deeplabv3", (32,), "not 'deeplabv3'"),
        ("unet", (0, 1), "positive"),
    ],
)
def test_wrong_decoder_widths_name_the_problem(arch, channels, message):
    with pytest.raises(ValueError, match=message):
        create_segmenter(SegmenterSpec(arch=arch, encoder="tu-resnet10t", input_px=32, decoder_channels=channels))
