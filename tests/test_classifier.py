import numpy as np
import pytest
import torch
from PIL import Image

from tlcourse import augment
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
    with torch.no_grad():
        expected = torch.softmax(clf.model.eval()(augment.preprocess(image, clf.meta)), 1)[0].topk(3)
    assert list(pred.probabilities) == [clf.classes[i] for i in expected.indices]  # most probable first
    assert list(pred.probabilities.values()) == pytest.approx(expected.values.tolist(), abs=1e-6)
    assert (pred.label, pred.probability) == next(iter(pred.probabilities.items()))


@pytest.mark.slow
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


@pytest.mark.slow
def test_evaluate_reports_per_class(clf):
    from tlcourse import loaders, models

    x = torch.randint(0, 256, (20, 3, 32, 32), dtype=torch.uint8)
    loader = loaders.TensorLoader(
        x, torch.arange(20) % 10, 8, transform=augment.BatchTransform(False, 32, *models.normalization("resnet18"))
    )
    ev = clf.evaluate(loader)
    assert ev.confusion_matrix.shape == (10, 10) and ev.confusion_matrix.sum() == 20
    assert ev.labels.tolist() == (torch.arange(20) % 10).tolist()
    with torch.no_grad():
        preds = clf.model.eval()(loader.transform(x)).argmax(1)
    assert torch.equal(ev.logits.argmax(1), preds)
    assert ev.accuracy == pytest.approx((preds == ev.labels).float().mean().item())
    assert ev.per_class_accuracy == pytest.approx({c: ev.confusion_matrix[i, i] / 2 for i, c in enumerate(clf.classes)})
