"""gag's command-line interface (typer + rich), importable as ``gag_cli``."""
