"""The `celebref` tool: build, inspect and publish CelebRef-HQ-style datasets."""

from bfrcore.cliutil import build_main

COMMANDS = (
    "celebref.commands.inspect",
    "celebref.commands.build",
    "celebref.commands.publish",
    "celebref.commands.review",
)

main = build_main(
    "celebref",
    "Build CelebRef-HQ-style reference face datasets (512x512 FFHQ-aligned, grouped by identity).",
    COMMANDS,
)

if __name__ == "__main__":
    raise SystemExit(main())
