"""``ImageClassifier``: the original design's interface (train, evaluate, predict, save_model, load_model)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from . import augment, checkpoint, config, features, metrics, models, train
from .checkpoint import ModelMeta
from .data import CLASSES

PHASES = {"head": "fc", "layer4": "layer4", "all": "conv1"}  # phase -> first trainable stage
PHASE_LR = {"head": config.LR_HEAD, "layer4": config.LR_FINETUNE, "all": config.LR_FINETUNE}


@dataclass
class Prediction:
    """The top class, its probability, and the ``top_k`` classes with theirs."""

    label: str
    probability: float
    probabilities: dict[str, float]

    def __str__(self) -> str:
        return f"{self.label} ({self.probability:.1%})"


class ImageClassifier:
    """A pretrained backbone with a new head, trained in the original design's two phases.

    >>> clf = ImageClassifier("efficientnet_lite0", num_classes=10)   # doctest: +SKIP
    >>> clf.train(train_loader, num_epochs=3, val_loader=val_loader)   # doctest: +SKIP
    >>> clf.evaluate(test_loader).accuracy   # doctest: +SKIP
    """

    def __init__(
        self,
        backbone: str = config.DEFAULT_BACKBONE,
        num_classes: int = 10,
        classes: Sequence[str] | None = None,
        pretrained: bool = True,
        image_size: int = config.IMAGE_SIZE,
        device: str | None = None,
        weights_path: str | Path | None = None,
    ):
        classes = tuple(classes) if classes else (CLASSES if num_classes == 10 else tuple(map(str, range(num_classes))))
        if len(classes) != num_classes:
            raise ValueError(f"{len(classes)} class names given for num_classes={num_classes}")
        self.meta = ModelMeta(backbone, classes, image_size, *models.normalization(backbone))
        self.device = torch.device(device or config.pick_device())
        self.model = models.build_model(backbone, num_classes, pretrained, weights_path).to(self.device)
        self.history: train.History | None = None

    @property
    def classes(self) -> tuple[str, ...]:
        return self.meta.classes

    def freeze(self, phase: str = "head") -> models.ParamCounts:
        """``"head"``: only fc trains (Phase 1); ``"layer4"``: layer4 + fc (Phase 2); ``"all"``."""
        if phase not in PHASES:
            raise ValueError(f"phase must be one of {list(PHASES)}, not {phase!r}")
        models.freeze_until(self.model, PHASES[phase])
        return models.count_parameters(self.model)

    def train(
        self,
        train_loader,
        num_epochs: int,
        val_loader=None,
        phase: str = "head",
        lr: float | None = None,
        checkpoint_path: str | Path | None = None,
        resume: bool = False,
        patience: int | None = None,
        progress: bool = True,
        log=print,
        cache: bool = False,
        sync_bn: bool = False,
        test_loader=None,
    ) -> train.History:
        """Freeze for ``phase`` and train with Adam at ``PHASE_LR[phase]`` (unless ``lr``) and ``train.make_scheduler``.

        ``cache=True`` (phases head and layer4) computes the frozen part once, without augmentation,
        and trains the rest on its outputs: the course's fast path (notebook 03, benchmarks/phase_speed.py).
        ``val_loader`` chooses the epoch and early-stops; ``test_loader``, if given, is evaluated once at the end.
        ``sync_bn`` (under torchrun, on GPUs): SyncBatchNorm for the BatchNorm layers that train.
        """
        self.freeze(phase)
        options = train.FitOptions(
            checkpoint_path=checkpoint_path,
            meta=self.meta,
            resume=resume,
            patience=patience,
            progress=progress,
            log=log,
            desc=f"[{phase}] ",
            sync_bn=sync_bn,
        )
        lr = lr or PHASE_LR[phase]
        if cache and phase != "all":
            self.history = features.fit_cached(
                self.model,
                PHASES[phase],
                train_loader,
                val_loader,
                num_epochs,
                lr,
                options=options,
                test_loader=test_loader,
            )
        else:
            self.history = train.fit(
                self.model, train_loader, val_loader, num_epochs, lr, options=options, test_loader=test_loader
            )
        return self.history

    def evaluate(self, test_loader) -> metrics.Evaluation:
        """Accuracy, confusion matrix and per-class accuracy on ``test_loader``."""
        logits, labels = train.predict(self.model, test_loader)
        return metrics.summarize(logits, labels, self.classes)

    def preprocess(self, image) -> torch.Tensor:
        """Any image -> a normalized (1, 3, S, S) batch, prepared exactly like a CIFAR-10 test image."""
        return augment.preprocess(image, self.meta).to(self.device)

    @torch.no_grad()
    def predict(self, image, top_k: int = 3) -> Prediction:
        """Class and probabilities for a path, bytes, PIL image, ndarray or tensor of any size or mode."""
        self.model.eval()
        probs = torch.softmax(self.model(self.preprocess(image)).float(), dim=1)[0].cpu()
        top = probs.topk(min(top_k, len(self.classes)))
        return Prediction(
            self.classes[int(top.indices[0])],
            float(top.values[0]),
            {self.classes[int(i)]: float(p) for p, i in zip(top.values, top.indices)},
        )

    def save_model(self, path: str | Path) -> Path:
        """Write weights and metadata (backbone, classes, input size, normalization) atomically."""
        return checkpoint.save_model(path, self.model, self.meta)

    def load_model(self, path: str | Path) -> ImageClassifier:
        """Load weights saved by :meth:`save_model` into this classifier (same backbone and classes)."""
        meta, state = checkpoint.read_model(path)
        checkpoint.check_compatible(path, meta, self.meta.backbone, len(self.classes))
        checkpoint.load_weights(self.model, state, path)
        self.meta = meta
        return self

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | None = None) -> ImageClassifier:
        """Rebuild the classifier a model file describes, without downloading pretrained weights."""
        meta, state = checkpoint.read_model(path)
        clf = cls(
            meta.backbone, meta.num_classes, meta.classes, pretrained=False, image_size=meta.image_size, device=device
        )
        checkpoint.load_weights(clf.model, state, path)
        clf.meta = meta
        clf.model.eval()
        return clf
