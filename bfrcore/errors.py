"""Library error types. Library code raises these (never the CLI's ``UsageError``); the command-line apps map
:class:`InputError` and its subclasses to exit code 2 with the message as one line (``bfrcore.cliutil.run_guarded``).
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad input found by library code — a file, a folder, a value, a combination of options: the caller can fix
    it. The message names the thing, what was expected and, where one exists, the fix."""


class ConfigError(InputError):
    """A configuration (YAML file, ``--set key=value``, preset, model config) with an unknown key or a bad value."""
