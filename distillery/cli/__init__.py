"""The `distillery` command line (typer + rich)."""
