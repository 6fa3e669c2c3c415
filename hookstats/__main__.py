"""``python -m hookstats``: the same command line as the ``hookstats`` script."""

from hookstats.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
