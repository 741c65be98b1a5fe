"""Entry point of ``python -m ugtsr.train`` (see :mod:`ugtsr.train.cli`)."""
from ugtsr.train.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
