"""pytest setup shared by the unit tests and the notebook tests (nbval)."""

import os

import pytest

# A learner's plain `pytest` runs the small profile; the notebook kernels inherit it.
os.environ.setdefault("TLCOURSE_PROFILE", "smoke")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every notebook cell nbval collects is slow (a kernel, real training): ``-m "not slow"`` skips them."""
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(pytest.mark.slow)
