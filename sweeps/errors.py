"""Errors that mean "the sweep cannot start as asked": reported as one line and exit status 2."""


class SweepError(RuntimeError):
    """A sweep cannot start as asked (name taken, nothing to resume, bad flag combination, …)."""


class TrackingError(SweepError):
    """The tracking server cannot be used."""


class DiskFull(RuntimeError):
    """The disk holding the sweep's results or state filled up: the sweep stopped, what finished is kept, and it
    resumes once space is freed. One line and exit status 1 (the input was fine)."""
