import numpy as np
import pytest
import torch
from PIL import Image

from tlcourse.classifier import ImageClassifier
from tlcourse.errors import CheckpointError


@pytest.fixture(scope="module")
def clf():
    return ImageClassifier("resnet18", 10, pretrained=False, device="cpu")


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((300, 200, 3), np.uint8),
        torch.rand(3, 17, 45),
        Image.new("L", (64, 64), 128),
        Image.new("RGBA", (5, 500), (10, 20, 30, 0)),
    ],
)
def test_predict_accepts_any_size_and_mode(clf, image):
    pred = clf.predict(image, top_k=3)
    assert pred.label in clf.classes and len(pred.probabilities) == 3
    assert 0 <= pred.probability <= 1 and abs(sum(pred.probabilities.values())) <= 1 + 1e-6


def test_save_load_round_trip(clf, tmp_path):
    path = clf.save_model(tmp_path / "m.pt")
    img = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    again = ImageClassifier.from_checkpoint(path, device="cpu")
    assert again.meta == clf.meta
    assert again.predict(img).probabilities == clf.predict(img).probabilities
    other = ImageClassifier("resnet18", 10, pretrained=False, device="cpu").load_model(path)
    assert other.predict(img).probabilities == clf.predict(img).probabilities


def test_load_refuses_another_shape(clf, tmp_path):
    path = clf.save_model(tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="resnet18 with 10 classes.*5 classes"):
        ImageClassifier("resnet18", 5, pretrained=False, device="cpu").load_model(path)


def test_evaluate_reports_per_class(clf):
    from tlcourse import data, models

    x = torch.randint(0, 256, (20, 3, 32, 32), dtype=torch.uint8)
    loader = data.TensorLoader(
        x, torch.arange(20) % 10, 8, transform=data.BatchTransform(False, 32, *models.normalization("resnet18"))
    )
    ev = clf.evaluate(loader)
    assert ev.confusion_matrix.shape == (10, 10) and ev.confusion_matrix.sum() == 20
    assert set(ev.per_class_accuracy) == set(clf.classes) and 0 <= ev.accuracy <= 1
