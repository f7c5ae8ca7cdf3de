"""The `bench` tool: weights, degraded test sets, training, evaluation and the leaderboard."""

from bfrcore.cliutil import build_main

COMMANDS = (
    "bfrcli.weights",
    "baselines.dict_commands",
    "baselines.commands",
    "degradations.commands",
    "leaderboard.commands",
    "evaluation.commands",
    "evaluation.protocol_commands",
    "baselines.restore_commands",
)

main = build_main(
    "bench",
    "Blind face restoration benchmark: reproducible test sets, model zoo, metrics, leaderboard.",
    COMMANDS,
)

if __name__ == "__main__":
    raise SystemExit(main())
