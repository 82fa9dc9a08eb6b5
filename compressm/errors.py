"""User-facing errors: one line that says what went wrong and what to do.

The command line turns a `TrainingDiverged` into `error: <message>` and exit status 1, any other
`CompressmError` into `error: <message>` and exit status 2; anything else is a bug and keeps its traceback.
"""


class CompressmError(Exception):
    """Bad input from the user (config, data, paths, run folders); the message is one actionable line."""


class ConfigError(CompressmError, ValueError):
    """An unknown config name or key, or a value out of range."""


class DataError(CompressmError, FileNotFoundError):
    """A data set that is missing, incomplete or corrupt."""


class TrainingDiverged(CompressmError):
    """The run broke down at `step` (non-finite loss or parameters); it is recorded as failed."""

    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step
