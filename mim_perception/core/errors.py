"""Typed errors. Every failure a user can cause names what was wrong."""


class MimPerceptionError(Exception):
    """Base class of all errors raised by mim_perception."""


class ConfigError(MimPerceptionError, ValueError):
    """A parameter is missing, has the wrong type or is out of range."""


class BadImageError(MimPerceptionError, ValueError):
    """An image message cannot be decoded (encoding, size, step, corrupt bytes)."""


class BagError(MimPerceptionError):
    """A bag cannot be opened, is not a bag, or lacks a requested topic."""


class ModelLoadError(MimPerceptionError):
    """A model bundle is missing, corrupt (sha256 mismatch) or incompatible."""


class BadDetectionsError(MimPerceptionError, ValueError):
    """Detections arrays have inconsistent shapes."""


class DatasetError(MimPerceptionError, ValueError):
    """A dataset file (annotations, sequence info, mask) is missing or malformed; the message names the file."""
