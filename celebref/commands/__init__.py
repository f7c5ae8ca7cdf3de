"""Subcommands of the `celebref` tool (one module each, see bfrcore.cliutil)."""
