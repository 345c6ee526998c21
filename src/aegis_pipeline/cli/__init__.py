"""The `aegis-pipeline` command: one entry point for every job, each subcommand delegating to its package.

May import: every package; nothing imports `cli`.
"""
