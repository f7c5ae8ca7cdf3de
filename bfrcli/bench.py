"""The `bench` tool: weights, degraded test sets, training, evaluation and the leaderboard."""

from bfrcore.cliutil import build_main

#: The command modules, in `bench --help` order: each package's ``<package>.commands`` (a module, or a package
#: with one module per subcommand group); ``bfrcli.weights`` spans the packages (the weights registry).
COMMANDS = (
    "bfrcli.weights",
    "baselines.commands.dictionary",
    "baselines.commands.train",
    "degradations.commands",
    "leaderboard.commands",
    "evaluation.commands.evaluate",
    "evaluation.commands.protocols",
    "baselines.commands.restore",
)

main = build_main(
    "bench",
    "Blind face restoration benchmark: reproducible test sets, model zoo, metrics, leaderboard.",
    COMMANDS,
)

if __name__ == "__main__":
    raise SystemExit(main())
