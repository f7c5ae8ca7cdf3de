"""The leaderboard: results store, tables, exports, plots, comparison grids and one static HTML page.

Reads RESULTS files only (summary.json, metrics.parquet, restored/ written by `bench evaluate` / `bench score`) plus
the test sets and dataset they name, for the visual grids. Modules: :mod:`leaderboard.store` (summary.json ->
results.parquet), :mod:`leaderboard.tables` (per test set x mode, best per column from each metric's recorded
``higher_is_better``), :mod:`leaderboard.export` (Markdown, NTIRE-style CSV, aggregator CSV),
:mod:`leaderboard.plots`, :mod:`leaderboard.grids`, :mod:`leaderboard.html`, :mod:`leaderboard.board`
(`build_leaderboard`, the library entry point), :mod:`leaderboard.commands`
(`bench leaderboard`). See docs/leaderboard.md.
"""
