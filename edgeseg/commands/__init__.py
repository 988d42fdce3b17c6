"""One module per ``edgeseg`` subcommand (see :mod:`edgeseg.cli`)."""
