"""Exceptions that the command-line tools turn into one-line messages and exit code 2."""


class CompareModelsError(Exception):
    """Base class for user-facing errors: bad input, a file that breaks its contract."""


class DatasetError(CompareModelsError, ValueError):
    """A dataset file violates the contract in docs/design.md (names the file, key and expectation)."""


class BundleError(CompareModelsError, ValueError):
    """A model bundle directory is missing, corrupt, or does not fit the data."""


class ReconstructionFileError(CompareModelsError, ValueError):
    """An iterative-reconstruction file is missing a key or has the wrong shape."""


class StitchError(CompareModelsError, ValueError):
    """Patches and positions cannot be stitched (count mismatch, non-finite values, ...)."""


class MetricError(CompareModelsError, ValueError):
    """A metric cannot be computed for the given images; the message says why."""


class RegistrationError(CompareModelsError, ValueError):
    """Registration failed or exceeded its bound (the message gives the value)."""


class ConfigError(CompareModelsError, ValueError):
    """A configuration value is missing, misspelt or out of range."""
