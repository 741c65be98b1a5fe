"""Entry point of ``python -m ugtsr.train`` (see :mod:`ugtsr.train.cli`)."""
import sys

from ugtsr.errors import torch_missing_message

if __name__ == "__main__":
    problem = torch_missing_message("python -m ugtsr.train", "train")
    if problem:
        print(problem, file=sys.stderr)
        raise SystemExit(2)
    from ugtsr.train.cli import main

    raise SystemExit(main())
