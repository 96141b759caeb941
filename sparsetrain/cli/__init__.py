"""The command line: ``sparsetrain`` (``main.main``) and its ``--help`` (``help``)."""
