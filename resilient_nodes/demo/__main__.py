"""``python -m resilient_nodes.demo``: the command line of the demo."""

from resilient_nodes.demo import main

if __name__ == "__main__":
    raise SystemExit(main())
