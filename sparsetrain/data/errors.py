"""The one exception the data package raises for user-facing problems."""


class DataError(ValueError):
    """A dataset problem the user can fix; the message is one line naming the config key and a valid example."""
