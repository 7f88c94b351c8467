"""User-facing errors: each one is a single line saying what is wrong and how to fix it."""


class ZooError(Exception):
    """An error the CLI prints as one line (no traceback) before exiting non-zero."""

    exit_code = 1


class UsageError(ZooError):
    """Bad command-line input: exit code 2."""

    exit_code = 2


class RegistryError(UsageError):
    """registry.toml (or a plugin's registration) is invalid."""


class DataError(UsageError):
    """The image folders cannot be used as given."""


class WeightsError(ZooError):
    """A weights file is missing, corrupt, or holds something we refuse to load."""


class BackboneUnavailable(ZooError):
    """A backbone cannot be loaded: not cached and unreachable, bad handle, broken archive."""


class StoreError(ZooError):
    """The run store cannot be read or written: locked, full, read-only, damaged, or newer."""
