"""Command line of the companion package: ``python -m companion <command>``."""

from __future__ import annotations

import argparse
import importlib
import sys

__all__ = ["main", "EXPERIMENTS"]

#: ``python -m companion run <name> [options]``: each experiment's module, whose ``main(argv)``
#: parses the options and runs it. One line per experiment.
EXPERIMENTS = {
    "protein": "companion.experiments.protein",
    "faces": "companion.experiments.faces",
    "toy": "companion.experiments.toy",
    "bridge": "companion.experiments.bridge",
    "transformer": "companion.experiments.transformer",
    "transformer-ablation": "companion.experiments.transformer_ablation",
}


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: the command line) and run the command; return its exit status."""
    parser = argparse.ArgumentParser(prog="python -m companion", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")
    commands.add_parser("doctor", help="check that this environment can run the book")
    run = commands.add_parser("run", help="run an experiment of the book and save its results")
    run.add_argument("experiment", choices=sorted(EXPERIMENTS), help="which experiment")
    run.add_argument("options", nargs=argparse.REMAINDER, help="its options (see: run <experiment> --help)")
    args = parser.parse_args(argv)
    if args.command == "doctor":
        from companion import doctor

        return doctor.main()
    if args.command == "run":
        return importlib.import_module(EXPERIMENTS[args.experiment]).main(args.options)
    parser.error(f"unknown command {args.command!r}")  # pragma: no cover (argparse rejects it first)
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
