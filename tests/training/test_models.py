"""Every registered classifier and segmenter preset passes the model contract at a tiny size."""

import pytest

from tests.training.model_contract import TINY_PX, ModelContract
from training.models.classifier import create_classifier
from training.models.segmenter import create_segmenter
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
        return SegmenterSettings(preset=request.param).model.spec(TINY_PX)

    def build(self, spec):
        return create_segmenter(spec)

    def output_shape(self, spec, batch):
        return (batch, 1, spec.input_px, spec.input_px)
