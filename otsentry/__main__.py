"""``python -m otsentry``: the CLI, runnable from a given interpreter (benchmarks use ``sys.executable``)."""

from otsentry.cli import main

if __name__ == "__main__":
    main(prog_name="otsentry")
