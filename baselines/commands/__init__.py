"""Subcommands of the `bench` tool for the model zoo (one module per group, see bfrcore.cliutil): :mod:`.train`
(`bench train`, `bench models`), :mod:`.dictionary` (`bench dict build`), :mod:`.restore` (`bench restore`)."""
