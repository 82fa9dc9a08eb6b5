"""User-facing errors: one line that says what went wrong and what to do.

The command line turns a `TrainingDiverged` into `error: <message>` and exit status 1, any other
`CompressmError` into `error: <message>` and exit status 2; anything else is a bug and keeps its traceback.
A message shows a bad value as an `excerpt`, never whole: the value may be huge.
"""

import reprlib

_REPR = reprlib.Repr()  # nested values cut while they are formatted, so a huge one never expands in full
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother, _REPR.maxlong = 3, 80, 80, 80
EXCERPT_CHARS = 80


def excerpt(value) -> str:
    """repr(value) cut to at most EXCERPT_CHARS characters ('...' marks a cut): a bad value in an error message."""
    text = _REPR.repr(value)
    return text if len(text) <= EXCERPT_CHARS else f"{text[:EXCERPT_CHARS - 3]}..."


class CompressmError(Exception):
    """Bad input from the user (config, data, paths, run folders); the message is one actionable line."""


class ConfigError(CompressmError, ValueError):
    """An unknown config name or key, or a value out of range."""


class DataError(CompressmError, FileNotFoundError):
    """A data set that is missing, incomplete or corrupt."""


class InvalidSystem(CompressmError, ValueError):
    """A system that cannot be reduced or has no LRU parameters: non-finite, or a mode on or outside the
    stability margin (`lru.STABILITY_EPS`); see `reduction.system_defects`."""


class TrainingDiverged(CompressmError):
    """The run broke down at `step` (non-finite loss or parameters); it is recorded as failed."""

    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step
