"""Subcommands of the `bench` tool for evaluation (one module per group, see bfrcore.cliutil): :mod:`.evaluate`
(`bench evaluate`, `bench score`), :mod:`.protocols` (`bench protocols ...`)."""
