"""Errors a learner can act on: each message names the thing and the fix."""


class TLCourseError(Exception):
    """Base class; the command line prints these as one line and exits non-zero."""


class DatasetNotFoundError(TLCourseError, FileNotFoundError):
    """CIFAR-10 is in none of the searched folders and could not be downloaded."""


class WeightsNotFoundError(TLCourseError, FileNotFoundError):
    """Pretrained weights are not cached and could not be downloaded."""


class ImageError(TLCourseError, ValueError):
    """An input is not an image this package can read."""


class CheckpointError(TLCourseError, ValueError):
    """A checkpoint is missing, damaged, or made for another model."""


class ConfigError(TLCourseError, ValueError):
    """A setting or environment variable has a value the package does not know."""


class ImageTooLargeError(ImageError):
    """An image declares more pixels (or has more bytes) than the limit: refused before decoding."""
