"""tlcourse: transfer learning from ImageNet to CIFAR-10, the package behind the course notebooks."""

from .runtime import setup_notebook

__version__ = "0.1.0"
__all__ = ["setup_notebook", "__version__"]
