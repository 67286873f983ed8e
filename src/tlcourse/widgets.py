"""ipywidgets for the notebooks: each widget calls the package and its plots; nothing is computed here
that a notebook could not compute without the widget.
"""

from __future__ import annotations

# --- augmentation explorer (notebook 02) ---


def augment_preview(
    images,
    brightness: float = 1.0,
    contrast: float = 1.0,
    saturation: float = 1.0,
    padding: int = 0,
    flip: bool = False,
    seed: int = 0,
):
    """The seed's transforms with chosen (not random) strengths on a uint8 batch -> floats in [0, 1].

    Crop with ``padding`` (a random offset per image, fixed by ``seed``), optional mirror, then
    brightness, contrast and saturation factors (1 = unchanged), through ``tlcourse.augment``'s functions.
    """
    import torch

    from . import augment

    x = torch.as_tensor(images).float() / 255
    if padding > 0:
        x = augment.random_crop(x, int(padding), torch.Generator().manual_seed(seed))
    if flip:
        x = x.flip(-1)
    for op, factor in enumerate((brightness, contrast, saturation)):
        if factor != 1.0:
            x = augment.adjust(x, op, torch.full((len(x),), float(factor)))
    return x


def augmentation_explorer(images, labels=None, classes=None, ncols: int = 8, max_jitter: float = 0.6):
    """Sliders for brightness, contrast, saturation and crop padding plus a flip toggle, redrawing a grid.

    ``images``: (N, 3, 32, 32) uint8, e.g. ``data.load_datasets(cfg).train.images[:16]``. The seed's
    ColorJitter(0.2, 0.2, 0.2) draws each factor from [0.8, 1.2]; the sliders go further so the
    effect is easy to see. Returns the widget; display it as a cell's last line.
    """
    import ipywidgets as w
    import matplotlib.pyplot as plt
    from IPython.display import display

    from . import plots
    from .data import CLASSES

    def slider(name: str) -> w.FloatSlider:
        return w.FloatSlider(
            value=1.0,
            min=1 - max_jitter,
            max=1 + max_jitter,
            step=0.05,
            description=name,
            continuous_update=False,
            readout_format=".2f",
        )

    controls = {
        "brightness": slider("brightness"),
        "contrast": slider("contrast"),
        "saturation": slider("saturation"),
        "padding": w.IntSlider(value=4, min=0, max=12, description="padding", continuous_update=False),
        "flip": w.ToggleButton(value=False, description="mirror (flip)", icon="arrows-h"),
        "seed": w.IntSlider(value=0, min=0, max=20, description="crop draw", continuous_update=False),
    }
    out = w.Output()

    def redraw(**values) -> None:
        with out:
            out.clear_output(wait=True)
            x = augment_preview(images, **values)
            within_reference = all(abs(values[k] - 1) <= 0.2 for k in ("brightness", "contrast", "saturation"))
            note = "within" if within_reference and values["padding"] <= 4 else "beyond"
            fig = plots.show_images(
                x,
                labels,
                classes or CLASSES,
                ncols=ncols,
                title=f"b={values['brightness']:.2f} c={values['contrast']:.2f} "
                f"s={values['saturation']:.2f} pad={values['padding']} "
                f"flip={values['flip']} ({note} the seed's ranges)",
            )
            display(fig)
            plt.close(fig)

    w.interactive_output(redraw, controls)
    return w.VBox(
        [
            w.HBox([controls["brightness"], controls["contrast"], controls["saturation"]]),
            w.HBox([controls["padding"], controls["seed"], controls["flip"]]),
            out,
        ]
    )


# --- prediction explorer (notebook 05) ---


def upload_to_uint8(upload_value, size: int = 32):
    """The first file of a FileUpload's value -> a (1, 3, size, size) uint8 tensor, as CIFAR-10 test images are made."""
    from . import augment

    item = upload_value[0] if isinstance(upload_value, (list, tuple)) else next(iter(upload_value.values()))
    return augment.load_uint8(bytes(item["content"]), size, name=item.get("name"))


def explain_prediction(
    model, image_uint8, transform, classes=None, true=None, stage: str = "layer3", k: int = 5, title: str = "Prediction"
):
    """Top-k probabilities and a Grad-CAM overlay for one (1, 3, H, W) uint8 image; returns the figure.

    ``transform``: the test transform, e.g. ``augment.BatchTransform(False, image_size, mean, std)``;
    the map (at the model's input size) is stretched over the original image.
    """
    from . import evalplots, explain
    from .data import CLASSES

    cams, probs = explain.grad_cam_and_probs(model, transform(image_uint8), stage=stage)
    return evalplots.plot_explained_prediction(
        image_uint8[0], cams[0], probs[0], classes or CLASSES, true, k, title=title, stage=stage
    )


def prediction_explorer(
    model,
    test_images,
    transform,
    classes=None,
    stage: str = "layer3",
    k: int = 5,
    stages=("layer2", "layer3", "layer4"),
):
    """Pick a test image by index (or upload a photo): top-k probability bars and a Grad-CAM overlay.

    ``test_images``: an ``ImageArrays`` (``data.load_datasets(cfg).test``); ``transform`` as in
    :func:`explain_prediction`. Returns the widget; display it as a cell's last line.
    """
    import ipywidgets as w
    import matplotlib.pyplot as plt
    from IPython.display import display

    from .data import CLASSES
    from .errors import ImageError

    classes = classes or CLASSES
    index = w.BoundedIntText(value=0, min=0, max=len(test_images) - 1, description="test image")
    stage_box = w.Dropdown(options=list(stages), value=stage, description="CAM stage")
    upload = w.FileUpload(accept="image/*", multiple=False, description="or upload")
    status = w.HTML()
    out = w.Output()
    shown: dict = {}

    def draw(_=None):
        with out:
            out.clear_output(wait=True)
            fig = explain_prediction(
                model, shown["image"], transform, classes, shown["true"], stage_box.value, k, shown["title"]
            )
            display(fig)
            plt.close(fig)  # shown once, inside the widget, not again below the cell

    def show_index(_=None):
        i = int(index.value)
        shown.update(image=test_images.images[i : i + 1], true=int(test_images.labels[i]), title=f"test image {i}")
        status.value = ""
        draw()

    def show_upload(_=None):
        if not upload.value:
            return
        try:
            shown.update(
                image=upload_to_uint8(upload.value, test_images.images.shape[-1]), true=None, title="uploaded image"
            )
        except ImageError as e:
            status.value = f"<span style='color:#b00'>{e}</span>"
            return
        status.value = "uploaded image, resized and centre-cropped like a CIFAR-10 image"
        draw()

    index.observe(show_index, names="value")
    stage_box.observe(draw, names="value")
    upload.observe(show_upload, names="value")
    show_index()
    return w.VBox([w.HBox([index, stage_box, upload]), status, out])


# --- interview quiz (notebook 06) ---


def quiz_feedback(question, choice: int) -> str:
    """The HTML shown after answering: right or wrong, the explanation, and where the course shows it."""
    import html

    ok = question.check(choice)
    head = (
        "<b style='color:#1a7f37'>Correct.</b>"
        if ok
        else f"<b style='color:#b00'>Not quite</b> - the answer is: {html.escape(question.choices[question.answer])}."
    )
    return f"{head} {html.escape(question.explanation)} <i>(Shown in {html.escape(question.where)}.)</i>"


def quiz(questions=None):
    """Multiple-choice questions with instant feedback and a running score (notebook 06).

    ``questions``: from ``quiz.load_questions()`` (the default). Returns the widget.
    """
    import html

    import ipywidgets as w

    from . import quiz as quiz_data

    questions = list(questions) if questions is not None else quiz_data.load_questions()
    score = w.HTML()
    answered: dict[int, bool] = {}

    def update_score():
        right = sum(answered.values())
        score.value = f"<b>Score: {right} / {len(questions)}</b> ({len(answered)} answered)"

    rows = []
    for n, q in enumerate(questions):
        radio = w.RadioButtons(
            options=[(c, i) for i, c in enumerate(q.choices)], value=None, layout=w.Layout(width="max-content")
        )
        feedback = w.HTML()

        def on_change(change, q=q, n=n, feedback=feedback):
            if change["new"] is None:
                return
            answered.setdefault(n, q.check(change["new"]))  # the first answer counts for the score
            feedback.value = quiz_feedback(q, change["new"])
            update_score()

        radio.observe(on_change, names="value")
        rows.append(w.VBox([w.HTML(f"<b>{n + 1}. {html.escape(q.question)}</b>"), radio, feedback]))
    update_score()
    return w.VBox([score, *rows])
