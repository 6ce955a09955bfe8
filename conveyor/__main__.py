"""``python -m conveyor`` runs the CLI."""

from conveyor.cli.main import main

if __name__ == "__main__":
    main()
