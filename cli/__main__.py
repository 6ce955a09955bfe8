"""``python -m cli`` runs the CLI (the `conveyor` command)."""

from cli.main import main

if __name__ == "__main__":
    main()
