"""aunet-export: ONNX and TorchScript files give the PyTorch model's outputs."""

import json

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from checkpoint_factories import IMAGE_SIZE, save_checkpoint, untrained_module

from aunet.aus import DATASET_AUS
from aunet.inference.export import METADATA_FILE, main
from aunet.inference.predictor import load_predictor
from aunet.models import FAN

HEATMAP_SIDE = IMAGE_SIZE // 4


@pytest.fixture(scope="module")
def modules() -> dict[str, torch.nn.Module]:
    return {name: untrained_module(name) for name in ("reparam", "adapt", "attention", "resnet18")}


def reference(module, images: torch.Tensor) -> np.ndarray:
    """The trained module's own network (the reparametrisation unfolded) on float images."""
    with torch.no_grad():
        return module.model(images).numpy()


def images(batch: int) -> torch.Tensor:
    return torch.rand(batch, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(7))


def test_loading_folds_the_reparametrisation_without_changing_outputs(modules, tmp_path):
    module = modules["reparam"]
    predictor = load_predictor(save_checkpoint(module, tmp_path / "m.ckpt"))
    assert type(predictor.network) is FAN
    with torch.no_grad():
        folded = predictor.network(images(4)).numpy()
    np.testing.assert_allclose(folded, reference(module, images(4)), atol=1e-5)


@pytest.mark.parametrize("strategy", ["reparam", "adapt", "attention", "resnet18"])
def test_onnx_matches_pytorch_with_a_dynamic_batch(strategy, modules, tmp_path, capsys):
    module = modules[strategy]
    out = tmp_path / "model.onnx"
    main(["--ckpt", str(save_checkpoint(module, tmp_path / "m.ckpt")), "--format", "onnx",
          "--out", str(out)])  # fmt: skip
    assert "outputs match PyTorch's" in capsys.readouterr().out
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for batch in (1, 5):  # traced with 2
        (output,) = session.run(None, {"images": images(batch).numpy()})
        expected = reference(module, images(batch))
        shape = (batch, 12) if strategy == "resnet18" else (batch, 12, HEATMAP_SIDE, HEATMAP_SIDE)
        assert output.shape == expected.shape == shape
        np.testing.assert_allclose(output, expected, atol=1e-4, rtol=1e-4)
    properties = {p.key: json.loads(p.value) for p in onnx.load(str(out)).metadata_props}
    assert properties["au_names"] == list(DATASET_AUS["synthetic"])
    assert properties["image_size"] == IMAGE_SIZE
    assert properties["output"] == ("intensities" if strategy == "resnet18" else "heatmaps")


@pytest.mark.parametrize("strategy", ["reparam", "resnet18"])
def test_torchscript_matches_pytorch_and_carries_its_metadata(strategy, modules, tmp_path):
    module = modules[strategy]
    out = tmp_path / "model.pt"
    main(["--ckpt", str(save_checkpoint(module, tmp_path / "m.ckpt")), "--format", "torchscript",
          "--out", str(out)])  # fmt: skip
    extra = {METADATA_FILE: ""}
    loaded = torch.jit.load(str(out), _extra_files=extra)
    with torch.no_grad():
        output = loaded(images(3)).numpy()
    np.testing.assert_allclose(output, reference(module, images(3)), atol=1e-4, rtol=1e-4)
    assert json.loads(extra[METADATA_FILE])["image_size"] == IMAGE_SIZE


def test_a_bad_checkpoint_is_refused_and_nothing_is_written(tmp_path, capsys):
    path = tmp_path / "m.ckpt"
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(SystemExit) as error:
        main(["--ckpt", str(path), "--format", "onnx", "--out", str(tmp_path / "m.onnx")])
    assert error.value.code == 2
    assert str(path) in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.ckpt"]
