"""``python -m conveyor`` runs the CLI."""

from conveyor.cli.main import app

if __name__ == "__main__":
    app()
