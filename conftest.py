"""pytest setup shared by the unit tests and the notebook tests (nbval)."""

import os

# A learner's plain `pytest` runs the small profile; the notebook kernels inherit it.
os.environ.setdefault("TLCOURSE_PROFILE", "smoke")
