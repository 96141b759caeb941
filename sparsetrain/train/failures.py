"""How a run that cannot go on stops: exceptions whose ``status`` the CLI records in ``status.json``."""


class RunFailure(Exception):
    """A run that cannot go on (its message is one line); ``status`` is recorded in status.json."""

    status = "failed"


class Diverged(RunFailure):
    """The loss or the weights are no longer finite (or the loss is absurdly large)."""

    status = "diverged"
