"""The exceptions mexkit raises for bad input, bad stores and failed samples.

Every error a user can cause is a :class:`MexkitError`; the command line
prints its message on one line (the traceback only with ``--debug``).
Messages name the file, the sample and the offending value.
"""
from __future__ import annotations

__all__ = [
    "MexkitError",
    "ParameterError",
    "StoreError",
    "DatasetError",
    "LabelError",
    "MediaError",
    "NoFaceError",
    "ConvergenceError",
    "ModelInputError",
    "BusyError",
    "InputChangedError",
    "DiskFullError",
    "WorkerLostError",
]


class MexkitError(Exception):
    """Base class of every error mexkit raises on purpose."""


class ParameterError(MexkitError, ValueError):
    """An option or argument has an invalid value."""


class StoreError(MexkitError, OSError):
    """An HDF5 feature store is missing, malformed, unsafe or of a newer schema."""


class DatasetError(MexkitError):
    """A dataset folder or annotation sheet cannot be understood."""


class LabelError(DatasetError):
    """A sample's emotion or action units do not fit the chosen label scheme."""


class MediaError(MexkitError, OSError):
    """A video file or image-sequence folder is unreadable, empty or corrupt."""


class NoFaceError(MexkitError):
    """No face was found where one was needed."""


class ConvergenceError(MexkitError):
    """An iterative solver stopped before reaching its tolerance."""


class ModelInputError(MexkitError):
    """A model needs an input that the given store does not hold."""


class BusyError(StoreError):
    """Another writer holds the output store."""


class InputChangedError(StoreError):
    """An input store was replaced or rewritten while a stage read it: the stage stops."""


class DiskFullError(StoreError):
    """No space is left on the device an output is written to: the stage stops."""


class WorkerLostError(MexkitError):
    """A worker process (killed, out of memory) was lost with work that no retry finished."""
