"""The tiny generator exports to ONNX (opset 17) and ONNX Runtime reproduces it."""

from __future__ import annotations

import warnings

import numpy as np
import onnxruntime
import torch

from training.gan.stylegan2.networks import Generator, SamplingGenerator


def test_onnx_export_of_z_to_image_matches_eager(tmp_path) -> None:  # noqa: ANN001
    G = Generator(z_dim=16, w_dim=16, img_resolution=16, channel_base=256, channel_max=32).eval()
    with torch.no_grad():
        G.mapping(torch.randn(64, 16), update_w_avg=True)
    model = SamplingGenerator(G, psi=0.7, noise_mode="const").eval()
    path = tmp_path / "g.onnx"
    with warnings.catch_warnings():  # the TorchScript exporter (as training/export uses) warns about itself
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.randn(2, 16),),
            str(path),
            opset_version=17,
            dynamo=False,
            input_names=["z"],
            output_names=["image"],
            dynamic_axes={"z": {0: "batch"}, "image": {0: "batch"}},
        )
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        z = torch.randn(batch, 16)
        with torch.no_grad():
            expected = model(z).numpy()
        (got,) = session.run(None, {"z": z.numpy()})
        assert got.shape == (batch, 1, 16, 16)
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
