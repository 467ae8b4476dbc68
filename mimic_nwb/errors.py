"""Errors for bad input: one line that names the input and the problem (exit code 2 from the CLI)."""


class InputError(Exception):
    """Bad input: a file, an argument or a session that cannot be used as given."""


class SessionInUseError(InputError):
    """Another writer holds the session."""


class StaleInputError(InputError):
    """An input a stage read was replaced or removed by another writer before the stage appended."""
