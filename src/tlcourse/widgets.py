"""ipywidgets for the notebooks: each widget calls the package and ``plots``; nothing is computed here
that a notebook could not compute without the widget.
"""

from __future__ import annotations

# --- augmentation explorer (notebook 02) ---

# --- prediction explorer (notebook 05) ---

# --- interview quiz (notebook 06) ---
