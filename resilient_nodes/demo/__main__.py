"""``python -m resilient_nodes.demo``: runs `cli.main` and exits with its status."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
