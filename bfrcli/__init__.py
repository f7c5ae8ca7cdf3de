"""bfrcli: the command-line apps on top of every package: ``celebref``, ``bench`` and the demo."""
