"""From a command line to a checked config: the run schema and its registration (``schema``), the value checks
(``checks``), override syntax (``overrides``) and preflight (``command_line``), shared by the CLI and the API."""
