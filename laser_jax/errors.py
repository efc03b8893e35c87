"""Exceptions with one-line messages that name the problem.

The CLI prints ``str(error)`` and exits non-zero for any :class:`LaserJaxError`.
"""


class LaserJaxError(Exception):
    """Base class: a user-facing problem with a one-line explanation."""


class ConfigError(LaserJaxError):
    """A model config the library does not understand or implement."""


class ConversionError(LaserJaxError):
    """A checkpoint whose parameters do not match the family's table."""


class SourceError(LaserJaxError):
    """A model source that cannot be found or read."""


class InterventionError(LaserJaxError):
    """An invalid (layer, tau, rho) intervention."""


class DataError(LaserJaxError):
    """A data file that is missing, empty or malformed."""


class DeviceError(LaserJaxError):
    """A device mesh, precision or multi-process setting that cannot work (bad mesh, unreachable coordinator)."""
